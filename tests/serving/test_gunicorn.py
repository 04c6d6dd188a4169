"""production.ini: gunicorn gevent workers, secrets from the environment only."""

from __future__ import annotations

import signal
import time

import requests
import websocket

from tests.support.server import BIN, PROBE_APP, REPO, RunningServer, run_to_exit

NO_SECRETS = {"CHANNELSTREAM_SECRET": None, "CHANNELSTREAM_ADMIN_SECRET": None}
SECRETS = {"CHANNELSTREAM_SECRET": "s3cret", "CHANNELSTREAM_ADMIN_SECRET": "adm1n"}
#: basic auth with admin_secret (production.ini shows /healthz's details to admins only)
ADMIN = ("ops", "adm1n")
#: One light worker; no control socket (two test servers must not share one).
ONE_WORKER = {"workers": "1", "control_socket_disable": "true"}


def test_production_ini_refuses_to_start_without_secrets(tmp_path):
    done = run_to_exit(REPO / "production.ini", tmp_path, server=ONE_WORKER, env=NO_SECRETS)
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("channelstream: bad setting secret: ")
    assert "CHANNELSTREAM_SECRET" in last
    assert "Traceback" not in done.stderr


def test_production_ini_serves_from_gevent_workers_with_secrets(server):
    running = server("production.ini", server=ONE_WORKER, env=SECRETS)
    body = running.get("/healthz", auth=ADMIN).json()  # production: details for admins
    assert body["status"] == "ok"
    assert body["state"] == "running"  # started in the worker, after fork
    assert body["pid"] != running.process.pid  # answered by a worker, not the master
    assert running.stop() == 0
    stderr = running.stderr
    assert "Using worker: channelstream.serving.gunicorn_worker.Worker" in stderr
    assert f"runtime started (pid {body['pid']}" in stderr
    assert f"runtime stopped (pid {body['pid']})" in stderr
    # the app, built in the master, imported ssl after gevent's patch (egg:channelstream#gunicorn)
    assert "MonkeyPatchWarning" not in stderr


def test_gunicorn_paste_works_too(tmp_path):
    running = RunningServer(
        REPO / "production.ini",
        tmp_path,
        env=SECRETS,
        command=[
            str(BIN / "gunicorn"),
            "--paste", "{ini}",
            "-c", "python:channelstream.serving.gunicorn_conf",
            "-b", "127.0.0.1:{port}",
            "-w", "1",
            "--no-control-socket",
        ],
    )
    with running:
        body = running.get("/healthz", auth=ADMIN).json()
        assert body["state"] == "running"
        assert body["pid"] != running.process.pid
    assert running.returncode == 0
    assert "MonkeyPatchWarning" not in running.stderr  # the app loads in the patched worker


def test_workers_upgrade_websockets_and_end_streams_on_sigterm(server):
    running = server(
        "production.ini", app=PROBE_APP, server={**ONE_WORKER, "graceful_timeout": "20"},
        env=SECRETS,
    )
    ws = websocket.create_connection(running.url.replace("http", "ws") + "/test/ws-echo")
    ws.send("through gunicorn")
    assert ws.recv() == "through gunicorn"
    ws.close()
    stream = requests.get(running.url + "/test/stream", stream=True, timeout=10)
    lines = stream.iter_lines()
    assert next(lines) == b"start"
    began = time.monotonic()
    running.process.send_signal(signal.SIGTERM)
    assert list(lines)[-1] == b"bye"
    assert running.wait(20) == 0
    assert time.monotonic() - began < 5.0  # not the 20 s graceful timeout
