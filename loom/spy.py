"""``/spy``: every live stream, and every stream that starts later, multiplexed.

Framing (the original loom's): ``START: <id>\\n`` when the spy begins
showing a stream (from its first byte), ``<id>:\\n`` before output whenever
the output switches to another stream, ``END: <id>\\n`` when a stream has
ended and all of it was shown. With ``?color`` each stream's text is
wrapped in one of 9 rotating ANSI colours (black, red, green, yellow, blue,
gray, magenta, cyan, white), the first line's text up to its last ``:``
in bold, as the original's ``colors`` package did.

The spy follows the hub's ``loom`` channel (start/data/end events) and reads
the bytes from the data files, so a slow spy client delays only itself.
"""

from __future__ import annotations

from collections.abc import Iterator

from channelstream.hub import Hub

from .events import EVENTS_CHANNEL, Follower
from .reader import StreamReader
from .responses import LiveBody
from .store import Store, Stream

#: The 9 foreground colours, in the original's order.
COLORS = (30, 31, 32, 33, 34, 90, 35, 36, 37)


def colorize(text: bytes, color: int) -> bytes:
    """``text`` in ``color``, its first line up to its last colon in bold."""
    wrapped = b"\x1b[%dm%b\x1b[39m" % (color, text)
    newline = wrapped.find(b"\n")
    colon = wrapped.rfind(b":", 0, newline if newline >= 0 else len(wrapped))
    if colon < 0:
        return wrapped
    return b"\x1b[1m" + wrapped[: colon + 1] + b"\x1b[22m" + wrapped[colon + 1 :]


class Spy(LiveBody):
    """The body of one ``/spy`` response (iterate it); ends when the server
    stops or the client goes away (:meth:`hang_up`)."""

    def __init__(self, hub: Hub, store: Store, *, color: bool = False) -> None:
        self.hub = hub
        self.store = store
        self.color = color
        self._colors = 0
        self._shown: dict[Stream, tuple[StreamReader, int]] = {}
        self._last: Stream | None = None
        # subscribed now, before the response's headers go out: a stream that
        # starts once the client has them is always seen
        self._follower = Follower(hub, EVENTS_CHANNEL, name="loom spy")

    def _format(self, text: bytes, color: int) -> bytes:
        return colorize(text, color) if self.color else text

    def _show(self, stream: Stream) -> bytes:
        if stream in self._shown:
            return b""
        try:
            reader = StreamReader(stream)
        except OSError:  # deleted or purged meanwhile
            return b""
        color = COLORS[self._colors % len(COLORS)]
        self._colors += 1
        self._shown[stream] = (reader, color)
        return self._format(f"START: {stream.id}\n".encode(), color)

    def _pump(self) -> list[bytes]:
        """Whatever the shown streams have that was not sent yet, and their ends."""
        out: list[bytes] = []
        for stream, (reader, color) in list(self._shown.items()):
            if data := reader.read():  # one read each per round: the output stays bounded
                header = b"" if self._last is stream else f"{stream.id}:\n".encode()
                self._last = stream
                out.append(self._format(header + data, color))
            elif reader.done:
                out.append(self._format(f"END: {stream.id}\n".encode(), color))
                reader.close()
                del self._shown[stream]
        return out

    def hang_up(self) -> None:
        self._follower.close()

    def close(self) -> None:
        """Unsubscribe and close the data files (idempotent)."""
        self._follower.close()
        for reader, _ in self._shown.values():
            reader.close()
        self._shown.clear()

    def __iter__(self) -> Iterator[bytes]:
        follower = self._follower
        try:
            yield b"".join(self._show(stream) for stream in self.store.live_streams())
            while not follower.closed:
                out = self._pump()
                if out:
                    yield b"".join(out)
                    continue
                for event in follower.wait():
                    if event["event"] == "start":
                        stream = self.store.find(event["id"])
                        if stream is not None:
                            out.append(self._show(stream))
                if out:
                    yield b"".join(out)
        finally:
            self.close()
