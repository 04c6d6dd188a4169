"""Transport.attach in process: it kicks the transport it replaces and waits for it."""

from __future__ import annotations

import gevent
import pytest

from channelstream.chat import ChatState
from channelstream.chat.transport import Kicked, Transport
from channelstream.hub import Hub

pytestmark = pytest.mark.timeout(30)


def draining(transport: Transport, journal: list[str], name: str) -> gevent.Greenlet:
    """A greenlet standing for ``transport``'s drainer: it stops a moment after a kick."""

    def run() -> None:
        try:
            gevent.sleep(30)
        except Kicked:
            gevent.sleep(0.05)  # still draining for a moment
            journal.append(f"{name} stopped")
        finally:
            transport.ended.set()

    transport.greenlet = gevent.spawn(run)
    return transport.greenlet


def test_attach_returns_once_the_replaced_transport_stopped_draining():
    chat = ChatState(Hub())
    connection = chat.connections[chat.connect("ann", channels=["room"])["conn_id"]]
    journal: list[str] = []
    first = Transport()
    assert first.attach(chat, connection, {}) == []
    draining(first, journal, "first")
    gevent.sleep(0)  # the first one is draining
    failures = Transport().attach(chat, connection, {"elsewhere": ("epoch", 0)})
    journal.append("second attached")
    assert journal == ["first stopped", "second attached"]
    assert first.kicked == "replaced by a newer transport"
    assert [channel for channel, _ in failures] == ["elsewhere"]


def test_a_transport_replaced_while_it_waits_gets_kicked_there():
    chat = ChatState(Hub())
    connection = chat.connections[chat.connect("ann", channels=["room"])["conn_id"]]
    first = Transport()
    first.attach(chat, connection, {})

    def stuck() -> None:
        try:
            gevent.sleep(30)
        except Kicked:
            gevent.sleep(30)  # never stops draining: the second one waits

    first.greenlet = gevent.spawn(stuck)
    second = Transport()

    def attach_second() -> None:
        try:
            second.attach(chat, connection, {})
        finally:
            second.ended.set()

    second.greenlet = gevent.spawn(attach_second)
    gevent.sleep(0)  # the second one is waiting for the first
    third = Transport()
    third.attach(chat, connection, {}, timeout=5)
    assert isinstance(second.greenlet.exception, Kicked)
    assert connection.transport is third
    first.greenlet.kill()
