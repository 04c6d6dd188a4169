"""Frame channels: hub channels of frames (ZMQ, G3) that the page shows flowing.

A door that feeds a hub channel with frames (the ZMQ sources of
``zmq.sources``; G3 sources once they name a channel) gets a panel on the
page: what flows (each frame's type, its scalar fields and values) and the
rate. The page reads a channel through ``GET /demo/api/frames/<channel>``,
Server-Sent Events:

- each event's data is ``{"frames": [...], "skipped": n}``: summaries
  (:func:`summary`) of the frames that arrived since the previous event, at
  most :data:`MAX_PER_EVENT` of them (``skipped`` counts the others), at
  most :data:`EVENTS_PER_SECOND` events a second; the first event, sent at
  once, has no frames (the tap is open). ``offset`` grows by one per
  frame the channel carried, so the page computes the true rate from it
  even when the tap skipped frames; comments ``: idle`` keep the stream
  open;
- sticky frames (metadata) come first, as the hub replays them to every new
  subscriber, and are never dropped;
- each tap is one hub subscription with a small bounded outbox
  (:data:`TAP_QUEUE`, oldest data frames dropped): a fast channel costs the
  tap, never the publisher; at most :data:`MAX_TAPS` taps at once (503).

Only channels of :func:`frame_channels` can be tapped (404 for any other
name): a chat channel or a user's private channel is never readable here.

To add a door's channels, add them in :func:`frame_channels`; the page
renders one panel per entry of ``/demo/api/config``'s ``frames``, and picks
how to describe a frame by the entry's ``door`` (``demo/static/js/frames.js``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from typing import Any

import gevent

from channelstream import strict_json
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
#: Scalar fields and body values shown per frame, and the longest string shown.
MAX_VALUES = 16
MAX_STRING = 80


@dataclasses.dataclass(frozen=True)
class FrameChannel:
    """One hub channel of frames and its panel.

    :param channel: the hub channel.
    :param title: the panel's title.
    :param door: the door that feeds it (``zmq``, ``g3``): the panel shows
        that door's ``/healthz`` status and describes frames its way.
    """

    channel: str
    title: str
    door: str

    def as_dict(self) -> dict[str, str]:
        return dataclasses.asdict(self)


def frame_channels(settings: Settings) -> tuple[FrameChannel, ...]:
    """The frame channels of this configuration, each once, in ini order.

    ZMQ: the channel of every ``zmq.sources`` and ``zmq.outputs`` entry.
    G3: ``g3.sources`` do not name a channel yet; when the G3 door says which
    channel a source feeds, add ``FrameChannel(channel, f"G3 {channel}", "g3")``
    here.
    """
    found: dict[str, FrameChannel] = {}
    for entry in (*settings.zmq.sources, *settings.zmq.outputs):
        channel = str(entry["channel"])
        found.setdefault(channel, FrameChannel(channel, f"ZMQ {channel}", "zmq"))
    return tuple(found.values())


def summary(message: Message) -> dict[str, Any]:
    """What the page shows of one frame: position, time, kind, type, fields, values, size.

    ``values`` holds the scalar items of a JSON object body (the first
    :data:`MAX_VALUES`, strings cut at :data:`MAX_STRING`); a bytes body
    shows only its size. Pure: no I/O.
    """
    body = message.body
    size = message.size
    if isinstance(body, bytes | bytearray | memoryview):
        size = size or len(body)
        values: dict[str, Any] = {}
    elif isinstance(body, Mapping):
        values = _scalars(body)
    else:
        values = _scalars({"value": body})
    return {
        "offset": message.offset,
        "time": message.time_ms,
        "kind": message.kind,
        "type": message.type,
        "fields": _scalars(message.fields),
        "values": values,
        "size": size,
    }


def _scalars(items: Mapping[str, Any]) -> dict[str, Any]:
    shown: dict[str, Any] = {}
    for key, value in items.items():
        if len(shown) >= MAX_VALUES:
            break
        if isinstance(value, str):
            shown[str(key)] = value[:MAX_STRING]
        elif value is None or isinstance(value, bool | int | float):
            shown[str(key)] = value
    return shown


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
