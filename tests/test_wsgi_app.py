"""The Pyramid app: factory errors, registry access, JSON errors over the wire."""

from __future__ import annotations

import importlib

import pytest
import requests

from channelstream.serving.runtime import RUNTIME_KEY, Runtime, find_runtime, get_runtime
from channelstream.settings import default_settings
from channelstream.wsgi_app import (
    FEATURES,
    build_app,
    make_app,
)


def test_make_app_turns_a_bad_setting_into_one_line():
    with pytest.raises(SystemExit) as info:
        make_app({"here": "/tmp"}, **{"tcp_streamer.listen": "abc"})
    assert str(info.value) == (
        "channelstream: bad setting tcp_streamer.listen: expected host:port, got 'abc'"
    )


def test_make_app_resolves_paths_against_here(tmp_path):
    app = make_app({"here": str(tmp_path), "__file__": str(tmp_path / "x.ini")})
    assert find_runtime(app).settings.loom.storage_dir == tmp_path / "var" / "loom"


def test_build_app_keeps_the_runtime_in_the_registry():
    runtime = Runtime(default_settings())
    app = build_app(runtime.settings, runtime=runtime)
    assert app.registry[RUNTIME_KEY] is runtime
    assert get_runtime(app.registry) is runtime
    assert find_runtime(app) is runtime
    assert find_runtime(object()) is None


def test_building_binds_and_starts_nothing():
    app = build_app(default_settings())
    assert find_runtime(app).state.value == "new"
    assert find_runtime(app).hub.stats()["running"] is False


def test_every_feature_has_an_includeme():
    for name in FEATURES:
        assert callable(importlib.import_module(name).includeme)


# -- over the wire, through the real server -------------------------------------


def test_healthz(probe_server):
    response = probe_server.get("/healthz")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert body["status"] == "ok"
    assert body["state"] == "running"
    assert body["version"] == "0.1.0"
    assert body["uptime_seconds"] >= 0
    assert list(body["doors"]) == [
        "channelstream-gc", "tcp-streamer", "socketio", "loom",
        "zmq-source:detector", "g3-source:1",  # the demo's feeds: waiting for make demo-data
    ]
    assert body["doors"]["zmq-source:detector"]["state"] == "waiting"
    assert body["doors"]["channelstream-gc"]["state"] == "running"
    assert body["hub"]["running"] is True


def test_healthz_refuses_other_methods(probe_server):
    response = requests.post(probe_server.url + "/healthz", timeout=10)
    assert response.status_code == 405
    assert response.headers["Allow"] == "GET, HEAD"
    assert response.json()["code"] == "method_not_allowed"


def test_unknown_route_is_a_json_404(probe_server):
    response = probe_server.get("/no/such/thing")
    assert response.status_code == 404
    assert response.json() == {"error": "no such resource: /no/such/thing", "code": "not_found"}


def test_client_error_is_json_with_its_field(probe_server):
    response = probe_server.get("/test/client-error")
    assert response.status_code == 400
    assert response.json() == {
        "error": "count must be a number",
        "code": "bad_request",
        "field": "count",
    }


def test_a_path_that_is_not_utf8_is_a_400(probe_server):
    response = probe_server.get("/test/%ff%fe")
    assert response.status_code == 400
    assert response.json()["code"] == "bad_request"


def test_internal_error_is_a_json_500_and_logged_with_traceback(probe_server):
    response = probe_server.get("/test/crash")
    assert response.status_code == 500
    assert response.json() == {"error": "internal error", "code": "internal"}
    assert "a bug in a view" not in response.text
    stderr = probe_server.stderr
    assert "internal error on GET /test/crash" in stderr
    assert "Traceback" in stderr and "RuntimeError: a bug in a view" in stderr
