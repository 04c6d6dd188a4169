"""The incremental decoder: any chunking, clear errors, memory bounded by what arrives."""

from __future__ import annotations

import struct
import tracemalloc

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from channelstream.g3 import (
    FrameDecoder,
    G3FormatError,
    G3Frame,
    G3FrameType,
    G3TruncatedError,
    decode_frame,
    decode_frames,
    wire,
)
from channelstream.g3.objects import G3Int, OpaqueObject
from tests.g3.helpers import SPT3G_FRAME, make_frame

STREAM = SPT3G_FRAME + make_frame(G3FrameType.Wiring, w="x" * 300).encode() + SPT3G_FRAME


def _feed_in(decoder: FrameDecoder, data: bytes, cuts: list[int]) -> list[G3Frame]:
    frames: list[G3Frame] = []
    last = 0
    for cut in [*sorted(set(cuts)), len(data)]:
        frames += decoder.feed(data[last:cut])
        last = cut
    return frames


def test_every_split_point() -> None:
    for cut in range(len(STREAM) + 1):
        decoder = FrameDecoder()
        frames = _feed_in(decoder, STREAM, [cut])
        assert b"".join(f.encode() for f in frames) == STREAM
        assert decoder.pending == 0
        decoder.close()


def test_byte_by_byte() -> None:
    decoder = FrameDecoder()
    frames = _feed_in(decoder, STREAM, list(range(len(STREAM))))
    assert [f.type.name for f in frames] == ["Timepoint", "Wiring", "Timepoint"]
    assert decoder.frames == 3 and decoder.bytes == len(STREAM)


@settings(max_examples=200)
@given(cuts=st.lists(st.integers(0, len(STREAM)), max_size=20))
def test_any_chunking(cuts: list[int]) -> None:
    frames = _feed_in(FrameDecoder(), STREAM, cuts)
    assert b"".join(f.encode() for f in frames) == STREAM


scalars = st.one_of(
    st.integers(-(1 << 63), (1 << 63) - 1),
    st.floats(allow_nan=False),
    st.booleans(),
    st.text(max_size=50),
)


@settings(max_examples=150)
@given(
    items=st.dictionaries(st.text(max_size=10), scalars, max_size=6),
    frame_type=st.integers(0, 0xFFFFFFFF),
    opaque=st.binary(max_size=64),
    cuts=st.lists(st.integers(0, 2000), max_size=8),
)
def test_random_frames_round_trip(items, frame_type, opaque, cuts) -> None:
    frame = G3Frame(frame_type)
    for name, value in items.items():
        frame[name] = value
    frame["\udcffopaque"] = OpaqueObject(opaque)
    data = frame.encode()
    (decoded,) = _feed_in(FrameDecoder(), data, [c for c in cuts if c <= len(data)])
    assert int(decoded.type) == frame_type
    assert dict(decoded.items()) == {**items, "\udcffopaque": OpaqueObject(opaque)}
    assert decoded.encode() == data
    # re-encoded from its objects (not its cached bytes): the same bytes
    assert G3Frame(decoded).encode() == data
    rebuilt = G3Frame(decoded.type)
    for name in decoded.keys():
        rebuilt[name] = decoded.object(name)
    assert rebuilt.encode() == data


def test_truncated_stream() -> None:
    decoder = FrameDecoder()
    assert len(decoder.feed(STREAM[:-5])) == 2
    with pytest.raises(G3TruncatedError, match="ended inside a frame"):
        decoder.close()
    with pytest.raises(G3TruncatedError):
        decode_frames(SPT3G_FRAME[:20])


def test_bad_crc_names_it() -> None:
    bad = bytearray(SPT3G_FRAME)
    bad[70] ^= 0x40  # inside the first blob
    with pytest.raises(G3FormatError, match="CRC mismatch"):
        decode_frame(bytes(bad))
    assert decode_frame(bytes(bad), verify_crc=False)["s"] != "héllo"


def test_a_broken_stream_stays_broken() -> None:
    decoder = FrameDecoder()
    with pytest.raises(G3FormatError):
        decoder.feed(b"\x09" + SPT3G_FRAME)
    with pytest.raises(G3FormatError, match="already broken"):
        decoder.feed(SPT3G_FRAME)


def test_duplicate_names() -> None:
    blob = G3Int(1).blob()
    with pytest.raises(G3FormatError, match="twice"):
        decode_frame(wire.encode(ord("S"), [(b"a", blob), (b"a", blob)]))


def test_decode_frame_wants_exactly_one() -> None:
    with pytest.raises(G3FormatError, match="expected one frame"):
        decode_frame(SPT3G_FRAME + SPT3G_FRAME)
    with pytest.raises(G3FormatError, match="expected one frame"):
        decode_frame(SPT3G_FRAME + b"\x01")


def _peak_allocation(func) -> int:
    tracemalloc.start()
    try:
        func()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("claim", [1 << 32, 1 << 62, (1 << 64) - 1])
def test_lengths_claiming_gigabytes_allocate_nothing(claim: int) -> None:
    head = struct.pack("<BIII", 1, 1, 1, 84) + struct.pack("<Q", 1) + b"n"
    data = head + struct.pack("<Q", claim)

    def feed() -> None:
        with pytest.raises(G3FormatError, match="past max_frame_size"):
            FrameDecoder().feed(data)

    assert _peak_allocation(feed) < 256 * 1024


def test_a_frame_under_the_limit_grows_only_with_its_bytes() -> None:
    # a header announcing a 400 MB object (under the 512 MiB default), then 1 KB of it
    data = (struct.pack("<BIII", 1, 1, 1, 84) + struct.pack("<Q", 1) + b"n"
            + struct.pack("<Q", 400_000_000) + b"\0" * 1000)
    decoder = FrameDecoder()

    def feed() -> None:
        for i in range(0, len(data), 100):
            assert decoder.feed(data[i : i + 100]) == []

    assert _peak_allocation(feed) < 256 * 1024
    assert decoder.pending == len(data)
    with pytest.raises(G3TruncatedError):
        decoder.close()


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=400), cuts=st.lists(st.integers(0, 400), max_size=6))
def test_random_bytes_never_crash(data: bytes, cuts: list[int]) -> None:
    decoder = FrameDecoder(max_frame_size=4096)
    try:
        frames = _feed_in(decoder, data, [c for c in cuts if c <= len(data)])
        decoder.close()
    except G3FormatError:
        return
    for frame in frames:
        for name in frame.keys():
            frame[name]  # every object decodes (scalar or opaque) without raising
        str(frame)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    position=st.integers(0, len(STREAM) - 1),
    value=st.integers(0, 255),
    cut=st.integers(0, len(STREAM)),
    truncate=st.booleans(),
)
def test_corrupted_streams_give_frames_or_a_clear_error(position, value, cut, truncate) -> None:
    data = bytearray(STREAM)
    data[position] = value
    if truncate:
        del data[cut:]
    decoder = FrameDecoder(max_frame_size=1 << 16)
    try:
        frames = _feed_in(decoder, bytes(data), [cut])
        decoder.close()
    except G3FormatError as error:
        assert str(error)
        return
    # the change left a valid stream (same byte, or a CRC-neutral spot): still frames
    assert b"".join(f.encode() for f in frames) == bytes(data)
