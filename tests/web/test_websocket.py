"""web.websocket.WebSocket over a real loopback TCP connection, in this process.

The server end is the class itself, driven by the gevent hub's watchers; the
client end is a gevent socket (its blocking calls let the hub run). What is
checked: pending output is a list of the frames as they were given (never
joined or copied), in order, drained when the client reads; it is bounded
(bytes, and pongs), and a client past the bound is closed with 1008, read no
more, and counted per class.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator
from typing import ClassVar

import gevent
import pytest
from gevent import socket as gsocket

from channelstream.web import websocket as websocket_module
from channelstream.web.websocket import WebSocket
from channelstream.web.wsframes import OP_CLOSE, OP_PING, OP_PONG, FrameReader, frame
from tests.support.wait import wait_for
from tests.web.wsclient import masked, parse_frames

pytestmark = pytest.mark.timeout(60)


class Recorder(WebSocket):
    """Counts its drains and its end."""

    made: ClassVar[list[Recorder]] = []

    def __init__(self, sock, **kwargs) -> None:
        super().__init__(sock, **kwargs)
        self.drains = 0
        self.ended = False
        self.made.append(self)

    def on_drained(self) -> None:
        self.drains += 1

    def on_closed(self) -> None:
        self.ended = True


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, gsocket.socket]]:
    """(server end, non-blocking; client end, a gevent socket with a small receive buffer).

    The server end belongs to the websocket made on it: closed with its watchers
    (libev aborts the process if a watched descriptor is closed under it).
    """
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    client = gsocket.socket()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    client.connect(listener.getsockname())
    server, _ = listener.accept()
    listener.close()
    server.setblocking(False)
    Recorder.made.clear()
    yield server, client
    for ws in Recorder.made:
        ws._shut()
    client.close()


def read_frames(client: gsocket.socket) -> list[tuple[int, bytes]]:
    """Every server frame until EOF (the server half-closes after its close frame)."""
    client.settimeout(10)
    data = bytearray()
    while chunk := client.recv(1 << 20):
        data += chunk
    frames = parse_frames(data)
    assert not data, "EOF inside a frame"
    return frames


def fill(ws: WebSocket) -> bytes:
    """Send one frame the client's buffers cannot hold: the websocket is blocked after it."""
    big = frame(b"b" * (8 << 20), 0x2)
    ws.send(big)
    assert ws.blocked
    return big


def test_pending_frames_are_kept_as_given_and_go_out_in_order(pair):
    server, client = pair
    ws = Recorder(server)
    fill(ws)
    later = [frame(f"later {n}".encode()) for n in range(5)]
    for data in later:
        ws.send(data)
    chunks = list(ws._pending)
    assert len(chunks) == 6  # the rest of the big frame, then each frame: no joining
    assert [chunk.obj for chunk in chunks[1:]] == later  # views of the bytes given: no copy
    reader = gevent.spawn(read_frames, client)
    wait_for(lambda: ws.drains == 1, what="the pending frames to drain")
    assert not ws.blocked
    ws.close(1000, "")
    frames = reader.get(timeout=10)
    assert [f[1] for f in frames[1:-1]] == [f"later {n}".encode() for n in range(5)]
    assert frames[0] == (0x2, b"b" * (8 << 20))
    assert frames[-1][0] == OP_CLOSE


def test_a_frame_of_any_size_is_taken_when_nothing_waits(pair):
    server, _client = pair
    ws = Recorder(server, max_pending=1000)
    fill(ws)  # 8 MiB, far over max_pending: taken, as nothing waited before it
    assert not ws.closing and Recorder.overflows == 0


def test_a_sender_that_ignores_blocked_is_closed_with_1008_past_max_pending(pair):
    server, client = pair
    before = Recorder.overflows
    ws = Recorder(server, max_pending=100_000)
    fill(ws)
    for _ in range(9):
        ws.send(frame(b"x" * 10_000))  # 90 kB waiting: still under the bound
    assert not ws.closing and len(ws._pending) == 10
    ws.send(frame(b"x" * 10_000))  # past it
    assert ws.closing and Recorder.overflows == before + 1
    assert len(ws._pending) == 2  # the frame being written, then the close frame
    frames = read_frames(client)
    assert frames[0] == (0x2, b"b" * (8 << 20))
    assert frames[1][0] == OP_CLOSE and struct.unpack("!H", frames[1][1][:2]) == (1008,)
    assert len(frames) == 2
    wait_for(lambda: ws.ended, what="the socket to close")


def test_nothing_goes_out_after_the_close_frame(pair, monkeypatch):
    """Also: the client's answer ends the socket, though it had sent nothing before
    (it was once taken for the garbage after a protocol error, and the close waited
    for CLOSE_TIMEOUT)."""
    monkeypatch.setattr(websocket_module, "CLOSE_TIMEOUT", 600.0)
    server, client = pair
    ws = Recorder(server)
    ws.close(4000, "bye")
    ws.send(frame(b"too late"))
    client.sendall(masked(OP_CLOSE, struct.pack("!H", 4000)))
    assert read_frames(client) == [(OP_CLOSE, struct.pack("!H", 4000) + b"bye")]
    wait_for(lambda: ws.ended, what="the socket to close on the client's answer")


def test_after_a_protocol_error_the_client_is_read_no_more(pair):
    server, client = pair
    ws = Recorder(server)
    ws.start_reading()
    client.sendall(b"\x81\x02hi")  # unmasked
    client.sendall(masked(OP_PING, b"ignored"))
    frames = read_frames(client)
    assert len(frames) == 1 and struct.unpack("!H", frames[0][1][:2]) == (1002,)


def test_pings_are_answered_in_order_and_each_read_in_one_write(pair):
    server, client = pair
    ws = Recorder(server)
    writes = []
    real_write = ws._write

    def write(data: bytes, pongs: int, close: bool = False) -> None:
        writes.append(pongs)
        real_write(data, pongs, close)

    ws._write = write
    ws.start_reading()
    client.sendall(b"".join(masked(OP_PING, f"p{n}".encode()) for n in range(50)))
    wait_for(lambda: sum(writes) == 50, what="50 pongs")
    assert len(writes) < 50  # batched per read
    client.sendall(masked(OP_CLOSE, struct.pack("!H", 1000)))
    frames = read_frames(client)
    assert frames[:50] == [(OP_PONG, f"p{n}".encode()) for n in range(50)]
    assert frames[50][0] == OP_CLOSE


class Echo(Recorder):
    def new_reader(self) -> FrameReader:
        return FrameReader(keep_data=True)

    def on_message(self, opcode: int, payload: bytes) -> None:
        self.send(frame(payload, opcode))


def test_pongs_go_out_before_the_answer_to_a_later_message_of_the_same_read(pair):
    """Autobahn 5.6: a ping between two fragments is answered before the message's echo."""
    server, client = pair
    ws = Echo(server)
    ws.start_reading()
    client.sendall(
        masked(0x1, b"frag1", fin=False) + masked(OP_PING, b"p1") + masked(OP_PING, b"p2")
        + masked(0x0, b"frag2") + masked(OP_PING, b"p3")
        + masked(OP_CLOSE, struct.pack("!H", 1000))
    )
    assert read_frames(client) == [
        (OP_PONG, b"p1"),
        (OP_PONG, b"p2"),
        (0x1, b"frag1frag2"),
        (OP_PONG, b"p3"),
        (OP_CLOSE, struct.pack("!H", 1000)),
    ]


def test_a_client_that_floods_pings_and_never_reads_is_closed_with_1008(pair, monkeypatch):
    """Pongs pile up while the client does not read: past MAX_PENDING_PONGS the socket
    is closed with 1008 and reading stops, so the flood waits in TCP; counted per class."""
    monkeypatch.setattr(websocket_module, "CLOSE_TIMEOUT", 30.0)  # time to read the close
    server, client = pair
    base_before = WebSocket.overflows
    before = Recorder.overflows
    ws = Recorder(server)
    ws.start_reading()
    flood = masked(OP_PING, b"p" * 125) * 500
    client.settimeout(0.5)
    sent = 0
    with pytest.raises(TimeoutError):
        while sent < 256 << 20:
            client.sendall(flood)
            sent += len(flood)
    assert Recorder.overflows == before + 1 and WebSocket.overflows == base_before
    assert ws.closing and not ws._read_watcher.active  # the rest of the flood stays in TCP
    assert ws._pending_pongs > ws.max_pending_pongs  # the bound it went past
    frames = read_frames(client)
    assert {f[0] for f in frames[:-1]} == {OP_PONG}
    assert len(frames) - 1 <= sent // 131  # one pong per ping read, at most
    assert frames[-1][0] == OP_CLOSE
    assert struct.unpack("!H", frames[-1][1][:2]) == (1008,)
    assert b"backlog" in frames[-1][1]


def test_each_subclass_counts_its_own_overflows():
    class Other(WebSocket):
        pass

    class Child(Other):
        pass

    assert (Other.overflows, Child.overflows) == (0, 0)
    Other.overflows += 1
    assert (Other.overflows, Child.overflows) == (1, 0)
