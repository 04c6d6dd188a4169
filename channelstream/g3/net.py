"""Network addresses and sockets: ``tcp://`` URLs, listeners, connections.

Sources (``G3Reader(filename=...)``) and sender host names::

    tcp://host:port          connect to host (a name, an IPv4 address, [an IPv6 one])
    tcp://*:port             listen on every interface (spt3g's listen mode)
    tcp://*@ADDR:port        listen on ADDR only (this library's addition)

``G3NetworkSender(hostname=...)`` takes the same host part: a host name
connects, ``"*"`` serves on every interface (as spt3g does), ``"*@ADDR"``
serves on ADDR only (e.g. ``"*@127.0.0.1"``). "Every interface" is a
dual-stack IPv6 socket (``::``, IPv4 mapped) where the host has IPv6, else
``0.0.0.0``.
"""

from __future__ import annotations

import dataclasses
import errno
from types import ModuleType
from typing import Any

from .errors import G3ConnectionError

SCHEME = "tcp://"
#: Listen backlog of the streaming server.
BACKLOG = 128


@dataclasses.dataclass(frozen=True)
class TcpAddress:
    """Where a TCP source or sender goes.

    :param host: the host to connect to, or the address to listen on
        (``None``: every interface).
    :param listen: listen for one peer (a reader) or for clients (a sender).
    """

    host: str | None
    port: int
    listen: bool

    def __str__(self) -> str:
        if not self.listen:
            return f"{SCHEME}{_bracket(self.host or '')}:{self.port}"
        if self.host is None:
            return f"{SCHEME}*:{self.port}"
        return f"{SCHEME}*@{_bracket(self.host)}:{self.port}"


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def is_url(source: str) -> bool:
    return source.startswith(SCHEME)


def parse_host(hostname: str) -> tuple[str | None, bool]:
    """``(host, listen)`` from a sender's host name: ``"*"``, ``"*@ADDR"`` or a host."""
    hostname = hostname.strip()
    if hostname == "*":
        return None, True
    if hostname.startswith("*@"):
        host = hostname[2:]
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        if not host:
            raise ValueError(f"no address after '*@' in {hostname!r}")
        return host, True
    if hostname.startswith("[") and hostname.endswith("]"):
        hostname = hostname[1:-1]
    if not hostname:
        raise ValueError("empty host name")
    return hostname, False


def parse_port(text: Any, where: str) -> int:
    try:
        port = int(text)
    except (TypeError, ValueError):
        raise ValueError(f"bad port {text!r} in {where!r}") from None
    if not 0 <= port <= 65535:
        raise ValueError(f"port {port} out of range in {where!r}")
    return port


def parse_url(url: str) -> TcpAddress:
    """The :class:`TcpAddress` of a ``tcp://`` URL (ValueError with the reason if bad)."""
    if not is_url(url):
        raise ValueError(f"not a tcp:// URL: {url!r}")
    rest = url[len(SCHEME) :].rstrip("/")
    if rest.endswith("]") or ":" not in rest:
        raise ValueError(f"no port in {url!r} (tcp://host:port)")
    hostname, _, port_text = rest.rpartition(":")
    host, listen = parse_host(hostname)
    if not listen and host is not None and ":" in host and not hostname.startswith("["):
        raise ValueError(f"write an IPv6 address in brackets: {url!r}")
    port = parse_port(port_text, url)
    if port == 0 and not listen:
        raise ValueError(f"cannot connect to port 0: {url!r}")
    return TcpAddress(host, port, listen)


def open_listener(
    socket_module: ModuleType, host: str | None, port: int, backlog: int = BACKLOG
) -> Any:
    """A listening socket on ``host`` (None: every interface), ``port`` (0: any free one)."""
    sm = socket_module
    if host is None:
        candidates: list[tuple[Any, ...]] = []
        if sm.has_ipv6:
            candidates.append((sm.AF_INET6, ("::", port)))
        candidates.append((sm.AF_INET, ("0.0.0.0", port)))
    else:
        try:
            infos = sm.getaddrinfo(host, port, sm.AF_UNSPEC, sm.SOCK_STREAM, 0, sm.AI_PASSIVE)
        except OSError as error:
            raise G3ConnectionError(f"cannot listen on {host}:{port}: {error}") from None
        candidates = [(family, addr) for family, _, _, _, addr in infos]
    last: OSError | None = None
    for family, addr in candidates:
        sock = sm.socket(family, sm.SOCK_STREAM)
        try:
            sock.setsockopt(sm.SOL_SOCKET, sm.SO_REUSEADDR, 1)
            if family == sm.AF_INET6 and host is None:
                sock.setsockopt(sm.IPPROTO_IPV6, sm.IPV6_V6ONLY, 0)
            sock.bind(addr)
            sock.listen(backlog)
            return sock
        except OSError as error:
            sock.close()
            last = error
            if error.errno == errno.EADDRINUSE:
                break
    where = f"{'*' if host is None else host}:{port}"
    raise G3ConnectionError(f"cannot listen on {where}: {last}")


def connect(socket_module: ModuleType, host: str, port: int, timeout: float | None) -> Any:
    """A socket connected to ``host:port`` (every address tried in turn), in blocking mode."""
    sm = socket_module
    try:
        infos = sm.getaddrinfo(host, port, sm.AF_UNSPEC, sm.SOCK_STREAM)
    except OSError as error:
        raise G3ConnectionError(f"cannot find host {host!r}: {error}") from None
    last: OSError | None = None
    refused = True
    for family, kind, proto, _, addr in infos:
        sock = sm.socket(family, kind, proto)
        try:
            sock.settimeout(timeout)
            sock.connect(addr)
            sock.settimeout(None)
            return sock
        except OSError as error:
            sock.close()
            last = error
            refused = refused and isinstance(error, ConnectionRefusedError)
    raise G3ConnectionError(
        f"cannot connect to {_bracket(host)}:{port}: {last}", refused=refused and last is not None
    )


def set_nodelay(sock: Any, socket_module: ModuleType) -> None:
    try:
        sock.setsockopt(socket_module.IPPROTO_TCP, socket_module.TCP_NODELAY, 1)
    except OSError:
        pass


def bound_address(sock: Any) -> tuple[str, int]:
    """``(host, port)`` a listening socket is bound to."""
    name = sock.getsockname()
    return name[0], name[1]


def close_quietly(sock: Any, shutdown: bool = True) -> None:
    """Shut down (which wakes a thread blocked on it) and close; errors ignored."""
    if sock is None:
        return
    if shutdown:
        try:
            sock.shutdown(2)  # SHUT_RDWR
        except OSError:
            pass
    try:
        sock.close()
    except OSError:
        pass
