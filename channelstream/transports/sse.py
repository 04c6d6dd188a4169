"""``GET /sse?conn_id=…[&resume=…]``: Server-Sent Events.

Each batch of frames is one event whose data is a JSON array and whose id
encodes the position reached in every stream of the connection (every
channel and its private messages, from the first event on: the head event
``data: []`` already carries one), so a browser's automatic reconnection
(``Last-Event-ID``) resumes with no loss and no duplicate, whichever stream
the lost events were on. Heartbeats are events with data ``[]`` and no id.
"""

from __future__ import annotations

from collections.abc import Iterator

from gevent import getcurrent
from pyramid.request import Request
from pyramid.response import Response

from ..chat import CHAT_KEY, ChatState
from ..chat.connections import Connection
from ..chat.frames import encode_batch, resume_failed
from ..chat.resume import parse_resume, parse_resume_token, resume_token
from ..chat.routing import resume_key
from ..chat.transport import Kicked, Positions, Transport
from ..serving.runtime import get_runtime

RETRY_MS = 2000


class StreamTransport(Transport):
    kind = "sse"


def sse_view(request: Request) -> Response:
    chat: ChatState = request.registry[CHAT_KEY]
    runtime = get_runtime(request.registry)
    last_event_id = request.headers.get("Last-Event-ID")
    resume = parse_resume_token(last_event_id)
    resume.update(parse_resume(request.GET.get("resume")))
    # A client that brings positions keeps them (EventSource does, by itself).
    resume_aware = bool(last_event_id) or "resume" in request.GET
    connection = chat.find_connection(request.GET.get("conn_id", ""))
    response = Response(
        app_iter=_events(
            chat, connection, resume, runtime.settings.client_heartbeat, resume_aware
        ),
        content_type="text/event-stream",
    )
    response.cache_control = "no-store"
    response.headers["X-Accel-Buffering"] = "no"
    return response


def _events(
    chat: ChatState,
    connection: Connection,
    resume: dict[str, tuple[str, int]],
    heartbeat: float,
    resume_aware: bool,
) -> Iterator[bytes]:
    transport = StreamTransport()
    transport.greenlet = getcurrent()
    outbox = connection.outbox
    try:
        failures = transport.attach(chat, connection, resume, resume_aware=resume_aware)
        # Every stream's position from the start (resumed ones included: the
        # outbox now replays them from where the client said).
        tracker = Positions(connection)
        positions = tracker.news()
        data = encode_batch((), extra=[resume_failed(c, r) for c, r in failures])
        yield (
            f"retry: {RETRY_MS}\nid: {resume_token(positions)}\n".encode()
            + b"data: " + data + b"\n\n"
        )
        while not transport.kicked:
            ready = outbox.wait(heartbeat)
            if transport.kicked:  # a newer transport owns the queue now
                return
            positions.update(tracker.news())  # a stream subscribed meanwhile
            batch = outbox.drain()
            if batch:
                for message in batch:
                    positions[resume_key(message.channel)] = (message.epoch, message.offset)
                data = encode_batch(batch, outbox.last_replayed)
                yield b"id: " + resume_token(positions).encode() + b"\ndata: " + data + b"\n\n"
            elif outbox.closed:
                return
            elif not ready:
                yield b"data: []\n\n"
    except Kicked:
        return
    finally:
        transport.ended.set()
        chat.detach(connection, transport)
