"""The loom HTTP routes (the seed's API, plus a list, a state query and DELETE).

==========================  =================================================
``POST /stream[/][:id]``    create (``X-Stream-Metadata`` JSON; ``?force=true``
                            replaces, answering ``x-stream-replaced: true``);
                            ``201`` + ``X-Stream-Id`` at once, then the upload
``GET /stream/:id``         stored bytes, then the live tail until the end
                            (``?notail``: only what is stored now)
``DELETE /stream/:id``      remove a stream (a live one is aborted)
``GET /streams``            every stream: id, metadata, state, size, times
``GET /streams/:id``        one stream's description (its final state)
``GET /spy[?color]``        every live and new stream, multiplexed
==========================  =================================================

Errors are JSON: ``400`` bad id or metadata, ``401`` missing or unknown
token, ``404`` ``{"error": "The stream with ID X does not exist"}``,
``409`` ``{"error": "The stream with ID X already exists. Specify
force=true query param to override."}``, ``503`` too many live streams,
too few file descriptors left (``loom.fd_reserve``) or storage not open.
The store's refusals are shared client errors (:mod:`loom.errors`): views
let them through to the JSON error views.

Responses of ``GET /stream/:id`` carry ``Content-Type:
application/octet-stream``, ``X-Stream-Metadata`` (JSON), ``X-Stream-State``
(``live``, ``finished``, ``aborted``); a stream that is not live (or
``?notail``) gets ``Content-Length``; a live tail is chunked and ends with
the trailer ``X-Stream-State`` saying how the stream ended (also visible
afterwards at ``GET /streams/:id``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from pyramid.config import Configurator
from pyramid.httpexceptions import HTTPUnauthorized
from pyramid.request import Request
from pyramid.response import Response

from channelstream import strict_json
from channelstream.errors import BadRequest, PayloadTooLarge, Unavailable
from channelstream.hub import Hub
from channelstream.security.tokens import bearer_token, token_in_url, token_matches
from channelstream.web.responses import json_response

from .door import LoomDoor, get_door
from .errors import NoSuchStream, OutOfFileDescriptors
from .events import Follower, stream_channel
from .reader import StreamReader, UploadReader
from .responses import ChunkedResponse, IngestResponse, LiveBody, StoredResponse
from .spy import Spy
from .store import Stream

#: Largest ``X-Stream-Metadata`` header, in characters. The HTTP server's
#: ``http.max_header_line`` (16 KiB by default) bounds the whole header line
#: first: past it the request is refused with 431 before loom sees it.
MAX_METADATA = 65536


def _door(request: Request) -> LoomDoor:
    door = get_door(request.registry)
    if not door.ready:
        raise Unavailable(
            door.standby or "loom storage is not open (the server is starting or stopping)"
        )
    return door


# -- admission --------------------------------------------------------------------------


def check_token(request: Request, tokens: tuple[str, ...]) -> None:
    """Admit the request when no token is configured, or it carries one of them.

    :raises HTTPUnauthorized: 401 with a JSON error and ``WWW-Authenticate``.
    """
    if not tokens:
        return
    challenge = {"WWW-Authenticate": 'Bearer realm="loom"'}
    name = token_in_url(request)
    if name is not None:
        raise HTTPUnauthorized(
            detail=f"a token in the URL ({name}=) is never accepted (URLs end up in logs); "
            "send Authorization: Bearer <token>",
            headers=challenge,
        )
    given = bearer_token(request)
    if given is None:
        raise HTTPUnauthorized(
            detail="this server needs Authorization: Bearer <token>", headers=challenge
        )
    if not token_matches(given, tokens):
        raise HTTPUnauthorized(detail="unknown bearer token", headers=challenge)


def _admit(request: Request):
    door = _door(request)
    check_token(request, door.settings.tokens)
    return door


def parse_metadata(request: Request) -> Any:
    """The ``X-Stream-Metadata`` header as a JSON value (None when absent)."""
    raw = request.headers.get("X-Stream-Metadata")
    if raw is None or not raw.strip():
        return None
    if len(raw) > MAX_METADATA:
        raise BadRequest(
            f"X-Stream-Metadata is longer than {MAX_METADATA} characters", field="X-Stream-Metadata"
        )
    try:
        return strict_json.loads(raw.encode("latin-1").decode("utf-8"))
    except (ValueError, UnicodeError) as err:
        raise BadRequest(
            f"X-Stream-Metadata is not valid JSON: {err}", field="X-Stream-Metadata"
        ) from None


def stream_headers(stream: Stream) -> list[tuple[str, str]]:
    """The headers of every ``GET /stream/:id`` answer."""
    return [
        ("Content-Type", "application/octet-stream"),
        ("X-Content-Type-Options", "nosniff"),
        ("Cache-Control", "no-store"),
        ("X-Stream-Id", stream.id),
        ("X-Stream-Metadata", json.dumps(stream.metadata, separators=(",", ":"))),
        ("X-Stream-State", stream.state),
    ]


# -- views ----------------------------------------------------------------------------------


def create_stream(request: Request) -> Response:
    """``POST /stream[/:id]``: see the module doc."""
    door = _admit(request)
    stream_id = request.matchdict.get("id") or None
    metadata = parse_metadata(request)
    limit = door.settings.max_stream_bytes
    if limit and (request.content_length or 0) > limit:
        raise PayloadTooLarge(
            f"the body ({request.content_length} bytes) is over loom.max_stream_bytes ({limit})"
        )
    force = request.GET.get("force", "").lower() == "true"
    stream, replaced = door.store.create(stream_id, metadata, force=force)
    headers = [("X-Stream-Id", stream.id), ("Cache-Control", "no-store")]
    if replaced:
        headers.append(("x-stream-replaced", "true"))
    upload = UploadReader(request.environ["wsgi.input"])
    return IngestResponse(door.store, stream, upload, headers, max_bytes=limit)


def read_stream(request: Request) -> Response:
    """``GET /stream/:id[?notail]``: see the module doc."""
    door = _admit(request)
    stream = door.store.get(request.matchdict["id"])
    headers = stream_headers(stream)
    try:
        reader = StreamReader(stream)
    except FileNotFoundError:
        raise NoSuchStream(stream.id) from None
    except OSError as err:
        raise door.store.out_of_fds(err) or err from None
    try:
        door.store.admit_reader(reader.fd)  # type: ignore[arg-type]
    except OutOfFileDescriptors:
        reader.close()
        raise
    if stream.live and "notail" not in request.GET:
        return ChunkedResponse(
            Tail(door.hub, reader), headers, trailers=lambda: [("X-Stream-State", stream.state)]
        )
    return StoredResponse(
        reader, stream.size, stream.stored, headers, cache_window=door.store.cache_window
    )


class Tail(LiveBody):
    """The body of a live ``GET``: everything stored, then the live bytes until
    the stream ends (or the server stops, or the client goes away:
    :meth:`hang_up`). Subscribed from the start; ``close()`` releases the
    subscription and the file even if the body never ran (HEAD)."""

    def __init__(self, hub: Hub, reader: StreamReader) -> None:
        self.reader = reader
        self.follower = Follower(hub, stream_channel(reader.stream.id), name="loom reader")
        #: the client went away: send nothing more
        self.gone = False

    def __iter__(self) -> Iterator[bytes]:
        reader, follower = self.reader, self.follower
        try:
            while not self.gone:
                data = reader.read()
                if self.gone:
                    return
                if data:
                    yield data
                elif reader.done or follower.closed:
                    return
                else:
                    follower.wait()
        finally:
            self.close()

    def hang_up(self) -> None:
        self.gone = True
        self.follower.close()

    def close(self) -> None:
        self.follower.close()
        self.reader.close()


def delete_stream(request: Request) -> Response:
    """``DELETE /stream/:id``: 200 with the stream's last description."""
    stream = _admit(request).store.delete(request.matchdict["id"])
    return _json({"deleted": True, **stream.info()})


def list_streams(request: Request) -> Response:
    """``GET /streams``: every stream, oldest first."""
    door = _admit(request)
    return _json({"streams": [stream.info() for stream in door.store.streams()]})


def describe_stream(request: Request) -> Response:
    """``GET /streams/:id``: one stream's description."""
    door = _admit(request)
    return _json(door.store.get(request.matchdict["id"]).info())


def spy(request: Request) -> Response:
    """``GET /spy[?color]``: see :mod:`loom.spy`."""
    door = _admit(request)
    body = Spy(door.hub, door.store, color="color" in request.GET)
    headers = [
        ("Content-Type", "text/plain; charset=utf-8"),
        ("X-Content-Type-Options", "nosniff"),
        ("Cache-Control", "no-store"),
    ]
    return ChunkedResponse(body, headers)


def _json(body: dict[str, Any]) -> Response:
    return json_response(body)


ROUTES = (
    ("loom_create", "/stream"),
    ("loom_stream", "/stream/{id:.*}"),
    ("loom_streams", "/streams"),
    ("loom_stream_info", "/streams/{id:.*}"),
    ("loom_spy", "/spy"),
)


def add_routes(config: Configurator) -> None:
    """The routes and views of the module doc."""
    for name, pattern in ROUTES:
        config.add_route(name, pattern)
    config.add_view(create_stream, route_name="loom_create", request_method="POST")
    config.add_view(create_stream, route_name="loom_stream", request_method="POST")
    config.add_view(read_stream, route_name="loom_stream", request_method="GET")
    config.add_view(delete_stream, route_name="loom_stream", request_method="DELETE")
    config.add_view(list_streams, route_name="loom_streams", request_method="GET")
    config.add_view(describe_stream, route_name="loom_stream_info", request_method="GET")
    config.add_view(spy, route_name="loom_spy", request_method="GET")


def add_off_routes(config: Configurator, reason: str) -> None:
    """Every loom route answers 503 with ``reason`` (loom is off in this process)."""

    def off(request: Request) -> Response:
        raise Unavailable(reason)

    for name, pattern in ROUTES:
        config.add_route(name, pattern)
        config.add_view(off, route_name=name)
