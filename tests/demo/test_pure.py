"""The demo's pure pieces: name checks, private history, bounded maps, frame
summaries and which channels get a frame panel."""

from __future__ import annotations

import json
import math

import pytest

from channelstream.errors import BadRequest
from channelstream.hub import STICKY, Message
from channelstream.settings import default_settings
from demo.backend import Bounded, check_channel_name, check_user_name, visible_history
from demo.frames import MAX_STRING, MAX_VALUES, FrameChannel, frame_channels, summary


@pytest.mark.parametrize("name", ["alice", "Bob Smith", "ana.m@x", "Zoë", "a" * 32])
def test_user_names_that_pass(name):
    assert check_user_name(f"  {name} ") == name


@pytest.mark.parametrize("name", ["", " ", "a" * 33, "<b>", "x\ny", "ta\tb", 7, None])
def test_user_names_that_are_refused(name):
    with pytest.raises(BadRequest) as caught:
        check_user_name(name)
    assert caught.value.field == "username"


@pytest.mark.parametrize("name", ["", "-x", "a/b", "../x", "a" * 41, "with space", 3])
def test_channel_names_that_are_refused(name):
    with pytest.raises(BadRequest):
        check_channel_name(name)


def test_history_shows_private_messages_only_to_their_users():
    history = [
        {"uuid": "1", "user": "a", "pm_users": []},
        {"uuid": "2", "user": "a", "pm_users": ["a", "b"]},
        {"uuid": "3", "user": "a", "pm_users": [], "exclude_users": ["c"]},
    ]
    assert [m["uuid"] for m in visible_history(history, "b")] == ["1", "2", "3"]
    assert [m["uuid"] for m in visible_history(history, "c")] == ["1"]


def test_bounded_forgets_the_oldest_and_touch_keeps_one():
    bounded = Bounded(2)
    bounded["a"], bounded["b"] = 1, 2
    bounded.touch("a")
    bounded["c"] = 3
    assert bounded.overflow() == [("b", 2)]
    assert list(bounded) == ["a", "c"]


def test_a_frame_summary_flattens_the_body_to_scalars_and_short_lists():
    header = {"htype": "array-1.0", "shape": [3, 4], "note": "x" * 200, "nan": math.nan}
    body = {
        "user": "zmq:det",
        "message": {
            "htype": "array-1.0",
            "header": header,
            "parts": [{"size": 12}],
            "big": list(range(20)),
        },
    }
    message = Message("det", body, fields={"htype": "array-1.0"}, kind=STICKY, type="header")
    shown = summary(message)
    assert shown["fields"] == {"htype": "array-1.0"}
    assert shown["values"] == {
        "user": "zmq:det",
        "message.htype": "array-1.0",
        "message.header.htype": "array-1.0",
        "message.header.shape": [3, 4],
        "message.header.note": "x" * MAX_STRING,
        "message.header.nan": None,
    }
    assert (shown["kind"], shown["type"]) == ("sticky", "header")
    json.dumps(shown, allow_nan=False)
    many = summary(Message("det", {f"k{i}": i for i in range(100)}))
    assert len(many["values"]) == MAX_VALUES
    raw = summary(Message("det", b"\x00" * 4096))
    assert (raw["size"], raw["values"]) == (4096, {})
    assert summary(Message("det", 5))["values"] == {"value": 5}


def test_zmq_channels_get_panels_once_in_ini_order_with_their_doors():
    settings = default_settings(
        {
            "zmq.sources": json.dumps(
                [
                    {"address": "tcp://a:1", "channel": "det"},
                    {"address": "tcp://b:1", "channel": "cam"},
                ]
            ),
            "zmq.outputs": json.dumps([{"address": "tcp://*:2", "channel": "det"}]),
        }
    )
    assert frame_channels(settings) == (
        FrameChannel("channel:det", "ZMQ det", "zmq", ("zmq-source:det", "zmq-output:det")),
        FrameChannel("channel:cam", "ZMQ cam", "zmq", ("zmq-source:cam",)),
    )
    assert frame_channels(default_settings()) == ()


def test_the_g3_channel_gets_a_panel_with_its_doors(tmp_path):
    cal = tmp_path / "cal.g3"
    cal.write_bytes(b"")
    settings = default_settings(
        {"g3.listen": "127.0.0.1:0", "g3.sources": f"tcp://*@127.0.0.1:0, {cal}",
         "g3.channel": "telescope"}
    )
    assert frame_channels(settings) == (
        FrameChannel("channel:telescope", "G3 telescope", "g3",
                     ("g3-server", "g3-source:1", "g3-source:2")),
    )
    sources_only = default_settings({"g3.sources": "tcp://daq:4536"})
    assert frame_channels(sources_only) == (
        FrameChannel("channel:g3", "G3 g3", "g3", ("g3-source:1",)),
    )
