"""The message history of ``/info`` in Redis: the ``store_history`` list of each channel.

Per channel ``C`` (the hub channel's name; the key under the engine's prefix,
hash-tagged ``{C}`` like the channel's settings and presence, so they share
its Redis Cluster slot) one list, ``{C}:history``, oldest entry first. An
element is the entry's ``uuid`` as a JSON string, a newline, the entry as
JSON, then a newline and the JSON of each edit made to it since::

    "6f1c...-uuid"\\n{"channel":"room","uuid":"6f1c...",...}\\n{"uuid":...,"edited":...}

Compact JSON never holds a raw newline (a newline in a string is written
``\\n``), so the parts split on it; the quoted uuid ends at its closing quote,
so one uuid's prefix never matches another's. Reading applies the edits in
order (``entry.update(edit)``), as the in-process history does on its dicts.

- :meth:`MessageHistory.append` (one ``POST /message``): RPUSH, LTRIM to the
  channel's ``history_limit``, PEXPIRE, queued on the caller's pipeline;
- :meth:`MessageHistory.change` (``PATCH``/``DELETE /message``): one Lua
  script finds the first element of the uuid and appends the edit to it or
  removes it; the message body is never decoded in Lua (cjson would turn
  ``[]`` into ``{}`` and round numbers), only strings are compared and joined;
- :meth:`MessageHistory.read`: LRANGE of the newest ``history_limit`` entries
  (a limit lowered since the last post shows as the in-process deque does).

Every method takes the Redis client or pipeline to run on; errors of the
client are the caller's to classify, as in :mod:`.presence`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ..strict_json import dumps, loads

#: KEYS: the history list. ARGV: the entry's uuid as JSON plus a newline, the
#: edit as JSON ("" to delete). Returns 1 if an entry of that uuid was there.
CHANGE_SCRIPT = """
local prefix = ARGV[1]
local items = redis.call("lrange", KEYS[1], 0, -1)
for i, item in ipairs(items) do
  if string.sub(item, 1, #prefix) == prefix then
    if ARGV[2] == "" then
      redis.call("lrem", KEYS[1], 1, item)
    else
      redis.call("lset", KEYS[1], i - 1, item .. "\\n" .. ARGV[2])
    end
    return 1
  end
end
return 0
"""


class MessageHistory:
    """The history lists of channels under ``key_prefix`` (see the module doc).

    :param key_prefix: the engine's prefix (``redis.key_prefix``).
    """

    def __init__(self, key_prefix: str) -> None:
        self.key_prefix = key_prefix
        self._change: Any = None

    def key(self, channel: str) -> str:
        return f"{self.key_prefix}{{{channel}}}:history"

    def register(self, client: Any) -> None:
        """Register the script with ``client`` (no I/O: EVALSHA loads it when missing)."""
        self._change = client.register_script(CHANGE_SCRIPT)

    @staticmethod
    def _prefix(message_uuid: str) -> bytes:
        return dumps(message_uuid) + b"\n"

    def append(
        self,
        pipe: Any,
        channel: str,
        entries: Iterable[Mapping[str, Any]],
        limit: int,
        ttl_ms: int,
    ) -> None:
        """Queue: add ``entries`` (in order), keep the newest ``limit``, expire
        the list ``ttl_ms`` from now (0: kept)."""
        key = self.key(channel)
        pipe.rpush(key, *(self._prefix(str(entry["uuid"])) + dumps(entry) for entry in entries))
        pipe.ltrim(key, -limit, -1)
        if ttl_ms:
            pipe.pexpire(key, ttl_ms)

    def change(
        self, client: Any, channel: str, message_uuid: str, changes: Mapping[str, Any] | None
    ) -> Any:
        """Apply ``changes`` to the entry of ``message_uuid`` (None: delete it);
        answers 1 if it was there (on a pipeline: queued)."""
        if self._change is None:
            raise RuntimeError("the history script is not registered")
        edit = b"" if changes is None else dumps(dict(changes))
        return self._change(
            keys=[self.key(channel)], args=[self._prefix(message_uuid), edit], client=client
        )

    def read(self, pipe: Any, channel: str, limit: int) -> Any:
        """The newest ``limit`` elements, oldest first (parse with :meth:`parse`)."""
        return pipe.lrange(self.key(channel), -limit, -1)

    def expire(self, pipe: Any, channel: str, ttl_ms: int) -> Any:
        return pipe.pexpire(self.key(channel), ttl_ms)

    @staticmethod
    def parse(elements: Iterable[bytes]) -> list[dict[str, Any]]:
        """``read``'s answer as entries with their edits applied."""
        entries = []
        for element in elements:
            _, raw, *edits = element.split(b"\n")
            entry = loads(raw)
            for edit in edits:
                entry.update(loads(edit))
            entries.append(entry)
        return entries


__all__ = ["CHANGE_SCRIPT", "MessageHistory"]
