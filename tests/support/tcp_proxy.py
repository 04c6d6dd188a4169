"""A loopback TCP proxy that tests can cut: :class:`TcpProxy`.

It listens on a free 127.0.0.1 port and forwards each connection to a
target (RabbitMQ, say), so that a test can put it between the server and
the broker and simulate an outage::

    with TcpProxy(("127.0.0.1", 5672)) as proxy:
        ...  # point the server at proxy.port
        proxy.cut()      # every connection dropped; new ones are closed at once
        proxy.resume()   # new connections are forwarded again

Plain threads (the test process is not monkey-patched): one accept thread,
two pump threads per connection.
"""

from __future__ import annotations

import socket
import threading


class TcpProxy:
    """Forward connections from ``127.0.0.1:port`` to ``target``; see the module doc."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._forwarding = threading.Event()
        self._forwarding.set()
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._closed = False
        #: Connections forwarded so far, and connections refused while cut.
        self.forwarded = 0
        self.refused = 0
        self._thread = threading.Thread(target=self._accept_loop, name="tcp-proxy", daemon=True)
        self._thread.start()

    def cut(self) -> None:
        """Drop every connection, and close new ones at once until :meth:`resume`."""
        self._forwarding.clear()
        with self._lock:
            sockets, self._sockets = self._sockets, set()
        for sock in sockets:
            _drop(sock)

    def resume(self) -> None:
        """Forward new connections again."""
        self._forwarding.set()

    @property
    def open_connections(self) -> int:
        """Sockets of live forwarded connections (two per connection)."""
        with self._lock:
            return len(self._sockets)

    def close(self) -> None:
        """Stop listening and drop everything."""
        self._closed = True
        _drop(self._listener)
        self.cut()
        self._thread.join(5)

    def __enter__(self) -> TcpProxy:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _accept_loop(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if not self._forwarding.is_set():
                self.refused += 1
                _drop(client)
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                _drop(client)
                continue
            with self._lock:
                self._sockets.update((client, upstream))
            self.forwarded += 1
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(
                    target=self._pump, args=(source, sink), name="tcp-proxy-pump", daemon=True
                ).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                sink.sendall(data)
        except OSError:
            pass
        finally:
            with self._lock:
                self._sockets.discard(source)
                self._sockets.discard(sink)
            _drop(source)
            _drop(sink)


def _drop(sock: socket.socket) -> None:
    """Shut down (which wakes a thread blocked in recv) and close; never raises."""
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass
