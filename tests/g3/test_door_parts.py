"""The G3 doors' parts without a server: settings, the hub message of a frame and its
JSON form, stickiness, the wire form, the doors built from settings.

The doors over the wire, with spt3g as the peer, are in tests/g3/test_door.py.
"""

from __future__ import annotations

import json
import logging
import math
import socket
from pathlib import Path

import pytest

from channelstream import strict_json
from channelstream.chat.frames import live_json
from channelstream.g3 import G3FrameType, OpaqueObject, decode_frame
from channelstream.g3.door import (
    G3_FIELDS,
    G3Message,
    G3Server,
    G3Source,
    MetadataTypes,
    Origin,
    build_doors,
    type_name,
)
from channelstream.hub import DATA, STICKY, Hub, HubConfig, Outbox, Start
from channelstream.hub.wire import pack, unpack
from channelstream.serving.runtime import hub_config
from channelstream.settings import SettingsError, default_settings, parse_settings
from tests.g3.helpers import SPT3G_FRAME, RawClient, make_frame
from tests.support.wait import wait_for

T, S, W, C, H, E = (G3FrameType.Timepoint, G3FrameType.Scan, G3FrameType.Wiring,
                    G3FrameType.Calibration, G3FrameType.Housekeeping,
                    G3FrameType.EndProcessing)
OPAQUE = OpaqueObject(b"\x01" + (0x80000001).to_bytes(4, "little") + (14).to_bytes(8, "little")
                      + b"G3VectorDouble" + b"\0" * 12)


def message_of(frame, kind: str = DATA, droppable: bool = True) -> G3Message:
    return G3Message(frame, Origin("g3", 2), channel="channel:g3", kind=kind,
                     droppable=droppable)


# -- settings -----------------------------------------------------------------------------


def test_g3_settings_defaults():
    g3 = default_settings().g3
    assert (g3.listen, g3.sources, g3.channel, g3.max_queue_size, g3.max_client_bytes,
            dict(g3.decimation), g3.source_timeout, g3.max_frame_size) == (
        None, (), "g3", 100, 256 * 1024 * 1024, {}, 0.0, 64 * 1024 * 1024)


def test_g3_settings_parse_sources_decimation_and_listen(tmp_path: Path):
    (tmp_path / "cal.g3").write_bytes(b"")
    g3 = parse_settings(
        {"here": str(tmp_path), "g3.listen": "*:4536", "g3.channel": "telescope",
         "g3.sources": "tcp://daq:4536,\n tcp://*:4537, tcp://*@127.0.0.1:0, cal.g3",
         "g3.decimation": "timepoint=10, Scan=0", "g3.source_timeout": "500ms"},
        environ={},
    ).g3
    assert g3.listen == ("*", 4536)
    assert g3.sources == ("tcp://daq:4536", "tcp://*:4537", "tcp://*@127.0.0.1:0",
                          tmp_path / "cal.g3")  # a file: relative to the ini's folder
    assert dict(g3.decimation) == {"Timepoint": 10, "Scan": 0}
    assert (g3.channel, g3.source_timeout) == ("telescope", 0.5)


@pytest.mark.parametrize(("raw", "message"), [
    ({"g3.sources": "tcp://daq"}, "g3.sources: no port in 'tcp://daq'"),
    ({"g3.sources": "tcp://daq:0"}, "g3.sources: cannot connect to port 0"),
    ({"g3.sources": "zmq://daq:1"}, "g3.sources: 'zmq://daq:1': a source is tcp://host:port"),
    ({"g3.sources": "missing.g3"}, "g3.sources: no such file: "),
    ({"g3.sources": "tcp://a:1, tcp://a:1"}, "g3.sources: 'tcp://a:1' is listed twice"),
    ({"g3.sources": "tcp://*:4536", "g3.listen": "127.0.0.1:4536"},
     "g3.sources: 'tcp://*:4536' listens on port 4536, as g3.listen does"),
    ({"g3.sources": "tcp://*@127.0.0.1:9, tcp://*:9"},
     "g3.sources: 'tcp://*:9' listens on port 9, as 'tcp://*@127.0.0.1:9' does"),
    ({"g3.listen": "4536"}, "g3.listen: expected host:port, got '4536'"),
    ({"g3.decimation": "Timepoint"}, "g3.decimation: expected Type=N with a frame type"),
    ({"g3.decimation": "Frame=2"}, "g3.decimation: expected Type=N with a frame type"),
    ({"g3.decimation": "Scan=-1"}, "g3.decimation: 'Scan=-1': N must be an integer >= 0"),
    ({"g3.decimation": "Scan=1, scan=2"}, "g3.decimation: Scan is given twice"),
    ({"g3.channel": " "}, "g3.channel: must not be empty"),
    ({"g3.channel": "x" * 257}, "g3.channel: must be at most 256 characters"),
    ({"g3.max_queue_size": "-1"}, "g3.max_queue_size: must be >= 0, got -1"),
    ({"g3.max_client_bytes": "0"}, "g3.max_client_bytes: must be >= 1, got 0"),
    ({"g3.source_timeout": "soon"}, "g3.source_timeout: expected a duration"),
    ({"g3.max_frame_size": "10"}, "g3.max_frame_size: must be >= 64, got 10"),
    ({"g3.listener": "x"}, "g3.listener: unknown setting 'g3.listener'; did you mean"),
])
def test_bad_g3_settings_name_the_key(tmp_path: Path, raw, message):
    with pytest.raises(SettingsError) as caught:
        parse_settings({"here": str(tmp_path), **raw}, environ={})
    assert str(caught.value).startswith(message), str(caught.value)


# -- the hub message of a frame ---------------------------------------------------------


def test_web_clients_get_the_frame_type_scalars_and_opaque_classes():
    frame = make_frame(H, n=5, t=1.5, ok=True, s="héllo")
    frame["nan"] = math.nan
    frame["inf"] = -math.inf
    frame["raw\udcff"] = "caf\udcff"  # bytes that are not UTF-8 (surrogateescape)
    frame["ts"] = OPAQUE
    message = message_of(frame, kind=STICKY, droppable=False)
    Hub().publish(message)  # sequenced: offset, epoch, time
    body = message.body
    assert body is message.body  # built once
    assert set(body) == {"type", "channel", "uuid", "timestamp", "user", "message", "edited"}
    assert (body["type"], body["channel"], body["user"], body["edited"]) == (
        "message", "g3", "g3:2", None)
    assert body["message"] == {
        "frame_type": "Housekeeping",
        "objects": {"n": 5, "t": 1.5, "ok": True, "s": "héllo", "nan": None, "inf": None,
                    "raw\ufffd": "caf\ufffd"},
        "opaque": {"ts": "G3VectorDouble"},
    }
    assert body["timestamp"].startswith("20") and "+" not in body["timestamp"]
    sent = json.loads(message.encoded(live_json))  # standard JSON, as every transport sends
    assert sent["message"] == body["message"] and sent["offset"] == message.offset
    assert message.frame_bytes == frame.encode() and message.size == len(frame.encode())
    assert message.fields == G3_FIELDS and message.type == "Housekeeping"


def test_a_frame_from_spt3g_keeps_its_bytes():
    frame = decode_frame(SPT3G_FRAME)
    message = message_of(frame)
    assert message.frame_bytes is message.frame_bytes  # the received bytes, not a copy
    assert message.frame_bytes == SPT3G_FRAME
    assert message.body["message"]["objects"] == {"s": "héllo", "b": True, "d": 1.5, "i": 5}
    strict_json.dumps(message.body)


def test_an_unnamed_ad_hoc_frame_type_still_has_a_message_type():
    assert type_name(G3FrameType(0)) == "code-0"
    assert type_name(G3FrameType(0x4142)) == "AB"
    message = message_of(make_frame(G3FrameType(0), n=1), kind=STICKY, droppable=False)
    assert message.type == "code-0" and message.body["message"]["frame_type"] == "code-0"


def test_a_g3_message_crosses_an_engine_with_its_bytes():
    frame = make_frame(C, n=3, x=math.nan)
    frame["ts"] = OPAQUE
    message = message_of(frame, kind=STICKY, droppable=False)
    again = unpack(pack(message))
    assert type(again) is G3Message
    assert again.frame_bytes == frame.encode()
    assert again.body == message.body
    assert (again.kind, again.type, again.droppable, again.size, dict(again.fields)) == (
        STICKY, "Calibration", False, len(frame.encode()), G3_FIELDS)


def test_metadata_types_past_the_limit_are_sent_but_not_sticky():
    types = MetadataTypes(limit=2)
    assert [types.sticky(t) for t in (W, C, W, H, C)] == [True, True, True, False, True]


# -- sources publish: sticky metadata, droppable data, no EndProcessing --------------------


def source_on(hub: Hub, **keys: str) -> G3Source:
    settings = default_settings({"g3.sources": "tcp://127.0.0.1:9", **keys})
    (door,) = build_doors(settings, hub)
    return door


def test_a_source_publishes_metadata_as_sticky_and_data_as_droppable():
    hub = Hub()
    hub.start()
    source = source_on(hub)
    for frame_type, n in [(W, 1), (T, 2), (C, 3), (W, 4), (S, 5), (E, 6), (H, 7)]:
        source._publish(make_frame(frame_type, n=n))
    channel = hub.channel("channel:g3")
    assert [(m.type, m.kind, m.droppable) for m in channel.history.all()] == [
        ("Wiring", STICKY, False), ("Timepoint", DATA, True), ("Calibration", STICKY, False),
        ("Wiring", STICKY, False), ("Scan", DATA, True), ("Housekeeping", STICKY, False)]
    sticky = [(m.type, m.frame["n"]) for m in channel.sticky_messages()]
    assert sticky == [("Wiring", 4), ("Calibration", 3), ("Housekeeping", 7)]  # first seen
    status = source.status()
    assert (status["frames"], status["data_frames"], status["metadata_frames"],
            status["end_processing"]) == (7, 2, 4, 1)
    assert status["types"] == {"Wiring": 2, "Timepoint": 1, "Calibration": 1, "Scan": 1,
                               "EndProcessing": 1, "Housekeeping": 1}
    assert status["bytes"] > 0 and status["state"] == "new"  # not started
    # a new subscriber of the channel (a web client) gets the metadata first
    outbox = Outbox()
    hub.subscribe(outbox, "channel:g3", start=Start.live())
    assert [m.frame["n"] for m in outbox.drain()] == [4, 3, 7]
    hub.stop()


def test_the_g3_channel_is_kept_local_and_never_collected():
    hub = Hub()
    build_doors(default_settings({"g3.listen": "127.0.0.1:0", "g3.channel": "tel"}), hub)
    config = hub.channel_config("channel:tel")
    assert (config.persistent, config.local, config.history_size) == (True, True, 100)


def test_the_doors_come_from_the_settings(tmp_path: Path):
    (tmp_path / "run.g3").write_bytes(b"")
    hub = Hub(hub_config(default_settings()))
    assert build_doors(default_settings(), hub) == []
    settings = default_settings(
        {"g3.listen": "127.0.0.1:0", "g3.max_queue_size": "0", "g3.decimation": "Scan=0",
         "g3.sources": f"tcp://daq:4536, tcp://*@127.0.0.1:0, {tmp_path / 'run.g3'}"})
    doors = build_doors(settings, hub)
    assert [d.name for d in doors] == ["g3-server", "g3-source:1", "g3-source:2",
                                       "g3-source:3"]
    server = doors[0]
    assert isinstance(server, G3Server)
    status = server.status()
    assert (status["state"], status["max_queue_size"], status["decimation"]) == (
        "new", 1000, {"Scan": 0})  # 0 = hub.outbox_size
    assert [d.mode for d in doors[1:]] == ["connect", "listen", "file"]
    assert [d.status()["state"] for d in doors] == ["new"] * 4  # nothing bound yet


def test_a_hub_config_that_is_not_the_default_is_used_for_the_queue():
    hub = Hub(HubConfig(outbox_size=7, outbox_hard_limit=70))
    (server,) = build_doors(
        default_settings({"g3.listen": "127.0.0.1:0", "g3.max_queue_size": "0"}), hub)
    assert server.status()["max_queue_size"] == 7


# -- the server's outboxes (in this process: the door's greenlets, the clients' threads) -------


def test_a_client_whose_metadata_passes_the_hard_limit_is_disconnected():
    hub = Hub(HubConfig(outbox_size=2, outbox_hard_limit=3))
    hub.start()
    settings = default_settings({"g3.listen": "127.0.0.1:0", "g3.sources": "tcp://127.0.0.1:9",
                                 "g3.max_queue_size": "0"})
    server, source = build_doors(settings, hub)
    server.start()
    stalled = RawClient(server.address, stalled=True, rcvbuf=4096)
    healthy = RawClient(server.address)
    try:
        wait_for(lambda: server.status()["clients"] == 2, what="two clients")
        pad = "x" * 100_000
        for n in range(100):  # 10 MB of undroppable frames: more than a socket holds
            source._publish(make_frame(H, n=n, pad=pad))
            wait_for(lambda n=n: len(healthy.frames) == n + 1, interval=0.001,
                     what="the healthy client")
        status = wait_for(lambda: (s := server.status())["overflowed"] == 1 and s,
                          what="the stalled client disconnected")
        wait_for(lambda: server.status()["clients"] == 1, what="one client left")
        assert server.status()["per_client"][0]["frames"] == 100
        assert status["dropped"] > 0  # what the stalled client's outbox held
    finally:
        stalled.close()
        healthy.close()
        server.stop(1)
        hub.stop()
    assert server.status()["state"] == "stopped"


def test_a_source_stuck_connecting_stops_at_once(caplog):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    while True:  # fill the accept queue: the next SYN is dropped and connect() waits
        sock = socket.socket()
        sock.settimeout(0.5)
        fillers.append(sock)
        try:
            sock.connect(("127.0.0.1", port))
        except (TimeoutError, OSError):
            break
    hub = Hub()
    hub.start()
    (source,) = build_doors(default_settings({"g3.sources": f"tcp://127.0.0.1:{port}"}), hub)
    try:
        source.start()
        wait_for(lambda: source._source is not None, what="the source to connect")
        assert source.status()["state"] == "connecting"  # in connect(), which waits
        with caplog.at_level(logging.WARNING, logger="channelstream.serving.doors"):
            source.stop(30)
        assert "did not stop" not in caplog.text  # woken, not killed at the deadline
        assert source.status()["state"] == "stopped"
    finally:
        hub.stop()
        for sock in [*fillers, listener]:
            sock.close()


def test_a_connecting_source_waits_for_its_server_quietly(caplog, monkeypatch):
    """Nothing listens where it connects: ``waiting`` (healthy), said once, no error;
    then its server comes (``connected``, frames published) and goes (``waiting``)."""
    from channelstream.g3.concurrency import GREENLETS
    from channelstream.g3.door import source as g3source
    from channelstream.g3.server import StreamServer
    from channelstream.g3.sources import TcpSource
    from channelstream.serving.doors import HEALTHY_STATES
    from tests.support.server import free_port

    monkeypatch.setattr(g3source, "RETRY_INITIAL", 0.02)
    monkeypatch.setattr(g3source, "WAIT_MAX", 0.05)
    attempts = []

    class Counted(TcpSource):
        def open(self):
            attempts.append(1)
            return super().open()

    monkeypatch.setattr(g3source, "TcpSource", Counted)
    port = free_port()
    hub = Hub()
    hub.start()
    outbox = hub.open_outbox(max_queue=100)
    (source,) = build_doors(default_settings({"g3.sources": f"tcp://127.0.0.1:{port}"}), hub)
    hub.subscribe(outbox, "channel:g3")
    server = None
    try:
        with caplog.at_level(logging.INFO, logger="channelstream.g3.door.source"):
            source.start()
            wait_for(lambda: len(attempts) >= 5, what="five refused connections")
            status = source.status()
            assert status["state"] == "waiting" and status["state"] in HEALTHY_STATES
            assert (status.get("last_error"), status["retries"], status["errors"]) == (None, 0, 0)
            server = StreamServer("127.0.0.1", port, concurrency=GREENLETS).start()
            server.publish(make_frame(C, gain=2.5))
            wait_for(lambda: source.status()["state"] == "connected", what="connected")
            wait_for(lambda: len(outbox) > 0, what="the calibration frame")
            server.stop(1)
            server = None
            wait_for(lambda: source.status()["state"] == "waiting", what="waiting again")
            count = len(attempts)
            wait_for(lambda: len(attempts) >= count + 3, what="refused again")
        said = [r.getMessage() for r in caplog.records if r.name == "channelstream.g3.door.source"]
        assert len([s for s in said if "waiting for a G3 server" in s]) == 1, said
        assert f"waiting for a G3 server at tcp://127.0.0.1:{port} (connection refused)" in said[0]
        assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
        assert source.status().get("last_error") is None
    finally:
        if server is not None:
            server.stop(1)
        source.stop(5)
        hub.stop()
