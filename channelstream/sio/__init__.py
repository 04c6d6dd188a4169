"""socket.io door: namespace ``/stream`` for channelstream clients and GATD queries.

python-socketio in gevent mode, at ``/<socketio.path>/`` (``/socket.io/``)
on the app's own port and process, over the same hub as every other door.
Named ``sio`` so that it never shadows the ``socketio`` package.

Protocol of ``/stream`` (details in :mod:`.auth`, :mod:`.namespace`, :mod:`.codec`):

- credentials in the ``auth`` object or the handshake query: ``conn_id``
  (a connection made by ``/connect``), or ``username`` + ``expires`` +
  ``sig`` (the seed's signed login), optionally ``resume``; none for a
  GATD-only client. Bad credentials: ``connect_error`` with a message;
- a channelstream client gets ``user_connect`` first, then ``message``
  (a list of the frame objects of ``/ws``: messages, edits, deletes,
  ``resume_failed``), ``presence`` and ``user_state_change`` (lists too),
  and emits ``join``/``leave`` with channel lists (acknowledged, and
  answered by ``join``/``leave`` events, with the channels);
- any client emits ``query`` with key/value pairs (``time``: ms in the past)
  and gets one ``data`` event per matching packet: the window, then live,
  no gap, no duplicate; a new query replaces the previous one;
- bad input gets an ``error`` event ``{"message": ...}``.

Modules: :mod:`.codec` (packets and their websocket frames, encoded once per
message), :mod:`.auth` (credentials), :mod:`.session` (one client: writers
over hub outboxes, backpressure), :mod:`.sessions` (the door's clients and
their counters), :mod:`.websocket` (engine.io on the server's own
websockets), :mod:`.namespace` (event handlers), :mod:`.door` (server
lifecycle, WSGI mount).
"""

from __future__ import annotations

from ..serving.runtime import add_wsgi_wrapper, get_runtime
from .auth import user_sig
from .codec import NAMESPACE
from .door import DOOR_NAME, SocketIODoor, SocketIOMount

__all__ = ["DOOR_NAME", "NAMESPACE", "SocketIODoor", "SocketIOMount", "includeme", "user_sig"]


def includeme(config) -> None:
    """Register the socket.io door, and wrap the app so that it serves socket.io's path."""
    from ..chat import CHAT_KEY

    runtime = get_runtime(config.registry)
    settings = runtime.settings
    door = SocketIODoor(
        settings.socketio,
        secret=settings.secret,
        packet_channel=settings.packets.channel,
        hub=runtime.hub,
        chat=config.registry[CHAT_KEY],
        websocket_paths=runtime.raw_websocket_paths,
    )
    runtime.doors.add(door)
    add_wsgi_wrapper(config.registry, door.mount)
