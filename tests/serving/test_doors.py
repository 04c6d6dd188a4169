"""Doors: the supervised loop, the registry's order and bounds, listen_socket.

These drive real greenlets and real sockets in-process (no monkey-patching
needed: everything here is gevent's own API).
"""

from __future__ import annotations

import logging
import time

import gevent
import pytest
from gevent import socket
from gevent.event import Event

from channelstream.serving.doors import (
    Backoff,
    Door,
    DoorRegistry,
    DoorStartError,
    DoorState,
    LogSampler,
    LoopDoor,
    listen_socket,
)
from tests.support.wait import wait_for


class Crasher(LoopDoor):
    """Crashes ``crashes`` times, then runs until stopped."""

    def __init__(self, name="crasher", crashes=1000, **kw):
        super().__init__(name, **kw)
        self.crashes = crashes
        self.calls: list[float] = []
        self.closed = False

    def run(self):
        self.calls.append(time.monotonic())
        if len(self.calls) <= self.crashes:
            raise RuntimeError(f"boom {len(self.calls)}")
        while not self.wait(1):
            pass

    def close(self):
        self.closed = True


class Recorder(Door):
    """A plain door that records start/stop into a shared journal."""

    def __init__(self, name, journal, fail_start=False, hang_stop=False):
        self.name = name
        self.journal = journal
        self.fail_start = fail_start
        self.hang_stop = hang_stop
        self.state = DoorState.NEW

    def start(self):
        if self.fail_start:
            raise OSError(98, "Address already in use")
        self.journal.append(("start", self.name))
        self.state = DoorState.RUNNING

    def stop(self, timeout):
        self.journal.append(("stop", self.name))
        if self.hang_stop:
            gevent.sleep(60)
        self.state = DoorState.STOPPED

    def status(self):
        return {"state": self.state.value}


def test_a_crashing_loop_is_logged_restarted_and_reported(caplog):
    door = Crasher(crashes=2, backoff_initial=0.05, backoff_max=0.05)
    with caplog.at_level(logging.ERROR, logger="channelstream.serving.doors"):
        door.start()
        gevent.sleep(0)
        status = door.status()
        assert status["state"] == "restarting"
        assert status["restarts"] == 1
        assert status["last_error"] == "RuntimeError: boom 1"
        wait_for(lambda: len(door.calls) == 3)
        gevent.sleep(0)
    status = door.status()
    assert status["state"] == "running"
    assert status["restarts"] == 2
    assert status["last_error"] == "RuntimeError: boom 2"
    crashes = [r for r in caplog.records if "crashed" in r.getMessage()]
    assert len(crashes) == 2
    assert all(r.exc_info and r.exc_info[0] is RuntimeError for r in crashes)
    door.stop(1.0)
    assert door.status()["state"] == "stopped"
    assert door.closed


class PausedCrasher(Crasher):
    """A Crasher that records the backoff delays it is given, and waits them out."""

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.delays: list[float] = []

    def pause(self, delay):
        self.delays.append(delay)
        return super().pause(delay)


def test_backoff_doubles_up_to_the_maximum():
    door = PausedCrasher(backoff_initial=0.05, backoff_max=0.2)
    door.start()
    wait_for(lambda: len(door.calls) >= 6, timeout=10)
    door.stop(1.0)
    assert door.delays[:5] == [0.05, 0.1, 0.2, 0.2, 0.2]
    gaps = [b - a for a, b in zip(door.calls, door.calls[1:], strict=False)]
    assert all(gap >= delay * 0.9 for gap, delay in zip(gaps, door.delays, strict=False)), gaps


def test_a_long_run_resets_the_backoff():
    class SlowCrasher(PausedCrasher):
        backoff_reset_after = 0.15

        def run(self):
            self.calls.append(time.monotonic())
            if len(self.calls) == 3:
                gevent.sleep(0.2)  # a healthy run, then a crash
            raise RuntimeError("boom")

    door = SlowCrasher(backoff_initial=0.05, backoff_max=10)
    door.start()
    wait_for(lambda: len(door.calls) >= 5, timeout=10)
    door.stop(1.0)
    # with the reset: 0.05, 0.1, (a 0.2 s run) 0.05, 0.1; without: ..., 0.2, 0.4
    assert door.delays[:4] == [0.05, 0.1, 0.05, 0.1]


def test_run_returning_early_counts_as_a_crash():
    class Quitter(LoopDoor):
        runs = 0

        def run(self):
            self.runs += 1

    door = Quitter("quitter", backoff_initial=0.02)
    door.start()
    wait_for(lambda: door.runs >= 3)
    assert "run() returned" in door.status()["last_error"]
    door.stop(1.0)


def test_stop_interrupts_a_blocked_loop():
    accepting = Event()

    class Acceptor(LoopDoor):
        def open(self):
            self.sock = listen_socket("127.0.0.1", 0, reuse_port=False)

        def run(self):
            accepting.set()
            while True:
                conn, _ = self.sock.accept()
                conn.close()

        def interrupt(self):
            self.sock.close()

    door = Acceptor("acceptor")
    door.start()
    assert accepting.wait(5)  # woken once run() blocks in accept()
    began = time.monotonic()
    door.stop(30.0)
    assert time.monotonic() - began < 15.0  # interrupted: not the 30 s timeout
    assert door.status() == {"state": "stopped", "restarts": 0}


def test_stop_kills_a_loop_that_ignores_it():
    running = Event()

    class Stubborn(LoopDoor):
        def run(self):
            running.set()
            while True:
                try:
                    gevent.sleep(10)
                except Exception:
                    pass

    door = Stubborn("stubborn")
    door.start()
    assert running.wait(5)  # woken once run() blocks in its sleep
    began = time.monotonic()
    door.stop(0.2)
    assert 0.2 <= time.monotonic() - began < 10  # killed, not after its 10 s sleep
    assert door.status()["state"] == "stopped"


def test_open_failure_fails_start():
    class Unbindable(LoopDoor):
        def open(self):
            raise OSError(98, "Address already in use")

        def run(self):  # never reached
            raise AssertionError

    registry = DoorRegistry()
    registry.add(Unbindable("tcp_streamer"))
    with pytest.raises(DoorStartError) as info:
        registry.start_all()
    assert str(info.value) == (
        "door 'tcp_streamer' failed to start: OSError: [Errno 98] Address already in use"
    )


def test_registry_starts_in_order_and_stops_in_reverse():
    journal = []
    registry = DoorRegistry()
    for name in ("a", "b", "c"):
        registry.add(Recorder(name, journal))
    registry.start_all()
    registry.stop_all(1.0)
    registry.stop_all(1.0)  # idempotent
    assert journal == [
        ("start", "a"), ("start", "b"), ("start", "c"),
        ("stop", "c"), ("stop", "b"), ("stop", "a"),
    ]


def test_a_failed_start_stops_the_doors_already_started():
    journal = []
    registry = DoorRegistry()
    registry.add(Recorder("a", journal))
    registry.add(Recorder("b", journal))
    registry.add(Recorder("c", journal, fail_start=True))
    with pytest.raises(DoorStartError, match="door 'c' failed to start"):
        registry.start_all()
    assert journal == [("start", "a"), ("start", "b"), ("stop", "b"), ("stop", "a")]


def test_registry_refuses_duplicates_and_late_doors():
    registry = DoorRegistry()
    registry.add(Recorder("a", []))
    with pytest.raises(ValueError, match="already registered"):
        registry.add(Recorder("a", []))
    registry.start_all()
    with pytest.raises(RuntimeError, match="already started"):
        registry.add(Recorder("b", []))
    with pytest.raises(RuntimeError, match="already started"):
        registry.start_all()
    registry.stop_all(1.0)


def test_a_hanging_stop_is_bounded():
    journal = []
    registry = DoorRegistry()
    registry.add(Recorder("first", journal))
    registry.add(Recorder("hangs", journal, hang_stop=True))
    registry.start_all()
    began = time.monotonic()
    registry.stop_all(0.2)
    assert time.monotonic() - began < 30.0  # bounded (timeout + 2 s): the hang is forever
    assert journal[-1] == ("stop", "first")  # the others are still stopped


def test_status_survives_a_broken_door():
    class Broken(Recorder):
        def status(self):
            raise KeyError("oops")

    registry = DoorRegistry()
    registry.add(Recorder("fine", []))
    registry.add(Broken("broken", []))
    status = registry.status()
    assert status["fine"] == {"state": "new"}
    assert status["broken"]["state"] == "unknown"
    assert "KeyError" in status["broken"]["error"]


def echo_once(listener):
    conn, _ = listener.accept()
    with conn:
        conn.sendall(conn.recv(100))


def test_listen_socket_accepts_connections():
    listener = listen_socket("127.0.0.1", 0, reuse_port=False)
    port = listener.getsockname()[1]
    server = gevent.spawn(echo_once, listener)
    client = socket.create_connection(("127.0.0.1", port))
    client.sendall(b"ping")
    assert client.recv(100) == b"ping"
    client.close()
    server.join(1)
    listener.close()


def test_listen_socket_ipv6_loopback():
    listener = listen_socket("::1", 0, reuse_port=False)
    assert listener.family == socket.AF_INET6
    listener.close()


def test_reuse_port_lets_several_listeners_share_a_port():
    first = listen_socket("127.0.0.1", 0, reuse_port=True)
    port = first.getsockname()[1]
    second = listen_socket("127.0.0.1", port, reuse_port=True)
    assert second.getsockname()[1] == port
    first.close()
    second.close()


def test_without_reuse_port_a_taken_port_fails_naming_the_address():
    first = listen_socket("127.0.0.1", 0, reuse_port=False)
    port = first.getsockname()[1]
    with pytest.raises(OSError, match=f"cannot listen on 127.0.0.1:{port}"):
        listen_socket("127.0.0.1", port, reuse_port=False)
    first.close()


def test_a_backoff_doubles_up_to_its_maximum_and_starts_over_on_reset():
    backoff = Backoff(0.5, 3.0)
    assert [backoff.next() for _ in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    backoff.reset()
    assert backoff.next() == 0.5


def test_a_log_sampler_lets_one_line_through_per_interval_and_counts_the_rest():
    sampler = LogSampler(3600)
    assert sampler.due()
    assert [sampler.due() for _ in range(3)] == [False, False, False]
    assert sampler.take_suppressed() == 3
    assert sampler.take_suppressed() == 0  # counting starts over after a report
    again = LogSampler(0)
    assert again.due() and again.due()  # once the interval has passed, it is due again
    assert again.take_suppressed() == 0
