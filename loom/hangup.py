"""Noticing at once that the client of a long-lived response went away.

A live tail or a spy spends most of its life waiting for the stream to
change, not writing, so a failed write cannot tell it that its client is
gone: a client that closed (FIN) or reset (RST) its connection while the
stream was idle would keep its socket, its data file and its greenlet until
the stream next changed. :class:`HangupWatch` watches the client's socket
for readability with an I/O watcher of the gevent loop (no greenlet, no
timer) while the response runs:

- a client of such a response sends nothing more, so the socket turns
  readable only when it closes (a peek reads end-of-file) or resets (the
  peek fails): the watch then calls ``on_hangup()``, once, from the gevent
  hub;
- a client may also have sent bytes (a pipelined next request): they stay
  unread for the server, and the watch then checks the TCP state of the
  connection every :data:`PIPELINED_CHECK` seconds instead (Linux
  ``TCP_INFO``: anything but established means the peer closed or reset).

A client that half-closes its side (``shutdown(SHUT_WR)``) after its
request counts as gone, as it does for nginx: HTTP clients that still read
do not half-close.

:func:`client_fd` finds the socket of a WSGI request (our pywsgi server:
``wsgi.input``'s ``rfile``; gunicorn: ``gunicorn.socket``); without one the
response is served without a watch, as before.
"""

from __future__ import annotations

import _socket
import logging
from collections.abc import Callable
from typing import Any

import gevent

log = logging.getLogger(__name__)

#: Seconds between checks of a connection whose client sent bytes meanwhile.
PIPELINED_CHECK = 2.0

#: ``tcpi_state`` of a connection both sides still hold open (linux/tcp_states.h).
TCP_ESTABLISHED = 1
_TCP_INFO = getattr(_socket, "TCP_INFO", None)
_PEEK = _socket.MSG_PEEK | getattr(_socket, "MSG_DONTWAIT", 0)


def client_fd(environ: dict[str, Any]) -> int | None:
    """The file descriptor of the request's client socket, or None if unknown."""
    sock = environ.get("gunicorn.socket")
    if sock is None:
        rfile = getattr(environ.get("wsgi.input"), "rfile", None)
        sock = rfile
    try:
        fd = sock.fileno() if sock is not None else -1
    except (OSError, ValueError, AttributeError):
        return None
    return fd if isinstance(fd, int) and fd >= 0 else None


def _borrowed(fd: int) -> _socket.socket:
    """A plain socket object on ``fd`` that the caller must ``detach()`` (never close).

    ``_socket``, not gevent's ``socket``: these calls run in the gevent hub
    and must never wait.
    """
    return _socket.socket(fileno=fd)


def peer_state(fd: int) -> str:
    """``"gone"`` (end-of-file or an error), ``"data"`` (bytes are waiting) or ``"quiet"``."""
    try:
        sock = _borrowed(fd)
    except OSError:
        return "gone"
    try:
        return "data" if sock.recv(1, _PEEK) else "gone"
    except BlockingIOError:
        return "quiet"
    except InterruptedError:
        return "quiet"
    except OSError:  # ECONNRESET, ETIMEDOUT, ...
        return "gone"
    finally:
        sock.detach()


def tcp_established(fd: int) -> bool | None:
    """Whether the TCP connection on ``fd`` is still established; None if not TCP (or unknown)."""
    if _TCP_INFO is None:
        return None
    try:
        sock = _borrowed(fd)
    except OSError:
        return False
    try:
        info = sock.getsockopt(_socket.IPPROTO_TCP, _TCP_INFO, 8)
    except OSError:
        return None
    finally:
        sock.detach()
    return info[0] == TCP_ESTABLISHED


class HangupWatch:
    """Call ``on_hangup()`` once, from the gevent hub, when the client of ``fd`` goes away.

    :param fd: the client socket (not owned: the server closes it).
    :param on_hangup: must not block (it runs in the hub), e.g. close an
        outbox so that the greenlet waiting on it wakes up.

    :meth:`close` must be called before anyone else reads the socket again
    (the next request of a keep-alive connection): the response's
    ``finally``. :attr:`fired` says whether the client went away.
    """

    def __init__(self, fd: int, on_hangup: Callable[[], None]) -> None:
        self.fd = fd
        self.fired = False
        self._on_hangup = on_hangup
        loop = gevent.get_hub().loop
        self._io: Any = loop.io(fd, 1)  # 1: READ
        self._timer: Any = None
        self._io.start(self._on_readable)

    def _on_readable(self) -> None:
        state = peer_state(self.fd)
        if state == "gone":
            self._fire()
        elif state == "data":  # pipelined bytes: readability says nothing any more
            self._io.stop()
            if tcp_established(self.fd) is not None:
                self._timer = gevent.get_hub().loop.timer(PIPELINED_CHECK, PIPELINED_CHECK)
                self._timer.start(self._on_timer)

    def _on_timer(self) -> None:
        if tcp_established(self.fd) is False:
            self._fire()

    def _fire(self) -> None:
        self._stop()
        if not self.fired:
            self.fired = True
            try:
                self._on_hangup()
            except Exception:
                log.exception("loom: hang-up callback failed")

    def _stop(self) -> None:
        self._io.stop()
        if self._timer is not None:
            self._timer.stop()

    def close(self) -> None:
        """Stop watching (idempotent); the socket is left as it is."""
        if self._io is None:
            return
        self._stop()
        self._io.close()
        self._io = None
        if self._timer is not None:
            self._timer.close()
            self._timer = None


def watch(environ: dict[str, Any], on_hangup: Callable[[], None]) -> HangupWatch | None:
    """A :class:`HangupWatch` of the request's client, or None if its socket is unknown."""
    fd = client_fd(environ)
    return HangupWatch(fd, on_hangup) if fd is not None else None
