"""The frame bytes: spt3g's layout and CRC, and the scanner's limits."""

from __future__ import annotations

import struct

import pytest

from channelstream.g3 import G3FormatError, wire
from channelstream.g3.wire import FrameScanner
from tests.g3.helpers import SPT3G_FRAME


def _entries(data: bytes) -> list[tuple[bytes, bytes]]:
    scanner = FrameScanner()
    assert scanner.scan(data, 0, len(data)) == len(data)
    return [(data[a:b], data[c:d]) for a, b, c, d in scanner.entries]


def test_encode_reproduces_spt3g_bytes() -> None:
    entries = _entries(SPT3G_FRAME)
    assert [name for name, _ in entries] == [b"s", b"b", b"d", b"i"]
    assert wire.encode(ord("T"), entries) == SPT3G_FRAME


def test_crc_is_spt3gs_uninverted_crc32c() -> None:
    # spt3g: crc32c(0, ...) chained over names and blobs, no final xor.
    entries = _entries(SPT3G_FRAME)
    running = wire.crc_start()
    for name, blob in entries:
        running = wire.crc_update(wire.crc_update(running, name), blob)
    assert wire.crc_finish(running) == struct.unpack("<I", SPT3G_FRAME[-4:])[0] == 0x04A36DAA
    # the conventional CRC-32C check value, for contrast: 0xE3069283 for "123456789"
    assert wire.crc_finish(wire.crc_update(wire.crc_start(), b"123456789")) != 0xE3069283


def test_empty_frame() -> None:
    data = wire.encode(ord("N"), [])
    assert data == struct.pack("<BIII", 1, 1, 0, ord("N")) + b"\0\0\0\0"
    assert FrameScanner().scan(data, 0, len(data)) == len(data)


def test_scanner_resumes_byte_by_byte() -> None:
    scanner = FrameScanner()
    for end in range(len(SPT3G_FRAME)):
        assert scanner.scan(SPT3G_FRAME[:end], 0, end) is None
    assert scanner.scan(SPT3G_FRAME, 0, len(SPT3G_FRAME)) == len(SPT3G_FRAME)


@pytest.mark.parametrize(
    "header, message",
    [
        (struct.pack("<BIII", 2, 1, 0, 84), "first byte 0x02"),
        (struct.pack("<BIII", 1, 2, 0, 84), "version 2"),
        (struct.pack("<BIII", 1, 1, 0xFFFFFFFF, 84), "4294967295 entries"),
    ],
)
def test_bad_headers(header: bytes, message: str) -> None:
    with pytest.raises(G3FormatError, match=message):
        FrameScanner().scan(header, 0, len(header))


@pytest.mark.parametrize("stage", ["name", "blob"])
def test_a_length_claiming_gigabytes_fails_before_its_bytes(stage: str) -> None:
    head = struct.pack("<BIII", 1, 1, 1, 84)
    huge = struct.pack("<Q", 5 << 30)
    data = head + huge if stage == "name" else head + struct.pack("<Q", 1) + b"x" + huge
    with pytest.raises(G3FormatError, match="past max_frame_size"):
        FrameScanner(max_frame_size=1 << 20).scan(data, 0, len(data))


def test_max_frame_size_counts_the_whole_frame() -> None:
    size = len(SPT3G_FRAME)
    assert FrameScanner(size).scan(SPT3G_FRAME, 0, size) == size
    with pytest.raises(G3FormatError):
        FrameScanner(size - 1).scan(SPT3G_FRAME, 0, size)


def test_big_endian_frames_are_read() -> None:
    name, blob = b"n", b"\x00blob"
    crc = wire.crc_finish(wire.crc_update(wire.crc_update(wire.crc_start(), name), blob))
    data = (struct.pack(">BIII", 0, 1, 1, 84) + struct.pack(">Q", 1) + name
            + struct.pack(">Q", len(blob)) + blob + struct.pack(">I", crc))
    scanner = FrameScanner()
    assert scanner.scan(data, 0, len(data)) == len(data)
    scanner.check_crc(data)
    assert scanner.frame_type == 84


def test_crc_mismatch() -> None:
    bad = SPT3G_FRAME[:-1] + bytes([SPT3G_FRAME[-1] ^ 1])
    scanner = FrameScanner()
    scanner.scan(bad, 0, len(bad))
    with pytest.raises(G3FormatError, match="CRC mismatch"):
        scanner.check_crc(bad)
