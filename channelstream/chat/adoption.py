"""Adoption: the subscriptions of a connection taken over from another process, all or nothing.

A transport that attaches here to a connection of another process takes it
over (:meth:`ChatState.find_connection
<channelstream.chat.state.ChatState.find_connection>` ->
:meth:`Directory.take_over <channelstream.chat.directory.Directory.take_over>`
-> :func:`.handover.adopt`), from the state its owner handed over or, the
owner dead, from the engine's record. :func:`~.handover.adopt` makes it in two steps:

1. :func:`subscribe_all`: a new outbox subscribed to everything the
   connection needs (the user's channel, then each channel's hub channel),
   each stream from where the previous owner's reader stood. This may wait
   on the engine (:meth:`RedisBus.watch
   <channelstream.engines.redis.RedisBus.watch>` follows a channel new to
   this process) and raise :class:`~channelstream.hub.bus.EngineUnavailable`:
   the engine refuses new subscriptions while it is down.
2. Only once every subscription is made, the ChatState's bookkeeping: its
   own maps, the channels' members and the directory's notes (``opened``,
   ``joined``), all with the full channel list.

A failure in step 1 leaves nothing behind: the subscriptions made are
cancelled and the outbox is closed with no callback (nobody parts, the
shared presence and the connection's record stay as they were: every
channel listed, owned by this process after a claim), and the error reaches
the transport (503 naming the engine). A later attach, on this process or any
other, rebuilds the whole connection from the record.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..hub import Hub, Outbox, Start
from .frames import PM_RESUME_KEY
from .routing import hub_channel, user_channel

log = logging.getLogger(__name__)

#: Close reason of the outbox of an adoption that failed (nobody drains it).
REASON_ABANDONED = "taking the connection over failed"


def start_of(positions: Mapping[str, Sequence[Any]], key: str) -> Start | None:
    """Where the stream ``key`` (a ``resume`` key) goes on: after the
    ``[epoch, offset]`` the previous owner's reader stood at; live (None) if unknown."""
    position = positions.get(key)
    return None if position is None else Start.after(str(position[0]), int(position[1]))


def subscribe_all(
    hub: Hub,
    conn_id: str,
    user: str,
    channels: Sequence[str],
    positions: Mapping[str, Sequence[Any]],
    prepare: Callable[[str], object],
) -> Outbox:
    """An outbox for connection ``conn_id`` of ``user``, subscribed to the
    user's channel and to the hub channel of each of ``channels`` in order.

    :param positions: ``resume`` keys -> ``[epoch, offset]`` where the previous
        owner's reader stood (:func:`start_of`); a stream not named starts live.
    :param prepare: called with a channel's name before its subscription
        (``ChatState._channel``: the channel made here with the settings it
        has, its hub channel's history configured); it must not raise.

    A stream whose position history no longer reaches goes on live: its
    ``resume_error`` is logged and cleared. May yield (the engine follows a
    new channel). Whatever a subscription raises is raised again, after the
    subscriptions made were cancelled and the outbox closed with
    :data:`REASON_ABANDONED` (it has no close callback yet: nothing else
    happens). Called by :func:`.handover.adopt` before it writes anything.
    """
    outbox = hub.open_outbox(name=conn_id)
    try:
        hub.subscribe(
            outbox, user_channel(user), start=start_of(positions, PM_RESUME_KEY), principal=user
        )
        for name in channels:
            prepare(name)
            hub.subscribe(
                outbox, hub_channel(name), start=start_of(positions, name), principal=user
            )
    except BaseException as err:  # (a kill too: the transport's greenlet ended)
        outbox.close(REASON_ABANDONED)  # cancels each subscription made
        log.warning(
            "connection %s of %r: taking it over failed (%s); its record keeps it for the"
            " next attach", conn_id, user, err or type(err).__name__,
        )
        raise
    for subscription in outbox.subscriptions.values():
        if subscription.resume_error is not None:  # e.g. history no longer reaches back
            log.info(
                "connection %s taken over: %s goes on live (%s)",
                conn_id, subscription.channel.name, subscription.resume_error,
            )
            subscription.resume_error = None
    return outbox


__all__ = ["REASON_ABANDONED", "start_of", "subscribe_all"]
