"""Presence in Redis: who is in each channel, on every process, with expiry.

In the shape of Centrifugo's Redis presence manager: per channel ``C`` (the
hub channel's name; keys under the engine's prefix, hash-tagged ``{C}`` like
the channel's stream, so they share its Redis Cluster slot):

- ``{C}:members``, a hash: connection id -> user name;
- ``{C}:expiry``, a sorted set: connection id -> when it expires (UTC ms);
- ``{C}:users``, a hash: user name -> number of its connections in ``C``.

The process that owns a connection adds it (:meth:`Presence.join`) and
refreshes it on a timer (:meth:`Presence.join` again, idempotent), so its
expiry stays ahead of the clock; it removes it when the connection leaves
(:meth:`Presence.leave`). A member whose expiry passed (its process died
without saying so) is removed by the next :meth:`Presence.sweep` of any
process, which reads the members in the same step: expired members are
never listed. Each step is one Lua script, so "first connection of a user"
(joined) and "last one" (parted) are decided once for all processes, and a
parted user is reported by exactly one sweep.

The keys themselves expire a while after the last refresh, so channels whose
every process died leave nothing behind.

Every method takes the Redis client or pipeline to run on; errors of the
client are the caller's to classify (the directory turns "Redis down" into
:class:`~channelstream.hub.bus.EngineUnavailable`).
"""

from __future__ import annotations

from typing import Any

#: KEYS: members, expiry, users. ARGV: expire at (ms), keep keys until (ms),
#: then connection id, user pairs. Adds (or refreshes) each connection;
#: returns the users that were not in the channel before (their first connection).
JOIN_SCRIPT = """
local firsts = {}
for i = 3, #ARGV, 2 do
  local conn, user = ARGV[i], ARGV[i + 1]
  if redis.call("hsetnx", KEYS[1], conn, user) == 1 then
    if redis.call("hincrby", KEYS[3], user, 1) == 1 then
      table.insert(firsts, user)
    end
  end
  redis.call("zadd", KEYS[2], ARGV[1], conn)
end
for i = 1, 3 do
  redis.call("pexpireat", KEYS[i], ARGV[2])
end
return firsts
"""

#: KEYS: members, expiry, users. ARGV: connection id.
#: Returns {} if it was not there, else {user, 1 if that was the user's last connection}.
LEAVE_SCRIPT = """
local user = redis.call("hget", KEYS[1], ARGV[1])
redis.call("zrem", KEYS[2], ARGV[1])
if not user then
  return {}
end
redis.call("hdel", KEYS[1], ARGV[1])
if redis.call("hincrby", KEYS[3], user, -1) <= 0 then
  redis.call("hdel", KEYS[3], user)
  return {user, 1}
end
return {user, 0}
"""

#: KEYS: members, expiry, users. ARGV: now (ms), 1 to read the members, max removed.
#: Removes expired connections; returns {users who parted, members as id, user, ...}.
SWEEP_SCRIPT = """
local parted = {}
local dead = redis.call("zrangebyscore", KEYS[2], "-inf", ARGV[1], "LIMIT", 0, ARGV[3])
for _, conn in ipairs(dead) do
  redis.call("zrem", KEYS[2], conn)
  local user = redis.call("hget", KEYS[1], conn)
  if user then
    redis.call("hdel", KEYS[1], conn)
    if redis.call("hincrby", KEYS[3], user, -1) <= 0 then
      redis.call("hdel", KEYS[3], user)
      table.insert(parted, user)
    end
  end
end
local members = {}
if ARGV[2] == "1" then
  members = redis.call("hgetall", KEYS[1])
end
return {parted, members}
"""

#: Expired members one sweep removes at most (the next sweep takes the rest).
SWEEP_LIMIT = 1000


class Presence:
    """The presence keys of channels under ``key_prefix`` (see the module doc).

    :param key_prefix: the engine's prefix (``redis.key_prefix``).
    :param ttl: ``redis.presence_ttl``: a member that is no longer refreshed
        is gone within it.
    """

    def __init__(self, key_prefix: str, ttl: float) -> None:
        self.key_prefix = key_prefix
        self.ttl_ms = int(ttl * 1000)
        # Refreshed and swept every quarter of the ttl: a member expires three
        # quarters of it after its last refresh and is swept at most a quarter
        # later, so a dead process's members part within the ttl, while a live
        # one's always have half of it to spare.
        self.expire_ms = self.ttl_ms * 3 // 4
        #: SHA1s of the scripts, set by :meth:`load`
        self._sha: dict[str, str] = {}

    def keys(self, channel: str) -> list[str]:
        base = f"{self.key_prefix}{{{channel}}}"
        return [f"{base}:members", f"{base}:expiry", f"{base}:users"]

    @property
    def loaded(self) -> bool:
        """Whether :meth:`load` ran (it cannot while Redis is down at start)."""
        return len(self._sha) == 3

    def load(self, client: Any) -> None:
        """Load the scripts into Redis (again after a restart or ``SCRIPT FLUSH``)."""
        for name, text in (("join", JOIN_SCRIPT), ("leave", LEAVE_SCRIPT), ("sweep", SWEEP_SCRIPT)):
            self._sha[name] = client.script_load(text)

    def _run(self, client: Any, name: str, channel: str, *args: Any) -> Any:
        return client.evalsha(self._sha[name], 3, *self.keys(channel), *args)

    def join(self, client: Any, channel: str, members: list[tuple[str, str]], now_ms: int) -> Any:
        """Add or refresh ``(connection id, user)`` members; answers the users new
        to the channel (on a pipeline: queued, read from its results)."""
        expire_at = now_ms + self.expire_ms
        args: list[Any] = [expire_at, expire_at + self.ttl_ms]
        for conn_id, user in members:
            args.extend((conn_id, user))
        return self._run(client, "join", channel, *args)

    def leave(self, client: Any, channel: str, conn_id: str) -> Any:
        """Remove a member; answers ``[]`` or ``[user, 1 if it was the user's last]``."""
        return self._run(client, "leave", channel, conn_id)

    def sweep(self, client: Any, channel: str, now_ms: int, *, read: bool) -> Any:
        """Remove expired members; answers ``[parted users, flat id/user list]``
        (the list empty unless ``read``)."""
        return self._run(client, "sweep", channel, now_ms, 1 if read else 0, SWEEP_LIMIT)

    @staticmethod
    def parse_sweep(answer: Any) -> tuple[list[str], dict[str, list[str]]]:
        """``sweep``'s answer as (parted users, user -> sorted connection ids)."""
        parted_raw, flat = answer
        parted = [_text(user) for user in parted_raw]
        members: dict[str, list[str]] = {}
        for index in range(0, len(flat), 2):
            members.setdefault(_text(flat[index + 1]), []).append(_text(flat[index]))
        for ids in members.values():
            ids.sort()
        return parted, members


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


__all__ = ["JOIN_SCRIPT", "LEAVE_SCRIPT", "SWEEP_SCRIPT", "Presence"]
