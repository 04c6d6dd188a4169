"""``GET /sse?conn_id=…[&resume=…]``: Server-Sent Events.

Each batch of frames is one event whose data is a JSON array and whose id
encodes the position reached in every channel, so a browser's automatic
reconnection (``Last-Event-ID``) resumes with no loss and no duplicate.
Heartbeats are events with data ``[]`` and no id.
"""

from __future__ import annotations

from collections.abc import Iterator

from gevent import getcurrent
from pyramid.request import Request
from pyramid.response import Response

from ..chat import CHAT_KEY, PM_RESUME_KEY, ChatState
from ..chat.connections import Connection
from ..chat.frames import encode_batch, resume_failed
from ..chat.resume import parse_resume, parse_resume_token, resume_token
from ..chat.routing import CHANNEL_PREFIX
from ..chat.transport import Kicked, Transport
from ..serving.runtime import get_runtime

RETRY_MS = 2000


class StreamTransport(Transport):
    kind = "sse"


def _key(hub_channel: str) -> str:
    if hub_channel.startswith(CHANNEL_PREFIX):
        return hub_channel[len(CHANNEL_PREFIX) :]
    return PM_RESUME_KEY


def sse_view(request: Request) -> Response:
    chat: ChatState = request.registry[CHAT_KEY]
    runtime = get_runtime(request.registry)
    resume = parse_resume_token(request.headers.get("Last-Event-ID"))
    resume.update(parse_resume(request.GET.get("resume")))
    connection = chat.connection(request.GET.get("conn_id", ""))
    response = Response(
        app_iter=_events(chat, connection, resume, runtime.settings.client_heartbeat),
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
) -> Iterator[bytes]:
    transport = StreamTransport()
    transport.greenlet = getcurrent()
    positions = dict(resume)
    outbox = connection.outbox
    try:
        failures = transport.attach(chat, connection, resume)
        head = f"retry: {RETRY_MS}\n\n".encode()
        if failures:
            for channel, _ in failures:
                positions.pop(channel, None)
            head += b"data: " + encode_batch((), extra=[resume_failed(c, r) for c, r in failures])
            head += b"\n\n"
        yield head
        while not transport.kicked:
            ready = outbox.wait(heartbeat)
            if transport.kicked:  # a newer transport owns the queue now
                return
            batch = outbox.drain()
            if batch:
                for message in batch:
                    positions[_key(message.channel)] = (message.epoch, message.offset)
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
