"""What every client transport shares: attach, resume, kick.

A transport (a websocket, one long-poll request, an SSE stream) attaches to
a connection, drains its outbox from one greenlet, and detaches. A newer
transport of the same connection kicks the older one; so do the collector
and the shutdown. Kicking never blocks (it may run inside a hub publish): it
throws :class:`Kicked` into the transport's greenlet, and the transport that
replaces it waits for :attr:`Transport.ended` (:meth:`Transport.attach`).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING

import gevent
from gevent.event import Event

from ..errors import BadRequest

if TYPE_CHECKING:
    from . import ChatState
    from .connections import Connection

#: Most channels a resume may name.
MAX_RESUME_CHANNELS = 1000


class Kicked(Exception):
    """Thrown into a transport's greenlet to end it."""


class Transport:
    """Base of the client transports (see the module doc)."""

    kind = "transport"

    def __init__(self) -> None:
        self.greenlet: gevent.Greenlet | None = None
        self.kicked: str | None = None
        self.ended = Event()

    def kick(self, reason: str) -> None:
        """End this transport soon; never blocks.

        Sets :attr:`kicked` at once: a transport checks it after every wait
        and before draining, so once kicked it takes nothing more from the
        outbox even if a wake-up reaches it before the exception does.
        """
        if self.kicked is not None:
            return
        self.kicked = reason
        greenlet = self.greenlet
        if greenlet is None or greenlet.dead:
            self.ended.set()  # it never started draining, or has stopped
        elif greenlet is not gevent.getcurrent():
            greenlet.kill(Kicked(reason), block=False)

    def attach(
        self,
        chat: ChatState,
        connection: Connection,
        resume: Mapping[str, tuple[str, int]],
        timeout: float = 5.0,
    ) -> list[tuple[str, str]]:
        """Attach to ``connection`` (kicking the transport it had), apply ``resume``,
        then wait up to ``timeout`` until the kicked one stopped draining.

        Returns the resumes that failed (:meth:`ChatState.attach`). The wait
        yields: a transport whose :attr:`greenlet` runs this may get
        :class:`Kicked` here, by a newer one, after it attached.
        """
        previous = connection.transport  # read first: attaching replaces it
        failures = chat.attach(connection, self, resume)
        if previous is not None and previous is not self:
            previous.ended.wait(timeout)
        return failures


def parse_resume(value: str | None) -> dict[str, tuple[str, int]]:
    """``{"<channel>": ["<epoch>", <offset>], ...}`` from JSON text, or 400."""
    if not value:
        return {}
    try:
        data = json.loads(value)
    except ValueError:
        raise BadRequest("resume: not valid JSON", field="resume") from None
    return validate_resume(data)


def validate_resume(data: object) -> dict[str, tuple[str, int]]:
    if not isinstance(data, Mapping):
        raise BadRequest('resume: expected {"<channel>": ["<epoch>", <offset>]}', field="resume")
    if len(data) > MAX_RESUME_CHANNELS:
        raise BadRequest(f"resume: at most {MAX_RESUME_CHANNELS} channels", field="resume")
    positions = {}
    for channel, position in data.items():
        if (
            not isinstance(position, list | tuple)
            or len(position) != 2
            or not isinstance(position[0], str)
            or not isinstance(position[1], int)
            or isinstance(position[1], bool)
            or position[1] < 0
        ):
            raise BadRequest(
                f'resume: position of {channel!r} must be ["<epoch>", <offset >= 0>]',
                field="resume",
            )
        positions[str(channel)] = (position[0], position[1])
    return positions


def resume_token(positions: Mapping[str, tuple[str, int]]) -> str:
    """An SSE event id that encodes every channel's position (base64url JSON)."""
    raw = json.dumps({k: list(v) for k, v in positions.items()}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def parse_resume_token(token: str | None) -> dict[str, tuple[str, int]]:
    if not token:
        return {}
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = json.loads(raw)
    except (ValueError, binascii.Error):
        raise BadRequest(
            "Last-Event-ID: not an event id of this server", field="Last-Event-ID"
        ) from None
    return validate_resume(data)
