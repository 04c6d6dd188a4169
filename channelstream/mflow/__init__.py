"""channelstream.mflow: PSI mflow's API over ZMQ, byte-compatible, usable under gevent.

A user's view (the same as ``import mflow``, under another import name so
that PSI's package can sit beside it)::

    from channelstream import mflow

    stream = mflow.connect("tcp://detector:9999", conn_type=mflow.CONNECT, mode=mflow.PULL,
                           receive_timeout=1000, queue_size=100)
    message = stream.receive()          # None on timeout
    message.data                        # {"header": {...}, "data": [...]} for raw-1.0
    message.statistics.messages_received
    stream.disconnect()

The wire format: every message is a ZMQ multipart message whose part 0 is a
UTF-8 JSON object with an ``htype`` naming the format of the rest. The
htypes, each a module of :mod:`.htypes` with its byte layout in its
docstring: ``array-1.0``, ``raw-1.0``, ``dheader-1.0``, ``dimage-1.0``,
``dseries_end-1.0``, ``bsr_m-1.1``. Each is decoded (``receive``) and encoded
(``forward``) byte for byte as PSI's mflow and bsread do.

The contract that mflow lacked: ``receive()`` returns a message, returns
None on timeout, or raises :class:`MalformedMessage` for a message it could
not decode (bad JSON header, unknown htype, missing or extra parts, sizes
that do not match); either way the whole message was read and counted once,
and the next ``receive()`` starts at the next message. ``forward()`` encodes
the whole message before sending any part (:class:`EncodeError` otherwise).

Modules: :mod:`.stream` (connect, Stream), :mod:`.receiver` (what handlers
read, Message, Statistics), :mod:`.htypes` (codecs), :mod:`.utils` (Merge,
throughput statistics), :mod:`.green` (plain or gevent pyzmq),
:mod:`.monitor` (no_client_action), :mod:`.dumpfiles` (m_dump's layout),
:mod:`.split` (m_split's core), :mod:`.cli` (the ``m_*`` tools).

This package imports nothing from the rest of channelstream, but for
:mod:`.door` (``zmq.sources`` and ``zmq.outputs`` on the hub), which adapts
it to the hub and which none of the library's modules imports.
"""

from __future__ import annotations

from . import htypes, utils
from .errors import ConnectError, EncodeError, MalformedMessage, MflowError, UnknownHtype
from .htypes import encode, encoders, receive_handlers
from .receiver import Message, Receiver, Statistics
from .stream import (
    BIND,
    CONNECT,
    PUB,
    PULL,
    PUSH,
    SUB,
    Stream,
    connect,
    disconnect,
    handlers,
)
from .utils import Merge

#: htype -> encoder, under mflow's name.
send_handlers = encoders

__all__ = [
    "connect", "disconnect", "Stream", "Message", "Statistics", "Receiver", "Merge",
    "CONNECT", "BIND", "PULL", "PUSH", "PUB", "SUB",
    "handlers", "receive_handlers", "send_handlers", "encoders", "encode", "htypes", "utils",
    "MflowError", "MalformedMessage", "UnknownHtype", "EncodeError", "ConnectError",
]
