"""The stream store: files, states, ids, restart recovery, compression, retention."""

from __future__ import annotations

import json
import os
import zlib
from pathlib import Path

import gevent
import pytest

from loom import frames
from loom.disk import fd_limit
from loom.errors import OutOfFileDescriptors
from loom.ids import BadStreamId, check_id, new_id
from loom.reader import StreamReader
from loom.store import (
    ABORTED,
    FINISHED,
    LIVE,
    NoSuchStream,
    Store,
    Stream,
    StreamExists,
    TooManyStreams,
)
from tests.support.wait import wait_for


def make_store(root: Path, **options) -> Store:
    events: list[tuple[str, str]] = []
    store = Store(root, notify=lambda stream, event: events.append((stream.id, event)), **options)
    store.events = events  # type: ignore[attr-defined]
    store.open()
    return store


def read_all(stream) -> bytes:
    with StreamReader(stream) as reader:
        parts = []
        while chunk := reader.read():
            parts.append(chunk)
        return b"".join(parts)


@pytest.mark.parametrize("compression", ["none", "zlib"])
def test_a_stream_goes_live_then_finished_with_its_bytes_and_metadata(tmp_path, compression):
    store = make_store(tmp_path, compression=compression)
    stream, replaced = store.create("build-1-task-2", {"task": {"id": 2}})
    assert not replaced and stream.state == LIVE
    payload = [bytes(range(256)) * 40, b"", b"tail\x00\xff"]
    for chunk in payload:
        store.append(stream, chunk)
    assert read_all(stream) == b"".join(payload)
    store.finish(stream)
    assert stream.state == FINISHED and stream.size == len(b"".join(payload))
    info = json.loads((tmp_path / "streams" / "build-1-task-2.json").read_text())
    assert info["state"] == FINISHED and info["metadata"] == {"task": {"id": 2}}
    assert info["size"] == stream.size and info["compression"] == compression
    assert store.events == [
        (stream.id, "start"),
        (stream.id, "data"),
        (stream.id, "data"),
        (stream.id, "end"),
    ]
    store.append(stream, b"late")  # ignored once ended
    assert stream.size == len(b"".join(payload))


@pytest.mark.parametrize(
    "bad",
    ["", ".", "..", "../etc/passwd", "a/b", "a\\b", ".hidden", "-x", "a b", "é", "x" * 129, "a\n"],
)
def test_ids_that_could_escape_or_are_odd_are_refused(tmp_path, bad):
    store = make_store(tmp_path)
    with pytest.raises(BadStreamId):
        store.create(bad, None)
    with pytest.raises(BadStreamId):
        store.get(bad)
    assert list((tmp_path / "streams").iterdir()) == []


def test_valid_and_generated_ids(tmp_path):
    for good in ("a", "A.b_c-9", "build-12-task-3", "x" * 128, "1.2.3"):
        assert check_id(good) == good
    ids = {new_id() for _ in range(10000)}
    assert len(ids) == 10000
    assert all(check_id(i) for i in ids)
    store = make_store(tmp_path)
    stream, _ = store.create(None, None)
    assert stream.id.startswith("loom-")


def test_a_taken_id_conflicts_unless_forced_and_the_old_readers_keep_their_bytes(tmp_path):
    store = make_store(tmp_path)
    old, _ = store.create("s", {"v": 1})
    store.append(old, b"old bytes")
    reader = StreamReader(old)
    with pytest.raises(StreamExists, match=r"The stream with ID s already exists\. Specify"):
        store.create("s", None)
    new, replaced = store.create("s", {"v": 2}, force=True)
    assert replaced and new is not old
    assert old.state == ABORTED and "replaced" in old.reason
    store.append(new, b"new")
    assert reader.read() == b"old bytes" and reader.done
    reader.close()
    assert store.get("s") is new and read_all(new) == b"new"


def test_delete_and_not_found(tmp_path):
    store = make_store(tmp_path)
    stream, _ = store.create("gone", None)
    store.delete("gone")
    assert stream.state == ABORTED
    with pytest.raises(NoSuchStream, match="The stream with ID gone does not exist"):
        store.get("gone")
    assert list((tmp_path / "streams").iterdir()) == []


def test_max_live_streams(tmp_path):
    store = make_store(tmp_path, max_live=1)
    first, _ = store.create("one", None)
    with pytest.raises(TooManyStreams):
        store.create("two", None)
    store.finish(first)
    store.create("two", None)


@pytest.mark.parametrize("compression", ["none", "zlib"])
def test_a_restart_aborts_live_streams_and_keeps_every_written_byte(tmp_path, compression):
    store = make_store(tmp_path, compression=compression, fsync="never")
    live, _ = store.create("live", {"m": 1})
    store.append(live, b"a" * 1000)
    store.append(live, b"b" * 10)
    done, _ = store.create("done", None)
    store.append(done, b"finished")
    store.finish(done)
    # the process dies: nothing more is written (fds leak on purpose)
    again = make_store(tmp_path, compression=compression)
    live2 = again.get("live")
    assert live2.state == ABORTED and "restarted" in live2.reason
    assert live2.size == 1010 and read_all(live2) == b"a" * 1000 + b"b" * 10
    assert again.get("done").state == FINISHED and read_all(again.get("done")) == b"finished"
    # the state change is on disk
    info = json.loads((tmp_path / "streams" / "live.json").read_text())
    assert info["state"] == ABORTED and info["size"] == 1010
    assert [p.name for p in (tmp_path / "streams").glob("*.tmp")] == []


def write_in_flight(store: Store, stream_id: str) -> tuple[Stream, gevent.Greenlet]:
    """A live stream whose 8 MiB append is in the thread pool now (as after a slow write)."""
    stream, _ = store.create(stream_id, None)
    store._slow_until = float("inf")  # as after a slow write: writes go to the thread pool
    writer = gevent.spawn(store.append, stream, b"x" * (8 << 20))
    gevent.sleep(0)  # the write is in the thread pool now
    assert stream.writing
    return stream, writer


def test_an_end_during_a_write_in_flight_closes_the_file_after_it(tmp_path):
    store = make_store(tmp_path, fsync="never")  # create does not yield: the write is still on
    stream, writer = write_in_flight(store, "racy")
    replacement, replaced = store.create("racy", None, force=True)
    assert replaced and stream.state == ABORTED and stream.orphan_fd is not None
    writer.get(timeout=10)
    assert stream.orphan_fd is None and not stream.writing
    store.append(replacement, b"new")
    store.finish(replacement)
    assert read_all(store.get("racy")) == b"new"
    info = json.loads((tmp_path / "streams" / "racy.json").read_text())
    assert info["state"] == FINISHED and info["size"] == 3


def test_a_partial_compressed_frame_is_cut_at_restart_and_never_crashes_a_reader(tmp_path):
    store = make_store(tmp_path, compression="zlib")
    stream, _ = store.create("z", None)
    store.append(stream, b"first chunk")
    store.append(stream, b"second chunk")
    whole = stream.stored
    with open(stream.data_path, "ab") as f:  # a crash in the middle of a frame
        f.write(frames.encode(b"third", 1)[0][:7])
    again = make_store(tmp_path)
    z = again.get("z")
    assert z.stored == whole and os.path.getsize(z.data_path) == whole
    assert read_all(z) == b"first chunksecond chunk"


def test_a_damaged_compressed_file_ends_the_reader_without_an_exception(tmp_path):
    store = make_store(tmp_path, compression="zlib")
    stream, _ = store.create("bad", None)
    text = b"good " * 100
    store.append(stream, text)
    store.append(stream, b"to be damaged " * 100)
    store.finish(stream)
    good = frames.HEADER_SIZE + len(zlib.compress(text, 1))
    with open(stream.data_path, "r+b") as f:
        f.seek(good + frames.HEADER_SIZE + 2)
        f.write(b"\xff\xff\xff\xff")
    with StreamReader(stream) as reader:
        assert reader.read() == text
        assert reader.read() == b""
        assert reader.corrupt and reader.done
    with open(stream.data_path, "r+b") as f:  # an absurd announced length
        f.write(b"\xff" * 8)
    stream.decoded.clear()  # frames decoded before the damage are still served from memory
    with StreamReader(stream) as reader:
        assert reader.read() == b"" and reader.corrupt


def test_unreadable_metadata_files_are_skipped(tmp_path):
    (tmp_path / "streams").mkdir()
    (tmp_path / "streams" / "broken.json").write_text("{not json")
    (tmp_path / "streams" / "evil.json").write_text(
        json.dumps({"id": "../evil", "state": "live", "created": 1})
    )
    store = make_store(tmp_path)
    assert store.streams() == []


def test_retention_by_age_then_by_total_size_keeps_live_streams(tmp_path):
    store = make_store(tmp_path)
    streams = {}
    for n, name in enumerate(["old", "mid", "new"]):
        stream, _ = store.create(name, None)
        store.append(stream, b"x" * 100)
        store.finish(stream)
        stream.ended = 1000.0 + n * 100
        streams[name] = stream
    live, _ = store.create("live", None)
    store.append(live, b"y" * 500)
    live.created = 0.0  # the oldest, but live
    assert store.purge(max_age=250, now=1300.0) == ["old"]
    assert not streams["old"].data_path.exists()
    assert store.purge(max_bytes=650, now=1300.0) == ["mid"]
    assert {s.id for s in store.streams()} == {"new", "live"}
    assert store.purge(max_bytes=1) == ["new"]
    assert [s.id for s in store.streams()] == ["live"]


def test_one_retention_pass_applies_the_age_then_the_size_cap_oldest_first(tmp_path):
    store = make_store(tmp_path)
    for n, name in enumerate(["a", "b", "c", "d"]):
        stream, _ = store.create(name, None)
        store.append(stream, b"x" * 100)
        store.finish(stream)
        stream.ended = 1000.0 + n * 100
    live, _ = store.create("live", None)
    store.append(live, b"y" * 500)
    # a is too old; then 800 bytes are stored: b and c go to come under 650
    assert store.purge(max_age=250, max_bytes=650, now=1300.0) == ["a", "b", "c"]
    assert {s.id for s in store.streams()} == {"d", "live"}


def test_data_that_does_not_shrink_is_stored_as_is_and_compression_is_retried_later(tmp_path):
    store = make_store(tmp_path, compression="zlib")
    stream, _ = store.create("mixed", None)
    noise = os.urandom(100_000)
    text = b"compiling module %d\n" * 5000
    store.append(stream, noise)  # stored as is; the next frames skip zlib
    assert stream.skip_compress == 16 and stream.stored == len(noise) + frames.HEADER_SIZE
    for _ in range(16):
        store.append(stream, text)
    assert stream.skip_compress == 0
    before = stream.stored
    store.append(stream, text)  # compressed again
    assert stream.stored - before < len(text) // 10
    store.finish(stream)
    assert read_all(stream) == noise + text * 17


def test_a_stored_frame_with_a_bad_crc_is_corrupt(tmp_path):
    path = tmp_path / "frames"
    good = frames.encode_stored(b"123456")
    path.write_bytes(good + good[:-1] + b"7")
    fd = os.open(path, os.O_RDONLY)
    try:
        assert frames.decode_at(fd, 0, len(good) * 2) == (b"123456", len(good))
        with pytest.raises(frames.CorruptData, match="CRC"):
            frames.decode_at(fd, len(good), len(good) * 2)
        assert frames.scan(fd, len(good) * 2) == (len(good), 6)
    finally:
        os.close(fd)


def test_tailers_woken_together_share_one_read_of_the_file(tmp_path):
    store = make_store(tmp_path)
    stream, _ = store.create("shared", None)
    readers = [StreamReader(stream) for _ in range(3)]
    try:
        store.append(stream, b"first ")
        chunks = [reader.read() for reader in readers]
        assert chunks == [b"first "] * 3
        assert chunks[1] is chunks[0] and chunks[2] is chunks[0]  # read from the file once
        store.append(stream, b"second")
        assert readers[0].read() == b"second"
        assert readers[1].read(max_bytes=3) == b"sec"  # a different range reads again
        assert readers[1].read() == b"ond"
        assert readers[2].read() == b"second"
        store.finish(stream)
        assert read_all(stream) == b"first second"
    finally:
        for reader in readers:
            reader.close()


@pytest.mark.parametrize("compression", ["none", "zlib"])
def test_an_upload_is_written_back_and_evicted_but_for_its_last_cache_window(
    tmp_path, monkeypatch, compression
):
    calls: list[tuple] = []
    real_sync, real_advise = os.fdatasync, os.posix_fadvise

    def fdatasync(fd):
        calls.append(("sync", fd))
        real_sync(fd)

    def posix_fadvise(fd, offset, length, advice):
        calls.append(("evict", fd, offset, length, advice))
        real_advise(fd, offset, length, advice)

    monkeypatch.setattr(os, "fdatasync", fdatasync)
    monkeypatch.setattr(os, "posix_fadvise", posix_fadvise)
    open_fds = len(os.listdir("/proc/self/fd"))
    store = make_store(tmp_path, cache_window=1000, compression=compression)
    stream, _ = store.create("windowed", None)
    data = b"".join(os.urandom(700) for _ in range(10))
    for start in range(0, len(data), 700):
        flushed = stream.flushed
        store.append(stream, data[start : start + 700])
        if stream.flushing:  # due: started beside the upload, which did not wait for it
            assert stream.flushed == flushed
            wait_for(lambda: not stream.flushing, interval=0.001)
            assert stream.flushed == stream.stored
    store.finish(stream)
    assert read_all(store.get("windowed")) == data
    assert len(os.listdir("/proc/self/fd")) == open_fds  # each write-back closed its fd
    evicted = [call for call in calls if call[0] == "evict"]
    assert len(evicted) >= 3 and all(c[4] == os.POSIX_FADV_DONTNEED for c in evicted)
    # each eviction follows a write-back of the same file (only clean pages leave) ...
    for call in evicted:
        assert calls[calls.index(call) - 1] == ("sync", call[1])
    # ... and together they cover the file from 0, never its last window
    position = 0
    for _, _, offset, length, _ in evicted:
        assert offset == position and length > 0
        position += length
    assert stream.flushed - 1000 == position <= stream.stored - 1000


def test_without_a_cache_window_the_page_cache_is_left_to_the_kernel(tmp_path, monkeypatch):
    evicted = []
    monkeypatch.setattr(os, "posix_fadvise", lambda *args: evicted.append(args))
    store = make_store(tmp_path, cache_window=0)
    stream, _ = store.create("plain", None)
    for _ in range(10):
        store.append(stream, b"x" * 700)
    store.finish(stream)
    assert evicted == [] and stream.flushed == 0


def test_an_abort_during_a_write_in_flight_still_records_the_abort(tmp_path):
    store = make_store(tmp_path)
    stream, writer = write_in_flight(store, "stopping")
    store.close()  # the server stops meanwhile
    writer.get(timeout=10)
    assert stream.orphan_fd is None and not stream.writing
    info = json.loads((tmp_path / "streams" / "stopping.json").read_text())
    assert info["state"] == ABORTED and "stopped" in info["reason"]


def on_disk(root: Path, stream_id: str) -> dict | None:
    path = root / "streams" / f"{stream_id}.json"
    return json.loads(path.read_text()) if path.exists() else None


@pytest.mark.parametrize("fsync", ["finish", "always"])
def test_nothing_says_a_stream_started_or_ended_before_its_metadata_file_does(tmp_path, fsync):
    seen: list[tuple[str, str, str | None]] = []

    def notify(stream, event):
        info = on_disk(tmp_path, stream.id)
        seen.append((event, stream.state, info and info["state"]))

    store = Store(tmp_path, fsync=fsync, notify=notify)
    store.open()
    stream, _ = store.create("durable", {"a": 1})
    assert on_disk(tmp_path, "durable")["state"] == LIVE  # before the caller's 201
    store.append(stream, b"data")
    store.finish(stream)
    aborted, _ = store.create("cut", None)
    store.abort(aborted, "the producer's connection broke")
    assert seen == [
        ("start", LIVE, LIVE),
        ("data", LIVE, LIVE),
        ("end", FINISHED, FINISHED),
        ("start", LIVE, LIVE),
        ("end", ABORTED, ABORTED),
    ]
    assert not list((tmp_path / "streams").glob("*.tmp"))


def test_while_its_end_is_synced_a_stream_stays_live_and_a_delete_overtakes_it(tmp_path):
    store = make_store(tmp_path, fsync="finish")
    stream, _ = store.create("overtaken", None)
    store.append(stream, b"bytes")
    finishing = gevent.spawn(store.finish, stream)
    gevent.sleep(0)  # it runs until its fsync (in the thread pool)
    assert stream.ending and stream.state == LIVE and stream.fd is None
    store.append(stream, b"late")  # no appends once the end began
    store.finish(stream)  # nor a second end
    store.delete("overtaken")
    finishing.get(timeout=10)
    assert stream.state == ABORTED and stream.reason == "deleted"
    assert not list((tmp_path / "streams").iterdir())
    assert [event for _, event in store.events].count("end") == 1
    assert store.live_streams() == []
    store.create("overtaken", None)  # the id is free, the live count right
    assert len(store.live_streams()) == 1


def test_a_finish_in_progress_is_not_aborted_by_the_server_stopping(tmp_path):
    store = make_store(tmp_path, fsync="finish")
    stream, _ = store.create("finishing", None)
    store.append(stream, b"all of it")
    finishing = gevent.spawn(store.finish, stream)
    gevent.sleep(0)
    assert stream.ending
    store.close()
    finishing.get(timeout=10)
    assert stream.state == FINISHED and on_disk(tmp_path, "finishing")["state"] == FINISHED


def test_an_upload_is_refused_when_it_would_eat_into_the_fd_reserve(tmp_path):
    store = make_store(tmp_path, fd_reserve=fd_limit())
    with pytest.raises(OutOfFileDescriptors) as refused:
        store.create("one-too-many", None)
    assert refused.value.status == 503
    message = str(refused.value)
    assert f"limit of {fd_limit()}" in message and "loom.fd_reserve" in message
    assert store.find("one-too-many") is None and not list((tmp_path / "streams").iterdir())
    store.fd_reserve = 0
    stream, _ = store.create("one-too-many", None)
    assert stream.live
