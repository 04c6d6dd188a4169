"""``GET /listen?conn_id=…[&callback=…][&resume=…]``: long-poll.

Each request attaches to the connection, waits up to ``listen_timeout`` for
a first frame, answers everything queued as one JSON array (or JSONP when
``callback`` names a function) and detaches; what arrives between polls
waits in the connection's outbox. A newer poll (or websocket) of the same
connection ends an older one with ``[]``. A poll that passes ``resume``
(even ``{}``) is resume-aware: a stream it does not name resumes from where
it stood when the last poll's answer was made (see
:class:`~channelstream.chat.transport.Positions`), so an answer lost on the way
is sent again.
"""

from __future__ import annotations

import re

from gevent import getcurrent
from pyramid.request import Request
from pyramid.response import Response

from ..chat import CHAT_KEY, ChatState
from ..chat.frames import encode_batch, resume_failed
from ..chat.resume import parse_resume
from ..chat.transport import Kicked, Positions, Transport
from ..errors import BadRequest
from ..serving.runtime import get_runtime

CALLBACK = re.compile(r"^[A-Za-z_$][\w$]*(\.[A-Za-z_$][\w$]*)*$")


class PollTransport(Transport):
    kind = "long-poll"


def listen_view(request: Request) -> Response:
    chat: ChatState = request.registry[CHAT_KEY]
    settings = get_runtime(request.registry).settings
    callback = request.GET.get("callback")
    if callback is not None and (len(callback) > 128 or not CALLBACK.match(callback)):
        raise BadRequest("callback: not a JavaScript function name", field="callback")
    resume = parse_resume(request.GET.get("resume"))
    resume_aware = "resume" in request.GET
    connection = chat.find_connection(request.GET.get("conn_id", ""))
    transport = PollTransport()
    transport.greenlet = getcurrent()
    outbox = connection.outbox
    failures: list[tuple[str, str]] = []  # a poll replaced while attaching answers []
    batch = []
    replayed = 0
    try:
        failures = transport.attach(chat, connection, resume, resume_aware=resume_aware)
        if not failures:
            outbox.wait(settings.listen_timeout)
        if not transport.kicked:  # a newer transport owns the queue now
            if resume_aware:  # the connection remembers where each stream stood
                Positions(connection).news()
            batch = outbox.drain()
            replayed = outbox.last_replayed
    except Kicked:
        pass
    finally:
        transport.ended.set()
        chat.detach(connection, transport)
    body = encode_batch(batch, replayed, extra=[resume_failed(c, r) for c, r in failures])
    if callback:
        response = Response(body=callback.encode() + b"(" + body + b");")
        response.content_type = "application/javascript"
    else:
        response = Response(body=body, content_type="application/json")
    response.cache_control = "no-store"
    return response
