"""Frame channels: hub channels of frames (ZMQ, G3) that the page shows flowing.

A door that feeds a hub channel with frames gets a panel on the page: what
flows (each frame's type, its scalar fields and values) and the rate. These
are the channels of ``zmq.sources`` and ``zmq.outputs``: the ZMQ door
publishes each mflow message into the channelstream channel it names (hub
channel ``channel:<name>``) as a ``message`` frame whose ``message`` holds
``htype``, ``header`` and ``parts``; and ``g3.channel``, where the G3 door
publishes each frame as a ``message`` frame whose ``message`` holds
``frame_type``, ``objects`` (scalars) and ``opaque`` (other classes). The
page reads a channel through ``GET /demo/api/frames/<hub channel>``,
Server-Sent Events:

- each event's data is ``{"frames": [...], "skipped": n}``: summaries
  (:func:`summary`) of the frames that arrived since the previous event, at
  most :data:`MAX_PER_EVENT` of them (``skipped`` counts the others), at
  most :data:`EVENTS_PER_SECOND` events a second; the first event, sent at
  once, has no frames (the tap is open). ``offset`` grows by one per
  message the channel carried, so the page computes the true rate from it
  even when the tap skipped frames; comments ``: idle`` keep the stream
  open;
- sticky frames (metadata) come first, as the hub replays them to every new
  subscriber, and are never dropped;
- each tap is one hub subscription with no principal (private messages are
  never seen) and a small bounded outbox (:data:`TAP_QUEUE`, oldest data
  frames dropped): a fast channel costs the tap, never the publisher; at
  most :data:`MAX_TAPS` taps at once (503).

Only channels of :func:`frame_channels` can be tapped (404 for any other
name), and only summaries leave: scalars, short lists of scalars, sizes.

To add a door's channels, add them in :func:`frame_channels`; the page
renders one panel per entry of ``/demo/api/config``'s ``frames``, shows the
states of the entry's ``health`` doors from ``/healthz``, and describes a
frame by the entry's ``door`` (``frameDescribers`` in
``demo/static/js/frames.js``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Mapping
from typing import Any

import gevent

from channelstream import strict_json
from channelstream.chat.routing import hub_channel
from channelstream.hub import Hub, Message
from channelstream.settings import Settings

#: Frames queued per tap before the oldest data frame is dropped.
TAP_QUEUE = 64
#: Undroppable (sticky) frames per tap past which it is closed.
TAP_HARD_LIMIT = 1000
#: Taps open at once, over all pages.
MAX_TAPS = 16
#: Summaries per event (the rest of a batch is counted in ``skipped``).
MAX_PER_EVENT = 20
#: Events per second per tap.
EVENTS_PER_SECOND = 10
#: Seconds without frames after which a comment keeps the stream open.
IDLE_COMMENT = 15.0
#: Values shown per frame (nested objects flattened to ``a.b.c``, at most
#: MAX_DEPTH deep), the longest string and the longest list of scalars shown.
MAX_VALUES = 24
MAX_DEPTH = 3
MAX_STRING = 80
MAX_LIST = 8


@dataclasses.dataclass(frozen=True)
class FrameChannel:
    """One hub channel of frames and its panel.

    :param channel: the hub channel.
    :param title: the panel's title.
    :param door: what feeds it (``zmq``, ``g3``): the page describes its
        frames that way.
    :param health: the ``/healthz`` doors whose state the panel shows.
    """

    channel: str
    title: str
    door: str
    health: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "health": list(self.health)}


def frame_channels(settings: Settings) -> tuple[FrameChannel, ...]:
    """The frame channels of this configuration, each once, in ini order.

    ZMQ: the channelstream channel of every ``zmq.sources`` and
    ``zmq.outputs`` entry (hub channel ``channel:<name>``), with the doors
    ``zmq-source:<name>`` / ``zmq-output:<name>`` (``name`` defaults to the
    channel). G3: ``g3.channel`` when ``g3.listen`` or ``g3.sources`` is set,
    with the doors ``g3-server`` and ``g3-source:<n>`` (n from 1).
    """
    found: dict[str, FrameChannel] = {}
    for kind, entries in (("source", settings.zmq.sources), ("output", settings.zmq.outputs)):
        for entry in entries:
            name = str(entry["channel"])
            channel = hub_channel(name)
            door = f"zmq-{kind}:{entry.get('name') or name}"
            known = found.get(channel)
            health = (*known.health, door) if known else (door,)
            found[channel] = FrameChannel(channel, f"ZMQ {name}", "zmq", health)
    g3 = settings.g3
    if g3.listen is not None or g3.sources:
        channel = hub_channel(g3.channel)
        doors = ("g3-server",) if g3.listen is not None else ()
        doors += tuple(f"g3-source:{n}" for n in range(1, len(g3.sources) + 1))
        known = found.get(channel)
        health = (*known.health, *doors) if known else doors
        found[channel] = FrameChannel(channel, f"G3 {g3.channel}", "g3", health)
    return tuple(found.values())


def summary(message: Message) -> dict[str, Any]:
    """What the page shows of one frame: position, time, kind, type, fields, values, size.

    ``values`` flattens a JSON object body (``{"message": {"htype": ...}}``
    gives ``"message.htype"``): scalars (strings cut at :data:`MAX_STRING`,
    non-finite numbers as null) and lists of at most :data:`MAX_LIST`
    scalars, the first :data:`MAX_VALUES` of them; a bytes body shows only
    its size. Pure: no I/O.
    """
    body = message.body
    size = message.size
    values: dict[str, Any] = {}
    if isinstance(body, bytes | bytearray | memoryview):
        size = size or len(body)
    elif isinstance(body, Mapping):
        _flatten(body, values, "", 1)
    else:
        _flatten({"value": body}, values, "", 1)
    fields: dict[str, Any] = {}
    _flatten(message.fields, fields, "", MAX_DEPTH)
    return {
        "offset": message.offset,
        "time": message.time_ms,
        "kind": message.kind,
        "type": message.type,
        "fields": fields,
        "values": values,
        "size": size,
    }


def _flatten(items: Mapping[str, Any], shown: dict[str, Any], prefix: str, depth: int) -> None:
    for key, value in items.items():
        if len(shown) >= MAX_VALUES:
            return
        name = f"{prefix}{key}"
        if _is_scalar(value):
            shown[name] = _shown(value)
        elif isinstance(value, Mapping) and depth < MAX_DEPTH:
            _flatten(value, shown, name + ".", depth + 1)
        elif (
            isinstance(value, list | tuple)
            and len(value) <= MAX_LIST
            and all(_is_scalar(v) for v in value)
        ):
            shown[name] = [_shown(v) for v in value]


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | bool | int | float)


def _shown(value: Any) -> Any:
    if isinstance(value, str):
        return value[:MAX_STRING]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class FrameTaps:
    """The taps of one process (see the module doc).

    :param hub: where the frame channels are.
    :param channels: the channels that may be tapped.
    """

    def __init__(self, hub: Hub, channels: tuple[FrameChannel, ...]) -> None:
        self.hub = hub
        self.channels = {entry.channel: entry for entry in channels}
        #: taps streaming now
        self.active = 0

    def full(self) -> bool:
        return self.active >= MAX_TAPS

    def stream(self, channel: str) -> Iterator[bytes]:
        """The SSE body of one tap; it ends when the outbox closes (shutdown).

        The subscription is made when the body is first iterated (by the
        server's greenlet that writes it) and cancelled when it ends or the
        client goes away (the generator is closed).
        """
        self.active += 1
        outbox = self.hub.open_outbox(
            max_queue=TAP_QUEUE, hard_limit=TAP_HARD_LIMIT, name="demo-tap"
        )
        try:
            self.hub.subscribe(outbox, channel)
            yield b'retry: 2000\ndata: {"frames":[],"skipped":0}\n\n'
            pause = 1.0 / EVENTS_PER_SECOND
            while True:
                ready = outbox.wait(IDLE_COMMENT)
                batch = outbox.drain()
                if batch:
                    shown = batch[-MAX_PER_EVENT:]
                    data = strict_json.dumps(
                        {"frames": [summary(m) for m in shown], "skipped": len(batch) - len(shown)}
                    )
                    yield b"data: " + data + b"\n\n"
                    gevent.sleep(pause)
                elif outbox.closed:
                    return
                elif not ready:
                    yield b": idle\n\n"
        finally:
            self.active -= 1
            outbox.close("demo tap ended", discard=True)
