"""Reading frames from files and TCP (connect, listen), in order, with timeouts."""

from __future__ import annotations

import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from channelstream.g3 import (
    FileSource,
    FrameReader,
    FrameWriter,
    G3ConnectionError,
    G3Error,
    G3FormatError,
    G3FrameType,
    G3TruncatedError,
    TcpSource,
)
from tests.g3.helpers import SPT3G_FRAME, BytesServer, make_frame, send_to
from tests.support.server import free_port
from tests.support.wait import wait_for


def _frames(n: int, start: int = 0) -> list:
    return [make_frame(G3FrameType.Timepoint, n=i) for i in range(start, start + n)]


def _stream(frames) -> bytes:
    return b"".join(f.encode() for f in frames)


def test_a_list_of_files_in_order_and_track_filename(tmp_path) -> None:
    paths = []
    for k in range(3):
        paths.append(tmp_path / f"{k}.g3")
        with FrameWriter(paths[-1]) as writer:
            for frame in _frames(2, 2 * k):
                writer.write(frame)
    (tmp_path / "empty.g3").write_bytes(b"")
    reader = FrameReader([paths[0], tmp_path / "empty.g3", paths[1], paths[2]],
                         track_filename=True)
    frames = list(reader)
    assert [f["n"] for f in frames] == list(range(6))
    assert frames[0]._filename == str(paths[0]) and frames[-1].filename == str(paths[2])
    assert [f["n"] for f in FrameReader(paths, n_frames_to_read=3)] == [0, 1, 2]


def test_missing_files_and_empty_lists_are_refused(tmp_path) -> None:
    with pytest.raises(G3Error, match="no such file"):
        FrameReader([tmp_path / "nope.g3"])
    with pytest.raises(ValueError, match="empty list"):
        FrameReader([])
    with pytest.raises(ValueError, match="no port"):
        FrameReader(["tcp://host"])


def test_corrupt_and_truncated_files_name_the_file(tmp_path) -> None:
    bad = tmp_path / "bad.g3"
    bad.write_bytes(SPT3G_FRAME[:-1] + b"\0")
    with pytest.raises(G3FormatError, match=r"bad\.g3: frame CRC mismatch"):
        list(FrameReader(bad))
    short = tmp_path / "short.g3"
    short.write_bytes(SPT3G_FRAME + SPT3G_FRAME[:30])
    with pytest.raises(G3TruncatedError, match=r"short\.g3"):
        list(FrameReader(short))
    notgz = tmp_path / "x.g3.gz"
    notgz.write_bytes(SPT3G_FRAME)
    with pytest.raises(G3FormatError, match="cannot read"):
        list(FrameReader(notgz))


def test_connect_mode(concurrency: str) -> None:
    server = BytesServer(_stream(_frames(20)))
    reader = FrameReader(server.url, concurrency=concurrency)
    assert [f["n"] for f in reader] == list(range(20))


def test_connect_refused(concurrency: str) -> None:
    reader = FrameReader(f"tcp://127.0.0.1:{free_port()}", concurrency=concurrency)
    with pytest.raises(G3ConnectionError, match="cannot connect"):
        list(reader)


def test_listen_mode_accepts_one_sender(concurrency: str) -> None:
    source = TcpSource("tcp://*@127.0.0.1:0", concurrency=concurrency)
    address = source.bind()
    sender = send_to(address, _stream(_frames(10)))
    frames = list(source.frames())
    assert [f["n"] for f in frames] == list(range(10))
    wait_for(lambda: not sender.is_alive(), what="the sender thread")


def test_a_list_mixing_files_and_network(tmp_path, concurrency: str) -> None:
    first, last = tmp_path / "cal.g3", tmp_path / "tail.g3.gz"
    for path, start in ((first, 0), (last, 20)):
        with FrameWriter(path) as writer:
            for frame in _frames(5, start):
                writer.write(frame)
    server = BytesServer(_stream(_frames(10, 5)))
    reader = FrameReader([first, server.url, last], concurrency=concurrency)
    assert [f["n"] for f in reader] == [*range(15), *range(20, 25)]


def test_timeout_turns_silence_into_the_end(concurrency: str) -> None:
    server = BytesServer(_stream(_frames(3)), hold=True)
    reader = FrameReader([server.url], timeout=0.3, concurrency=concurrency)
    assert [f["n"] for f in reader] == [0, 1, 2]
    server.release()


def test_silence_inside_a_frame_is_a_truncation(concurrency: str) -> None:
    server = BytesServer(_stream(_frames(1)) + SPT3G_FRAME[:50], hold=True)
    reader = FrameReader(server.url, timeout=0.3, concurrency=concurrency)
    with pytest.raises(G3TruncatedError, match=r"no data for 0\.3 s inside a frame"):
        list(reader)
    server.release()


def test_listen_timeout_when_nobody_connects(concurrency: str) -> None:
    reader = FrameReader("tcp://*@127.0.0.1:0", timeout=0.2, concurrency=concurrency)
    assert list(reader) == []


def test_eof_inside_a_frame_names_the_source(concurrency: str) -> None:
    server = BytesServer(SPT3G_FRAME + SPT3G_FRAME[:40])
    with pytest.raises(G3TruncatedError, match=r"tcp://127\.0\.0\.1:\d+: the stream ended"):
        list(FrameReader(server.url, concurrency=concurrency))


def test_garbage_from_the_network(concurrency: str) -> None:
    server = BytesServer(b"GET / HTTP/1.1\r\n\r\n")
    with pytest.raises(G3FormatError, match="not a G3 frame"):
        list(FrameReader(server.url, concurrency=concurrency))


def test_close_from_elsewhere_ends_a_blocked_read(concurrency: str) -> None:
    server = BytesServer(_stream(_frames(2)), hold=True)
    reader = FrameReader(server.url, concurrency=concurrency)
    frames = []
    it = iter(reader)
    frames.append(next(it))
    frames.append(next(it))
    timer = threading.Timer(0.2, reader.close)
    timer.start()
    assert list(it) == []  # blocked in recv until close()
    server.release()


def test_close_ends_a_blocked_accept(concurrency: str) -> None:
    reader = FrameReader("tcp://*@127.0.0.1:0", concurrency=concurrency)
    threading.Timer(0.2, reader.close).start()
    assert list(reader) == []


def test_file_source_close(tmp_path) -> None:
    path = tmp_path / "a.g3"
    with FrameWriter(path) as writer:
        for frame in _frames(3):
            writer.write(frame)
    source = FileSource(path, chunk_size=10)
    frames = source.frames()
    next(frames)
    source.close()
    assert list(frames) == []  # chunks are smaller than a frame: none was complete


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=300), prefix=st.integers(0, 3))
def test_corrupt_network_input_ends_in_frames_or_a_clear_error(data: bytes, prefix: int) -> None:
    stream = _stream(_frames(prefix)) + data
    server = BytesServer(stream, chunk=97)
    reader = FrameReader(server.url, timeout=5.0, max_frame_size=4096)
    frames = []
    try:
        frames.extend(reader)
    except G3FormatError as error:
        assert server.url[6:] in str(error)  # names the source
    assert [f["n"] for f in frames[:prefix]] == list(range(min(prefix, len(frames))))
