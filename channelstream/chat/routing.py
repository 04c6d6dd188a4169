"""How channelstream names map to hub channels, and the messages sent on them.

Each channelstream channel is the hub channel ``channel:<name>``; each user's
private messages go through ``user:<name>``.
"""

from __future__ import annotations

from typing import Any

from ..hub import Message
from .frames import PM_RESUME_KEY

CHANNEL_PREFIX = "channel:"
USER_PREFIX = "user:"


def hub_channel(name: str) -> str:
    return CHANNEL_PREFIX + name


def user_channel(name: str) -> str:
    return USER_PREFIX + name


def channel_message(
    channel: str,
    frame: dict[str, Any],
    *,
    audience: frozenset[str] | None = None,
    excluded: frozenset[str] | None = None,
) -> Message:
    """The hub message carrying ``frame`` to the members of chat ``channel``."""
    return Message(
        hub_channel(channel),
        frame,
        audience=audience or None,
        excluded=excluded or None,
        droppable=False,  # a chat client too slow is disconnected, then resumes
    )


def user_message(user: str, frame: dict[str, Any]) -> Message:
    """The hub message carrying ``frame`` to every connection of ``user``."""
    return Message(user_channel(user), frame, droppable=False)


def resume_key(hub_name: str) -> str:
    """The key of a connection's hub channel in a ``resume`` object: the
    channel's name, or ``PM_RESUME_KEY`` for the user's private messages."""
    if hub_name.startswith(CHANNEL_PREFIX):
        return hub_name[len(CHANNEL_PREFIX) :]
    return PM_RESUME_KEY
