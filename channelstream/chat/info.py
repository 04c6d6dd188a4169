"""``/info``'s answer (``channels_info``): what a ChatState and its directory know of channels.

:class:`Info` is what the caller asks for (0.7.1's InfoResolution);
:func:`channels_info` builds the answer from the state's own channels and its
directory (every process's members and user states when it is shared).
"""

from __future__ import annotations

import uuid as uuid_module
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .channels import ChannelSettings, ChatChannel
from .routing import hub_channel

if TYPE_CHECKING:
    from .state import ChatState


@dataclass(frozen=True, slots=True)
class Info:
    """What ``channels_info`` includes (0.7.1's InfoResolution)."""

    channels: tuple[str, ...] | None = None  # None = all channels
    include_history: bool = True
    include_users: bool = True
    exclude_channels: tuple[str, ...] = ()
    include_connections: bool = False
    return_public_state: bool = False



def channels_info(chat: ChatState, info: Info) -> dict[str, Any]:
    """``channels_info``: ``{"channels": {name: ...}, "users": [...]}``.

    Members, user states and message histories are the directory's (every
    process's, when it is shared; all histories read in one call); a channel
    only other processes have is listed with the settings they gave it.
    """
    if info.channels is None:
        names = sorted(set(chat.channels) | set(chat.directory.channel_names()))
    else:
        names = sorted(set(info.channels))
    excluded = set(info.exclude_channels)
    names = [name for name in names if name not in excluded]
    members_of = chat.directory.members(names)
    listed: list[tuple[ChatChannel, dict[str, list[str]]]] = []
    for name in names:
        channel = chat.channels.get(name)
        members = members_of.get(name)
        if channel is None and not members:
            continue
        if channel is None:  # only on other processes
            channel = ChatChannel(name, chat.directory.settings(name) or ChannelSettings(), 0)
            channel.uuid = str(uuid_module.uuid5(uuid_module.NAMESPACE_URL, name))
        listed.append((channel, members or {}))
    if info.include_history:
        histories = chat.directory.histories([channel for channel, _ in listed])
    else:
        histories = [[] for _ in listed]
    channels: dict[str, Any] = {}
    users: set[str] = set()
    for (channel, members), history in zip(listed, histories, strict=True):
        name = channel.name
        names_here = sorted(members) if info.include_users else []
        users.update(names_here)
        hub_state = chat.hub.channel(hub_channel(name))
        entry: dict[str, Any] = {
            "uuid": channel.uuid,
            "name": name,
            "long_name": None,
            "settings": channel.settings.as_dict(),
            "history": history,
            "last_active": channel.last_active_iso,
            "total_connections": sum(len(ids) for ids in members.values()),
            "total_users": len(names_here),
            "users": names_here,
            "epoch": hub_state.epoch if hub_state is not None else None,
            "last_offset": hub_state.last_offset if hub_state is not None else 0,
        }
        if info.include_connections:
            entry["connections"] = {user: sorted(ids) for user, ids in sorted(members.items())}
        channels[name] = entry
    listed_users = []
    states = chat.directory.states(users)
    for name in sorted(users):
        if name in states:
            state, keys = states[name]
            if info.return_public_state:
                state = {key: state[key] for key in keys if key in state}
            listed_users.append({"user": name, "state": state})
    return {"channels": channels, "users": listed_users}
