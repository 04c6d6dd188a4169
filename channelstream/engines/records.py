"""Connection and user records in Redis: which process owns a connection, a user's state.

Keys under the engine's prefix:

- ``chat:conn:<id>``, a hash ``{user, owner, channels, granted}``: the
  process id that owns the connection (its control channel, :mod:`.control`)
  and, as JSON lists, the channels it is in and those the backend gave it
  (enough to rebuild it on another process when the owner died:
  :meth:`Records.claim`). Written by the owner at ``/connect``, its channels
  at each join and leave, refreshed on its timer, deleted when the
  connection closes; it expires ``redis.presence_ttl`` after the owner's last
  refresh, so the connections of a killed process are soon unknown everywhere.
  A process that takes a connection over (a transport attached there) sets
  itself as owner: the owner that hands it over does, or, the owner dead,
  the taker under ``WATCH`` (two takers: the first wins).
- ``chat:user:{<name>}``, a hash ``{state, keys}`` (JSON): the user's state
  and its public keys, shared by every process. Kept ``gc_users_after``
  after the last refresh by a process that has one of its connections.
- ``chat:user:{<name>}:channels``, a set: the channels the user is in on
  some process (for ``notify_state``; checked against presence before use,
  so an entry a dead process left is harmless; it expires with the user).

A state change is a read-modify-write under ``WATCH`` (optimistic, retried
a few times): two processes changing one user's state never lose a key.

Every method takes the Redis client (or a pipeline for the refreshes); the
caller classifies its errors.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

import redis
import redis.exceptions

from ..strict_json import dumps

#: WATCH conflicts tolerated before a state change gives up (it is then a 503).
MAX_STATE_RETRIES = 8

#: The state and public keys of a user.
UserRecord = tuple[dict[str, Any], list[str]]
#: Changes a record (state, keys) in place; returns what it answers.
Change = Callable[[dict[str, Any], list[str], bool], Any]


class StateConflict(RuntimeError):
    """A user's state kept changing under a read-modify-write."""


class Taken(RuntimeError):
    """Another process took the connection over first (:meth:`Records.claim`)."""


class Records:
    """The connection and user records under ``key_prefix`` (see the module doc).

    :param ttl: seconds a connection record lives without a refresh.
    :param user_ttl: seconds a user record lives without a refresh.
    """

    def __init__(self, key_prefix: str, ttl: float, user_ttl: float) -> None:
        self.key_prefix = key_prefix
        # As presence: refreshed every quarter of the ttl, gone within it.
        self.ttl_ms = int(ttl * 1000) * 3 // 4
        self.user_ttl_ms = int(user_ttl * 1000)

    # -- keys ------------------------------------------------------------------------

    def conn_key(self, conn_id: str) -> str:
        return f"{self.key_prefix}chat:conn:{conn_id}"

    def user_key(self, name: str) -> str:
        return f"{self.key_prefix}chat:user:{{{name}}}"

    def channels_key(self, name: str) -> str:
        return f"{self.key_prefix}chat:user:{{{name}}}:channels"

    # -- connections -----------------------------------------------------------------

    def own(self, client: Any, conn_id: str, user: str, owner: str) -> None:
        """Record (or refresh) that ``owner`` has connection ``conn_id`` of ``user``."""
        key = self.conn_key(conn_id)
        client.hset(key, mapping={"user": user, "owner": owner})
        client.pexpire(key, self.ttl_ms)

    def memberships(
        self, client: Any, conn_id: str, channels: Iterable[str], granted: Iterable[str]
    ) -> None:
        """Record the channels ``conn_id`` is in and those it was given."""
        key = self.conn_key(conn_id)
        client.hset(
            key, mapping={"channels": dumps(sorted(channels)), "granted": dumps(sorted(granted))}
        )
        client.pexpire(key, self.ttl_ms)

    def claim(
        self, client: Any, conn_id: str, owner: str, new_owner: str
    ) -> dict[str, Any] | None:
        """Make ``new_owner`` the owner of ``conn_id`` if ``owner`` still is
        (compare-and-set under ``WATCH``); answers the record (``username``,
        ``channels``: None if not recorded, ``granted``), or None if there is none.

        :raises Taken: another process took it meanwhile, or it is gone.
        """
        key = self.conn_key(conn_id)
        with client.pipeline(transaction=True) as pipe:
            try:
                pipe.watch(key)
                found, user, channels, granted = pipe.hmget(
                    key, "owner", "user", "channels", "granted"
                )
                if found is None:
                    return None
                if _text(found) != owner:
                    raise Taken(
                        f"connection {conn_id} was taken over by process {_text(found)}"
                    )
                pipe.multi()
                pipe.hset(key, "owner", new_owner)
                pipe.pexpire(key, self.ttl_ms)
                pipe.execute()
            except redis.exceptions.WatchError:
                raise Taken(
                    f"connection {conn_id} was taken over by another process at the same time"
                ) from None
        return {
            "conn_id": conn_id,
            "username": _text(user),
            "channels": json.loads(channels) if channels is not None else None,
            "granted": json.loads(granted) if granted is not None else [],
        }

    def disown(self, client: Any, conn_id: str, owner: str) -> None:
        """Forget ``conn_id`` (only if ``owner`` still owns it: a newer owner keeps it)."""
        key = self.conn_key(conn_id)
        if _text(client.hget(key, "owner")) == owner:
            client.delete(key)

    def owner(self, client: Any, conn_id: str) -> tuple[str, str] | None:
        """(owner process, user) of ``conn_id``, or None if no live process has it."""
        found = client.hmget(self.conn_key(conn_id), "owner", "user")
        if found[0] is None:
            return None
        return _text(found[0]), _text(found[1])

    # -- users -----------------------------------------------------------------------

    def users(self, client: Any, names: Iterable[str]) -> dict[str, UserRecord]:
        """The records of those of ``names`` that exist (one pipeline)."""
        names = list(names)
        if not names:
            return {}
        pipe = client.pipeline(transaction=False)
        for name in names:
            pipe.hmget(self.user_key(name), "state", "keys")
        found = {}
        for name, (state, keys) in zip(names, pipe.execute(), strict=True):
            if state is not None:
                found[name] = (json.loads(state), json.loads(keys or b"[]"))
        return found

    def exists(self, client: Any, name: str) -> bool:
        return bool(client.exists(self.user_key(name)))

    def change_user(self, client: redis.Redis, name: str, change: Change) -> Any:
        """Run ``change(state, keys, created)`` on the user's record and store it,
        atomically for every process (``WATCH``); return what ``change`` returns.

        ``created`` is True when there was no record (``change`` may then seed it).
        :raises StateConflict: it kept changing under us.
        """
        key = self.user_key(name)
        for _ in range(MAX_STATE_RETRIES):
            with client.pipeline(transaction=True) as pipe:
                try:
                    pipe.watch(key)
                    state_raw, keys_raw = pipe.hmget(key, "state", "keys")
                    created = state_raw is None
                    state = {} if created else json.loads(state_raw)
                    keys = json.loads(keys_raw or b"[]")
                    answer = change(state, keys, created)
                    pipe.multi()
                    pipe.hset(key, mapping={"state": dumps(state), "keys": dumps(keys)})
                    pipe.pexpire(key, self.user_ttl_ms)
                    pipe.execute()
                    return answer
                except redis.exceptions.WatchError:
                    continue
        raise StateConflict(f"the state of user {name!r} kept changing; try again")

    def refresh_user(self, pipe: Any, name: str) -> None:
        """Keep the user's records another ``user_ttl`` (the user has a connection here)."""
        pipe.pexpire(self.user_key(name), self.user_ttl_ms)
        pipe.pexpire(self.channels_key(name), self.user_ttl_ms)

    def in_channel(self, client: Any, name: str, channel: str, present: bool) -> None:
        """Note that user ``name`` is (``present``) or is no longer in ``channel``."""
        key = self.channels_key(name)
        if present:
            client.sadd(key, channel)
            client.pexpire(key, self.user_ttl_ms)
        else:
            client.srem(key, channel)

    def channels_of(self, client: Any, name: str) -> list[str]:
        return sorted(_text(c) for c in client.smembers(self.channels_key(name)))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


__all__ = ["Records", "StateConflict", "Taken", "UserRecord"]
