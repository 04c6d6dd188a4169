"""Which pyzmq flavour a stream uses: plain ``zmq`` or gevent's ``zmq.green``.

A stream needs the green flavour inside a gevent process, else a blocking
receive would block every greenlet, and the plain one everywhere else. The
rule, in order:

1. a ``context`` passed to ``connect`` decides (a ``zmq.green.Context`` makes
   green sockets, a ``zmq.Context`` plain ones);
2. otherwise, green when gevent is imported *and* has monkey-patched
   ``socket`` or ``threading`` (the service, gunicorn's gevent workers,
   ``pserve`` of channelstream), plain otherwise (a script, threads, tests).

gevent is never imported here unless the process already imported it.
Socket options, constants and exceptions (``zmq.Again``) are the same in
both flavours.
"""

from __future__ import annotations

import sys
from types import ModuleType

import zmq


def patched() -> bool:
    """True when gevent has monkey-patched this process."""
    monkey = sys.modules.get("gevent.monkey")
    if monkey is None:
        return False
    return bool(monkey.is_module_patched("socket") or monkey.is_module_patched("threading"))


def is_green(context: zmq.Context) -> bool:
    green = sys.modules.get("zmq.green")
    return green is not None and isinstance(context, green.Context)


def flavour(context: zmq.Context | None = None) -> ModuleType:
    """The module (``zmq`` or ``zmq.green``) whose Context/Poller a stream must use."""
    if context is not None:
        return _green() if is_green(context) else zmq
    return _green() if patched() else zmq


def _green() -> ModuleType:
    import zmq.green

    return zmq.green
