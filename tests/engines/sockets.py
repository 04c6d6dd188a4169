"""A ``/ws`` client of the engine tests: frames kept, waited for, and the close seen."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from urllib.parse import quote

import websocket

from tests.support.server import RunningServer


class Socket:
    """A ``/ws`` of ``conn_id`` on ``server`` (with ``resume`` positions if given)."""

    def __init__(self, server: RunningServer, conn_id: str, resume: dict | None = None) -> None:
        url = server.url.replace("http://", "ws://") + f"/ws?conn_id={conn_id}"
        if resume is not None:
            url += "&resume=" + quote(json.dumps(resume))
        self.ws = websocket.create_connection(url, timeout=10)
        self.frames: list[dict] = []
        self.close_code: int | None = None

    def wait(self, match: Callable[[dict], bool], timeout: float = 15.0) -> dict:
        """The first frame (seen or to come) for which ``match(frame)`` is true."""
        deadline = time.monotonic() + timeout
        while True:
            for frame in self.frames:
                if match(frame):
                    return frame
            left = deadline - time.monotonic()
            assert left > 0, f"no such frame; got {self.frames}"
            self.ws.settimeout(left)
            self.frames.extend(json.loads(self.ws.recv()))

    def messages(self) -> list[dict]:
        return [f for f in self.frames if f.get("type") == "message"]

    def read_for(self, seconds: float) -> bool:
        """Read what comes for ``seconds``; False if the server closed the socket."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.ws.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                opcode, data = self.ws.recv_data(control_frame=True)
            except websocket.WebSocketTimeoutException:
                return True
            except (websocket.WebSocketConnectionClosedException, OSError):
                return False
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                self.close_code = int.from_bytes(data[:2], "big") if len(data) >= 2 else None
                return False
            if opcode == websocket.ABNF.OPCODE_TEXT:
                self.frames.extend(json.loads(data))
        return True

    def closed(self, timeout: float = 10.0) -> bool:
        """True once the server closed the websocket (within ``timeout``)."""
        return not self.read_for(timeout)

    def close(self) -> None:
        self.ws.close()
