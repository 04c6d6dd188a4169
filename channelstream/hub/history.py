"""Channel history: a ring of sequenced messages, indexed by offset and time.

Offsets of one channel are contiguous, so the message with offset ``o`` sits at
``o - first_offset``; receive times never decrease (the channel guarantees it),
so a time lookup is a binary search. The ring is a list with a moving head that
is compacted when more than half of it is dead, which keeps appends and trims
amortised O(1) without a deque's O(n) middle access.

Bounds: ``size`` messages at most, and (if ``max_age_ms``) nothing older than
that, trimmed on every append and by ``trim`` (the channel trims before it
replays history, and the hub's collector trims idle channels).
"""

from __future__ import annotations

import bisect

from .message import Message

_COMPACT_MIN = 1024


def _time_of(message: Message) -> int:
    return message.time_ms


class History:
    """Bounded, append-only window of a channel's messages.

    :param size: maximum number of messages kept (0 keeps none).
    :param max_age_ms: maximum age in ms (0 = no age limit).
    """

    __slots__ = ("size", "max_age_ms", "last_trimmed_ms", "_items", "_head")

    def __init__(self, size: int, max_age_ms: int = 0) -> None:
        if size < 0 or max_age_ms < 0:
            raise ValueError("history size and age must be >= 0")
        self.size = size
        self.max_age_ms = max_age_ms
        #: receive time of the newest message trimmed away (None: none yet);
        #: tells a time query that part of its window is gone.
        self.last_trimmed_ms: int | None = None
        self._items: list[Message] = []
        self._head = 0

    def __len__(self) -> int:
        return len(self._items) - self._head

    def __iter__(self):
        items = self._items
        return (items[i] for i in range(self._head, len(items)))

    @property
    def first_offset(self) -> int | None:
        """Offset of the oldest message kept, or None when empty."""
        if self._head < len(self._items):
            return self._items[self._head].offset
        return None

    def append(self, message: Message, now_ms: int) -> None:
        if self.size == 0:
            self.last_trimmed_ms = message.time_ms  # kept for no time at all
            return
        self._items.append(message)
        self.trim(now_ms)

    def trim(self, now_ms: int) -> None:
        """Drop what is over the size or older than the age limit."""
        items = self._items
        head = self._head
        excess = len(items) - head - self.size
        if excess > 0:
            head += excess
        if self.max_age_ms:
            oldest_allowed = now_ms - self.max_age_ms
            if head < len(items) and items[head].time_ms < oldest_allowed:
                head = bisect.bisect_left(
                    items, oldest_allowed, lo=head, key=_time_of
                )
        if head != self._head:
            self.last_trimmed_ms = items[head - 1].time_ms
            # Release references at once so dropped messages can be freed.
            if head >= _COMPACT_MIN and head * 2 >= len(items):
                del items[:head]
                head = 0
            else:
                for i in range(self._head, head):
                    items[i] = None  # type: ignore[call-overload]
            self._head = head

    def prepend(self, older: list[Message]) -> int:
        """Put ``older`` (contiguous offsets, ending right before the oldest kept)
        first; as many as the size allows. Returns how many were kept."""
        room = self.size - len(self)
        if room <= 0 or not older:
            return 0
        older = older[-room:]
        self._items = [*older, *self._items[self._head :]]
        self._head = 0
        return len(older)

    def clear(self) -> None:
        """Drop everything kept (the channel's offsets start over elsewhere)."""
        self._items = []
        self._head = 0

    def after(self, offset: int) -> list[Message]:
        """Messages with an offset greater than ``offset``, oldest first."""
        first = self.first_offset
        if first is None:
            return []
        start = self._head + max(0, offset + 1 - first)
        return self._items[start:]

    def since(self, time_ms: int) -> list[Message]:
        """Messages received at ``time_ms`` or later, oldest first."""
        items = self._items
        start = bisect.bisect_left(items, time_ms, lo=self._head, key=_time_of)
        return items[start:]

    def all(self) -> list[Message]:
        return self._items[self._head :]

    def get(self, offset: int) -> Message | None:
        first = self.first_offset
        if first is None or offset < first:
            return None
        index = self._head + offset - first
        if index >= len(self._items):
            return None
        return self._items[index]

    def replace(self, message: Message) -> bool:
        """Put ``message`` in place of the stored one with the same offset."""
        if self.get(message.offset) is None:
            return False
        self._items[self._head + message.offset - self.first_offset] = message  # type: ignore[operator]
        return True
