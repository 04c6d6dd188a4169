"""The ``/stream`` namespace: what clients send, turned into chat and hub calls.

Client -> server events (each may take a socket.io acknowledgement callback):

- ``join``, ``leave`` with a list of channel names: the client's connection
  joins or leaves them; the ack and a ``join``/``leave`` event carry the
  channels joined or left (sorted);
- ``query`` with an object of key/value pairs (``time``: start that many ms
  in the past): replaces the client's GATD query; the ack is
  ``{"ok": true}``.

Bad input never ends the session: it gets an ``error`` event
``{"message": "..."}`` (and the ack ``{"error": "..."}``), and changes
nothing. Handlers run in the greenlet that read the packet and never block.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import socketio

from ..errors import ClientError, NotFound
from ..hub.bus import EngineUnavailable
from ..packets import TIME_KEY, BadQuery, parse_query
from .auth import AuthError, credentials
from .session import Session

if TYPE_CHECKING:
    from ..chat.connections import Connection
    from .sessions import Sessions

log = logging.getLogger(__name__)

#: Most channels one ``join``/``leave`` may name (and a connection may be in
#: through socket.io joins), and their longest name.
MAX_CHANNELS = 1000
MAX_CHANNEL_NAME = 256


class BadEvent(ValueError):
    """An event to answer with an ``error`` event; ``str()`` is the message."""


def channel_list(args: tuple[Any, ...], event: str) -> list[str]:
    """The channel names of a ``join``/``leave`` event, or :class:`BadEvent`."""
    if len(args) != 1 or not isinstance(args[0], list) or not args[0]:
        raise BadEvent(f"{event}: expected a non-empty list of channel names")
    names = args[0]
    if len(names) > MAX_CHANNELS:
        raise BadEvent(f"{event}: at most {MAX_CHANNELS} channels at once")
    for name in names:
        if not isinstance(name, str) or not 0 < len(name) <= MAX_CHANNEL_NAME:
            raise BadEvent(
                f"{event}: channel names are strings of 1 to {MAX_CHANNEL_NAME} characters"
            )
    return sorted(set(names))


class StreamNamespace(socketio.Namespace):
    """Handlers of ``/stream`` (see the module doc).

    :param sessions: the door's sessions (added on connect, removed on disconnect).
    :param secret: the ``secret`` that signs the seed's ``username`` logins.
    """

    def __init__(self, sessions: Sessions, secret: str) -> None:
        super().__init__(sessions.namespace)
        self.sessions = sessions
        self.secret = secret

    # -- connect / disconnect -------------------------------------------------------------

    def on_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        sessions = self.sessions
        if not sessions.accepting:  # stopping: in-flight requests still arrive
            raise socketio.exceptions.ConnectionRefusedError("server shutting down")
        try:
            creds = credentials(auth, environ.get("QUERY_STRING", ""), self.secret)
            connection = None if creds.anonymous else self._connection(creds)
        except AuthError as err:
            sessions.counters.refused += 1
            raise socketio.exceptions.ConnectionRefusedError(str(err)) from None
        eio_sid = self.server.manager.eio_sid_from_sid(sid, sessions.namespace)
        session = Session(sessions, sid, self.server.eio.sockets.get(eio_sid))
        sessions.add(session)
        if connection is not None:
            session.attach_chat(connection, creds.resume, resume_aware=creds.resume_aware)

    def _connection(self, creds: Any) -> Connection:
        chat = self.sessions.chat
        if creds.conn_id is not None:
            try:  # (a connection of another process is taken over: hub.engine = redis)
                connection = chat.find_connection(creds.conn_id)
            except NotFound:
                raise AuthError("unknown connection") from None
            except (ClientError, EngineUnavailable) as err:  # 409, 503, 504: said as they are
                raise AuthError(str(err)) from None
            if creds.username is not None and connection.user.name != creds.username:
                raise AuthError("the connection belongs to another user")
            return connection
        made = chat.connect(creds.username)
        return chat.connections[made["conn_id"]]

    def on_disconnect(self, sid: str, reason: str | None = None) -> None:
        session = self.sessions.remove(sid)
        if session is not None:
            session.close(f"socket.io client disconnected ({reason or 'no reason'})")

    # -- channelstream -------------------------------------------------------------------------

    def on_join(self, sid: str, *args: Any) -> Any:
        return self._membership(sid, "join", args)

    def on_leave(self, sid: str, *args: Any) -> Any:
        return self._membership(sid, "leave", args)

    def _membership(self, sid: str, event: str, args: tuple[Any, ...]) -> Any:
        session = self.sessions.get(sid)
        if session is None:
            return None
        try:
            if session.connection is None or session.connection.closed:
                raise BadEvent(
                    f"{event}: needs a channelstream connection "
                    "(connect with auth conn_id, or username + expires + sig)"
                )
            names = channel_list(args, event)
            chat = self.sessions.chat
            joined = session.connection.channels
            if event == "join" and len(joined.union(names)) > MAX_CHANNELS:
                raise BadEvent(f"join: a connection may be in at most {MAX_CHANNELS} channels")
            if event == "join":
                chat.joins.join(session.connection, names)
            else:
                chat.unsubscribe(session.connection.id, names, by_backend=False)
        except (BadEvent, ClientError) as err:
            return self._refuse(session, str(getattr(err, "message", err)))
        session.emit(event, names)
        return names

    # -- GATD ------------------------------------------------------------------------------

    def on_query(self, sid: str, *args: Any) -> Any:
        session = self.sessions.get(sid)
        if session is None:
            return None
        try:
            if len(args) != 1:
                raise BadEvent('query: expected one object such as {"profile_id": "..."}')
            query = parse_query(args[0])
        except (BadEvent, BadQuery) as err:
            self.sessions.counters.bad_queries += 1
            return self._refuse(session, str(err))
        session.query(query)
        self.sessions.counters.queries += 1
        log.debug("socket.io %s: query %s (time %s)", sid, query.filter, args[0].get(TIME_KEY))
        return {"ok": True}

    def _refuse(self, session: Session, message: str) -> dict[str, str]:
        session.emit("error", {"message": message})
        return {"error": message}


__all__ = ["BadEvent", "StreamNamespace", "channel_list"]
