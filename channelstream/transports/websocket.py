"""``GET /ws?conn_id=…[&resume=…]``: a connection's frames over a websocket.

The handler greenlet reads what the client sends (anything refreshes the
connection; the content is ignored, as channelstream 0.7.1 did); a writer
greenlet drains the connection's outbox and sends each batch as one text
frame holding a JSON array, ``[]`` as a heartbeat when idle.

gevent-websocket parses the client's frames; frames to the client are built
here because its ``send`` turns bytes into "b'...'" and its ``close`` drops
the status code.
"""

from __future__ import annotations

import logging
import socket
import struct
from urllib.parse import parse_qs

import gevent
from geventwebsocket.websocket import Header, WebSocket
from pyramid.request import Request
from pyramid.response import Response

from ..chat import ChatState
from ..chat.connections import Connection
from ..chat.frames import encode_batch, resume_failed
from ..errors import BadRequest
from .base import Kicked, Transport, parse_resume

log = logging.getLogger(__name__)

OPCODE_TEXT = 0x1
OPCODE_CLOSE = 0x8

#: Close codes: 4000 kicked (replaced, collected, shutdown), 4404 unknown connection.
CLOSE_KICKED = 4000
CLOSE_UNKNOWN = 4404
#: Seconds a close frame may take to go out to a client that does not read.
CLOSE_TIMEOUT = 2.0


class WebSocketTransport(Transport):
    kind = "websocket"

    def __init__(self, ws: WebSocket) -> None:
        super().__init__()
        self.ws = ws
        self._closed = False

    def send(self, payload: bytes, opcode: int = OPCODE_TEXT) -> None:
        if self._closed:
            raise ConnectionError("websocket closed")
        header = Header.encode_header(True, opcode, b"", len(payload), 0)
        self.ws.handler.socket.sendall(header + payload)

    def close(self, code: int, reason: str) -> None:
        """Send a close frame with ``code`` and stop reading; idempotent.

        May block up to ``CLOSE_TIMEOUT`` on a client that does not read.
        """
        if self._closed:
            return
        sock = self.ws.handler.socket
        try:
            sock.settimeout(CLOSE_TIMEOUT)
            self.send(struct.pack("!H", code) + reason.encode()[:120], OPCODE_CLOSE)
        except OSError:
            pass
        self._closed = True
        try:
            sock.shutdown(socket.SHUT_RDWR)  # the reader's receive() returns
        except OSError:
            pass

    def kick(self, reason: str) -> None:
        """Never blocks: the writer closes the socket when the kick reaches it."""
        writer = self.greenlet
        super().kick(reason)
        if writer is None or writer.dead:
            gevent.spawn(self.close, CLOSE_KICKED, reason)

    def write_loop(self, connection: Connection, extra: list[bytes], heartbeat: float) -> None:
        outbox = connection.outbox
        try:
            if extra:
                self.send(encode_batch((), extra=extra))
            while not self.kicked:
                ready = outbox.wait(heartbeat)
                if self.kicked:  # a wake-up may beat the Kicked exception: drain nothing
                    self.close(CLOSE_KICKED, self.kicked)
                    break
                batch = outbox.drain()
                if batch:
                    self.send(encode_batch(batch, outbox.last_replayed))
                elif outbox.closed:
                    self.close(CLOSE_KICKED, outbox.close_reason or "connection closed")
                    return
                elif not ready:
                    self.send(b"[]")
        except Kicked as kicked:
            self.close(CLOSE_KICKED, str(kicked))
        except (OSError, ConnectionError):
            pass
        finally:
            self.ended.set()


def websocket_view(request: Request) -> Response:
    ws: WebSocket | None = request.environ.get("wsgi.websocket")
    if ws is None:
        raise BadRequest("this endpoint needs a websocket upgrade", field="Upgrade")
    chat: ChatState = request.registry["channelstream.chat"]
    settings = request.registry["channelstream.runtime"].settings
    transport = WebSocketTransport(ws)
    # Not request.GET: webob caches it in the environ, and that cycle kept
    # every closed websocket's socket and buffers alive until a full GC pass.
    params = parse_qs(request.environ.get("QUERY_STRING", ""))
    conn_id = params.get("conn_id", [""])[0]
    try:
        resume = parse_resume(params.get("resume", [None])[0])
    except BadRequest as err:
        transport.close(1008, err.message)
        return Response()
    connection = chat.connections.get(conn_id)
    if connection is None:
        transport.close(CLOSE_UNKNOWN, "unknown connection")
        return Response()
    previous = connection.transport
    failures = chat.attach(connection, transport, resume)
    transport.wait_replaced(previous)
    extra = [resume_failed(channel, reason) for channel, reason in failures]
    writer = gevent.spawn(transport.write_loop, connection, extra, settings.client_heartbeat)
    transport.greenlet = writer
    try:
        while not transport.kicked:
            try:
                message = ws.receive()
            except Exception:  # a broken or closed socket: the client is gone
                break
            if message is None:
                break
    finally:
        transport.kick("websocket closed")
        writer.join(timeout=5)
        chat.detach(connection, transport)
        transport.close(1000, "")
    return Response()
