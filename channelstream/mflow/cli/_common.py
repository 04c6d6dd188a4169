"""What the m_* tools share: stopping on signals, one-line errors, progress, addresses."""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Callable
from typing import Any

import zmq

from ..errors import MflowError
from ..split import ConfigError

#: How often blocking calls come back to look at the stop flag (ms).
TICK_MS = 200


class Stop:
    """Set by SIGINT/SIGTERM; the tools' loops look at it between messages."""

    def __init__(self) -> None:
        self.requested = False
        self.signal: int | None = None
        for number in (signal.SIGINT, signal.SIGTERM):
            signal.signal(number, self._handle)

    def _handle(self, number: int, _frame: Any) -> None:
        self.requested = True
        self.signal = number

    def __call__(self) -> bool:
        return self.requested


def fail(tool: str, text: str) -> int:
    print(f"{tool}: error: {text}", file=sys.stderr, flush=True)
    return 1


def run(tool: str, main: Callable[[], int | None]) -> int:
    """Run ``main``; turn the errors a user can cause into one line and status 1."""
    try:
        return main() or 0
    except (MflowError, ConfigError, zmq.ZMQError, OSError, ValueError) as exc:
        return fail(tool, str(exc) or type(exc).__name__)
    except KeyboardInterrupt:  # a signal before the handlers were installed
        return 0


class Progress:
    """A line rewritten in place on a terminal (every ``interval`` s); silent otherwise."""

    def __init__(self, interval: float = 0.5, stream: Any = None) -> None:
        self.stream = stream or sys.stdout
        self.enabled = self.stream.isatty()
        self.interval = interval
        self._next = time.monotonic() + interval
        self._shown = False

    def update(self, messages: int, size: int | None = None) -> None:
        """Show ``messages`` (and ``size`` bytes) if the last showing is old enough."""
        if not self.enabled:
            return
        now = time.monotonic()
        if now >= self._next:
            self._next = now + self.interval
            text = f"{messages} messages" + ("" if size is None else f", {megabytes(size)}")
            self.stream.write("\r" + text + "\x1b[K")
            self.stream.flush()
            self._shown = True

    def done(self) -> None:
        if self._shown:
            self.stream.write("\n")
            self.stream.flush()


def megabytes(count: int) -> str:
    return f"{count / 1e6:.3f} MB"
