"""Streams: mflow's ``connect()`` and ``Stream`` over one ZMQ socket.

A stream is one socket (PULL, SUB, PUSH or PUB) that either connects or
binds. Receiving streams (PULL, SUB) read one whole multipart message per
:meth:`Stream.receive` and hand it to the handler of its htype (see
:mod:`.receiver` for what that guarantees); sending streams (PUSH, PUB) send
parts (:meth:`Stream.send`) or whole messages (:meth:`Stream.forward`).

``receive()`` returns a :class:`~.receiver.Message`, None when nothing
arrived within ``receive_timeout`` (or at once with ``block=False``), or
raises :class:`~.errors.MalformedMessage` (after counting the message in
``statistics.messages_malformed``; the stream is then ready for the next).

Concurrency: a stream is used by one thread or one greenlet at a time, like
its socket. Under gevent (see :mod:`.green` for how the flavour is chosen)
its blocking calls block only the calling greenlet, ``receive_timeout`` and
``send_timeout`` are enforced with ``gevent.Timeout`` (ZMQ's own timeouts do
nothing on green sockets), and killing the greenlet while it waits in
``receive()`` loses nothing: a message is either read whole or not at all.

Memory: ZMQ holds at most ``queue_size`` messages per peer pipe (the
high-water mark); a stream holds one message on top. ``max_message_size``
(bytes, ZMQ_MAXMSGSIZE; default unlimited, as mflow) disconnects a peer that
sends a larger part.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import zmq

from . import htypes
from .errors import ConnectError, EncodeError, MalformedMessage
from .green import flavour, is_green
from .jsonpart import header_or_none
from .monitor import ClientMonitor
from .receiver import Message, Receiver, Statistics

logger = logging.getLogger(__name__)

CONNECT = "connect"
BIND = "bind"
PUB = zmq.PUB
SUB = zmq.SUB
PUSH = zmq.PUSH
PULL = zmq.PULL

_NOBLOCK = zmq.NOBLOCK
_RCVMORE = zmq.RCVMORE
_MODES = {"pub": PUB, "sub": SUB, "push": PUSH, "pull": PULL}
_RECEIVING = (PULL, SUB)

#: htype -> receive handler; each new stream starts with a copy (mflow's ``handlers``).
handlers: dict[str, Callable[[Receiver], Any]] = dict(htypes.receive_handlers)


def mode_of(mode: int | str) -> int:
    """A socket type from ``zmq.PULL``-style ints or "pull"/"PULL"-style names."""
    if isinstance(mode, str):
        try:
            return _MODES[mode.lower()]
        except KeyError:
            raise ValueError(f"unknown mode {mode!r} (pull, sub, push or pub)") from None
    if mode not in _MODES.values():
        raise ValueError(f"unknown mode {mode!r} (PULL, SUB, PUSH or PUB)")
    return mode


class Stream:
    """One ZMQ socket with mflow's interface; see the module docstring.

    :ivar handlers: htype -> handler used by :meth:`receive` (a copy of the
        module's ``handlers`` at creation; change either).
    :ivar statistics: this stream's :class:`~.receiver.Statistics`.
    """

    def __init__(self) -> None:
        self.context: zmq.Context | None = None
        self.socket: zmq.Socket | None = None
        self.address: str | None = None
        self.mode: int | None = None
        self.handlers = dict(handlers)
        self.statistics = Statistics()
        self.receiver: Receiver | None = None
        self.copy = True
        self._owns_context = False
        self._green = False
        self._receive_timeout: float | None = None
        self._send_timeout: float | None = None
        self._monitor: ClientMonitor | None = None

    # -- lifecycle ------------------------------------------------------------------------

    def connect(self, address: str, conn_type: str = CONNECT, mode: int | str = PULL,
                receive_timeout: int | None = None, queue_size: int = 100, linger: int = 1000,
                context: zmq.Context | None = None, copy: bool = True,
                send_timeout: int | None = None, max_message_size: int | None = None,
                no_client_action: Callable[[], object] | None = None,
                no_client_timeout: float = 10) -> None:
        """Open the socket; see :func:`connect` for the parameters.

        :raises ConnectError: the bind or connect failed (the socket is closed).
        :raises ValueError: a bad mode or conn_type.
        """
        if self.socket is not None:
            raise RuntimeError("this stream is already connected")
        mode = mode_of(mode)
        if conn_type not in (CONNECT, BIND):
            raise ValueError(f"conn_type must be {CONNECT!r} or {BIND!r}, not {conn_type!r}")
        owns = context is None
        if context is None:
            context = flavour().Context()
        socket = context.socket(mode)
        try:
            self._green = is_green(context)
            if mode == SUB:
                socket.setsockopt(zmq.SUBSCRIBE, b"")
            socket.setsockopt(zmq.LINGER, linger)
            socket.set_hwm(queue_size)
            if max_message_size:
                socket.setsockopt(zmq.MAXMSGSIZE, int(max_message_size))
            if not self._green:
                if receive_timeout:
                    socket.setsockopt(zmq.RCVTIMEO, int(receive_timeout))
                if send_timeout:
                    socket.setsockopt(zmq.SNDTIMEO, int(send_timeout))
            if no_client_action is not None:
                self._monitor = ClientMonitor(socket, no_client_action, no_client_timeout)
            if conn_type == CONNECT:
                socket.connect(address)
            else:
                socket.bind(address)
        except zmq.ZMQError as exc:
            self._close(socket, context, owns)
            raise ConnectError(f"Unable to {conn_type} to {address}: {exc}") from exc
        except BaseException:
            self._close(socket, context, owns)
            raise
        logger.debug("%s %s (%s)", "connected to" if conn_type == CONNECT else "bound to",
                     address, socket.type)
        self.context, self.socket, self._owns_context = context, socket, owns
        self.address, self.mode, self.copy = address, mode, copy
        self._receive_timeout = receive_timeout / 1000 if receive_timeout and receive_timeout > 0 \
            else None
        self._send_timeout = send_timeout / 1000 if send_timeout and send_timeout > 0 else None
        if mode in _RECEIVING:
            self.receiver = Receiver(copy, self.statistics)

    def _close(self, socket: zmq.Socket, context: zmq.Context, owns: bool) -> None:
        if self._monitor is not None:
            self._monitor.stop()
            self._monitor = None
        socket.close(linger=0)
        if owns:
            context.term()

    def disconnect(self) -> None:
        """Close the socket (and the context, if the stream made it); idempotent.

        Unsent messages are kept up to ``linger`` ms, as with mflow.
        """
        socket = self.socket
        if socket is None or socket.closed:
            return
        if self._monitor is not None:
            self._monitor.stop()
            self._monitor = None
        socket.close()
        if self._owns_context:
            self.context.term()
        logger.debug("disconnected from %s", self.address)

    close = disconnect

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.disconnect()

    @property
    def closed(self) -> bool:
        """True before ``connect`` and after ``disconnect`` (the closed socket stays)."""
        return self.socket is None or self.socket.closed

    # -- receiving ------------------------------------------------------------------------

    def receive_frames(self, block: bool = True) -> list | None:
        """The next whole message as its list of parts, undecoded and uncounted; None on timeout.

        Parts are ``bytes``, or ``zmq.Frame`` with ``copy=False``.
        """
        socket = self.socket
        if socket is None:
            raise RuntimeError("the stream is not connected")
        if self._green and block:
            return self._receive_green()
        recv = socket.recv
        try:
            if self.copy:
                frames = [recv(0 if block else _NOBLOCK)]
                more = socket.getsockopt
                while more(_RCVMORE):
                    frames.append(recv())
                return frames
            frame = recv(0 if block else _NOBLOCK, copy=False)
        except zmq.Again:
            return None
        frames = [frame]
        while frame.more:
            frame = recv(copy=False)
            frames.append(frame)
        return frames

    def _receive_green(self) -> list | None:
        socket = self.socket
        try:  # no timer when a message is waiting already
            return socket.recv_multipart(zmq.NOBLOCK, copy=self.copy)
        except zmq.Again:
            pass
        if self._receive_timeout is None:
            return socket.recv_multipart(copy=self.copy)
        import gevent

        timer = gevent.Timeout(self._receive_timeout)
        timer.start()
        try:
            return socket.recv_multipart(copy=self.copy)
        except gevent.Timeout as fired:
            if fired is not timer:
                raise
            return None
        finally:
            timer.close()

    def receive(self, handler: Callable[[Receiver], Any] | None = None,
                block: bool = True) -> Message | None:
        """Receive and decode one message.

        :param handler: decode with this instead of the handler of the message's htype.
        :param block: with False, return None at once when no message is waiting.
        :returns: the message, or None on timeout.
        :raises MalformedMessage: the message could not be decoded (it was read whole
            and counted in ``statistics.messages_malformed``).
        """
        frames = self.receive_frames(block)
        if frames is None:
            return None
        return self.handle(frames, handler)

    def receive_raw(self, block: bool = True) -> Message | None:
        """mflow's ``receive_raw``: decode whatever the htype as ``raw-1.0``."""
        return self.receive(htypes.raw_1_0.receive, block)

    def handle(self, frames: list, handler: Callable[[Receiver], Any] | None = None) -> Message:
        """Decode ``frames`` (one message) as :meth:`receive` does, counting it."""
        receiver = self.receiver
        if receiver is None:
            raise RuntimeError("a PUSH or PUB stream cannot receive")
        receiver.frames = frames
        receiver.index = 0
        if handler is None and frames:
            # the hot path: a good header of a known htype, decoded once
            first = frames[0]
            header = header_or_none(first if type(first) is bytes else first.bytes)
            if header is not None:
                htype = header.get("htype")
                handler = self.handlers.get(htype) if type(htype) is str else None
                receiver.header = header
        try:
            if handler is None:  # find out what is wrong, or fail on an unknown htype
                data = htypes.dispatch(receiver, self.handlers)
            else:
                data = handler(receiver)
        except MalformedMessage as exc:
            self.statistics.messages_malformed += 1
            if exc.htype is None and receiver.header is not None:
                htype = receiver.header.get("htype")
                exc.htype = htype if type(htype) is str else None
            exc.parts = len(frames)
            raise
        except Exception as exc:
            self.statistics.messages_malformed += 1
            header = receiver.header
            raise MalformedMessage(f"the handler failed: {exc!r}",
                                   header.get("htype") if header else None,
                                   len(frames)) from exc
        finally:
            receiver.header = None
        statistics = self.statistics
        size = 0
        for frame in frames:
            size += len(frame)
        statistics.bytes_received = size
        statistics.total_bytes_received += size
        statistics.messages_received += 1
        return Message(statistics, data, frames)

    # -- sending --------------------------------------------------------------------------

    def send(self, data: Any, send_more: bool = False, block: bool = True,
             as_json: bool = False) -> bool:
        """Send one part (mflow's ``send``); True if sent, False if ``block=False`` found it full.

        :raises zmq.Again: ``send_timeout`` expired (blocking sends).
        """
        flags = zmq.SNDMORE if send_more else 0
        if as_json:
            from . import jsonpart

            data = jsonpart.dumps(data)
        return self._send(self.socket.send, data, flags, block)

    def send_parts(self, parts: list, block: bool = True) -> bool:
        """Send ``parts`` as one multipart message, whole or not at all."""
        if not parts:
            raise EncodeError("a message needs at least one part")
        return self._send(self.socket.send_multipart, parts, 0, block)

    def _send(self, send: Callable[..., Any], data: Any, flags: int, block: bool) -> bool:
        if self.socket is None:
            raise RuntimeError("the stream is not connected")
        try:
            if not block:
                send(data, flags | zmq.NOBLOCK, copy=self.copy)
            elif self._green and self._send_timeout is not None:
                import gevent

                try:
                    send(data, flags | zmq.NOBLOCK, copy=self.copy)
                except zmq.Again:
                    with gevent.Timeout(self._send_timeout, zmq.Again("send timed out")):
                        send(data, flags, copy=self.copy)
            else:
                send(data, flags, copy=self.copy)
        except zmq.Again:
            if not block:
                return False
            raise
        return True

    def forward(self, message: Any, handler: Callable[..., Any] | None = None,
                block: bool = True) -> bool:
        """Send a whole message: a received :class:`Message` (its parts, unchanged) or a
        decoded dict (encoded by its htype; mflow's ``forward``).

        :param handler: an mflow-style send handler ``handler(message, send, block)``.
        :returns: True if sent, False if ``block=False`` found the socket full.
        :raises EncodeError: the dict cannot be encoded (nothing was sent).
        """
        if handler is not None:
            handler(message, send=self.send, block=block)
            return True
        if isinstance(message, Message):
            parts = message.frames
        else:
            parts = htypes.encode(message)
        return self.send_parts(parts, block)


def connect(address: str, conn_type: str = CONNECT, mode: int | str = PULL, queue_size: int = 100,
            receive_timeout: int | None = None, linger: int = 1000,
            no_client_action: Callable[[], object] | None = None, no_client_timeout: float = 10,
            copy: bool = True, send_timeout: int | None = None,
            context: zmq.Context | None = None, max_message_size: int | None = None) -> Stream:
    """Open a stream (mflow's ``connect``; the last two parameters are additions).

    :param address: e.g. ``tcp://detector:9999`` or ``tcp://*:9999``.
    :param conn_type: ``CONNECT`` or ``BIND``.
    :param mode: ``PULL``, ``SUB`` (subscribes to everything), ``PUSH`` or ``PUB``.
    :param queue_size: the ZMQ high-water mark (messages), both directions.
    :param receive_timeout: ms a blocking ``receive()`` waits before returning None
        (None, 0 or negative: forever).
    :param linger: ms unsent messages are kept at ``disconnect()`` (-1: forever).
    :param no_client_action: called after ``no_client_timeout`` seconds without any peer.
    :param copy: False receives parts as ``zmq.Frame`` (no copy; arrays are views of
        them, ``receiver.next()`` returns memoryviews) and sends without copying.
    :param send_timeout: ms a blocking send waits before raising ``zmq.Again``.
    :param context: a ``zmq.Context`` (or ``zmq.green.Context``) to use; not
        terminated at ``disconnect()``. Default: a new one of the flavour of
        :mod:`.green`, terminated at ``disconnect()``.
    :param max_message_size: the largest part accepted, in bytes (ZMQ_MAXMSGSIZE).
    """
    stream = Stream()
    stream.connect(address, conn_type=conn_type, mode=mode, receive_timeout=receive_timeout,
                   queue_size=queue_size, linger=linger, context=context, copy=copy,
                   send_timeout=send_timeout, max_message_size=max_message_size,
                   no_client_action=no_client_action, no_client_timeout=no_client_timeout)
    return stream


def disconnect(stream: Stream) -> None:
    """mflow's module-level ``disconnect``."""
    stream.disconnect()
