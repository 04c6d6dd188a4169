"""The bus: how a publish reaches every hub that serves the channel.

The hub hands every publish to its bus. ``LocalBus`` (the default) hands it
straight back, in the same greenlet, and the hub sequences it: one process
needs no broker. An engine bus (``sequences = True``: Redis, in
:mod:`channelstream.engines.redis`) has a shared engine sequence each
publish (the channel's epoch and next offset, the same for every process),
keep it in the channel's history, and carry it to every process that follows
the channel; the hub then keeps and fans out what the bus hands it, in
offset order, with the engine's stamps.

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

For an engine bus (``sequences = True``) also:

* ``attach_engine(deliver, adopt)`` is called once, by the hub, before
  ``start``: ``deliver(channel, messages)`` hands sequenced messages (offset
  order, no gap, each the next of the channel's epoch); ``adopt(channel,
  epoch, last_offset, lost=False)`` tells the hub where a channel stands when
  the process starts following it, and again when the engine's epoch changed
  (the engine lost its data: what follows carries the new epoch) or, with
  ``lost=True``, when a gap could not be filled from its history: the
  channel's subscribers here missed messages that others got, and the hub
  closes their outboxes (:data:`~.outbox.REASON_LOST`) so that their
  clients resume and learn it, never a silent gap.
* ``watch(channel)`` returns once the process follows the channel (every
  publish after it will be delivered) and ``adopt`` was called; it may block
  the calling greenlet on the engine.
* ``publish`` returns None: the message comes back through ``deliver``.
* ``history(channel, after, before)`` returns the messages kept by the
  engine with ``after < offset < before``, stamped, oldest first.
* Any of these raises :class:`EngineUnavailable` when the engine cannot be
  reached; nothing is lost silently.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from .message import Message

Receive = Callable[[Message], Message]
ReceiveMany = Callable[[list[Message]], list[Message]]
Deliver = Callable[[str, list[Message]], None]


class Adopt(Protocol):
    def __call__(self, channel: str, epoch: str, last_offset: int, lost: bool = False) -> None:
        ...


class EngineUnavailable(RuntimeError):
    """The shared engine (Redis...) cannot be reached: ``str()`` says which and why.

    Doors answer it as "unavailable" (HTTP 503 with the reason); the process
    goes on and recovers when the engine is back.
    """


class Bus:
    """Base class of buses; see the module docstring for the contract."""

    name = "bus"
    #: True when a shared engine assigns offsets and epochs (see the module doc).
    sequences = False

    def __init__(self) -> None:
        self._receive: Receive | None = None
        self._receive_many: ReceiveMany | None = None

    def attach(self, receive: Receive, receive_many: ReceiveMany) -> None:
        if self._receive is not None:
            raise RuntimeError(f"{self.name} bus is already attached to a hub")
        self._receive = receive
        self._receive_many = receive_many

    def attach_engine(self, deliver: Deliver, adopt: Adopt) -> None:
        """For an engine bus: how sequenced messages and positions reach the hub."""
        raise NotImplementedError

    def history(self, channel: str, after: int, before: int) -> list[Message]:
        """For an engine bus: the engine's kept messages with ``after < offset < before``."""
        raise NotImplementedError

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
        """JSON-able: at least ``bus`` (its name); ``state`` for an engine bus
        (``connected`` when it works)."""
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
