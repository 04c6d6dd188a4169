"""The collector of channelstream connections, users and channels: a supervised loop.

Not a door (it adapts no protocol): a :class:`~channelstream.serving.doors.SupervisedLoop`
that the runtime runs beside the doors (``channelstream-gc`` in ``/healthz``).
"""

from __future__ import annotations

from typing import Any

from ..serving.doors import SupervisedLoop
from .state import ChatState

#: Seconds between collection passes.
INTERVAL = 1.0


class ChatCollector(SupervisedLoop):
    """Runs ``ChatState.collect`` every second; shows what it collected."""

    def __init__(self, chat: ChatState, interval: float = INTERVAL) -> None:
        super().__init__("channelstream-gc")
        self.chat = chat
        self.interval = interval
        self.collected = {"connections": 0, "users": 0, "channels": 0}

    def run(self) -> None:
        while not self.wait(self.interval):
            for kind, count in self.chat.collect().items():
                self.collected[kind] += count

    def extra_status(self) -> dict[str, Any]:
        return {"collected": dict(self.collected), **self.chat.stats()}
