"""production.ini is closed by default: loom needs tokens, /healthz details need an admin,
socket.io clients join only what the backend gave them, admin logins are rate limited."""

from __future__ import annotations

import configparser

import requests

from channelstream.settings import parse_settings
from tests.support.server import REPO, RunningServer

SECRETS = {"CHANNELSTREAM_SECRET": "s3cret", "CHANNELSTREAM_ADMIN_SECRET": "adm1n"}
ONE_WORKER = {"workers": "1", "control_socket_disable": "true"}
ADMIN = ("ops", "adm1n")


def production_settings():
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(REPO / "production.ini")
    raw = dict(parser["app:main"])
    raw.pop("use")
    return parse_settings(raw, environ=SECRETS)


def test_production_settings_bound_loom_and_close_the_doors():
    settings = production_settings()
    assert settings.require_secrets
    assert settings.loom.max_stream_bytes > 0
    assert settings.loom.retention_age > 0 and settings.loom.retention_bytes > 0
    assert settings.socketio.join_policy == "subscribed"
    assert settings.healthz_details == "admin"
    assert settings.admin_max_failures > 0


def test_without_loom_tokens_loom_is_off_and_says_why(server):
    running = server("production.ini", server=ONE_WORKER, env=SECRETS)
    for method, path in (("GET", "/stream/x"), ("POST", "/stream/x"), ("GET", "/spy")):
        answer = requests.request(method, running.url + path, timeout=10)
        assert answer.status_code == 503
        assert "loom.tokens" in answer.json()["error"]
    assert "loom is off" in running.stderr
    assert "/stream" not in requests.get(running.url + "/openapi.json", timeout=10).json()["paths"]


def test_with_loom_tokens_loom_serves_token_holders_only(server):
    env = {**SECRETS, "CHANNELSTREAM_LOOM_TOKENS": "t0ken"}
    running = server("production.ini", server=ONE_WORKER, env=env)
    assert requests.get(running.url + "/streams", timeout=10).status_code == 401
    auth = {"Authorization": "Bearer t0ken"}
    created = requests.post(running.url + "/stream/build-1", data=b"log", headers=auth, timeout=10)
    assert created.status_code == 201
    answer = requests.get(running.url + "/stream/build-1", headers=auth, timeout=10)
    assert answer.content == b"log"


def test_healthz_tells_probes_the_status_and_admins_the_details(server):
    running = server("production.ini", server=ONE_WORKER, env=SECRETS)
    public = requests.get(running.url + "/healthz", timeout=10).json()
    assert public == {"status": "ok", "state": "running"}
    full = requests.get(running.url + "/healthz", auth=ADMIN, timeout=10).json()
    assert full["status"] == "ok" and "doors" in full and "hub" in full
    wrong = requests.get(running.url + "/healthz", auth=("ops", "nope"), timeout=10)
    assert wrong.status_code == 200 and "doors" not in wrong.json()


def test_failed_admin_logins_are_rate_limited_per_address(tmp_path):
    app = {
        "secret": "s",
        "admin_secret": "adm1n",
        "admin_max_failures": "3",
        "admin_failure_window": "60",
    }
    with RunningServer(REPO / "development.ini", tmp_path, app=app) as running:
        url = running.url + "/admin/admin.json"
        for _ in range(3):
            assert requests.get(url, auth=("x", "guess"), timeout=10).status_code == 401
        refused = requests.get(url, auth=ADMIN, timeout=10)  # even the right password waits
        assert refused.status_code == 429
        assert 0 < int(refused.headers["Retry-After"]) <= 60
        assert refused.json()["code"] == "too_many_requests"
