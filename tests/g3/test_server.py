"""The streaming server: replay, live frames, bounded queues, stop; threads and greenlets."""

from __future__ import annotations

import socket

import pytest

from channelstream.g3 import FrameQueue, G3FrameType, StreamServer
from channelstream.g3.concurrency import pick
from tests.g3.helpers import RawClient, make_frame
from tests.support.wait import wait_for

T, S, W, C, OBS, H = (G3FrameType.Timepoint, G3FrameType.Scan, G3FrameType.Wiring,
                      G3FrameType.Calibration, G3FrameType.Observation, G3FrameType.Housekeeping)


@pytest.fixture
def start(concurrency: str):
    servers: list[StreamServer] = []

    def start(**options) -> StreamServer:
        server = StreamServer("127.0.0.1", 0, concurrency=concurrency, **options).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop(0)


def _connect(server: StreamServer, **options) -> RawClient:
    before = server.accepted
    client = RawClient(server.address, **options)
    wait_for(lambda: server.accepted > before, what="the server to accept")
    return client


def test_clients_are_accepted_before_any_frame(start) -> None:
    server = start()
    client = _connect(server)
    assert len(server.clients) == 1
    assert server.clients[0].frames == 0
    client.close()


def test_new_client_gets_latest_metadata_in_first_seen_order_then_live(start) -> None:
    server = start()
    for frame_type, n in [(W, 1), (T, 2), (C, 3), (W, 4), (S, 5), (OBS, 6), (T, 7)]:
        server.publish(make_frame(frame_type, n=n))
    client = _connect(server)
    server.publish(make_frame(T, n=8))
    server.publish(make_frame(C, n=9))
    server.publish(make_frame(G3FrameType.EndProcessing))  # never sent
    wait_for(lambda: len(client.frames) == 5, what="5 frames")
    assert [(f.type, f["n"]) for f in client.frames] == [(W, 4), (C, 3), (OBS, 6), (T, 8), (C, 9)]
    server.stop()
    wait_for(lambda: client.eof, what="EOF after stop")
    assert len(client.frames) == 5


def test_every_client_gets_every_frame_in_order(start) -> None:
    server = start()
    clients = [_connect(server) for _ in range(3)]
    frames = [make_frame(T if i % 5 else H, n=i, pad="x" * (i * 37 % 5000)) for i in range(300)]
    for frame in frames:
        server.publish(frame)
    server.stop()
    for client in clients:
        wait_for(lambda c=client: c.eof, what="EOF")
        assert [f["n"] for f in client.frames] == list(range(300))
        assert [f.encode() for f in client.frames] == [f.encode() for f in frames]
    assert server.dropped == 0
    assert server.state.value == "stopped"


def _queued(server: StreamServer, client: RawClient) -> int:
    port = client.sock.getsockname()[1]
    return next(c.queued for c in server.clients if c.peer.endswith(f":{port}"))


def test_stalled_client_drops_only_data_frames_and_never_blocks_others(start) -> None:
    server = start(max_queue_size=10)
    healthy = _connect(server)
    stalled = _connect(server, stalled=True, rcvbuf=4096)
    payload = "x" * 60_000
    published = []
    for i in range(400):  # ~24 MB: far more than the stalled socket's buffers hold
        frame_type = W if i % 50 == 0 else T
        # the healthy client keeps up (its queue stays short), the stalled one cannot
        wait_for(lambda: _queued(server, healthy) < 5, interval=0.001, what="the healthy client")
        server.publish(make_frame(frame_type, n=i, pad=payload))  # never blocks
        published.append((frame_type, i))
    wait_for(lambda: len(healthy.frames) == 400, what="all frames at the healthy client")
    assert [f["n"] for f in healthy.frames] == list(range(400))
    dropped = server.dropped
    assert dropped > 0
    assert max(c.queued for c in server.clients) <= 10
    stalled.resume()
    server.stop()
    wait_for(lambda: stalled.eof, what="the stalled client's EOF")
    got = [(f.type, f["n"]) for f in stalled.frames]
    assert [g for g in got if g[0] == W] == [p for p in published if p[0] == W]  # all metadata
    assert got == sorted(got, key=lambda g: g[1])  # in order
    assert len(got) == 400 - dropped
    assert server.dropped == dropped


def test_a_client_over_its_byte_bound_is_disconnected(start) -> None:
    server = start(max_client_bytes=1_000_000)
    healthy = _connect(server)
    stalled = _connect(server, stalled=True, rcvbuf=4096)
    for i in range(200):
        wait_for(lambda: _queued(server, healthy) < 5, interval=0.001, what="the healthy client")
        server.publish(make_frame(W, n=i, pad="y" * 50_000))  # metadata: never dropped
    wait_for(lambda: server.overflowed == 1, what="the overflow")
    wait_for(lambda: len(server.clients) == 1, what="the stalled client to go")
    wait_for(lambda: len(healthy.frames) == 200, what="the healthy client")
    stalled.resume()
    wait_for(lambda: stalled.eof or stalled.error is not None, what="the stalled client's end")


def test_stop_cuts_clients_that_do_not_drain_in_time(start) -> None:
    server = start(drain_timeout=0.3)
    stalled = _connect(server, stalled=True, rcvbuf=4096)
    for i in range(100):
        server.publish(make_frame(T, n=i, pad="z" * 100_000))
    server.stop()
    assert server.cut == 1
    assert server.clients == []
    stalled.resume()
    wait_for(lambda: stalled.eof or stalled.error is not None, what="the cut client's end")


def test_a_client_that_leaves_is_noticed_while_idle(start) -> None:
    server = start(idle_check=0.1)
    client = _connect(server)
    client.close()
    wait_for(lambda: server.clients == [], what="the client to be removed")


def test_stop_is_idempotent_and_publish_after_stop_fails(start) -> None:
    server = start()
    server.stop()
    server.stop()
    with pytest.raises(RuntimeError, match="stopped"):
        server.publish(make_frame(T))
    with socket.socket() as sock:
        with pytest.raises(OSError):
            sock.connect(server.address)


def test_queue_factory_feeds_clients_from_outside(start, concurrency: str) -> None:
    queues: list[FrameQueue] = []

    def factory(peer: str) -> FrameQueue:
        queue = FrameQueue(pick(concurrency), name=peer)
        queue.put(make_frame(W, n=0).encode(), False)  # the door's replay
        queues.append(queue)
        return queue

    server = start(queue_factory=factory)
    client = _connect(server)
    queues[0].put(make_frame(T, n=1).encode(), True)
    wait_for(lambda: len(client.frames) == 2, what="2 frames")
    with pytest.raises(RuntimeError, match="queue_factory"):
        server.publish(make_frame(T))
    server.stop()
    wait_for(lambda: client.eof, what="EOF")
    assert [f["n"] for f in client.frames] == [0, 1]


def test_large_frames_go_out_as_buffers_byte_for_byte(start) -> None:
    # objects of 64 KiB and more stay apart from their headers (sendmsg, partial
    # writes resumed: a gevent socket sends what fits, then waits)
    server = start()
    clients = [_connect(server) for _ in range(2)]
    frames = [make_frame(T if i % 3 else W, n=i, big="é" * (100_000 + i), small="s")
              for i in range(40)]
    parts, size = frames[0].encoded()
    assert len(parts) > 1 and size == sum(len(p) for p in parts)
    for frame in frames:
        server.publish(frame)
    server.stop()
    for client in clients:
        wait_for(lambda c=client: c.eof, what="EOF")
        assert [f.encode() for f in client.frames] == [f.encode() for f in frames]
    assert frames[0].encode() == b"".join(parts)


def test_metadata_types_remembered_are_bounded(start, monkeypatch) -> None:
    from channelstream.g3 import server as server_module

    monkeypatch.setattr(server_module, "MAX_METADATA_TYPES", 3)
    server = start()
    for code in ("A", "B", "C", "D", "A"):
        server.publish(make_frame(G3FrameType(ord(code)), code=code))
    client = _connect(server)
    wait_for(lambda: len(client.frames) == 3, what="the replay")
    assert [f["code"] for f in client.frames] == ["A", "B", "C"]  # D was sent, not kept
