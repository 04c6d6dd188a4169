"""G3Frame as spt3g's: a dict of objects with a type; its bytes cached; G3FrameType."""

from __future__ import annotations

import pickle

import pytest

from channelstream.g3 import (
    G3Frame,
    G3FrameType,
    G3Int,
    G3KeyExistsError,
    OpaqueObject,
    decode_frame,
    describe,
    is_data,
)
from tests.g3.helpers import SPT3G_FRAME, make_frame


def test_frame_types_are_spt3gs() -> None:
    # spt3g 1.0.2 G3Frame.h (ANCHORS.md had E, L, R and Z mixed up)
    codes = {t.name: chr(t.value) for t in G3FrameType}
    assert codes == {
        "Timepoint": "T", "Housekeeping": "H", "Observation": "O", "Scan": "S", "Map": "M",
        "InstrumentStatus": "I", "PipelineInfo": "P", "EndProcessing": "Z",
        "Calibration": "C", "Wiring": "W", "GcpSlow": "G", "Ephemeris": "E",
        "LightCurve": "L", "Statistics": "R", "none": "N",
    }
    assert G3FrameType.Timepoint.key == "T"
    assert str(G3FrameType.Scan) == "Scan"
    assert is_data(G3FrameType.Scan) and not is_data(G3FrameType.Wiring)


def test_adhoc_types() -> None:
    frame = G3Frame("AB")
    assert int(frame.type) == 0x4142
    assert frame.type.name == "AB"
    assert G3Frame("T").type is G3FrameType.Timepoint
    assert G3FrameType(0x12345678).name == "\\x124Vx"
    with pytest.raises(ValueError):
        G3Frame("ABCDE")
    assert decode_frame(G3Frame("WXYZ").encode()).type.name == "WXYZ"


def test_mapping_api() -> None:
    frame = make_frame(G3FrameType.Scan, n=1, x=2.5, ok=True, s="text")
    assert len(frame) == 4 and "n" in frame and "m" not in frame
    assert list(frame) == ["n", "x", "ok", "s"]
    assert dict(frame.items()) == {"n": 1, "x": 2.5, "ok": True, "s": "text"}
    assert frame.get("m") is None and frame.get("m", 7) == 7
    assert isinstance(frame.object("n"), G3Int)
    with pytest.raises(G3KeyExistsError, match='Previously existing key "n"'):
        frame["n"] = 2
    assert frame.pop("n") == 1 and "n" not in frame
    assert frame.pop("n", None) is None
    with pytest.raises(KeyError):
        frame.pop("n")
    frame["n"] = G3Int(9)
    assert frame["n"] == 9
    del frame["x"]
    with pytest.raises(KeyError):
        frame["x"]
    with pytest.raises(TypeError):
        frame["bad"] = None
    with pytest.raises(TypeError):
        frame[3] = 1  # type: ignore[index]


def test_decoded_frame_keeps_its_bytes_until_modified() -> None:
    frame = decode_frame(SPT3G_FRAME)
    assert frame.encode() is frame.encode()
    assert frame.encode() == SPT3G_FRAME
    assert dict(frame.items()) == {"s": "héllo", "b": True, "d": 1.5, "i": 5}
    frame["extra"] = 1
    again = decode_frame(frame.encode())
    assert dict(again.items())["extra"] == 1
    assert again.encode() != SPT3G_FRAME
    del again["extra"]
    assert again.encode() == SPT3G_FRAME  # same objects, same order, same bytes


def test_type_change_reencodes() -> None:
    frame = decode_frame(SPT3G_FRAME)
    frame.type = G3FrameType.Scan
    assert decode_frame(frame.encode()).type is G3FrameType.Scan


def test_copy_and_pickle() -> None:
    frame = make_frame(G3FrameType.Wiring, a=1)
    copy = G3Frame(frame)
    copy["b"] = 2
    assert "b" not in frame
    clone = pickle.loads(pickle.dumps(frame))
    assert clone.type is G3FrameType.Wiring and dict(clone.items()) == {"a": 1}


def test_str_like_spt3g() -> None:
    frame = decode_frame(SPT3G_FRAME)
    assert str(frame) == (
        'Frame (Timepoint) [\n"b" (G3Bool) => True\n"d" (G3Double) => 1.5\n'
        '"i" (G3Int) => 5\n"s" (G3String) => "héllo"\n]'
    )


def test_describe() -> None:
    frame = make_frame(G3FrameType.Housekeeping, n=1)
    frame["v"] = OpaqueObject(b"\x01" + (0x80000001).to_bytes(4, "little")
                              + (3).to_bytes(8, "little") + b"G3X" + b"\0" * 12)
    assert describe(frame) == {
        "type": "Housekeeping",
        "objects": {"n": 1, "v": {"class": "G3X", "bytes": 28}},
    }


def test_large_objects_are_encoded_as_separate_buffers() -> None:
    frame = make_frame(G3FrameType.Scan, big="x" * 100_000, n=1)
    parts, size = frame.encoded()
    assert len(parts) > 1 and size == sum(len(p) for p in parts)
    assert frame.encoded()[0] is parts  # cached
    data = frame.encode()
    assert data == b"".join(parts) and frame.encoded() == ((data,), len(data))
    assert decode_frame(data)["big"] == "x" * 100_000
    small = make_frame(G3FrameType.Scan, n=1)
    assert small.encoded() == ((small.encode(),), len(small.encode()))
