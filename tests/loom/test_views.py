"""loom's refusals in process: each status and exact JSON body, from the shared error views."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from webob import Request

from channelstream.settings import default_settings
from channelstream.wsgi_app import build_app
from loom import get_door


@pytest.fixture
def app(tmp_path) -> Iterator:
    settings = default_settings({"loom.storage_dir": str(tmp_path), "loom.max_streams": "1"})
    app = build_app(settings)
    door = get_door(app.registry)
    door.open()
    try:
        yield app
    finally:
        door.close()


def call(app, path: str, method: str = "GET", body: bytes = b"", **headers: str):
    request = Request.blank(path, method=method, headers=headers)
    if method == "POST":
        request.body = body
    return request.get_response(app)


def test_a_bad_id_is_400_naming_the_id_field(app):
    for method in ("GET", "POST", "DELETE"):
        answer = call(app, "/stream/.hidden", method)
        assert answer.status_int == 400, method
        assert answer.json == {
            "error": "a stream id holds letters, digits, '.', '_' and '-' only, "
            "and starts with a letter or digit",
            "code": "bad_request",
            "field": "id",
        }
    assert call(app, "/streams/.hidden").json["field"] == "id"


def test_an_unknown_stream_is_404_with_the_seeds_message(app):
    for method, path in (
        ("GET", "/stream/none"),
        ("DELETE", "/stream/none"),
        ("GET", "/streams/none"),
    ):
        answer = call(app, path, method)
        assert answer.status_int == 404, (method, path)
        assert answer.json == {
            "error": "The stream with ID none does not exist",
            "code": "not_found",
        }
        assert answer.headers["Cache-Control"] == "no-store"


def test_a_taken_id_is_409_with_the_seeds_message_then_a_full_store_is_503(app):
    assert call(app, "/stream/one", "POST", b"x").status_int == 201
    again = call(app, "/stream/one", "POST", b"x")
    assert again.status_int == 409
    assert again.json == {
        "error": "The stream with ID one already exists. "
        "Specify force=true query param to override.",
        "code": "conflict",
    }
    door = get_door(app.registry)
    door.store.create("live", None)  # the one live stream loom.max_streams allows
    full = call(app, "/stream/two", "POST", b"x")
    assert full.status_int == 503
    assert full.json == {
        "error": "1 streams are live already (loom.max_streams)",
        "code": "unavailable",
    }


def test_a_closed_store_is_503(app):
    get_door(app.registry).close()
    answer = call(app, "/streams")
    assert answer.status_int == 503
    assert answer.json == {
        "error": "loom storage is not open (the server is starting or stopping)",
        "code": "unavailable",
    }
