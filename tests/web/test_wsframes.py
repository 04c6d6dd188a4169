"""The websocket codec: server frames, the handshake key, and the client frame reader."""

from __future__ import annotations

import os
import struct

import pytest

from channelstream.web.wsframes import (
    OP_CLOSE,
    OP_PING,
    FrameReader,
    HandshakeError,
    ProtocolError,
    accept_key,
    close_frame,
    frame,
)


def masked(opcode: int, payload: bytes, fin: bool = True, mask: bytes | None = None) -> bytes:
    """A client frame, masked as RFC 6455 requires."""
    mask = mask or os.urandom(4)
    n = len(payload)
    first = (0x80 if fin else 0) | opcode
    if n < 126:
        head = bytes((first, 0x80 | n))
    elif n < 0x10000:
        head = struct.pack("!BBH", first, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", first, 0x80 | 127, n)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + mask + body


def test_accept_key_matches_the_rfc_example():
    assert accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


@pytest.mark.parametrize("key", ["", "not base64!", "c2hvcnQ="])
def test_accept_key_refuses_keys_that_are_not_16_bytes(key):
    with pytest.raises(HandshakeError):
        accept_key(key)


@pytest.mark.parametrize("size, header", [(5, 2), (125, 2), (126, 4), (65535, 4), (65536, 10)])
def test_frames_use_the_shortest_length_encoding(size, header):
    data = frame(b"x" * size)
    assert data[0] == 0x81
    assert len(data) == header + size


def test_close_frames_carry_the_code_and_never_cut_a_character():
    data = close_frame(4000, "é" * 100)
    payload = data[2:]
    assert data[0] == 0x88 and len(payload) <= 125
    assert struct.unpack("!H", payload[:2]) == (4000,)
    payload[2:].decode("utf-8")  # valid UTF-8


def test_data_frames_are_skipped_and_control_frames_returned_unmasked():
    reader = FrameReader()
    stream = masked(0x1, b"hello") + masked(OP_PING, b"are you there") + masked(0x2, b"z" * 70000)
    stream += masked(OP_CLOSE, struct.pack("!H", 1000) + b"bye")
    assert list(reader.feed(stream)) == [
        (OP_PING, b"are you there"),
        (OP_CLOSE, struct.pack("!H", 1000) + b"bye"),
    ]


def test_frames_split_anywhere_are_read_the_same():
    stream = masked(0x1, b"a" * 300, fin=False) + masked(OP_PING, b"p1")
    stream += masked(0x0, b"b" * 70000) + masked(OP_PING, b"p2")
    reader = FrameReader()
    got = []
    for i in range(0, len(stream), 7):
        got.extend(reader.feed(stream[i : i + 7]))
    assert got == [(OP_PING, b"p1"), (OP_PING, b"p2")]


def test_skipped_payloads_are_never_stored():
    reader = FrameReader()
    assert list(reader.feed(masked(0x2, b"q" * 100000)[:50000])) == []
    assert reader._buffer == b""  # the rest is counted, not kept


@pytest.mark.parametrize(
    "data, code",
    [
        (b"\x81\x05hello", 1002),  # not masked
        (masked(0x1, b"x")[:0] + bytes((0xC1, 0x80)) + b"\0\0\0\0", 1002),  # reserved bit
        (masked(0x3, b"x"), 1002),  # unknown opcode
        (masked(0x0, b"x"), 1002),  # continuation without a start
        (masked(0x1, b"x", fin=False) + masked(0x1, b"y"), 1002),  # new message mid-message
        (masked(OP_PING, b"x", fin=False), 1002),  # fragmented control frame
        (masked(OP_PING, b"x" * 126), 1002),  # control frame too long
        (masked(0x1, b"x" * 2000), 1009),  # over max_message
    ],
)
def test_protocol_errors_name_their_close_code(data, code):
    reader = FrameReader(max_message=1000)
    with pytest.raises(ProtocolError) as err:
        list(reader.feed(data))
    assert err.value.code == code


def test_a_message_over_the_limit_in_fragments_is_refused():
    reader = FrameReader(max_message=1000)
    list(reader.feed(masked(0x1, b"x" * 600, fin=False)))
    with pytest.raises(ProtocolError) as err:
        list(reader.feed(masked(0x0, b"x" * 600)))
    assert err.value.code == 1009


# -- keep_data: whole data messages for socket.io ----------------------------------------------


def test_keep_data_returns_messages_unmasked_between_control_frames():
    reader = FrameReader(keep_data=True)
    stream = masked(0x1, "héllo".encode()) + masked(OP_PING, b"p") + masked(0x2, b"\0\1" * 40000)
    assert list(reader.feed(stream)) == [
        (0x1, "héllo".encode()),
        (OP_PING, b"p"),
        (0x2, b"\0\1" * 40000),
    ]


def test_keep_data_joins_fragments_with_control_frames_between_them_split_anywhere():
    stream = masked(0x1, b"a" * 300, fin=False) + masked(OP_PING, b"p1")
    stream += masked(0x0, b"b" * 70000, fin=False) + masked(0x0, b"") + masked(0x2, b"z")
    stream += masked(0x1, b"")
    expected = [(OP_PING, b"p1"), (0x1, b"a" * 300 + b"b" * 70000), (0x2, b"z"), (0x1, b"")]
    for step in (1, 7, 4096, len(stream)):
        reader = FrameReader(keep_data=True)
        got = []
        for i in range(0, len(stream), step):
            got.extend(reader.feed(stream[i : i + step]))
        assert got == expected, step


def test_keep_data_refuses_a_message_over_the_limit_before_reading_its_payload():
    reader = FrameReader(max_message=1000, keep_data=True)
    assert list(reader.feed(masked(0x1, b"x" * 1000))) == [(0x1, b"x" * 1000)]
    with pytest.raises(ProtocolError) as err:
        list(reader.feed(masked(0x1, b"x" * 1001)[:8]))  # the header only
    assert err.value.code == 1009
    reader = FrameReader(max_message=1000, keep_data=True)
    list(reader.feed(masked(0x1, b"x" * 600, fin=False)))
    with pytest.raises(ProtocolError) as err:
        list(reader.feed(masked(0x0, b"x" * 401)[:8]))
    assert err.value.code == 1009


def test_keep_data_keeps_the_same_framing_rules():
    for data in (masked(0x0, b"x"), masked(0x1, b"x", fin=False) + masked(0x2, b"y")):
        with pytest.raises(ProtocolError) as err:
            list(FrameReader(keep_data=True).feed(data))
        assert err.value.code == 1002


# -- what RFC 6455 refuses, as wsproto does (see test_wsframes_reference.py) ---------------------


def close(payload: bytes) -> bytes:
    return masked(OP_CLOSE, payload)


@pytest.mark.parametrize(
    "data, code",
    [
        (close(b"\x03"), 1002),  # a 1-byte close payload
        *[(close(struct.pack("!H", c)), 1002) for c in (0, 999, 1004, 1005, 1006, 1015, 5000)],
        (close(struct.pack("!H", 1000) + b"bye \xff"), 1007),  # a reason that is not UTF-8
        (masked(0x1, b"caf\xc3"), 1007),  # a text message that ends inside a character
        (masked(0x1, b"\xed\xa0\x80"), 1007),  # a surrogate
        (struct.pack("!BBH", 0x82, 0x80 | 126, 5) + b"\0\0\0\0" + b"12345", 1002),  # u16 for 5
        (struct.pack("!BBQ", 0x82, 0x80 | 127, 300) + b"\0\0\0\0" + b"x" * 300, 1002),  # u64
        (struct.pack("!BBQ", 0x82, 0x80 | 127, 1 << 63 | 70000) + b"\0\0\0\0", 1002),  # top bit
    ],
)
@pytest.mark.parametrize("keep_data", [False, True])
def test_what_the_rfc_refuses_is_refused_in_both_modes(data, code, keep_data):
    reader = FrameReader(max_message=1 << 62, keep_data=keep_data)
    with pytest.raises(ProtocolError) as err:
        list(reader.feed(data))
    assert err.value.code == code


@pytest.mark.parametrize("code", [1000, 1003, 1007, 1011, 1012, 1013, 1014, 3000, 4999])
def test_close_codes_a_peer_may_send_are_returned_with_their_reason(code):
    payload = struct.pack("!H", code) + "à bientôt".encode()
    assert list(FrameReader().feed(close(payload))) == [(OP_CLOSE, payload)]
    assert list(FrameReader().feed(close(b""))) == [(OP_CLOSE, b"")]


def test_bad_utf8_in_a_skipped_text_message_fails_as_soon_as_it_arrives():
    """Without keep_data the text is checked on the way and never stored; the error comes
    with the bad bytes, not at the end of the message."""
    reader = FrameReader()
    data = masked(0x1, b"ok" + b"\xff" + b"x" * 100000, fin=False)
    with pytest.raises(ProtocolError) as err:
        list(reader.feed(data[:20]))
    assert err.value.code == 1007
    reader = FrameReader()
    assert list(reader.feed(masked(0x1, "é".encode() * 50000)[:50001])) == []
    assert reader._buffer == b"" and reader._parts == []  # checked, not kept


def test_utf8_cut_between_fragments_and_reads_is_valid():
    text = "€uro ✓ 𝄞".encode()
    stream = masked(0x1, text[:1], fin=False) + masked(OP_PING, b"p") + masked(0x0, text[1:])
    for keep_data, expected in ((True, [(OP_PING, b"p"), (0x1, text)]), (False, [(OP_PING, b"p")])):
        reader = FrameReader(keep_data=keep_data)
        got = []
        for i in range(len(stream)):
            got.extend(reader.feed(stream[i : i + 1]))
        assert got == expected
