"""bsr_m-1.1: our codec, bsread's own Sender to our receiver, ours to bsread's handler."""

from __future__ import annotations

import hashlib
import json

import numpy
import pytest

from channelstream import mflow
from channelstream.mflow import MalformedMessage, encode
from channelstream.mflow.htypes import decode
from tests.mflow import samples
from tests.mflow.support import finish

HOST_PORT = "import sys; host, port = sys.argv[1].rsplit(':', 1)\n"

BSREAD_SENDER = HOST_PORT + """
import numpy as np
from bsread import CONNECT, PUSH
from bsread.sender import Sender
sender = Sender(address=host, port=int(port), conn_type=CONNECT, mode=PUSH, start_pulse_id=100)
sender.open()
for n in range(3):
    sender.send(data={"f": 1.5 + n, "i": 7, "s": "hello", "b": True, "l": [1, 2, 3],
                      "a2": (np.arange(6).reshape(2, 3) + n).astype(">i4"), "u8": np.uint8(200),
                      "none": None}, timestamp=(1700000000 + n, 123456789))
sender.close()
"""

BSREAD_RECEIVER = """
import sys
import mflow
from bsread.handlers.extended import Handler
from tests.mflow import samples
stream = mflow.connect(sys.argv[1], conn_type=mflow.BIND, mode=mflow.PULL, receive_timeout=20000)
print("ready", flush=True)
handler = Handler()
for _ in range(int(sys.argv[2])):
    data = stream.receive(handler=handler.receive).data
    print(samples.dumps({key: data[key] for key in
                         ("header", "data", "timestamp", "timestamp_offset")}), flush=True)
stream.disconnect()
"""


def sample() -> dict:
    channels = [
        {"name": "f", "type": "float64", "shape": [1], "encoding": "little"},
        {"name": "s", "type": "string", "shape": [1], "encoding": "little"},
        {"name": "img", "type": "uint16", "shape": [3, 2], "encoding": "big"},
        {"name": "none", "type": "int32", "shape": [1], "encoding": "little"},
        {"name": "flag", "type": "bool", "shape": [1], "encoding": "little"},
    ]
    data_header = {"htype": "bsr_d-1.1", "channels": channels}
    raw = json.dumps(data_header).encode()
    return {
        "header": {"htype": "bsr_m-1.1", "hash": hashlib.md5(raw).hexdigest(), "pulse_id": 42,
                   "global_timestamp": {"sec": 1700000000, "ns": 5}},
        "data_header": data_header,
        "data": [numpy.float64(2.5), "caf\u00e9", numpy.arange(6, dtype=">u2").reshape(2, 3),
                 None, numpy.bool_(True)],
        "timestamp": [1700000000, 1700000001, 1700000002, None, 1700000003],
        "timestamp_offset": [1, 2, 3, None, 4],
    }


def test_round_trip_byte_for_byte():
    message = sample()
    parts = [bytes(p) for p in encode(message)]
    assert len(parts) == 2 + 2 * 5
    assert parts[1] == json.dumps(message["data_header"]).encode()
    assert json.loads(parts[0])["hash"] == hashlib.md5(parts[1]).hexdigest()
    assert parts[4] == "caf\u00e9".encode()
    assert parts[6] == numpy.arange(6, dtype=">u2").tobytes()
    assert parts[8:10] == [b"", b""]
    decoded = decode(parts)
    assert samples.same(decoded, message)
    assert [bytes(p) for p in encode(decoded)] == parts


def test_a_missing_timestamp_is_the_global_one():
    message = sample()
    del message["timestamp"], message["timestamp_offset"]
    parts = encode(message)
    assert parts[3] == numpy.array([1700000000, 5], "<i8").tobytes()


@pytest.mark.parametrize(("change", "reason"), [
    (lambda p: p[:-1], "11 parts for 5 channels"),
    (lambda p: [*p, b"", b""], "14 parts for 5 channels"),
    (lambda p: p[:1], "missing part 1"),
    (lambda p: [p[0].replace(b'"hash": "', b'"hash": "0'), *p[1:]], "not the md5"),
    (lambda p: [*p[:2], p[2] + b"x", *p[3:]], "do not fit"),
    (lambda p: [*p[:3], p[3][:8], *p[4:]], "not 16"),
    (lambda p: [*p[:3], b"\xff", *p[4:]], "not 16"),
    (lambda p: [*p[:6], b"\x00" * 5, *p[7:]], "do not fit"),
    (lambda p: [*p[:4], b"\xff", *p[5:]], "not UTF-8"),
])
def test_malformed(change, reason):
    parts = change([bytes(p) for p in encode(sample())])
    with pytest.raises(MalformedMessage, match=reason):
        decode(parts)


def test_bad_data_header():
    parts = [bytes(p) for p in encode(sample())]
    bad = b'{"htype": "bsr_d-1.1", "channels": [{"name": "x", "type": "complex"}]}'
    header = json.loads(parts[0])
    header["hash"] = hashlib.md5(bad).hexdigest()
    with pytest.raises(MalformedMessage, match="unknown type 'complex'"):
        decode([json.dumps(header).encode(), bad, b"", b""])


def test_compressed_channel_values_are_kept_raw():
    message = sample()
    message["data_header"]["channels"][2]["compression"] = "bitshuffle_lz4"
    message["data"][2] = b"\x00\x00\x00\x00\x00\x00\x00\x0c\x00\x00\x20\x00opaque"
    parts = [bytes(p) for p in encode(message)]
    decoded = decode(parts)
    assert decoded["data"][2] == message["data"][2]
    assert [bytes(p) for p in encode(decoded)] == parts


def test_bsread_sender_to_our_receiver(bsread, procs, address):
    with mflow.connect(address, conn_type=mflow.BIND, receive_timeout=20000) as stream:
        sender = procs.script(BSREAD_SENDER, address)
        messages = [stream.receive() for _ in range(3)]
        assert finish(sender)[0] == 0
    for n, message in enumerate(messages):
        data = message.data
        assert data["header"]["pulse_id"] == 100 + n
        names = [c["name"] for c in data["data_header"]["channels"]]
        values = dict(zip(names, data["data"], strict=True))
        assert values["f"] == 1.5 + n and isinstance(values["f"], numpy.float64)
        assert values["i"] == 7 and values["s"] == "hello" and values["b"] is numpy.True_
        assert values["l"].tolist() == [1, 2, 3]
        assert values["a2"].dtype == numpy.dtype(">i4")
        assert values["a2"].tolist() == (numpy.arange(6).reshape(2, 3) + n).tolist()
        assert values["u8"] == 200 and values["none"] is None
        assert data["timestamp"][0] == 1700000000 + n
        assert data["timestamp_offset"][0] == 123456789
        assert data["timestamp"][names.index("none")] is None
        assert [bytes(p) for p in encode(data)] == [bytes(f) for f in message.frames]


def test_our_sender_to_bsread_receiver(bsread, procs, address):
    receiver = procs.script(BSREAD_RECEIVER, address, "2")
    assert receiver.stdout.readline().strip() == "ready"
    message = sample()
    with mflow.connect(address, mode=mflow.PUSH) as stream:
        stream.forward(message)
        message["header"]["pulse_id"] = 43
        stream.forward(message)
    status, out, err = finish(receiver)
    assert status == 0, err
    got = [samples.loads(line) for line in out.splitlines()]
    assert [g["header"]["pulse_id"] for g in got] == [42, 43]
    data = got[0]["data"]
    assert data[0] == 2.5 and data[1] == "caf\u00e9"
    assert data[2].tolist() == [[0, 1, 2], [3, 4, 5]]
    assert data[3] is None and bool(data[4]) is True
    assert got[0]["timestamp"] == [1700000000, 1700000001, 1700000002, None, 1700000003]
    assert got[0]["timestamp_offset"] == [1, 2, 3, None, 4]
