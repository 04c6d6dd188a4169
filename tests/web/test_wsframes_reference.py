"""Differential tests: :class:`FrameReader` against wsproto, the maintained RFC 6455 library.

Both are fed the same client byte streams, cut at the same (drawn) places:
wsproto's server-side frame parser (``wsproto.frame_protocol.FrameProtocol``,
what ``wsproto.Connection(SERVER)`` runs) gives the reference outcome, the
events up to the first close frame and the close code of the first protocol
error, if any. Ours must give the same: with ``keep_data`` every whole
message, ping, pong and close; without it the same control frames and the
same error (data messages are checked, then skipped).

Streams come from three strategies: well-formed traffic (text and binary
messages in fragments cut anywhere, even inside a UTF-8 character, control
frames between the fragments, a close at the end, every length encoding);
the same with one mutation (reserved bits, an unknown opcode, an unmasked
frame, a length not in its shortest form or with its top bit set, a
fragmented or over-long control frame, bad UTF-8 in a text message or a
close reason, a close code a peer may not send, a 1-byte close payload, a
continuation without a start, a new message inside one); and frames with
every field drawn freely. ``max_message`` is lifted: wsproto has no such
limit (ours is tested in test_wsframes.py).

One deliberate difference is allowed: close code 1014 (IANA's Bad Gateway),
which wsproto 1.3 refuses with 1002 and we accept.
"""

from __future__ import annotations

import dataclasses
import itertools
import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from wsproto.frame_protocol import FrameProtocol, Opcode, ParseFailed

from channelstream.web.wsframes import OP_CLOSE, OP_PING, OP_PONG, FrameReader, ProtocolError

NO_LIMIT = 1 << 64
BAD_GATEWAY = 1014
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

Event = tuple  # ("text" | "binary" | "ping" | "pong", bytes) or ("close", code, reason)
Outcome = tuple[list[Event], int | None]  # events, then the error's close code (None: none)


# -- the two parsers ---------------------------------------------------------------------------


def reference(pieces: list[bytes]) -> Outcome:
    """wsproto's outcome for a client stream arriving as ``pieces``."""
    proto = FrameProtocol(client=False, extensions=[])
    events: list[Event] = []
    parts: list[bytes] = []
    try:
        for piece in pieces:
            proto.receive_bytes(piece)
            for frame in proto.received_frames():
                if frame.opcode is Opcode.CLOSE:
                    code, reason = frame.payload
                    events.append(("close", int(code), reason))
                    return events, None
                if frame.opcode is Opcode.PING:
                    events.append(("ping", bytes(frame.payload)))
                elif frame.opcode is Opcode.PONG:
                    events.append(("pong", bytes(frame.payload)))
                else:
                    data = frame.payload
                    parts.append(data.encode() if isinstance(data, str) else bytes(data))
                    if frame.message_finished:
                        kind = "text" if frame.opcode is Opcode.TEXT else "binary"
                        events.append((kind, b"".join(parts)))
                        parts = []
    except ParseFailed as err:
        return events, int(err.code)
    return events, None


_KINDS = {0x1: "text", 0x2: "binary", OP_PING: "ping", OP_PONG: "pong"}


def ours(pieces: list[bytes], keep_data: bool) -> Outcome:
    """FrameReader's outcome for the same stream."""
    reader = FrameReader(max_message=NO_LIMIT, keep_data=keep_data)
    events: list[Event] = []
    try:
        for piece in pieces:
            for opcode, payload in reader.feed(piece):
                if opcode == OP_CLOSE:
                    code = struct.unpack("!H", payload[:2])[0] if payload else 1005
                    events.append(("close", code, payload[2:].decode("utf-8")))
                    return events, None
                events.append((_KINDS[opcode], payload))
    except ProtocolError as err:
        return events, err.code
    return events, None


def assert_same(pieces: list[bytes]) -> None:
    expected_events, expected_error = reference(pieces)
    for keep_data in (True, False):
        events, error = ours(pieces, keep_data)
        want = expected_events
        if not keep_data:
            want = [e for e in want if e[0] not in ("text", "binary")]
        if events and events[-1][:2] == ("close", BAD_GATEWAY):  # the allowed difference
            assert (want, expected_error) == (events[:-1], 1002)
            continue
        assert (events, error) == (want, expected_error), f"keep_data={keep_data}"


# -- building client frames --------------------------------------------------------------------


@dataclasses.dataclass
class Frame:
    opcode: int
    payload: bytes
    fin: bool = True
    rsv: int = 0  # the three reserved bits, 0..7
    masked: bool = True
    mask: bytes = b"\x00\x01\x02\x03"
    form: str = "short"  # the length's encoding: short (shortest), 16, 64, msb

    def encode(self) -> bytes:
        n = len(self.payload)
        first = (0x80 if self.fin else 0) | self.rsv << 4 | self.opcode
        flag = 0x80 if self.masked else 0
        form = self.form
        if form == "short":
            form = "7" if n < 126 else "16" if n < 0x10000 else "64"
        if form == "7":
            head = bytes((first, flag | n))
        elif form == "16" and n < 0x10000:
            head = struct.pack("!BBH", first, flag | 126, n)
        elif form == "msb":
            head = struct.pack("!BBQ", first, flag | 127, n | 1 << 63)
        else:
            head = struct.pack("!BBQ", first, flag | 127, n)
        if not self.masked:
            return head + self.payload
        body = bytes(b ^ self.mask[i % 4] for i, b in enumerate(self.payload))
        return head + self.mask + body


masks = st.binary(min_size=4, max_size=4)
small = st.binary(max_size=40)
control_payloads = st.binary(max_size=125)
#: Valid close payloads: none, or a code a peer may send and a UTF-8 reason.
valid_codes = st.sampled_from([1000, 1001, 1002, 1003, 1007, 1008, 1011, 1012, 3000, 4999])
#: Codes a peer may not send (1014 is the allowed difference, see the module doc).
invalid_codes = st.sampled_from([0, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535])


@st.composite
def close_payloads(draw: st.DrawFn) -> bytes:
    if draw(st.booleans()):
        return b""
    reason = draw(st.text(max_size=30)).encode()[:123]
    reason = reason.decode("utf-8", "ignore").encode()
    return struct.pack("!H", draw(valid_codes)) + reason


@st.composite
def messages(draw: st.DrawFn) -> tuple[int, bytes]:
    """A data message: text (valid UTF-8) or binary, now and then one too long for u16."""
    if draw(st.integers(0, 30)) == 0:
        return 0x2, b"\x07" * draw(st.sampled_from([65536, 70001]))
    if draw(st.booleans()):
        return 0x1, draw(st.text(max_size=60)).encode()
    return 0x2, draw(st.binary(max_size=300))


@st.composite
def fragments(draw: st.DrawFn, opcode: int, payload: bytes) -> list[Frame]:
    """``payload`` as a message in 1-4 frames cut anywhere (inside a character too)."""
    cuts = sorted(draw(st.lists(st.integers(0, len(payload)), max_size=3)))
    bounds = [0, *cuts, len(payload)]
    chunks = [payload[a:b] for a, b in itertools.pairwise(bounds)]
    frames = [Frame(0x0, chunk, fin=False, mask=draw(masks)) for chunk in chunks]
    frames[0].opcode = opcode
    frames[-1].fin = True
    for f in frames:
        if len(f.payload) < 0x10000:
            f.form = draw(st.sampled_from(["short", "short", "short", "16", "64"]))
        if len(f.payload) < 126 and f.form == "16" and draw(st.booleans()):
            f.form = "short"
    # non-shortest forms are refused: keep them for the mutations only
    for f in frames:
        n = len(f.payload)
        if (f.form == "16" and n < 126) or (f.form == "64" and n < 0x10000):
            f.form = "short"
    return frames


@st.composite
def control_frames(draw: st.DrawFn) -> Frame:
    opcode = draw(st.sampled_from([OP_PING, OP_PONG]))
    return Frame(opcode, draw(control_payloads), mask=draw(masks))


@st.composite
def traffic(draw: st.DrawFn) -> list[Frame]:
    """Well-formed client traffic: messages in fragments, control frames between any two
    frames, maybe a close at the end."""
    frames: list[Frame] = []
    for opcode, payload in draw(st.lists(messages(), max_size=4)):
        for f in draw(fragments(opcode, payload)):
            frames.extend(draw(st.lists(control_frames(), max_size=2)))
            frames.append(f)
    if draw(st.booleans()):
        frames.append(Frame(OP_CLOSE, draw(close_payloads()), mask=draw(masks)))
    return frames


#: Not UTF-8: a byte never used, an overlong form, a surrogate, past U+10FFFF, a cut sequence.
BAD_UTF8 = [b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xe2\x82"]


def _bad_utf8(draw: st.DrawFn) -> bytes:
    good = draw(st.text(max_size=10)).encode()
    bad = draw(st.sampled_from(BAD_UTF8))
    return good + bad + draw(st.text(max_size=10)).encode()


MUTATIONS = [
    "rsv",
    "opcode",
    "unmasked",
    "form",
    "msb",
    "fragmented control",
    "long control",
    "bad utf-8 text",
    "bad utf-8 reason",
    "bad close code",
    "1-byte close",
    "continuation first",
    "new message inside one",
]


@st.composite
def mutated_traffic(draw: st.DrawFn) -> list[Frame]:
    """Well-formed traffic with one thing wrong."""
    frames = draw(traffic())
    mutation = draw(st.sampled_from(MUTATIONS))
    at = draw(st.integers(0, len(frames)))
    if mutation in ("bad utf-8 text", "continuation first"):  # where no message is under way
        at = draw(st.sampled_from([i for i in range(len(frames) + 1) if not _inside(frames, i)]))
    mask = draw(masks)
    if mutation in ("rsv", "opcode", "unmasked", "form", "msb", "fragmented control") and frames:
        f = frames[min(at, len(frames) - 1)]
        if mutation == "rsv":
            f.rsv = draw(st.integers(1, 7))
        elif mutation == "opcode":
            f.opcode = draw(st.sampled_from([3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF]))
        elif mutation == "unmasked":
            f.masked = False
        elif mutation == "form":
            f.form = "64" if len(f.payload) >= 126 else draw(st.sampled_from(["16", "64"]))
        elif mutation == "msb":
            f.form = "msb"
        else:
            f.fin = False
        return frames
    if mutation == "long control":
        opcode = draw(st.sampled_from([OP_PING, OP_PONG, OP_CLOSE]))
        new = Frame(opcode, b"c" * draw(st.integers(126, 200)))
    elif mutation == "bad utf-8 text":
        return [*frames[:at], *draw(fragments(0x1, _bad_utf8(draw))), *frames[at:]]
    elif mutation == "bad utf-8 reason":
        new = Frame(OP_CLOSE, struct.pack("!H", 1000) + _bad_utf8(draw)[:123])
    elif mutation == "bad close code":
        new = Frame(OP_CLOSE, struct.pack("!H", draw(invalid_codes)) + draw(small)[:20])
    elif mutation == "1-byte close":
        new = Frame(OP_CLOSE, draw(st.binary(min_size=1, max_size=1)))
    elif mutation == "continuation first":
        new = Frame(0x0, draw(small), fin=draw(st.booleans()))
    else:  # a new message where a continuation is due (or a plain message elsewhere)
        new = Frame(draw(st.sampled_from([0x1, 0x2])), draw(small))
        if not _inside(frames, at):
            frames = [*frames[:at], Frame(0x2, b"start", fin=False, mask=mask), *frames[at:]]
            at += 1
    new.mask = mask
    return [*frames[:at], new, *frames[at:]]


def _inside(frames: list[Frame], at: int) -> bool:
    """True if a data message has begun, and not ended, before ``frames[at]``."""
    inside = False
    for f in frames[:at]:
        if f.opcode in (0x0, 0x1, 0x2):
            inside = not f.fin
    return inside


@st.composite
def free_frames(draw: st.DrawFn) -> list[Frame]:
    """Frames with every field drawn: mostly errors, found wherever they are."""
    return draw(
        st.lists(
            st.builds(
                Frame,
                opcode=st.sampled_from([0x0, 0x1, 0x2, OP_CLOSE, OP_PING, OP_PONG, 0x3, 0xB]),
                payload=st.one_of(small, st.text(max_size=20).map(str.encode), close_payloads()),
                fin=st.booleans(),
                rsv=st.sampled_from([0, 0, 0, 1, 4]),
                masked=st.sampled_from([True, True, True, False]),
                mask=masks,
                form=st.sampled_from(["short", "short", "16", "64"]),
            ),
            max_size=6,
        )
    )


@st.composite
def cut(draw: st.DrawFn, frames: st.SearchStrategy[list[Frame]]) -> list[bytes]:
    """The frames' bytes, cut at drawn places (one piece, or many small ones)."""
    stream = b"".join(f.encode() for f in draw(frames))
    if draw(st.booleans()) or not stream:
        return [stream]
    if len(stream) < 2:
        return [stream]
    points = sorted(set(draw(st.lists(st.integers(1, len(stream) - 1), max_size=12))))
    bounds = [0, *points, len(stream)]
    return [stream[a:b] for a, b in itertools.pairwise(bounds)]


# -- the tests ---------------------------------------------------------------------------------


@SETTINGS
@given(cut(traffic()))
def test_well_formed_traffic_reads_the_same(pieces):
    assert reference(pieces)[1] is None  # the strategy makes valid traffic
    assert_same(pieces)


@SETTINGS
@given(cut(mutated_traffic()))
def test_traffic_with_one_thing_wrong_fails_the_same(pieces):
    assert_same(pieces)


@SETTINGS
@given(cut(free_frames()))
def test_frames_drawn_freely_read_the_same(pieces):
    assert_same(pieces)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=64), max_size=4))
def test_arbitrary_bytes_read_the_same(pieces):
    assert_same(pieces)


def test_the_strategies_reach_every_error_code():
    """The mutations above are not vacuous: each close code shows up as wsproto's error."""
    samples = {
        1002: Frame(0x1, b"x", rsv=4),
        1007: Frame(0x1, b"\xff"),
    }
    for code, frame in samples.items():
        assert reference([frame.encode()]) == ([], code)
        assert_same([frame.encode()])
