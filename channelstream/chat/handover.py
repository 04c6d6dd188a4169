"""Handover: a connection across processes, under a shared directory (``hub.engine = redis``).

A connection lives on one process, its owner (``Directory.owner``). What
reaches it elsewhere goes to the owner:

- a call aimed at it (``/subscribe``, ``/unsubscribe``, ``/disconnect``, a
  ``/connect`` that reuses its id) runs there: :func:`forward` (the
  :class:`~channelstream.chat.state.ChatState` method called here forwards
  when the connection is not its own);
- a transport that attaches to it here takes it over
  (:meth:`ChatState.find_connection
  <channelstream.chat.state.ChatState.find_connection>` ->
  :meth:`Directory.take_over <channelstream.chat.directory.Directory.take_over>`):
  the owner gives it up with :func:`hand_over` (``ChatState.hand_over``, run
  there), and this process makes it again with :func:`adopt`, from the state
  handed over or, the owner dead, from the engine's record; all or nothing
  (:mod:`.adoption`).

With the local directory nothing here is called: no connection has another owner.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..errors import NotFound
from .adoption import subscribe_all
from .connections import Connection
from .routing import resume_key
from .users import User

if TYPE_CHECKING:
    from .directory import Directory
    from .state import ChatState

log = logging.getLogger(__name__)

#: Reason given to the transport of a connection handed over to another process.
REASON_MOVED = "connection moved to another process"


def forward(directory: Directory, op: str, args: dict[str, Any], conn_id: str) -> Any:
    """Run ``op`` on the process that owns ``conn_id``; 404 if none does.

    ``args``: the call's keyword arguments as JSON (:func:`.directory.to_wire`).
    Returns the owner's answer; raises what ``Directory.forward`` raises.
    """
    owner = directory.owner(conn_id)
    if owner is None:
        raise NotFound(f"unknown connection {conn_id}", field="conn_id")
    return directory.forward(owner, op, args, conn_id)


def hand_over(connection: Connection, to: str) -> dict[str, Any]:
    """Give ``connection`` to process ``to``: its state, as JSON.

    The connection closes here without leaving its channels (no parted
    frame, its shared presence stays: ``to`` takes it over, the same
    connection id) and its transport is kicked with :data:`REASON_MOVED`.
    The state: ``conn_id``, ``username``, ``channels``, ``granted``, ``told``
    (see :class:`~channelstream.chat.transport.Positions`) and ``positions``
    (``resume`` keys -> where the outbox's reader stood: what was queued
    here is delivered there). Never yields.
    """
    state = {
        "conn_id": connection.id,
        "username": connection.user.name,
        "channels": sorted(connection.channels),
        "granted": sorted(connection.granted),
        "told": {key: list(pos) for key, pos in connection.told.items()},
        "positions": {
            resume_key(name): list(pos)
            for name, pos in connection.outbox.positions().items()
        },
    }
    connection.moved_to = to
    # The outbox's close callback (ChatState._forget_connection) sees moved_to.
    connection.outbox.close(REASON_MOVED, discard=True)
    return state


def adopt(chat: ChatState, state: Mapping[str, Any]) -> Connection:
    """Make in ``chat`` the connection :func:`hand_over` (or the engine's record) described.

    All or nothing (:mod:`.adoption`): every stream is subscribed first,
    each where the previous owner's reader stood (live when not known);
    if one cannot be (``EngineUnavailable``), nothing was written and the
    error propagates, the record keeping the connection for the next
    attach. Then its channels are joined again with the same connection
    id, which the shared presence still lists (no joined frame), and the
    directory records it with all of them.

    The adopt callback ``ChatState.find_connection`` gives
    ``Directory.take_over``; it does the chat's own steps of a join
    (``_channel``, ``_enter``) and sets its close hook (``_forget_connection``).
    """
    now = chat.now()
    name = str(state["username"])
    user = chat.users.get(name)
    if user is None:
        user = chat.users[name] = User(name, now)
        record = chat.directory.states([name]).get(name)
        if record is not None:
            user.state, user.public_keys = record
    user.last_active = now
    conn_id = str(state["conn_id"])
    channels = sorted(set(state.get("channels") or ()))
    outbox = subscribe_all(
        chat.hub, conn_id, name, channels, state.get("positions") or {},
        lambda channel: chat._channel(channel, None, now),
    )
    connection = Connection(conn_id, user, outbox, now)
    connection.granted.update(state.get("granted") or ())
    connection.told.update(
        {key: (str(pos[0]), int(pos[1])) for key, pos in (state.get("told") or {}).items()}
    )
    connection.channels.update(channels)  # before any note: the record lists them all
    chat.connections[conn_id] = connection
    user.connections[conn_id] = connection
    chat.directory.opened(connection)
    for channel in channels:
        chat._enter(connection, chat._channel(channel, None, now), now)
    # Last, so that an outbox closed meanwhile (past its hard limit at the
    # replay, the hub stopping) closes the connection made in full, as ever.
    outbox.on_close(lambda _outbox: chat._forget_connection(connection))
    log.info("connection %s of %r taken over from another process", conn_id, name)
    return connection


__all__ = ["REASON_MOVED", "adopt", "forward", "hand_over"]
