"""The server runner end to end: ``pserve`` subprocesses on free loopback ports."""

from __future__ import annotations

import signal
import socket
import time

import pytest
import requests
import websocket

from tests.support.server import PROBE_APP, REPO, run_to_exit
from tests.support.wait import wait_for


def assert_clean(stderr: str) -> None:
    """No warning of any kind (gevent's MonkeyPatchWarning included) and no traceback."""
    assert "Warning" not in stderr, stderr
    assert "monkey" not in stderr.lower(), stderr
    assert "Traceback" not in stderr, stderr


def last_line(text: str) -> str:
    return text.strip().splitlines()[-1]


@pytest.mark.parametrize("ini", ["development.ini", "channelstream.ini"])
def test_pserve_serves_healthz_and_exits_0_on_sigterm(server, ini):
    running = server(ini)
    body = running.get("/healthz").json()
    assert body["status"] == "ok"
    assert body["version"] == "0.1.0"
    assert body["state"] == "running"
    assert isinstance(body["uptime_seconds"], float)
    assert body["hub"]["running"] is True
    assert running.stop(signal.SIGTERM) == 0
    stderr = running.stderr
    assert f"serving on http://127.0.0.1:{running.port}" in stderr
    assert "SIGTERM received: shutting down" in stderr
    assert "[channelstream.serving.server] stopped" in stderr
    assert_clean(stderr)


def test_sigint_stops_cleanly_too(server):
    running = server()
    assert running.stop(signal.SIGINT) == 0
    assert "SIGINT received: shutting down" in running.stderr
    assert_clean(running.stderr)


def test_channelstream_ini_is_a_copy_of_development_ini():
    assert (REPO / "channelstream.ini").read_bytes() == (REPO / "development.ini").read_bytes()


def test_a_bad_app_setting_stops_startup_naming_the_key(tmp_path):
    done = run_to_exit(REPO / "development.ini", tmp_path, app={"tcp_streamer.listen": "abc"})
    assert done.returncode != 0
    assert last_line(done.stderr) == (
        "channelstream: bad setting tcp_streamer.listen: expected host:port, got 'abc'"
    )
    assert "Traceback" not in done.stderr


def test_a_misspelt_door_option_stops_startup(tmp_path):
    done = run_to_exit(REPO / "development.ini", tmp_path, app={"g3.lisen": "127.0.0.1:4536"})
    assert done.returncode != 0
    assert "did you mean 'g3.listen'?" in last_line(done.stderr)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("listen_backlog", "5", "bad server setting listen_backlog: unknown [server:main] setting"),
        ("port", "80000", "bad server setting port: must be <= 65535, got 80000"),
        ("port", "http", "bad server setting port: expected an integer, got 'http'"),
        ("shutdown_timeout", "soon", "bad server setting shutdown_timeout: expected a duration"),
        ("heartbeat_interval", "often", "bad server setting heartbeat_interval: expected a dur"),
        ("transports", "carrier-pigeon", "bad server setting transports: unknown value"),
    ],
)
def test_a_bad_server_setting_stops_startup_naming_the_key(tmp_path, key, value, message):
    done = run_to_exit(REPO / "development.ini", tmp_path, server={key: value})
    assert done.returncode == 1
    assert last_line(done.stderr).startswith(f"channelstream: {message}")
    assert "Traceback" not in done.stderr


def test_a_port_in_use_stops_startup_with_one_line(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run_to_exit(REPO / "development.ini", tmp_path, server={"port": str(port)})
    assert done.returncode == 1
    assert last_line(done.stderr) == (
        f"channelstream: cannot listen on 127.0.0.1:{port}: Address already in use"
    )


def test_the_seeds_server_keys_are_accepted_and_applied(server):
    running = server(
        app=PROBE_APP,
        server={
            "resource": "socket.io",
            "transports": "websocket, xhr-polling",
            "policy_server": "True",
            "policy_listener_host": "0.0.0.0",
            "policy_listener_port": "10843",
            "heartbeat_interval": "5",
            "heartbeat_timeout": "60",
        },
    )
    applied = running.get("/test/socketio-settings").json()
    assert applied["path"] == "socket.io"
    assert applied["transports"] == ["websocket", "polling"]
    assert applied["ping_interval"] == 5.0
    assert applied["ping_timeout"] == 60.0
    assert running.stop() == 0
    policy_lines = [line for line in running.stderr.splitlines() if "policy" in line]
    assert len(policy_lines) == 1
    assert "WARN" in policy_lines[0] and "Flash policy server is obsolete" in policy_lines[0]


def test_access_log_redacts_credentials(probe_server):
    probe_server.get("/healthz?conn_id=7&sig=S3CRET&token=T0KEN&x=1")
    line = '"GET /healthz?conn_id=***&sig=***&token=***&x=1 HTTP/1.1" 200'
    # the log line reaches the file just after the response
    stderr = wait_for(lambda: line in (s := probe_server.stderr) and s, timeout=10)
    assert "S3CRET" not in stderr and "T0KEN" not in stderr


def test_websocket_upgrade_through_the_runner(probe_server):
    ws = websocket.create_connection(probe_server.url.replace("http", "ws") + "/test/ws-echo")
    try:
        ws.send("hello")
        assert ws.recv() == "hello"
        ws.send_binary(b"\x00\xffbytes")
        assert ws.recv() == b"\x00\xffbytes"
    finally:
        ws.close()


def test_a_plain_get_on_a_websocket_view_is_a_client_error(probe_server):
    response = probe_server.get("/test/ws-echo")
    assert response.status_code == 400
    assert response.json()["error"] == "this endpoint needs a websocket upgrade"


def test_a_long_lived_response_ends_when_the_server_stops(server):
    running = server(app=PROBE_APP, server={"shutdown_timeout": "10"})
    stream = requests.get(running.url + "/test/stream", stream=True, timeout=10)
    lines = stream.iter_lines()
    assert next(lines) == b"start"
    began = time.monotonic()
    running.process.send_signal(signal.SIGTERM)
    rest = list(lines)
    assert rest[-1] == b"bye"  # ended by the runtime's stop, cleanly
    assert running.wait(10) == 0
    assert time.monotonic() - began < 3.0  # far below the 10 s grace period
    assert_clean(running.stderr)


def test_a_response_that_does_not_end_is_cut_at_the_grace_period(server):
    running = server(app=PROBE_APP, server={"shutdown_timeout": "1s"})
    stream = requests.get(running.url + "/test/stream?ignore_stop=1", stream=True, timeout=10)
    lines = stream.iter_lines()
    assert next(lines) == b"start"
    began = time.monotonic()
    running.process.send_signal(signal.SIGTERM)
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        for _ in lines:
            pass
    assert running.wait(10) == 0
    elapsed = time.monotonic() - began
    assert 0.9 <= elapsed < 5.0
    assert "ended 1 request(s) still running after 1.0s" in running.stderr


def test_idle_keep_alive_connections_do_not_delay_shutdown(server):
    running = server(server={"shutdown_timeout": "20"})
    with requests.Session() as session:
        assert session.get(running.url + "/healthz", timeout=10).status_code == 200
        began = time.monotonic()
        assert running.stop() == 0
        assert time.monotonic() - began < 3.0


def test_a_crashing_door_is_restarted_and_shown_in_healthz(server):
    running = server(app={**PROBE_APP, "test.crashing_door": "true"})
    body = wait_for(
        lambda: (b := running.get("/healthz").json())["doors"]["probe"]["restarts"] >= 2 and b,
        timeout=10,
    )
    probe = body["doors"]["probe"]
    assert body["status"] == "degraded"
    assert probe["state"] in ("restarting", "running")
    assert probe["restarts"] >= 2
    assert probe["last_error"] == "RuntimeError: boom: the probe door crashed"
    assert running.get("/test/socketio-settings").status_code == 200  # still serving
    assert running.stop() == 0
    assert "door 'probe' crashed; restarting in" in running.stderr
    assert "Traceback" in running.stderr  # logged with its traceback
