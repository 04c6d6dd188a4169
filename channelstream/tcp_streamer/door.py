"""The TCP streamer door: an accept loop and one session per client.

A session (one greenlet from accept to close):

1. reads the query (:class:`~.query.QueryBuffer`) within
   ``query_timeout``; a bad or late query gets one line
   ``{"error": "..."}\\n``, then the connection is closed (after a short
   lingering read, so that the line is not lost to a reset);
2. opens a bounded hub outbox and serves the query into it
   (:func:`channelstream.packets.replay.serve_query`): subscribed with the
   query's filter and start (``time``: exactly the window, then live); or,
   for ``_history_only``, the window, then EOF (``shutdown(SHUT_WR)``, then
   a short wait for the client's own close, so that nothing is reset); or,
   for ``_speedup``, the window paced by its original gaps divided by the
   speed-up, sleeping in this session's greenlet, then live or EOF;
3. writes: each batch (at most :data:`BATCH_LIMIT` packets) goes out in
   one write of the packets' NDJSON lines, each encoded once and shared by
   every client; a write that takes longer than ``send_timeout`` closes the
   client (counted as a slow disconnect). The timeout is the socket's own
   (no timer per write), and a write is one ``send`` when the socket takes
   it all, as it does unless the client lags;
4. meanwhile a small reader greenlet reads and discards whatever the client
   sends after its query; its EOF (or error) closes the outbox, which ends
   the session (a paced replay's sleep included).

A ``time`` query that reaches further back than the packet channel's
history still gets what history holds, then live packets. The NDJSON stream
has no room to say so without breaking clients that parse every line as a
packet, so the door says it instead: ``partial_replays`` in ``/healthz``
counts such queries, and the log tells (at most one line per
:data:`LOG_EVERY` seconds, with the number of others).

Packets are droppable: a client that falls behind by ``outbox_size``
packets loses the oldest ones (counted in ``dropped``), and a stalled
client never holds up the others, since publishing never blocks.

``stop`` closes the listener, lets each streaming client flush what is
queued for at most :data:`FLUSH_TIMEOUT` (or the stop timeout if shorter),
closes every connection, and kills what is left.
"""

from __future__ import annotations

import errno
import json
import logging
import socket as _stdlib_socket
from typing import Any

import gevent
from gevent import socket
from gevent.pool import Group

from ..hub import REASON_SHUTDOWN, Hub, Message, Outbox
from ..packets import Query, ndjson
from ..packets.replay import REASON_HISTORY_END, serve_query
from ..serving.doors import LogSampler, LoopDoor, listen_socket
from ..settings import TcpStreamerSettings
from .query import QueryBuffer, QueryError

log = logging.getLogger(__name__)

#: The door's name in the registry and in ``/healthz``.
DOOR_NAME = "tcp-streamer"
#: Most packets written in one write.
BATCH_LIMIT = 512
#: Bytes read at a time (query, then discarded input).
READ_CHUNK = 65536
#: Seconds an error line may take to go out, and the lingering read after it.
REFUSE_TIMEOUT = 5.0
LINGER_TIMEOUT = 1.0
#: Longest flush of queued packets to each client when the door stops.
FLUSH_TIMEOUT = 2.0
#: accept() errors that mean "out of resources for now": back off, go on.
_ACCEPT_BACKOFF_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
#: accept() errors about one connection only.
_ACCEPT_SKIP_ERRNOS = frozenset({errno.ECONNABORTED, errno.EPROTO, errno.EAGAIN, errno.EINTR})
_ACCEPT_BACKOFF = 0.1
#: Seconds between two log lines about time queries history could not fully serve.
LOG_EVERY = 10.0


class SendStalled(Exception):
    """A write to a client took longer than ``send_timeout``."""


class _Client:
    """One connected client; ``outbox`` is set once its query was accepted."""

    __slots__ = ("sock", "peer", "greenlet", "outbox")

    def __init__(self, sock: socket.socket, peer: str) -> None:
        self.sock = sock
        self.peer = peer
        self.greenlet = gevent.getcurrent()
        self.outbox: Outbox | None = None


class TcpStreamer(LoopDoor):
    """The GATD TCP streamer (see the module doc)."""

    def __init__(self, settings: TcpStreamerSettings, *, hub: Hub, packet_channel: str) -> None:
        if settings.listen is None:
            raise ValueError("tcp_streamer.listen is empty: the TCP streamer is off")
        super().__init__(DOOR_NAME)
        self.hub = hub
        self.settings = settings
        self.host, self.port = settings.listen
        self.packet_channel = packet_channel
        self._listener: socket.socket | None = None
        self._sessions = Group()
        self._clients: set[_Client] = set()
        self._stop_timeout = FLUSH_TIMEOUT
        #: Counters shown in ``/healthz``.
        self.connections = 0
        self.packets_sent = 0
        self.bad_queries = 0
        self.query_timeouts = 0
        self.slow_disconnects = 0
        self.partial_replays = 0
        self.history_only_queries = 0
        self.paced_replays = 0
        self._dropped_closed = 0
        self._partial_log = LogSampler(LOG_EVERY)

    # -- LoopDoor hooks ------------------------------------------------------------------

    def open(self) -> None:
        """Bind (SO_REUSEPORT: every gunicorn worker opens the same port)."""
        self._listener = listen_socket(self.host, self.port, reuse_port=True)

    @property
    def address(self) -> tuple[str, int]:
        """The address listened on (the real port when ``port`` was 0)."""
        if self._listener is None:
            return self.host, self.port
        host, port = self._listener.getsockname()[:2]
        return host, port

    def run(self) -> None:
        listener = self._listener
        assert listener is not None, "run() before open()"
        while not self.stopping:
            try:
                sock, address = listener.accept()
            except OSError as err:
                if self.stopping:
                    return
                if err.errno in _ACCEPT_SKIP_ERRNOS:
                    continue
                if err.errno in _ACCEPT_BACKOFF_ERRNOS:
                    log.warning("tcp-streamer cannot accept: %s; retrying", err)
                    self.wait(_ACCEPT_BACKOFF)
                    continue
                raise
            self.connections += 1
            self._sessions.spawn(self._session, sock, address)

    def stop(self, timeout: float) -> None:
        self._stop_timeout = min(timeout, FLUSH_TIMEOUT)
        super().stop(timeout)

    def interrupt(self) -> None:
        """Stop accepting; streaming clients flush, the others are ended."""
        if self._listener is not None:
            self._listener.close()
        for client in list(self._clients):
            if client.outbox is not None:
                client.outbox.close(REASON_SHUTDOWN)
            else:
                client.greenlet.kill(block=False)

    def close(self) -> None:
        """Wait for the sessions to flush (bounded), then end the rest."""
        if self._listener is not None:
            self._listener.close()
        self._sessions.join(timeout=self._stop_timeout)
        self._sessions.kill(block=True, timeout=1.0)
        for client in list(self._clients):  # sessions killed before their finally
            _close(client.sock)
        self._clients.clear()

    def extra_status(self) -> dict[str, Any]:
        host, port = self.address
        streaming = [c.outbox for c in self._clients if c.outbox is not None]
        return {
            "listen": f"[{host}]:{port}" if ":" in host else f"{host}:{port}",
            "clients": len(self._clients),
            "streaming": len(streaming),
            "connections": self.connections,
            "packets_sent": self.packets_sent,
            "dropped": self._dropped_closed + sum(o.dropped for o in streaming),
            "bad_queries": self.bad_queries,
            "query_timeouts": self.query_timeouts,
            "slow_disconnects": self.slow_disconnects,
            "partial_replays": self.partial_replays,
            "history_only_queries": self.history_only_queries,
            "paced_replays": self.paced_replays,
        }

    # -- one client -------------------------------------------------------------------------

    def _session(self, sock: socket.socket, address: Any) -> None:
        if self.stopping:  # accepted just before the listener closed
            _close(sock)
            return
        client = _Client(sock, _peer(address))
        self._clients.add(client)
        try:
            _tune(sock)
            query = self._read_query(client)
            if query is not None and not self.stopping:
                self._stream(client, query)
        except OSError as err:  # the peer went away: nothing to tell anyone
            log.debug("tcp-streamer %s: %s", client.peer, err)
        finally:
            self._clients.discard(client)
            _close(sock)

    def _read_query(self, client: _Client) -> Query | None:
        """The client's query, or None once it was refused (error line sent)."""
        sock = client.sock
        buffer = QueryBuffer(self.settings.max_query_bytes)
        deadline = gevent.Timeout(self.settings.query_timeout)
        deadline.start()
        try:
            while True:
                data = sock.recv(min(READ_CHUNK, buffer.room))
                if not data:
                    if buffer.empty and not len(buffer):
                        return None  # connected and left (a port probe): nothing to say
                    raise QueryError(
                        buffer.incomplete("the connection ended before a complete query")
                    )
                query = buffer.feed(data)
                if query is not None:
                    return query
        except QueryError as err:
            deadline.close()
            self.bad_queries += 1
            self._refuse(client, str(err))
            return None
        except gevent.Timeout as timeout:
            if timeout is not deadline:
                raise
            self.query_timeouts += 1
            self._refuse(
                client,
                buffer.incomplete(f"no complete query within {self.settings.query_timeout:g} s"),
            )
            return None
        finally:
            deadline.close()

    def _refuse(self, client: _Client, message: str) -> None:
        """Send one error line, half-close, read what is left briefly (no reset), close."""
        log.debug("tcp-streamer %s: refused: %s", client.peer, message)
        line = json.dumps({"error": message}, ensure_ascii=False).encode() + b"\n"
        sock = client.sock
        try:
            with gevent.Timeout(REFUSE_TIMEOUT, False):
                sock.sendall(line)
                sock.shutdown(_stdlib_socket.SHUT_WR)
            with gevent.Timeout(LINGER_TIMEOUT, False):
                while sock.recv(READ_CHUNK):
                    pass
        except OSError:
            pass

    def _stream(self, client: _Client, query: Query) -> None:
        outbox = self.hub.open_outbox(
            max_queue=self.settings.outbox_size or None, name=f"tcp-streamer {client.peer}"
        )
        client.outbox = outbox
        if query.history_only:
            self.history_only_queries += 1
        if query.speedup is not None:
            self.paced_replays += 1
        sock = client.sock
        # Bounds every write (and makes the reader's recv wake up now and then).
        sock.settimeout(self.settings.send_timeout or None)
        reader = gevent.spawn(_read_until_eof, sock, outbox)
        try:
            reason = serve_query(
                self.hub,
                self.packet_channel,
                outbox,
                query,
                lambda batch: self._write(sock, batch),
                batch_limit=BATCH_LIMIT,
                on_partial=lambda why: self._partial_replay(client, why),
            )
            log.debug("tcp-streamer %s: ended: %s", client.peer, reason)
            if reason in (REASON_SHUTDOWN, REASON_HISTORY_END):
                sock.shutdown(_stdlib_socket.SHUT_WR)
            if reason == REASON_HISTORY_END:
                # A clean end: EOF after the last packet; the client closes, the reader sees it.
                reader.join(timeout=LINGER_TIMEOUT)
        except SendStalled:
            self.slow_disconnects += 1
            log.info(
                "tcp-streamer %s: closed, a write took over %gs (tcp_streamer.send_timeout)",
                client.peer,
                self.settings.send_timeout,
            )
        finally:
            outbox.close("client gone", discard=True)
            reader.kill(block=True, timeout=1.0)
            self._dropped_closed += outbox.dropped

    def _partial_replay(self, client: _Client, reason: str) -> None:
        """Count a time query history could not fully serve; log it, rate-limited."""
        self.partial_replays += 1
        if not self._partial_log.due():
            return
        others = self._partial_log.take_suppressed()
        log.info(
            "tcp-streamer %s: its time query replays only what history holds (%s)%s",
            client.peer,
            reason,
            f"; {others} more such queries since the last report" if others else "",
        )

    def _write(self, sock: socket.socket, batch: list[Message]) -> None:
        """One batch in one write; the socket's timeout (``send_timeout``) bounds it."""
        # A packet's line as received (PacketMessage.line), else its cached encoding.
        data = b"".join([getattr(m, "line", None) or m.encoded(ndjson) for m in batch])
        try:
            # gevent's sendall asks the kernel for SO_SNDBUF on every call:
            # one send does when the socket takes everything, as it mostly does.
            sent = sock.send(data)
            if sent < len(data):
                sock.sendall(memoryview(data)[sent:])
        except TimeoutError:
            raise SendStalled(f"a write took over {self.settings.send_timeout:g} s") from None
        self.packets_sent += len(batch)


def _read_until_eof(sock: socket.socket, outbox: Outbox) -> None:
    """Discard what the client sends after its query; its EOF ends the session."""
    try:
        while True:
            try:
                if not sock.recv(READ_CHUNK):
                    break
            except TimeoutError:  # the socket's send timeout: nothing wrong here
                continue
        reason = "client closed the connection"
    except OSError as err:
        reason = f"client connection failed: {err}"
    outbox.close(reason, discard=True)


def _tune(sock: socket.socket) -> None:
    sock.setsockopt(_stdlib_socket.IPPROTO_TCP, _stdlib_socket.TCP_NODELAY, 1)
    sock.setsockopt(_stdlib_socket.SOL_SOCKET, _stdlib_socket.SO_KEEPALIVE, 1)


def _close(sock: socket.socket) -> None:
    try:
        sock.close()
    except OSError:
        pass


def _peer(address: Any) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        host, port = address[:2]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return str(address)


__all__ = ["DOOR_NAME", "SendStalled", "TcpStreamer"]
