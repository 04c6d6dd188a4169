"""The socket.io codec (channelstream/sio/codec.py): websocket frames built from the
frames' JSON bytes are the text packets, framed; encoded once for every client."""

from __future__ import annotations

import json

from channelstream.hub import Message
from channelstream.sio import codec
from channelstream.web.wsframes import FrameReader


def message(n: int, kind: str = "message", pad: int = 10) -> Message:
    return Message("room", {"type": kind, "channel": "room", "message": {"n": n, "p": "x" * pad}})


def unframe(data: bytes) -> list[str]:
    """The text frames of server bytes (unmasked), read as a client would."""
    masked = bytearray()
    reader = FrameReader(1 << 24, keep_data=True)
    pos = 0
    while pos < len(data):  # mask each server frame so that the server's reader takes it
        length, header = data[pos + 1] & 0x7F, 2
        if length == 126:
            length, header = int.from_bytes(data[pos + 2 : pos + 4], "big"), 4
        elif length == 127:
            length, header = int.from_bytes(data[pos + 2 : pos + 10], "big"), 10
        head = bytearray(data[pos : pos + header])
        head[1] |= 0x80
        masked += head + b"\0\0\0\0" + data[pos + header : pos + header + length]
        pos += header + length
    return [payload.decode() for _opcode, payload in reader.feed(bytes(masked))]


def test_batch_frames_are_the_text_packets_one_frame_each():
    kinds = ["message", "message", "presence", "message", "user_state_change",
             "user_state_change", "message:edit"]
    for pad in (10, 200, 70_000):  # 7-bit, 16-bit and 64-bit frame lengths
        batch = [message(n, kind, pad) for n, kind in enumerate(kinds)]
        for replayed in (0, 3, len(batch)):
            packets = codec.chat_packets(batch, replayed)
            data = codec.batch_frames(batch, replayed)
            assert data == codec.packet_frames(packets)
            assert unframe(data) == packets
    events = [json.loads(p.partition(",")[2]) for p in codec.chat_packets(batch)]
    assert [(name, len(frames)) for name, frames in events] == [
        ("message", 2), ("presence", 1), ("message", 1), ("user_state_change", 2), ("message", 1)
    ]
    replayed = [f["catchup"] for _, frames in
                (json.loads(p.partition(",")[2]) for p in codec.chat_packets(batch, 3))
                for f in frames]
    assert replayed == [True] * 3 + [False] * 4


def test_a_batch_is_encoded_once_for_the_clients_that_drain_it():
    batch = [message(n) for n in range(5)]
    first = codec.chat_frames(list(batch))
    assert codec.chat_frames(list(batch)) is first  # the next client, the same messages
    assert codec.chat_frames(list(batch), 1) is not first  # replayed ones differ
    single = [message(9)]
    assert codec.chat_frames(single) is codec.chat_frames(list(single))  # cached on it
    assert unframe(codec.chat_frames(single)) == codec.chat_packets(single)


def sequence(count: int, pad: int = 10) -> list[Message]:
    """Messages of one channel as the hub stamps them (offsets 1, 2, ...)."""
    messages = [message(n, pad=pad) for n in range(count)]
    for n, m in enumerate(messages, 1):
        m.offset, m.epoch = n, "e1"
    return messages


def test_windows_of_one_sequence_are_cut_from_one_join():
    seq = sequence(40)
    windows = codec.WindowFrames()
    # clients drain windows that end at the same message and start anywhere, in any order
    for start, end in [(30, 40), (10, 40), (35, 40), (0, 40), (39, 40), (20, 30), (5, 12)]:
        batch = seq[start:end]
        assert windows.frame(list(batch)) == codec.batch_frames(batch), (start, end)
    assert len(windows.msgs) == 40
    # the sequence goes on: a window reaching past what is kept adds the rest
    more = sequence(60)
    for m, old in zip(more, seq, strict=False):
        m.offset = old.offset  # the same sequence: reuse the first 40 objects
    more[:40] = seq
    assert windows.frame(more[38:55]) == codec.batch_frames(more[38:55])
    assert windows.msgs == more[:55]
    # a batch that skips one (a private message left out) is not a run of it
    assert windows.frame([more[1], more[3], more[4]]) is None


def test_windows_start_anew_past_what_they_keep_and_refuse_what_is_older():
    seq = sequence(20)
    windows = codec.WindowFrames()
    assert windows.frame(seq[10:15]) == codec.batch_frames(seq[10:15])
    assert windows.frame(seq[2:6]) is None  # older than what is kept
    assert windows.frame(seq[17:20]) == codec.batch_frames(seq[17:20])  # newer: anew
    assert windows.msgs == seq[17:20]
    other = [message(n, "presence") for n in range(3)]
    for n, m in enumerate(other, 30):
        m.offset = n
    assert windows.frame(other) is None  # not message frames: encoded on their own


def test_windows_keep_bounded_memory():
    windows = codec.WindowFrames()
    windows.max_messages = 100
    seq = sequence(1000)
    for end in range(10, 1001, 10):
        batch = seq[max(0, end - 30) : end]
        assert windows.frame(batch) == codec.batch_frames(batch)
        assert len(windows.msgs) <= 100 + 30
    windows.max_bytes = 50_000
    big = sequence(30, pad=5_000)
    for m in big:
        m.offset += 2000
    assert windows.frame(big[:25]) == codec.batch_frames(big[:25])  # the last batch is kept
    assert windows.frame(big[20:30]) == codec.batch_frames(big[20:30])
    assert len(windows.body) <= 50_000 + 10 * 5_100


def test_chat_frames_falls_back_to_encoding_what_windows_cannot_cut():
    seq = sequence(6)
    private = [seq[0], seq[2], seq[5]]
    assert codec.chat_frames(private) == codec.batch_frames(private)
    assert unframe(codec.chat_frames(seq[1:4], 2)) == codec.chat_packets(seq[1:4], 2)


def test_windows_put_nothing_in_front_past_their_bounds():
    windows = codec.WindowFrames()
    windows.max_messages = 10
    seq = sequence(20)
    assert windows.frame(seq[12:20]) == codec.batch_frames(seq[12:20])
    assert windows.frame(seq[4:20]) is None  # 16 would pass the bound: encoded on its own
    assert windows.msgs == seq[12:20]
    assert windows.frame(seq[10:20]) == codec.batch_frames(seq[10:20])
    assert windows.msgs == seq[10:20]
