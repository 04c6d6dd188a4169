"""Small helpers of the G3 tests: frames, a raw TCP client, the two concurrencies."""

from __future__ import annotations

import socket
import threading
from typing import Any

from channelstream.g3 import FrameDecoder, G3Frame, G3FrameType

#: A frame spt3g 1.0.2 wrote (G3Writer): Timepoint with s="héllo", b=True, d=1.5, i=5,
#: in the order spt3g's unordered_map put them.
SPT3G_FRAME = bytes.fromhex(
    "010100000004000000540000000100000000000000732f00000000000000010100008008"
    "000000000000004733537472696e67010000800100000001000000060000000000000068"
    "c3a96c6c6f01000000000000006220000000000000000101000080060000000000000047"
    "33426f6f6c01000080010000000100000001010000000000000064290000000000000001"
    "0100008008000000000000004733446f75626c6501000080010000000100000000000000"
    "0000f83f0100000000000000692600000000000000010100008005000000000000004733"
    "496e740100008001000000010000000500000000000000aa6da304"
)


def make_frame(frame_type: Any = G3FrameType.Timepoint, **objects: Any) -> G3Frame:
    frame = G3Frame(frame_type)
    for name, value in objects.items():
        frame[name] = value
    return frame


class RawClient:
    """A TCP client of a streaming server that decodes what it reads, in an OS thread.

    With ``stalled=True`` it connects but reads nothing until :meth:`resume`
    (a small receive buffer makes it stall sooner).
    """

    def __init__(self, address: tuple[str, int], stalled: bool = False,
                 rcvbuf: int | None = None) -> None:
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.connect(address)
        self.frames: list[G3Frame] = []
        self.eof = False
        self.error: BaseException | None = None
        self._go = threading.Event()
        if not stalled:
            self._go.set()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        decoder = FrameDecoder()
        self._go.wait()
        try:
            while True:
                data = self.sock.recv(1 << 20)
                if not data:
                    decoder.close()
                    self.eof = True
                    return
                self.frames.extend(decoder.feed(data))
        except BaseException as error:  # the test asserts on it
            self.error = error

    def resume(self) -> None:
        self._go.set()

    def close(self) -> None:
        """Close the connection (shut down first: the reading thread may be in recv)."""
        for step in (lambda: self.sock.shutdown(socket.SHUT_RDWR), self.sock.close):
            try:
                step()
            except OSError:
                pass

    def types(self) -> list[str]:
        return [f.type.name for f in self.frames]


class BytesServer:
    """Serves ``data`` to the first client, in an OS thread; then closes, or holds
    the connection open (silent) until :meth:`release` with ``hold=True``, then
    sends ``then`` and closes."""

    def __init__(self, data: bytes, hold: bool = False, chunk: int = 7,
                 then: bytes = b"") -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.address = self.listener.getsockname()
        self.data = data
        self.hold = hold
        self.chunk = chunk
        self.then = then
        self._release = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"tcp://127.0.0.1:{self.address[1]}"

    def _run(self) -> None:
        conn, _ = self.listener.accept()
        self.listener.close()
        with conn:
            for i in range(0, len(self.data), self.chunk):
                conn.sendall(self.data[i : i + self.chunk])
            if self.hold:
                self._release.wait(60)
                conn.sendall(self.then)

    def release(self) -> None:
        self._release.set()


def send_to(address: tuple[str, int], data: bytes) -> threading.Thread:
    """Connect to ``address`` and send ``data`` (then close), in an OS thread."""

    def run() -> None:
        with socket.create_connection(address) as sock:
            sock.sendall(data)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread
