"""The G3 doors of the hub: ``g3.sources`` feed a channel, ``g3.listen`` serves it.

This package adapts the G3 library (the rest of :mod:`channelstream.g3`, which
imports nothing of channelstream) to the hub; it is what ``wsgi_app`` includes
(:func:`includeme`). Modules:

* :mod:`.message`: a frame's hub message, the frame web clients get of it and
  its wire form between processes (no I/O);
* :mod:`.source`: :class:`~.source.G3Source`, a ``g3.sources`` entry, and
  :class:`~.source.MetadataTypes`, which metadata types are sticky;
* :mod:`.listen`: :class:`~.listen.G3Server`, the ``g3.listen`` server;
* here: :func:`configure_channel`, :func:`build_doors` and :func:`includeme`,
  which add them to the runtime.

Every frame goes into the channelstream channel ``g3.channel`` (default
``g3``; hub channel ``channel:g3``) as one hub message that carries both
forms of it:

* for G3 clients, the frame's bytes exactly as the source sent them;
* for the channel's web clients (``/ws``, ``/listen``, SSE, socket.io), a
  ``message`` frame built when a client first needs it, encoded once::

      {"type": "message", "channel": "g3", "user": "g3:<n>",
       "uuid": "...", "timestamp": "<the hub's receive time, naive UTC ISO 8601>",
       "message": {"frame_type": "Timepoint",
                   "objects": {"n": 5, "t": 1.5, "ok": true, "s": "text"},
                   "opaque": {"ts": "G3Timestream"}},
       "edited": null,
       "catchup": false, "offset": 17, "epoch": "..."}   (added by every transport)

  ``objects`` holds the scalar objects (G3Int, G3Double, G3Bool, G3String)
  as JSON values: a NaN or infinite double is written as ``null`` (the
  project writes standard JSON only), bytes of a string or name that are
  not UTF-8 as U+FFFD; ``opaque`` names the class of every other object
  (vectors, maps, timestreams: G3 clients get them byte for byte).

Timepoint and Scan frames are *data*: droppable, never replayed. Every other
type is *metadata*: a sticky message of its type, so that each new
subscriber, G3 client or web client, first gets the latest frame of each
metadata type, in the order the types were first seen, then live frames
(at most :data:`~channelstream.g3.server.MAX_METADATA_TYPES` types; frames of
further types are sent, not replayed). EndProcessing frames are counted,
not published (spt3g's streaming server never sends them). The channel is
kept in this process (``local``; with ``hub.engine = redis`` too) and never
collected (``persistent``): its metadata stays while the process lives.

**A source** (``g3-source:<n>``, ``n`` from 1 in ini order) is a supervised
loop reading one entry of ``g3.sources``:

* ``tcp://host:port`` connects (``connecting``, then ``connected``); when the
  peer closes, it connects again after 1 s; while nothing listens there (the
  connection is refused: the server is off) it is ``waiting`` (healthy:
  nothing is lost; logged once) and tries again after 1 s doubling to 10 s;
  another failure is retried after 1 s doubling to 30 s (``retrying``,
  ``last_error``);
* ``tcp://*:port`` or ``tcp://*@ADDR:port`` binds when the door starts (a
  port in use stops startup), waits for one sender (``running``), reads it
  (``connected``), then listens again for the next;
* a file is read once, then the door is ``finished`` (healthy) and stays so:
  it is not read again (a restarted process reads it again).

Bytes that are not frames, a frame over ``g3.max_frame_size`` or a stream
that ends inside a frame are counted in ``errors`` (``last_error``), and the
source is opened again (after the backoff); a file ends there. With
``g3.source_timeout``, a TCP source silent that long ends (and is opened
again). Counters: ``frames``, ``bytes``, ``data_frames``, ``metadata_frames``,
``end_processing``, ``errors``, ``connections``, ``retries``, and ``types``
(frames per type; in ``/healthz`` only).

**The server** (``g3-server``, on ``g3.listen``) is the library's
:class:`~channelstream.g3.server.StreamServer` whose clients read hub
outboxes: each G3 client gets one outbox of ``g3.max_queue_size`` frames
(``0``: ``hub.outbox_size``) and ``g3.max_client_bytes`` bytes, subscribed to
the channel's G3 frames only (a ``POST /message`` to the channel is never
queued for it) with ``g3.decimation`` (one frame in N per type, the first
kept; 0 drops the type). A stalled client loses its oldest Timepoint and Scan
frames (``dropped``, per client in ``per_client``), never metadata, and never
slows the sources or the other clients; if metadata alone passes a bound
(``hub.outbox_hard_limit`` frames or ``g3.max_client_bytes``) the client is
disconnected (``overflowed``). Stopping stops accepting, lets every client
receive what is queued for :data:`~.listen.FLUSH_TIMEOUT` at most, then closes every
socket (``cut`` counts those still writing). Counters: ``clients``,
``accepted``, ``sent``, ``bytes``, ``dropped``, ``overflowed``, ``cut``,
``skipped``, and ``per_client`` (peer, frames, bytes, queued, dropped; the
first :data:`~.listen.MAX_CLIENTS_SHOWN`).

Memory: a frame is held once however many clients get it, by the channel's
history (``hub.history_size`` frames for web clients that resume), the sticky
metadata and the outboxes that queue it.
"""

from __future__ import annotations

from typing import Any

from ...chat.routing import hub_channel
from ...hub import ChannelConfig, Hub
from ...serving.doors import Service
from ...serving.runtime import get_runtime
from ...settings import G3Settings, Settings
from .listen import SERVER_NAME, G3Server
from .message import G3_FIELDS, G3_FILTER, G3Message, Origin, type_name, web_frame
from .source import SOURCE_PREFIX, G3Source, MetadataTypes


def configure_channel(hub: Hub, settings: G3Settings) -> str:
    """Keep ``g3.channel`` in this process and never collect it; return its hub name."""
    name = hub_channel(settings.channel)
    default = hub.config.default_channel
    hub.configure_channel(
        name,
        ChannelConfig(
            history_size=default.history_size,
            history_seconds=default.history_seconds,
            persistent=True,
            local=True,
        ),
    )
    return name


def build_doors(settings: Settings, hub: Hub) -> list[Service]:
    """The doors of ``settings.g3`` (the server first, then the sources), built
    without binding anything; none when ``g3.listen`` and ``g3.sources`` are empty."""
    g3 = settings.g3
    if g3.listen is None and not g3.sources:
        return []
    configure_channel(hub, g3)
    doors: list[Service] = []
    if g3.listen is not None:
        doors.append(G3Server(g3, hub=hub))
    metadata = MetadataTypes()
    doors.extend(
        G3Source(index, entry, hub=hub, settings=g3, metadata=metadata)
        for index, entry in enumerate(g3.sources, 1)
    )
    return doors


def includeme(config: Any) -> None:
    """Add the G3 server and a door per ``g3.sources`` entry to the runtime."""
    runtime = get_runtime(config.registry)
    for door in build_doors(runtime.settings, runtime.hub):
        runtime.doors.add(door)


__all__ = [
    "G3_FIELDS",
    "G3_FILTER",
    "G3Message",
    "G3Server",
    "G3Source",
    "MetadataTypes",
    "Origin",
    "SERVER_NAME",
    "SOURCE_PREFIX",
    "build_doors",
    "configure_channel",
    "includeme",
    "type_name",
    "web_frame",
]
