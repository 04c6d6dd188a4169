"""The htype codecs without sockets: decode(encode(m)) == m, byte-exact re-encoding, malformed."""

from __future__ import annotations

import json

import numpy
import pytest
import zmq
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from channelstream.mflow import EncodeError, MalformedMessage, UnknownHtype, encode
from channelstream.mflow.htypes import decode
from tests.mflow import samples


def as_bytes(parts):
    return [bytes(part) for part in parts]


@pytest.mark.parametrize(("name", "message"), samples.everything(), ids=lambda v: v
                         if isinstance(v, str) else "")
def test_every_sample_round_trips_and_encodes_again_byte_for_byte(name, message):
    parts = as_bytes(encode(message))
    decoded = decode(parts)
    expected = dict(message)
    if message["header"]["htype"] == "raw-1.0":
        expected["data"] = [bytes(p) for p in message["data"]]
    assert samples.same(decoded, expected), name
    assert as_bytes(encode(decoded)) == parts


@pytest.mark.parametrize(("name", "message"), samples.everything(), ids=lambda v: v
                         if isinstance(v, str) else "")
def test_zero_copy_frames_decode_alike(name, message):
    parts = [zmq.Frame(bytes(p)) for p in encode(message)]
    decoded = decode(parts, copy=False)
    assert as_bytes(encode(decoded)) == as_bytes(parts)


def test_json_parts_are_what_json_dumps_gives():
    message = samples.dheader_message("basic")
    parts = encode(message)
    assert parts[0] == json.dumps(message["header"]).encode()
    assert parts[1] == json.dumps(message["part_2"]).encode()


def test_arrays_are_views_of_the_received_parts():
    message = samples.array_message()
    frames = [zmq.Frame(bytes(p)) for p in encode(message)]
    decoded = decode(frames, copy=False)
    array = decoded["data"][0]
    assert numpy.shares_memory(array, numpy.frombuffer(frames[1].buffer, "u1"))


@settings(max_examples=60, deadline=None)
@given(hnp.arrays(dtype=st.sampled_from(["<u1", "<i2", ">u4", "<f4", "<f8", "<c8", "?"]),
                  shape=hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=5)),
       st.integers(1, 3))
def test_array_round_trip(array, count):
    message = {"header": {"htype": "array-1.0", "type": array.dtype.str,
                          "shape": list(array.shape)}, "data": [array] * count}
    parts = as_bytes(encode(message))
    decoded = decode(parts)
    for got in decoded["data"]:
        if array.size == 0:
            assert got is None  # an empty part is "no array", as in mflow
        else:
            assert got.dtype == array.dtype and got.shape == array.shape
            assert got.tobytes() == array.tobytes()


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(st.text(max_size=5), st.integers() | st.text(max_size=5), max_size=4),
       st.lists(st.binary(min_size=1, max_size=64), max_size=5))
def test_raw_round_trip(extra, data):
    header = {**extra, "htype": "raw-1.0"}
    parts = as_bytes(encode({"header": header, "data": data}))
    assert parts[1:] == data
    decoded = decode(parts)
    assert decoded == {"header": header, "data": data}
    assert as_bytes(encode(decoded)) == parts


def test_raw_empty_parts_are_none_and_go_back_empty():
    parts = [b'{"htype": "raw-1.0"}', b"", b"x"]
    decoded = decode(parts)
    assert decoded["data"] == [None, b"x"]
    assert as_bytes(encode(decoded)) == parts


def header(htype, **fields):
    return json.dumps({"htype": htype, **fields}).encode()


ARRAY = header("array-1.0", type="uint16", shape=[2, 2])
DIMAGE = [header("dimage-1.0", series=1, frame=0, hash="x"),
          header("dimage_d-1.0", shape=[2, 2], type="uint16", encoding="lz4<", size=3),
          b"abc", header("dconfig-1.0", start_time=0, stop_time=1, real_time=1)]
ALL = encode(samples.dheader_message("all"))
BASIC = encode(samples.dheader_message("basic"))

MALFORMED = [
    ("not JSON", [b"{nope", b"x"], "not UTF-8 JSON"),
    ("not UTF-8", [b"\xff\xfe", b"x"], "not UTF-8 JSON"),
    ("JSON but no object", [b"[1, 2]"], "not a JSON object"),
    ("no parts", [], "empty message"),
    ("unknown htype", [header("nope-9.9")], "no handler for htype 'nope-9.9'"),
    ("no htype", [b"{}"], "no handler for htype None"),
    ("array size", [ARRAY, b"\x00" * 7], "has 7 bytes"),
    ("array dtype", [header("array-1.0", type="quux", shape=[1]), b"x"], "not a numpy dtype"),
    ("array shape", [header("array-1.0", type="u1", shape=[1.5]), b"x"], "non-negative integers"),
    ("array no shape", [header("array-1.0", type="u1"), b"x"], "lacks type or shape"),
    ("dheader detail", [header("dheader-1.0", header_detail="most")], "not one of"),
    ("dheader basic missing config", BASIC[:1], "missing part 1"),
    ("dheader all missing table", ALL[:6], "missing part 6"),
    ("dheader all table size", [*ALL[:3], b"x", *ALL[4:]], "part 3 has 1 bytes"),
    ("dheader sub htype",
     [*ALL[:2], header("dpixelmask-1.0", shape=[4, 2], type="float32"), *ALL[3:]],
     "expected 'dflatfield-1.0'"),
    ("dheader extra after appendix", [*BASIC, b"{}", b"more"], "extra part"),
    ("dimage missing config", DIMAGE[:3], "missing part 3"),
    ("dimage size", [*DIMAGE[:2], b"abcd", *DIMAGE[3:]], "size says 3"),
    ("dimage raw size", [DIMAGE[0], header("dimage_d-1.0", shape=[2, 2], type="uint16",
                                           encoding="<"), b"abc", DIMAGE[3]], "needs 8"),
    ("dimage extra", [*DIMAGE, b"{}", b"x"], "extra part"),
    ("dseries_end extra", [header("dseries_end-1.0", series=1), b"x"], "1 extra part"),
]


@pytest.mark.parametrize(("name", "parts", "reason"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_messages_are_refused_with_a_reason(name, parts, reason):
    with pytest.raises(MalformedMessage) as caught:
        decode([bytes(p) for p in parts])
    assert reason in str(caught.value)
    assert caught.value.parts == len(parts)


def test_unknown_htype_is_its_own_class():
    with pytest.raises(UnknownHtype) as caught:
        decode([header("x-1.0"), b"1"])
    assert caught.value.htype is None or caught.value.htype == "x-1.0"


def test_a_custom_handler_reading_past_the_end_is_malformed_not_blocking():
    def greedy(receiver):
        return [receiver.next() for _ in range(5)]

    with pytest.raises(MalformedMessage, match="missing part 2"):
        decode([header("mine-1.0"), b"a"], handlers={"mine-1.0": greedy})


def test_a_custom_handler_that_raises_is_reported_as_malformed():
    def broken(receiver):
        raise KeyError("oops")

    with pytest.raises(MalformedMessage, match="the handler failed") as caught:
        decode([header("mine-1.0")], handlers={"mine-1.0": broken})
    assert isinstance(caught.value.__cause__, KeyError)
    assert caught.value.htype == "mine-1.0"


def test_a_custom_handler_may_leave_parts_unread():
    def first(receiver):
        return receiver.next(as_json=True)

    assert decode([header("mine-1.0", a=1), b"x", b"y"],
                  handlers={"mine-1.0": first}) == {"htype": "mine-1.0", "a": 1}


@pytest.mark.parametrize(("message", "reason"), [
    ({"header": {"htype": "nope"}}, "no encoder"),
    ({"data": []}, "no header"),
    ({"header": {"htype": "array-1.0", "type": "u1", "shape": [2]}, "data": [b"abc"]},
     "has 3 bytes"),
    ({"header": {"htype": "array-1.0", "type": "u1", "shape": [2]},
      "data": [numpy.zeros(2, "u2")]}, "the header says uint8"),
    ({"header": {"htype": "array-1.0", "shape": [2]}, "data": []}, "bad header"),
    ({"header": {"htype": "dheader-1.0", "header_detail": "all"}, "part_2": {}}, "lacks part_3"),
    ({"header": {"htype": "dimage-1.0"}, "part_2": {}}, "lacks part_3_raw, part_4"),
    ({"header": {"htype": "raw-1.0"}, "data": [object()]}, "bytes-like"),
    ({"header": {"htype": "raw-1.0", "x": object()}}, "not JSON-serialisable"),
])
def test_messages_that_cannot_be_encoded_raise_before_any_part(message, reason):
    with pytest.raises(EncodeError, match=reason):
        encode(message)


def test_dheader_none_encodes_the_header_alone():
    message = samples.dheader_message("none")
    assert as_bytes(encode(message)) == [json.dumps(message["header"]).encode()]


def test_appendix_that_is_not_json_is_kept_raw():
    parts = [*as_bytes(encode(samples.dimage_message(1))), b"free text \xff"]
    decoded = decode(parts)
    assert decoded["appendix"] == b"free text \xff"
    assert as_bytes(encode(decoded)) == parts
