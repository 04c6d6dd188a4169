"""``no_client_action``: call an action when a socket has had no peer for a while.

mflow's ``connect(..., no_client_action=f, no_client_timeout=10)``: ``f()`` is
called once a socket has been without any connected peer for
``no_client_timeout`` seconds (counting from ``connect``), then again after
each further ``no_client_timeout`` without one. Peers are counted from the
socket's monitor events: accepted or connected +1, disconnected -1.

The watcher runs beside the stream: a daemon thread for plain sockets, a
greenlet for ``zmq.green`` ones (see :mod:`.green`). It reads only its own
monitor socket, so it never touches the stream's socket from another thread.
``stop()`` ends it and closes the monitor socket (``Stream.disconnect`` does).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import zmq
from zmq.utils.monitor import parse_monitor_message

from .green import flavour, is_green

logger = logging.getLogger(__name__)

_POLL_MS = 100
_UP = (zmq.EVENT_ACCEPTED, zmq.EVENT_CONNECTED)


class ClientMonitor:
    """Watches ``socket``'s peers; see the module docstring."""

    def __init__(self, socket: zmq.Socket, action: Callable[[], object], timeout: float) -> None:
        self.action = action
        self.timeout = float(timeout)
        self.clients = 0
        self._socket = socket
        self._monitor = socket.get_monitor_socket(_UP[0] | _UP[1] | zmq.EVENT_DISCONNECTED)
        self._running = True
        self._green = is_green(socket.context)
        if self._green:
            import gevent

            self._runner = gevent.spawn(self._run)
        else:
            self._runner = threading.Thread(target=self._run, name="mflow-monitor", daemon=True)
            self._runner.start()

    def _run(self) -> None:
        poller = flavour(self._socket.context).Poller()
        poller.register(self._monitor, zmq.POLLIN)
        alone_since = time.monotonic()
        while self._running:
            if poller.poll(_POLL_MS):
                try:
                    event = parse_monitor_message(self._monitor.recv_multipart())
                except zmq.ZMQError:
                    break
                if event["event"] in _UP:
                    self.clients += 1
                elif event["event"] == zmq.EVENT_DISCONNECTED:
                    self.clients = max(0, self.clients - 1)
                if self.clients:
                    alone_since = None
                elif alone_since is None:
                    alone_since = time.monotonic()
            now = time.monotonic()
            if alone_since is not None and now - alone_since > self.timeout:
                alone_since = now
                try:
                    self.action()
                except Exception:
                    logger.exception("no_client_action failed")

    def stop(self) -> None:
        """End the watcher and close its monitor socket; idempotent."""
        if not self._running:
            return
        self._running = False
        if self._green:
            self._runner.join()
        elif self._runner is not threading.current_thread():
            self._runner.join()
        try:
            self._socket.disable_monitor()
        except zmq.ZMQError:
            pass
        self._monitor.close(linger=0)
