"""Subscriptions: one outbox's interest in one channel.

A subscription binds an outbox to a channel with a filter, a decimation, and
the principal (user) it acts for, which private messages are checked against.
``Start`` says where it begins: live, after a known offset (resume), N ms ago,
or the oldest message kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .filters import Decimation, Filter
from .message import Message

if TYPE_CHECKING:
    from .channel import Channel
    from .outbox import Outbox

LIVE = "live"
AFTER = "after"
MS_AGO = "ms_ago"
OLDEST = "oldest"


@dataclass(frozen=True, slots=True)
class Start:
    """Where a subscription starts reading its channel.

    Use the constructors: ``Start.live()``, ``Start.after(epoch, offset)``,
    ``Start.ms_ago(ms)``, ``Start.oldest()``.
    """

    mode: str = LIVE
    epoch: str = ""
    offset: int = 0
    ms: int = 0

    @classmethod
    def live(cls) -> Start:
        """New messages only (after the channel's sticky messages)."""
        return cls(LIVE)

    @classmethod
    def after(cls, epoch: str, offset: int) -> Start:
        """Resume: every message after ``offset`` of channel epoch ``epoch``."""
        if offset < 0:
            raise ValueError("resume offset must be >= 0")
        return cls(AFTER, epoch=epoch, offset=offset)

    @classmethod
    def ms_ago(cls, ms: int) -> Start:
        """Every message received in the last ``ms`` milliseconds, then live."""
        if ms < 0:
            raise ValueError("start time must be >= 0 ms in the past")
        return cls(MS_AGO, ms=ms)

    @classmethod
    def oldest(cls) -> Start:
        """Everything the history still holds, then live."""
        return cls(OLDEST)


class Subscription:
    """An outbox subscribed to a channel. Created by ``Hub.subscribe``.

    ``resume_error`` is set when the start could not be honoured: for
    ``Start.after``, the epoch changed or history no longer reaches back (the
    subscription then started live); for ``Start.ms_ago``, history had
    already lost part of the window (what is left of it was replayed). The
    door tells its client so.
    """

    __slots__ = (
        "channel",
        "outbox",
        "filter",
        "decimation",
        "principal",
        "delivered",
        "dropped",
        "active",
        "resume_error",
        "since",
        "since_ms",
    )

    def __init__(
        self,
        channel: Channel,
        outbox: Outbox,
        *,
        filter: Filter | None = None,
        decimation: Decimation | None = None,
        principal: str | None = None,
    ) -> None:
        self.channel = channel
        self.outbox = outbox
        self.filter = filter if filter else None
        # Decimation counts messages: each subscription needs its own counters.
        self.decimation = decimation.fresh() if decimation else None
        self.principal = principal
        self.delivered = 0
        self.dropped = 0
        self.active = True
        self.resume_error: str | None = None
        #: the channel's last offset when the subscription began: live
        #: messages are those after it.
        self.since = channel.last_offset
        #: the oldest receive time (UTC ms) its window covers: the time it
        #: began (live), or that many ms before (``Start.ms_ago``); 0 for a
        #: resume or ``Start.oldest`` (any time). Set by the channel; a dated
        #: message (``Channel.publish_dated``) older than it is not offered.
        self.since_ms = 0

    @property
    def plain(self) -> bool:
        """No filter and no decimation: every visible message goes through."""
        return self.filter is None and self.decimation is None

    def accepts(self, message: Message) -> bool:
        """Visibility, filter and decimation, in that order (decimation counts)."""
        if (message.audience is not None or message.excluded is not None) and not (
            message.visible_to(self.principal)
        ):
            return False
        if self.filter is not None and not self.filter.matches(message):
            return False
        if self.decimation is not None and not self.decimation.keep(message):
            return False
        return True

    def owns(self, message: Message) -> bool:
        """Whether ``message`` reached the outbox through this subscription."""
        return message.epoch == self.channel.epoch and message.offset > self.since

    def cancel(self) -> None:
        """Stop receiving. Idempotent; queued messages stay in the outbox."""
        if not self.active:
            return
        self.active = False
        self.channel.remove(self)
        self.outbox.detach(self)

    def stats(self) -> dict:
        return {
            "channel": self.channel.name,
            "filter": self.filter.as_dict() if self.filter else None,
            "delivered": self.delivered,
            "dropped": self.dropped,
        }
