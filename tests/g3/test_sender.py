"""FrameSender: to one listening reader, with backpressure; drops only when asked."""

from __future__ import annotations

import socket
import threading

import pytest

from channelstream.g3 import FrameDecoder, FrameSender, G3ConnectionError, G3FrameType
from channelstream.g3.concurrency import pick
from tests.g3.helpers import make_frame
from tests.support.server import free_port
from tests.support.wait import wait_for


class ListeningReader:
    """Accepts one sender and decodes what it sends, in an OS thread (optionally stalled)."""

    def __init__(self, stalled: bool = False) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.port = self.listener.getsockname()[1]
        self.frames: list = []
        self.eof = False
        self.conn: socket.socket | None = None
        self.go = threading.Event()
        if not stalled:
            self.go.set()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        self.conn, _ = self.listener.accept()
        decoder = FrameDecoder()
        self.go.wait()
        while True:
            try:
                data = self.conn.recv(1 << 20)
            except OSError:  # closed by the test
                return
            if not data:
                decoder.close()
                self.eof = True
                return
            self.frames.extend(decoder.feed(data))


def _publisher(concurrency: str, sender: FrameSender, frames: list) -> dict:
    state = {"published": 0, "error": None, "done": False}

    def run() -> None:
        try:
            for frame in frames:
                sender.publish(frame)
                state["published"] += 1
        except Exception as error:
            state["error"] = error
        state["done"] = True

    pick(concurrency).spawn(run)
    return state


def test_sends_everything_then_closes(concurrency: str) -> None:
    reader = ListeningReader()
    sender = FrameSender("127.0.0.1", reader.port, concurrency=concurrency).start()
    for i in range(500):
        sender.publish(make_frame(G3FrameType.Timepoint if i % 7 else G3FrameType.Wiring, n=i))
    sender.publish(make_frame(G3FrameType.EndProcessing))  # not sent
    sender.stop()
    wait_for(lambda: reader.eof, what="EOF at the reader")
    assert [f["n"] for f in reader.frames] == list(range(500))
    assert sender.frames == 500 and sender.dropped == 0


def test_backpressure_bounds_the_buffer(concurrency: str) -> None:
    reader = ListeningReader(stalled=True)
    bound = 1_000_000
    sender = FrameSender("127.0.0.1", reader.port, max_buffer_bytes=bound,
                         concurrency=concurrency).start()
    frames = [make_frame(G3FrameType.Timepoint, n=i, pad="p" * 100_000) for i in range(300)]
    state = _publisher(concurrency, sender, frames)
    # 30 MB to send; the socket buffers hold a few MB: the publisher must block
    wait_for(lambda: sender.queue.queued_bytes > bound - 200_000, what="a full buffer")
    assert not state["done"]
    assert sender.queue.queued_bytes <= bound
    reader.go.set()
    wait_for(lambda: state["done"], what="the publisher")
    assert state["error"] is None
    sender.stop()
    wait_for(lambda: reader.eof, what="EOF")
    assert [f["n"] for f in reader.frames] == list(range(300))
    assert sender.dropped == 0


def test_max_queue_size_drops_data_instead_of_blocking(concurrency: str) -> None:
    reader = ListeningReader(stalled=True)
    sender = FrameSender("127.0.0.1", reader.port, max_queue_size=5,
                         concurrency=concurrency).start()
    frames = [make_frame(G3FrameType.Wiring if i % 50 == 0 else G3FrameType.Timepoint,
                         n=i, pad="q" * 100_000) for i in range(200)]
    state = _publisher(concurrency, sender, frames)
    wait_for(lambda: state["done"], what="the publisher (never blocked)")
    assert sender.dropped > 0
    reader.go.set()
    sender.stop()
    wait_for(lambda: reader.eof, what="EOF")
    got = [f["n"] for f in reader.frames]
    assert {0, 50, 100, 150} <= set(got)  # metadata never dropped
    assert len(got) == 200 - sender.dropped


def test_a_reader_that_goes_away_is_an_error(concurrency: str) -> None:
    reader = ListeningReader()
    sender = FrameSender("127.0.0.1", reader.port, concurrency=concurrency).start()
    sender.publish(make_frame(G3FrameType.Timepoint, n=0))
    wait_for(lambda: reader.frames, what="the first frame")
    reader.conn.shutdown(socket.SHUT_RDWR)
    reader.conn.close()

    def publish_fails() -> bool:
        try:
            sender.publish(make_frame(G3FrameType.Timepoint, pad="r" * 100_000))
        except G3ConnectionError:
            return True
        return False

    wait_for(publish_fails, what="publish to fail")
    with pytest.raises(G3ConnectionError, match="went away"):
        sender.stop()


def test_connect_failure(concurrency: str) -> None:
    with pytest.raises(G3ConnectionError, match="cannot connect"):
        FrameSender("127.0.0.1", free_port(), concurrency=concurrency).start()
