"""The GATD TCP streamer: packets matching a query, as NDJSON over TCP.

Wire protocol (``tcp_streamer.listen``, 22500 by default)::

    client -> server   one JSON object, the query: {"profile_id": "abc", "time": 60000}
    server -> client   the matching packets, one JSON object per line (NDJSON)
    server -> client   or, for a bad query, one line {"error": "..."}, then EOF

Every pair of the query must equal the packet's field of that key (any
key, JSON equality), but for the reserved keys, which are never filter
pairs:

- ``time``: start that many milliseconds in the past: exactly the packets
  received in that window, then live ones, with no gap and no duplicate;
- ``_history_only`` (``true``/``false``, needs ``time``): send the window,
  then end: the server closes the connection (EOF) after the last packet;
- ``_speedup`` (a number > 0, needs ``time``; GATD's replay key): replay the
  window at its original pace divided by it (the hub's receive times), then
  go live (what arrived during the replay first), or end if history-only.

The query may arrive in any number of segments, with or without a newline;
it is refused at the first byte that cannot belong to a JSON object.
Anything the client sends after it is ignored, and its EOF ends the session
(keep the sending side open while receiving). A client that falls behind
loses the oldest packets (counted); one that sends no complete query within
``tcp_streamer.query_timeout`` gets an error line and is closed.

:mod:`.query` reads queries (no I/O); :mod:`.door` is the listener and the
sessions. ``includeme`` registers the door ``tcp-streamer`` on the runtime
when ``tcp_streamer.listen`` is set; it binds when the runtime starts (in
every gunicorn worker, with SO_REUSEPORT).
"""

from __future__ import annotations

from ..serving.runtime import get_runtime
from .door import DOOR_NAME, TcpStreamer
from .query import QueryBuffer, QueryError

__all__ = ["DOOR_NAME", "QueryBuffer", "QueryError", "TcpStreamer", "includeme"]


def includeme(config) -> None:
    """Register the TCP streamer door when ``tcp_streamer.listen`` is set."""

    runtime = get_runtime(config.registry)
    settings = runtime.settings
    if settings.tcp_streamer.listen is None:
        return
    runtime.doors.add(
        TcpStreamer(settings.tcp_streamer, hub=runtime.hub, packet_channel=settings.packets.channel)
    )
