"""``make demo-data`` (demo/data.py) against the real server: it reads the
server from the ini, makes packets, a loom stream, the bot's chat, the ZMQ
detector and the G3 telescope move, and stops cleanly on Ctrl-C (its build log
ends finished, not aborted; the sources go back to waiting, healthy).

The servers are development.ini copies whose demo feeds connect to free ports
(tests/support/server.py): demo-data reads them from the copy, so a ``make
demo-data`` running beside the tests is never involved."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from demo.backend import BOT_USER, DEFAULT_CHANNELS
from demo.data import Feed, read_target
from tests.demo.conftest import expect, start_server
from tests.support.api import SECRET, api_client
from tests.support.server import QUIET_WARNINGS, REPO
from tests.support.wait import wait_for


def first_packet(port: int, query: dict) -> dict:
    """The first packet the TCP streamer sends for ``query``."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(json.dumps(query).encode())
        return json.loads(sock.makefile("rb").readline())


def test_read_target_takes_the_ini_and_the_environment(tmp_path: Path):
    ini = tmp_path / "x.ini"
    ini.write_text(
        "[app:main]\nuse = egg:channelstream\nsecret = s1\nloom.tokens = t1, t2\n"
        "[server:main]\nuse = egg:channelstream\nhost = 0.0.0.0\nport = 8123\n"
    )
    target = read_target(ini, None, environ={})
    assert (target.url, target.secret, target.loom_token, target.ingest_token) == (
        "http://127.0.0.1:8123",
        "s1",
        "t1",
        None,
    )
    target = read_target(
        ini,
        None,
        environ={
            "CHANNELSTREAM_URL": "http://h:1",
            "CHANNELSTREAM_SECRET": "s2",
            "CHANNELSTREAM_PACKETS_INGEST_TOKENS": "p1",
        },
    )
    assert (target.url, target.secret, target.ingest_token) == ("http://h:1", "s2", "p1")
    assert read_target(ini, "http://given:2/", environ={}).url == "http://given:2"
    assert (target.zmq, target.g3) == (None, None)  # no source to feed


def test_read_target_finds_the_sources_that_connect_to_this_machine(tmp_path: Path):
    ini = tmp_path / "x.ini"
    ini.write_text(
        "[app:main]\nuse = egg:channelstream\nsecret = s1\n"
        'zmq.sources = [{"address": "tcp://*:9100", "channel": "bound"},\n'
        '    {"address": "tcp://daq.example:9999", "channel": "far"},\n'
        '    {"address": "tcp://localhost:9998", "channel": "spectra", "mode": "sub"}]\n'
        "g3.sources = tcp://daq.example:4536, tcp://*@127.0.0.1:4537, tcp://127.0.0.1:4538\n"
        "g3.channel = sky\n"
        "[server:main]\nuse = egg:channelstream\nport = 8123\n"
    )
    target = read_target(ini, None, environ={})
    assert target.zmq == Feed("tcp://127.0.0.1:9998", "spectra", "zmq-source:spectra", "pub")
    assert target.g3 == Feed("tcp://127.0.0.1:4538", "sky", "g3-source:3")
    development = read_target(REPO / "development.ini", None, environ={})
    assert development.zmq == Feed("tcp://127.0.0.1:9999", "detector", "zmq-source:detector")
    assert development.g3 == Feed("tcp://127.0.0.1:4538", "g3", "g3-source:1")


def door(server, name: str) -> dict:
    return server.get("/healthz").json()["doors"][name]


def test_demo_data_makes_everything_move_and_stops_on_ctrl_c(tmp_path: Path):
    with start_server(tmp_path) as server:
        env = {**os.environ, "PYTHONWARNINGS": QUIET_WARNINGS}
        env.pop("CHANNELSTREAM_URL", None)
        env.pop("CHANNELSTREAM_SECRET", None)
        data = subprocess.Popen(
            [sys.executable, "-m", "demo.data", "--ini", str(server.ini)],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        try:
            packet = first_packet(server.tcp_streamer_port, {"profile_id": "demo-weather"})
            assert packet["sensor"] in ("s1", "s2", "s3")
            streams = wait_for(
                lambda: [
                    s
                    for s in server.get("/streams").json()["streams"]
                    if s["id"].startswith("demo-build-") and s["size"] > 0
                ],
                what="a demo build stream",
            )
            assert streams[0]["metadata"]["by"] == "make demo-data"
            hub = api_client(server)

            def bot_messages() -> list[dict]:
                channels = hub.info(channels=list(DEFAULT_CHANNELS))["channels"]
                return [m for c in channels.values() for m in c["history"] if m["user"] == BOT_USER]

            history = wait_for(bot_messages, what="a message of the bot")
            assert history[0]["message"]["text"]
            assert BOT_USER in hub.info(channels=["lobby"])["channels"]["lobby"]["users"]
            # the detector's images through zmq-source:detector, the telescope's frames
            # through g3-source:1 (metadata first, then data), health ok all along
            detector = wait_for(
                lambda: (d := door(server, "zmq-source:detector"))["received"] >= 3 and d,
                what="images of the detector",
            )
            assert detector["state"] == "connected" and detector["malformed"] == 0
            telescope = wait_for(
                lambda: (d := door(server, "g3-source:1"))["data_frames"] >= 3 and d,
                what="Timepoint frames of the telescope",
            )
            assert telescope["state"] == "connected" and telescope["errors"] == 0
            assert telescope["types"]["Observation"] == telescope["types"]["Calibration"] == 1
            assert server.get("/healthz").json()["status"] == "ok"
        finally:
            data.send_signal(signal.SIGINT)
            output = data.communicate(timeout=30)[0].decode()
        assert data.returncode == 0, output
        assert "demo-data: stopped" in output
        assert SECRET not in output
        feeds = read_target(server.ini, None)
        assert (
            f"zmq: array-1.0 images (16x16 uint16, 4/s) from a PUSH bound at {feeds.zmq.address}, "
            "for zmq-source:detector (channel detector)"
        ) in output
        assert f"served at {feeds.g3.address}, for g3-source:1 (channel g3)" in output
        # both sources wait for their sender again, quietly and healthily
        wait_for(
            lambda: door(server, "zmq-source:detector")["state"] == "waiting"
            and door(server, "g3-source:1")["state"] == "waiting",
            what="the sources waiting again",
        )
        assert door(server, "g3-source:1").get("last_error") is None
        assert server.get("/healthz").json()["status"] == "ok"
        states = {s["id"]: s["state"] for s in server.get("/streams").json()["streams"]}
        assert states and set(states.values()) == {"finished"}, states
        lobby = api_client(server).info(channels=["lobby"])["channels"]["lobby"]
        assert BOT_USER not in lobby["users"]  # the bot disconnected


@pytest.mark.browser
def test_with_demo_data_every_panel_moves_within_a_minute(tmp_path: Path, open_page):
    """The README's screenshot (test-artifacts/demo/overview.png) comes from here."""
    with start_server(tmp_path) as server:
        env = {**os.environ, "PYTHONWARNINGS": QUIET_WARNINGS}
        data = subprocess.Popen(
            [sys.executable, "-m", "demo.data", "--ini", str(server.ini)],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            page = open_page(server.url)
            page.sign_in("alice")
            page.page.fill("[data-test=compose]", "hi all, the page is live")
            page.page.click("[data-test=send]")
            expect(
                page.page.locator("[data-test=message]", has_text=BOT_USER).first
            ).to_be_visible()
            expect(
                page.page.locator(f"[data-test=presence] [data-user={BOT_USER}]")
            ).to_be_visible()
            expect(page.page.locator("[data-test=tail]")).to_contain_text("step")
            expect(page.page.locator("[data-test=tail-state]")).to_have_text("live")
            expect(page.page.locator("[data-test=packet]").nth(9)).to_be_visible()
            # some seconds of rates in the charts: 120 packets at about 8 a second
            expect(page.page.locator("[data-test=gatd] figcaption")).to_contain_text(
                re.compile(r"\((\d{4,}|[2-9]\d\d|1[2-9]\d) received\)"), timeout=40_000
            )
            expect(page.page.locator("[data-test=admin-stats]")).to_contain_text("connections")
            # the frame panels: the detector's images (htype, header scalars), the
            # telescope's frames (frame type, scalar objects), each with a rate
            detector = page.page.locator('[data-test="frames-channel:detector"]')
            telescope = page.page.locator('[data-test="frames-channel:g3"]')
            expect(detector.locator("[data-test=door]")).to_have_text(
                "zmq-source:detector: connected"
            )
            expect(telescope.locator("[data-test=door]")).to_have_text("g3-source:1: connected")
            row = detector.locator("[data-test=frames] tr").first
            expect(row).to_contain_text("array-1.0")
            expect(row).to_contain_text('"shape":[16,16]')
            expect(row).to_contain_text(re.compile(r'"frame":\d+'))
            expect(telescope.locator("[data-test=frames]")).to_contain_text("Timepoint")
            expect(telescope.locator("[data-test=frames]")).to_contain_text(
                re.compile(r'"az_deg":\d')
            )
            for panel in (detector, telescope):  # about 4 frames a second
                expect(panel.locator(".spark-now")).to_have_text(re.compile(r"^[2-9]\.\d$"))
            page.page.set_viewport_size({"width": 1280, "height": 760})
            page.screenshot("overview")
        finally:
            data.send_signal(signal.SIGINT)
            data.wait(30)
        assert data.returncode == 0
