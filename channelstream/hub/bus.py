"""The bus: how a publish reaches every hub that serves the channel.

The hub hands every publish to its bus and sequences only what the bus hands
back to it. ``LocalBus`` (the default) hands it straight back, in the same
greenlet, so one process needs no broker. A broker bus (RabbitMQ, later)
carries each publish to every process bound to the channel; each process then
sequences it in its own channel, under its own epoch, so offsets are only ever
compared with the process that issued them.

Contract for implementations:

* ``attach(receive, receive_many)`` is called once, by the hub, before
  ``start``; ``receive_many(messages)`` is ``receive`` of each, in order.
* ``publish(message)`` must not block on any subscriber; it returns the
  sequenced message if it was delivered locally and synchronously, else None.
  ``publish_many(messages)`` is ``publish`` of each, in order (a bus may
  carry them together).
* ``receive(message)`` must be called in the hub's thread (any greenlet), once
  per message, in the order the bus got them.
* ``watch(channel)``/``unwatch(channel)`` say which channels this process has;
  a broker bus binds and unbinds them. Both are idempotent.
"""

from __future__ import annotations

from collections.abc import Callable

from .message import Message

Receive = Callable[[Message], Message]
ReceiveMany = Callable[[list[Message]], list[Message]]


class Bus:
    """Base class of buses; see the module docstring for the contract."""

    name = "bus"

    def __init__(self) -> None:
        self._receive: Receive | None = None
        self._receive_many: ReceiveMany | None = None

    def attach(self, receive: Receive, receive_many: ReceiveMany) -> None:
        if self._receive is not None:
            raise RuntimeError(f"{self.name} bus is already attached to a hub")
        self._receive = receive
        self._receive_many = receive_many

    def start(self) -> None:
        """Connect to the broker, if any."""

    def stop(self) -> None:
        """Disconnect; publishes after this are refused or lost."""

    def publish(self, message: Message) -> Message | None:
        raise NotImplementedError

    def publish_many(self, messages: list[Message]) -> list[Message | None]:
        return [self.publish(message) for message in messages]

    def watch(self, channel: str) -> None:
        """This process now has ``channel``."""

    def unwatch(self, channel: str) -> None:
        """This process no longer has ``channel``."""

    def status(self) -> dict:
        return {"bus": self.name}


class LocalBus(Bus):
    """In-process delivery: a publish is sequenced and fanned out at once."""

    name = "local"

    def publish(self, message: Message) -> Message:
        if self._receive is None:
            raise RuntimeError("the local bus is not attached to a hub")
        return self._receive(message)

    def publish_many(self, messages: list[Message]) -> list[Message]:
        if self._receive_many is None:
            raise RuntimeError("the local bus is not attached to a hub")
        return self._receive_many(messages)
