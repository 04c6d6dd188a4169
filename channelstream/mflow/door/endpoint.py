"""One ZMQ endpoint's socket: the shared context, its monitor, the door's lifecycle.

:class:`ZmqDoor` is what a source and an output share: the endpoint, binding
or connecting with the door's own backoff (libzmq reconnects by itself once
connected), the peers counted from monitor events, and the states
(``running``, ``connected``, ``waiting``/``connecting``, ``retrying``) of
:mod:`channelstream.mflow.door`'s doc. :class:`ZmqContext` is the process's one
``zmq.green`` context. Used from the main greenlet's doors; every socket waits
in its own greenlet only.
"""

from __future__ import annotations

import logging
from typing import Any

import gevent
import zmq
import zmq.green
from zmq.utils.monitor import parse_monitor_message

from ...hub import Hub
from ...serving.doors import Backoff, DoorState, LoopDoor
from ...settings.endpoints import ZmqEndpoint
from ..errors import ConnectError
from ..stream import Stream

log = logging.getLogger(__name__)

#: libzmq's reconnection of a connecting socket: first delay, longest delay (ms).
RECONNECT_IVL_MS = 100
RECONNECT_IVL_MAX_MS = 10_000
#: The door's own retries of a failed bind or connect (seconds).
RETRY_INITIAL = 1.0
RETRY_MAX = 30.0
#: Seconds a stopping door waits for the context to terminate.
TERM_TIMEOUT = 5.0

_MONITORED = zmq.EVENT_ACCEPTED | zmq.EVENT_CONNECTED | zmq.EVENT_DISCONNECTED
_UP = (zmq.EVENT_ACCEPTED, zmq.EVENT_CONNECTED)


class ZmqContext:
    """The process's ``zmq.green`` context, shared by its ZMQ doors.

    Made by the first :meth:`acquire` (in the serving process, after any
    fork), terminated (in a thread: it waits for lingering sockets) by the
    last :meth:`release`. Used from the main greenlet's doors only.
    """

    def __init__(self) -> None:
        self._context: zmq.green.Context | None = None
        self._users = 0

    def acquire(self) -> zmq.green.Context:
        if self._context is None:
            self._context = zmq.green.Context()
        self._users += 1
        return self._context

    def release(self) -> None:
        self._users -= 1
        if self._users > 0 or self._context is None:
            return
        context, self._context = self._context, None
        done = gevent.get_hub().threadpool.spawn(context.term)
        try:
            done.get(timeout=TERM_TIMEOUT)
        except gevent.Timeout:  # a socket left open: the process ends anyway
            log.warning("the ZMQ context did not terminate within %.0f s", TERM_TIMEOUT)


class _DoorContext(zmq.green.Context):
    """A door's view of the shared context (a shadow: same libzmq context).

    The first socket it makes is the door's: it gets libzmq's reconnection
    backoff and a monitor before the stream binds or connects, so that no
    peer event is missed.
    """

    #: the door's socket and its monitor (a PAIR socket), once made
    watched = None
    monitor = None
    #: more options of the door's socket: (option, value) pairs
    options: tuple[tuple[int, int], ...] = ()

    def socket(self, socket_type: int, **kwargs: Any) -> zmq.Socket:
        sock = super().socket(socket_type, **kwargs)
        if self.watched is None:
            self.watched = sock
            sock.setsockopt(zmq.RECONNECT_IVL, RECONNECT_IVL_MS)
            sock.setsockopt(zmq.RECONNECT_IVL_MAX, RECONNECT_IVL_MAX_MS)
            for option, value in self.options:
                sock.setsockopt(option, value)
            self.monitor = sock.get_monitor_socket(_MONITORED)
        return sock


class _Link:
    """One door's stream and the greenlet that counts its peers from monitor events."""

    def __init__(self, door: ZmqDoor, stream: Stream, monitor: zmq.Socket | None) -> None:
        self.door = door
        self.stream = stream
        self._monitor = monitor
        self._watcher = gevent.spawn(self._watch) if monitor is not None else None
        self._closed = False

    def _watch(self) -> None:
        door = self.door
        monitor = self._monitor
        while True:
            try:
                event = parse_monitor_message(monitor.recv_multipart())["event"]
            except zmq.ZMQError:
                return
            if event in _UP:
                door.peers += 1
            elif event == zmq.EVENT_DISCONNECTED:
                door.peers = max(0, door.peers - 1)
                door.disconnects += 1

    def close(self) -> None:
        """Stop watching, then close the monitor and the stream's socket; idempotent.

        Called once no other greenlet waits on the stream's socket.
        """
        if self._closed:
            return
        self._closed = True
        if self._watcher is not None:
            self._watcher.kill(block=True, timeout=1.0)
        socket = self.stream.socket
        if self._monitor is not None:
            try:
                socket.disable_monitor()
            except zmq.ZMQError:
                pass
            self._monitor.close(linger=0)
        self.stream.disconnect()
        self.door.peers = 0



class ZmqDoor(LoopDoor):
    """What sources and outputs share: the endpoint, the socket's lifecycle, states."""

    #: one process of a gunicorn server runs a ZMQ socket (a bind cannot be
    #: shared; a source read by every worker would publish each message N times)
    single = True
    #: ms the socket keeps unsent messages when it closes
    linger = 0
    #: more libzmq options of the socket, set before it binds or connects
    socket_options: tuple[tuple[int, int], ...] = ()
    #: the state of a connecting socket without a peer
    no_peer_state = DoorState.CONNECTING

    def __init__(self, endpoint: ZmqEndpoint, *, hub: Hub, context: ZmqContext) -> None:
        super().__init__(endpoint.door_name)
        self.endpoint = endpoint
        self.hub = hub
        self._context = context
        self._zmq: zmq.green.Context | None = None
        self._link: _Link | None = None
        self._connect_state = DoorState.CONNECTING
        self.peers = 0
        self.disconnects = 0
        self.retries = 0

    # -- LoopDoor hooks ---------------------------------------------------------------

    def open(self) -> None:
        """Take the shared context; bind and connect nothing yet (the loop does)."""
        self._zmq = self._context.acquire()

    def close(self) -> None:
        if self._link is not None:
            self._link.close()
            self._link = None
        if self._zmq is not None:
            self._zmq = None
            self._context.release()

    def status(self) -> dict[str, Any]:
        info = super().status()
        if info["state"] == DoorState.RUNNING.value:
            info["state"] = self._link_state().value
        return info

    def _link_state(self) -> DoorState:
        if self._connect_state is not DoorState.RUNNING:
            return self._connect_state  # connecting to the socket, or retrying
        if self.endpoint.binds:
            return DoorState.RUNNING
        return DoorState.CONNECTED if self.peers else self.no_peer_state

    def _common_status(self) -> dict[str, Any]:
        endpoint = self.endpoint
        return {
            "address": endpoint.address,
            "conn_type": endpoint.conn_type,
            "mode": endpoint.mode,
            "channel": endpoint.channel,
            "queue_size": endpoint.queue_size,
            "peers": self.peers,
            "disconnects": self.disconnects,
            "retries": self.retries,
        }

    # -- the socket ------------------------------------------------------------------------

    def _connect(self, **options: Any) -> _Link | None:
        """Bind or connect (the loop's backoff between failures); None once stopping."""
        endpoint = self.endpoint
        backoff = Backoff(RETRY_INITIAL, RETRY_MAX)
        while not self.stopping:
            self._connect_state = DoorState.CONNECTING
            context = _DoorContext.shadow(self._zmq.underlying)
            context.options = self.socket_options
            stream = Stream()
            try:
                stream.connect(endpoint.address, conn_type=endpoint.conn_type,
                               mode=endpoint.mode, queue_size=endpoint.queue_size,
                               linger=self.linger, context=context, **options)
            except ConnectError as err:
                if context.monitor is not None:
                    context.monitor.close(linger=0)
                delay = backoff.next()
                self._record_error(str(err))
                self._connect_state = DoorState.RETRYING
                self.retries += 1
                log.warning("%s: %s; retrying in %g s", self.name, err, delay)
                if self.wait(delay):
                    return None
                continue
            self._link = _Link(self, stream, context.monitor)
            self._connect_state = DoorState.RUNNING
            log.info("%s: %s %s (%s)", self.name,
                     "bound to" if endpoint.binds else "connecting to", endpoint.address,
                     endpoint.mode)
            return self._link
        return None

    def _disconnect(self) -> None:
        if self._link is not None:
            self._link.close()
            self._link = None

