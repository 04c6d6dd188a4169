"""Serving a GATD query to one connection: the window (at once, paced, or alone), then live.

Every door that streams packets (the TCP streamer, socket.io) runs
:func:`serve_query` in the connection's writer greenlet, in place of
``hub.subscribe`` followed by :func:`~channelstream.hub.run_writer`. It
needs a fresh outbox (open, subscribed to nothing on the packet channel,
waited on by nobody else) and the door's ``write(batch)`` callable, the
same one ``run_writer`` takes. What it does depends on the
:class:`~channelstream.packets.Query`:

- plain (no ``_history_only``, no ``_speedup``): subscribe with the query's
  start and filter (the window is replayed, then live, no gap and no
  duplicate) and run the writer: exactly what the doors did before;
- ``_history_only``: the window, then the call returns
  :data:`REASON_HISTORY_END` (the door ends the stream cleanly: TCP sends
  EOF after the last packet);
- ``_speedup``: the window paced: the first packet at once, each next one
  when ``(its receive time - the first's) / speedup`` has passed since the
  replay began (so a slow write does not push the rest back: late packets
  go out together, as fast as the client takes them); then, unless
  history-only, everything that arrived during the replay at once (from
  history) and live from there, no gap and no duplicate.

How the window is taken: the outbox is subscribed with the query's start
and filter and unsubscribed again in the same step (neither yields, so no
packet slips in between); the channel has put the window into the outbox
as references into its history (at most ``packets.history_size`` of them,
never copies), and the subscription's ``since`` (the channel's last offset
at that moment) and epoch mark where the window ends. For the live part the
outbox is subscribed again with ``Start.after(epoch, since)``: the channel
replays what it received meanwhile, then live. If history lost some of that
meanwhile (a replay that took longer than history keeps packets), the
subscription starts at the oldest packet kept instead and ``on_partial``
says so; nothing is sent twice.

Nothing is queued for a paced client while its window plays: packets that
arrive meanwhile stay in the channel's history (bounded by its size and
age), not in the outbox. A paced client that reads slowly only slows its
own replay (its writes block; ``send_timeout`` still applies); it never
holds the hub or another client up, and the pacing sleeps in the client's
own greenlet (in :meth:`~channelstream.hub.Outbox.wait`, so closing the
outbox, on the client's EOF or a shutdown, ends the sleep at once).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from ..hub import Hub, Message, Outbox, Start, run_writer
from . import Query

#: What :func:`serve_query` returns (and closes the outbox with) once a
#: history-only query's window is sent.
REASON_HISTORY_END = "history sent"

#: Longest single wait between two paced packets (a longer gap waits again).
MAX_WAIT = 60.0


def serve_query(
    hub: Hub,
    channel: str,
    outbox: Outbox,
    query: Query,
    write: Callable[[list[Message]], object],
    *,
    batch_limit: int = 0,
    on_partial: Callable[[str], object] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> str | None:
    """Serve ``query`` on ``channel`` into ``write`` until the stream ends (see the module doc).

    Runs in the connection's writer greenlet and blocks it (not the hub)
    until the outbox closes or a history-only window was sent.

    :param outbox: open, not subscribed to ``channel``, waited on by nobody
        else; the door closes it to end the stream (client gone, shutdown).
    :param write: writes a batch (at most ``batch_limit`` packets, 0 = no
        limit); raising ends the call (the outbox is closed with the error,
        as :func:`~channelstream.hub.run_writer` does) and propagates.
    :param on_partial: called with a reason when history no longer held all
        of the window, or lost packets of a paced replay's catch-up.
    :param clock: monotonic seconds (the pacing's clock).
    :returns: the outbox's close reason, or :data:`REASON_HISTORY_END`.
    :raises ValueError: as ``Hub.subscribe`` (closed outbox, already subscribed).
    """
    subscription = hub.subscribe(outbox, channel, start=query.start, filter=query.filter)
    if subscription.resume_error and on_partial is not None:
        on_partial(subscription.resume_error)
    if query.plain:
        return run_writer(outbox, write, batch_limit=batch_limit)
    # The window is queued; nothing else will be until the outbox subscribes again.
    epoch, since = subscription.channel.epoch, subscription.since
    subscription.cancel()
    window = outbox.drain()
    try:
        if query.speedup is None:
            ended = _send(window, outbox, write, batch_limit)
        else:
            ended = _send_paced(window, outbox, write, batch_limit, query.speedup, clock)
    except BaseException as error:
        outbox.close(f"writer stopped: {type(error).__name__}: {error}", discard=True)
        raise
    if ended:
        return outbox.close_reason
    if query.history_only:
        outbox.close(REASON_HISTORY_END)
        return REASON_HISTORY_END
    _go_live(hub, channel, outbox, query, epoch, since, on_partial)
    return run_writer(outbox, write, batch_limit=batch_limit)


def _send(
    window: list[Message],
    outbox: Outbox,
    write: Callable[[list[Message]], object],
    batch_limit: int,
) -> bool:
    """Write ``window`` in batches; True if the outbox closed first."""
    step = batch_limit or len(window) or 1
    for index in range(0, len(window), step):
        if outbox.closed:
            return True
        write(window[index : index + step])
    return outbox.closed


def _send_paced(
    window: list[Message],
    outbox: Outbox,
    write: Callable[[list[Message]], object],
    batch_limit: int,
    speedup: float,
    clock: Callable[[], float],
) -> bool:
    """Write ``window`` at its pace divided by ``speedup``; True if the outbox closed first."""
    if not window:
        return outbox.closed
    began = clock()
    first_ms = window[0].time_ms
    index, count = 0, len(window)
    while index < count:
        if outbox.closed:
            return True
        due = began + (window[index].time_ms - first_ms) / 1000.0 / speedup
        now = clock()
        if now < due:
            # Woken early only by the outbox closing (nothing is subscribed to it).
            outbox.wait(min(due - now, MAX_WAIT))
            continue
        # Everything due by now goes out in one write.
        end = index + 1
        limit = count if not batch_limit else min(count, index + batch_limit)
        while end < limit and began + (window[end].time_ms - first_ms) / 1000.0 / speedup <= now:
            end += 1
        write(window[index:end])
        index = end
    return outbox.closed


def _go_live(
    hub: Hub,
    channel: str,
    outbox: Outbox,
    query: Query,
    epoch: str,
    since: int,
    on_partial: Callable[[str], object] | None,
) -> None:
    """Subscribe ``outbox`` after the window: what came meanwhile, then live.

    The check and the subscription do not yield: nothing is published
    between them.
    """
    start = Start.after(epoch, since)
    target = hub.channel(channel, create=True)
    assert target is not None
    lost = target.resume_error(start)
    if lost is not None:
        start = Start.oldest()  # every packet kept is newer than the window (or of a new epoch)
        if on_partial is not None:
            on_partial(f"packets that arrived during the replay were lost: {lost}")
    hub.subscribe(outbox, channel, start=start, filter=query.filter)


__all__ = ["MAX_WAIT", "REASON_HISTORY_END", "serve_query"]
