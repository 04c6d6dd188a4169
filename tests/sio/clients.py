"""A python-socketio client of ``/stream`` that records every event, for tests."""

from __future__ import annotations

import queue
import socket
import time
from collections.abc import Callable
from typing import Any

import engineio
import socketio
import websocket

NAMESPACE = "/stream"
EVENTS = (
    "user_connect", "message", "presence", "user_state_change", "join", "leave", "data",
    "query_end",
)


class _InOrderEngineIO(engineio.Client):
    """engine.io's client, handing each message to socket.io in the read loop.

    engine.io's own client runs each message's handlers in a new thread:
    two events that arrive together may then be recorded in either order.
    """

    def _trigger_event(self, event: str, *args: Any, **kwargs: Any) -> Any:
        if event == "message":
            kwargs["run_async"] = False
        return super()._trigger_event(event, *args, **kwargs)


class InOrderClient(socketio.Client):
    """``socketio.Client`` whose event handlers run in the order the events arrived."""

    def _engineio_client_class(self) -> type[engineio.Client]:
        return _InOrderEngineIO


class StreamClient:
    """Connects to ``/stream``; every server event lands in :attr:`events` as (name, data).

    ``transports``: ``["websocket"]``, ``["polling"]`` or both (polling, then upgrade).
    """

    def __init__(
        self,
        url: str,
        *,
        auth: Any = None,
        query: str = "",
        transports: list[str] | None = None,
        path: str = "socket.io",
    ) -> None:
        self.events: queue.Queue[tuple[str, Any]] = queue.Queue()
        self.sio = InOrderClient(reconnection=False)
        for name in (*EVENTS, "error"):
            self.sio.on(name, self._recorder(name), namespace=NAMESPACE)
        self.sio.on("disconnect", self._recorder("disconnect"), namespace=NAMESPACE)
        self.sio.connect(
            url + (f"?{query}" if query else ""),
            namespaces=[NAMESPACE],
            auth=auth,
            transports=transports or ["websocket"],
            socketio_path=path,
            wait_timeout=10,
        )

    def _recorder(self, name: str) -> Callable[..., None]:
        def record(*args: Any) -> None:
            self.events.put((name, args[0] if args else None))

        return record

    def call(self, event: str, data: Any, timeout: float = 10.0) -> Any:
        """Emit ``event`` with ``data`` and return the server's acknowledgement."""
        return self.sio.call(event, data, namespace=NAMESPACE, timeout=timeout)

    def emit(self, event: str, *args: Any) -> None:
        self.sio.emit(event, args[0] if len(args) == 1 else args or None, namespace=NAMESPACE)

    def next(self, name: str | None = None, timeout: float = 10.0) -> tuple[str, Any]:
        """The next event (named ``name`` if given; others before it are skipped)."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {name or 'event'} within {timeout}s")
            try:
                event = self.events.get(timeout=remaining)
            except queue.Empty:
                continue
            if name is None or event[0] == name:
                return event

    def frames(self, count: int, timeout: float = 10.0, event: str = "message") -> list[Any]:
        """The next ``count`` frames of ``event`` events (lists of frames)."""
        got: list[Any] = []
        while len(got) < count:
            got.extend(self.next(event, timeout)[1])
        assert len(got) == count, got
        return got

    def data(self, count: int, timeout: float = 10.0) -> list[Any]:
        """The next ``count`` ``data`` events (GATD packets)."""
        return [self.next("data", timeout)[1] for _ in range(count)]

    def quiet(self, seconds: float = 0.5) -> list[tuple[str, Any]]:
        """Events received within ``seconds`` (expected to be none, usually)."""
        time.sleep(seconds)  # an absence has no condition to wait for: let time pass
        got = []
        while True:
            try:
                got.append(self.events.get_nowait())
            except queue.Empty:
                return got

    def close(self) -> None:
        self.sio.disconnect()

    def __enter__(self) -> StreamClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def refusal(url: str, auth: Any = None, transports: list[str] | None = None) -> Any:
    """Connect with ``auth``, expecting a refusal; return the ``connect_error`` data."""
    errors: queue.Queue[Any] = queue.Queue()
    client = socketio.Client(reconnection=False)
    client.on("connect_error", lambda data=None: errors.put(data), namespace=NAMESPACE)
    try:
        client.connect(
            url,
            namespaces=[NAMESPACE],
            auth=auth,
            transports=transports or ["websocket"],
            wait_timeout=10,
        )
    except socketio.exceptions.ConnectionError:
        pass
    else:
        raise AssertionError("the server accepted the connection")
    finally:
        client.disconnect()
    return errors.get(timeout=5)


def stalled_client(url: str, connect: str) -> websocket.WebSocket:
    """A raw engine.io websocket that joins ``/stream`` and then never reads again."""
    ws = websocket.create_connection(
        url.replace("http", "ws", 1) + "/socket.io/?EIO=4&transport=websocket",
        sockopt=((socket.SOL_SOCKET, socket.SO_RCVBUF, 4096),),
        timeout=10,
    )
    assert ws.recv().startswith("0{")  # engine.io OPEN
    ws.send("40/stream," + connect)
    assert ws.recv().startswith("40/stream,")  # socket.io CONNECT
    return ws
