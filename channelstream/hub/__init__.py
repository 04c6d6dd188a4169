"""The hub core: channels, history, subscriptions, outboxes and the bus.

Plain Python on gevent primitives. It imports no door and no framework: doors
(HTTP, websocket, socket.io, TCP, AMQP, ZMQ, G3, loom) adapt their protocol to
these classes. See ``hub.py`` for how a door uses it.
"""

from .bus import Bus, LocalBus
from .channel import Channel, ChannelConfig
from .filters import Decimation, Filter
from .hub import Hub, HubConfig, HubState
from .message import DATA, STICKY, Message
from .outbox import REASON_LOST, REASON_OVERFLOW, REASON_SHUTDOWN, Outbox
from .subscription import Start, Subscription
from .writer import run_writer

__all__ = [
    "Bus",
    "Channel",
    "ChannelConfig",
    "DATA",
    "Decimation",
    "Filter",
    "Hub",
    "HubConfig",
    "HubState",
    "LocalBus",
    "Message",
    "Outbox",
    "REASON_LOST",
    "REASON_OVERFLOW",
    "REASON_SHUTDOWN",
    "STICKY",
    "Start",
    "Subscription",
    "run_writer",
]
