"""Reading compressed streams: large frames inflate off the event loop, once for all readers."""

from __future__ import annotations

import os

import gevent
import pytest

from loom import reader as reader_module
from loom.reader import POOL_DECOMPRESS, StreamReader
from tests.loom.test_store import make_store


def hex_text(raw_bytes: int) -> bytes:
    """Text that zlib halves: a frame of it holds well over POOL_DECOMPRESS of zlib data."""
    return os.urandom(raw_bytes // 2).hex().encode()


@pytest.fixture
def pool_calls(monkeypatch) -> list[int]:
    """The sizes of the zlib data inflated in the thread pool."""
    calls: list[int] = []
    real = reader_module.in_pool

    def counting(function, packed):
        calls.append(len(packed))
        return real(function, packed)

    monkeypatch.setattr(reader_module, "in_pool", counting)
    return calls


def test_a_large_frame_inflates_in_the_pool_while_other_greenlets_run(tmp_path, pool_calls):
    store = make_store(tmp_path, compression="zlib")
    stream, _ = store.create("big", None)
    data = hex_text(256 * 1024)
    store.append(stream, data)
    store.finish(stream)
    ran: list[int] = []
    gevent.spawn(ran.append, 1)
    with StreamReader(stream) as reader:
        assert reader.read() == data
    assert ran == [1]  # the read yielded to the loop
    assert len(pool_calls) == 1 and pool_calls[0] >= POOL_DECOMPRESS


def test_small_frames_inflate_inline(tmp_path, pool_calls):
    store = make_store(tmp_path, compression="zlib")
    stream, _ = store.create("small", None)
    for n in range(20):
        store.append(stream, b"line %d of a build log\n" % n)
    store.finish(stream)
    with StreamReader(stream) as reader:
        assert reader.read().count(b"\n") == 20
    assert pool_calls == []


def test_readers_woken_together_inflate_a_frame_once(tmp_path, pool_calls):
    store = make_store(tmp_path, compression="zlib")
    stream, _ = store.create("shared", None)
    data = hex_text(256 * 1024)
    store.append(stream, data)
    readers = [StreamReader(stream) for _ in range(10)]
    try:
        reads = [gevent.spawn(r.read) for r in readers]
        gevent.joinall(reads, timeout=10, raise_error=True)
        assert [g.value for g in reads] == [data] * 10
    finally:
        for r in readers:
            r.close()
    assert len(pool_calls) == 1


def test_a_damaged_large_frame_ends_the_reader_without_an_exception(tmp_path, pool_calls):
    store = make_store(tmp_path, compression="zlib")
    stream, _ = store.create("bad", None)
    store.append(stream, hex_text(256 * 1024))
    store.finish(stream)
    with open(stream.data_path, "r+b") as f:
        f.seek(stream.stored // 2)
        f.write(b"\x00" * 64)
    with StreamReader(stream) as reader:
        assert reader.read() == b""
        assert reader.corrupt and reader.done
    assert len(pool_calls) == 1
