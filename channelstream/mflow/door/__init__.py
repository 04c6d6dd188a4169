"""The ZMQ doors of the hub: ``zmq.sources`` feed channels, ``zmq.outputs`` serve them.

This package adapts the mflow library (the rest of :mod:`channelstream.mflow`,
which imports nothing of channelstream) to the hub; it is what ``wsgi_app``
includes (:func:`includeme`). Modules:

* :mod:`.message`: a source's hub message, the frame web clients get of it and
  the parts an output sends (no I/O);
* :mod:`.endpoint`: the process's shared ZMQ context, one monitored socket, and
  :class:`~.endpoint.ZmqDoor`, the lifecycle and states sources and outputs share;
* :mod:`.source`: :class:`~.source.ZmqSource`, a ``zmq.sources`` entry;
* :mod:`.output`: :class:`~.output.ZmqOutput`, a ``zmq.outputs`` entry;
* here: :func:`build_doors` and :func:`includeme`, which add them to the runtime.

Each entry of ``zmq.sources`` and ``zmq.outputs`` (:mod:`channelstream.settings.endpoints`
lists their keys) is a door of its own, ``zmq-source:<name>`` or
``zmq-output:<name>`` in ``/healthz``: a supervised loop with one ZMQ socket of
the process's one ``zmq.green`` context, made when the first ZMQ door starts
(after gunicorn's fork) and terminated when the last stops. Every socket
waits in its own greenlet only: a door never blocks the hub or another door.

**A source** (PULL or SUB) receives whole mflow messages (``Stream.receive``,
so the htype's layout is checked as :mod:`channelstream.mflow` checks it) and
publishes each into the channelstream channel ``channel`` (hub channel
``channel:<channel>``), where every client that joined the channel gets it,
on ``/ws``, ``/listen``, SSE and socket.io alike, as a ``message`` frame::

    {"type": "message", "channel": "<channel>", "uuid": "...",
     "timestamp": "<the hub's receive time, naive UTC ISO 8601>",
     "user": "zmq:<source name>",
     "message": {"htype": "array-1.0",
                 "header": {<part 0, the mflow header, as JSON>},
                 "parts": [{"size": 24, "base64": "AAECAwQ..."},   <- part 1
                           {"size": 4194304}]},                    <- part 2
     "edited": null,
     "catchup": false, "offset": 17, "epoch": "..."}   (added by every transport)

Each part after the header is inlined as base64 when it is at most
``zmq.max_inline_bytes`` long, else only its size is given. A header that is
not standard JSON (``NaN``, ``Infinity``) reaches web clients with those
values as ``null``. The frame is built when a client first needs it and
encoded once for every client. A source's messages are droppable: a client
too slow for them loses the oldest ZMQ messages of its outbox (counted in the
hub's ``dropped``), never its chat messages, and never slows the source.

A message that does not decode (bad JSON header, unknown htype, missing or
extra parts, sizes that do not match) is counted in ``malformed`` (the last
reason in ``last_malformed``) and skipped; the next one is read cleanly. A
part larger than ``zmq.max_message_bytes`` is refused by libzmq itself
(``ZMQ_MAXMSGSIZE``): the message is lost and the sender disconnected (it
reconnects), which ``disconnects`` counts; a message whose parts add up to
more is counted in ``too_large`` and dropped.

**An output** (PUSH or PUB) has one hub outbox of ``queue_size`` messages
subscribed to the channel (with ``modulo`` N: one message in N, the first it
sees, then every Nth; a multipart message is one message, always whole) and
sends, in order:

- a message of a ZMQ source: its parts as received, byte for byte;
- any other frame of the channel (a ``POST /message``, an edit, presence...),
  as an mflow ``raw-1.0`` message of two parts::

      part 0  {"htype": "raw-1.0", "type": "json", "channel": "<channel>",
               "offset": 17, "epoch": "..."}
      part 1  the frame as web clients get it (compact JSON, UTF-8)

  Private messages (``pm_users``) are not sent. A ``POST /message`` reaches the
  channel only while the chat channel exists (``/connect``, ``/subscribe`` or
  ``/channel_config`` made it), as for web clients.

An output never holds up the hub: when ZMQ's queue (``queue_size`` messages,
the high-water mark) is full or a PUSH has no peer (a connecting one too:
``ZMQ_IMMEDIATE``), the output's writer waits with the one message it took,
its outbox fills, and past ``queue_size`` the outbox drops its oldest
ZMQ-source message (counted in ``dropped``); sources and other outputs go on
(a chat message is never dropped: past ``hub.outbox_hard_limit`` of them the
outbox is closed, its messages counted in ``dropped``, and a new one is
subscribed, counted in ``overflows``). A PUB socket never waits: ZMQ drops
for its slow subscribers itself, uncounted.

**States** (``status()["state"]``): ``running`` (a bound socket), ``connected``
(a connecting socket with a peer), without a peer ``waiting`` for a source (its
sender is off: nothing is lost, ``/healthz`` stays "ok") and ``connecting`` for
an output (its messages go nowhere: "degraded"), libzmq retrying by itself,
100 ms doubling to 10 s; ``retrying`` (the bind or connect failed: again
after 1 s doubling to 30 s; ``last_error`` says why). Counters: sources
``received``, ``bytes``, ``malformed``, ``too_large``; outputs ``sent``,
``bytes``, ``dropped``, ``queued``, ``waits`` (the ZMQ queue was full),
``overflows``; both ``peers``, ``disconnects``. ``/metrics`` has them all as
``channelstream_door_<counter>{door="zmq-source:<name>"}``.

**Memory**: a message is held once, however many clients and outputs get
it: by the channel's history (``hub.history_size`` messages, 100 by default,
for clients that resume), by the outboxes that queue it, and, once a client
needed it, with its frame and that frame's encoding. A channel of 4 MiB
images holds ~400 MiB of history at the default; a smaller
``hub.history_size`` bounds it.

**Stopping** kills a source's receiving greenlet, then closes its socket; an
output sends what its outbox holds while its peers take it, for
:data:`~.output.FLUSH_TIMEOUT` at most (what is left is counted in ``dropped``), then
closes its socket, which goes on delivering what ZMQ queued for
:data:`~.output.LINGER_MS`.
"""

from __future__ import annotations

from typing import Any

from ...hub import Hub
from ...serving.runtime import get_runtime
from .endpoint import ZmqContext, ZmqDoor
from .message import Origin, ZmqMessage, iso_time, output_parts, web_header
from .output import ZmqOutput
from .source import ZmqSource


def build_doors(
    settings: Any, hub: Hub, context: ZmqContext | None = None
) -> list[ZmqDoor]:
    """The doors of ``settings.zmq`` (sources first), built without binding anything."""
    context = context or ZmqContext()
    zmq_settings = settings.zmq
    doors: list[ZmqDoor] = [
        ZmqSource(endpoint, hub=hub, context=context,
                  max_inline_bytes=zmq_settings.max_inline_bytes,
                  max_message_bytes=zmq_settings.max_message_bytes)
        for endpoint in zmq_settings.sources
    ]
    doors.extend(ZmqOutput(endpoint, hub=hub, context=context)
                 for endpoint in zmq_settings.outputs)
    return doors


def includeme(config: Any) -> None:
    """Add a door per ``zmq.sources`` and ``zmq.outputs`` entry to the runtime."""
    runtime = get_runtime(config.registry)
    for door in build_doors(runtime.settings, runtime.hub):
        runtime.doors.add(door)


__all__ = [
    "Origin",
    "ZmqContext",
    "ZmqDoor",
    "ZmqMessage",
    "ZmqOutput",
    "ZmqSource",
    "build_doors",
    "includeme",
    "iso_time",
    "output_parts",
    "web_header",
]
