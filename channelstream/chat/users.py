"""Users: a name, a state with public keys, and the user's connections."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .connections import Connection


class User:
    """A channelstream user. Created by ``/connect``; forgotten by the GC."""

    def __init__(self, name: str, now: float) -> None:
        self.name = name
        self.state: dict[str, Any] = {}
        self.public_keys: list[str] = []
        self.connections: dict[str, Connection] = {}
        self.last_active = now

    def merge_state(self, changes: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Apply ``changes``; return ``[{"key", "value"}]`` of what changed.

        As in channelstream 0.7.1: a key is set only if its value differs, so
        setting a missing key to null changes nothing; keys are never deleted.
        """
        changed = []
        for key, value in changes.items():
            if (
                key in self.state
                and self.state[key] == value
                and type(self.state[key]) is type(value)
            ):
                continue
            if key not in self.state and value is None:
                continue
            self.state[key] = value
            changed.append({"key": key, "value": value})
        return changed

    def set_public_keys(self, keys: Iterable[str]) -> None:
        self.public_keys = list(dict.fromkeys(keys))

    @property
    def public_state(self) -> dict[str, Any]:
        return {key: self.state[key] for key in self.public_keys if key in self.state}

    def public_changes(self, changed: list[dict[str, Any]]) -> list[dict[str, Any]]:
        public = set(self.public_keys)
        return [change for change in changed if change["key"] in public]
