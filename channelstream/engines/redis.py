"""The Redis engine: channels whose offsets, history and fan-out every process shares.

``hub.engine = redis`` (``redis.url``) makes :class:`RedisBus` the hub's bus.
Per hub channel ``C`` (keys under ``redis.key_prefix``, default ``cs:``; the
``{C}`` hash tag keeps a channel's keys on one Redis Cluster slot):

- ``cs:{C}:meta``, a hash: ``e`` the channel's epoch, ``s`` its last offset;
- ``cs:{C}:log``, a stream: each message under the id ``<offset>-0``, trimmed
  to the channel's ``history_size`` (and expired with its ``history_seconds``);
- ``cs:{C}``, a pub/sub channel: ``<offset>:<epoch>:<packed message>``.

One publish is one Lua script (:data:`PUBLISH_SCRIPT`, Centrifugo's
``broker_history_add_stream``): the epoch (a new random one when the meta
hash is missing: Redis lost the channel), the next offset (``HINCRBY``), the
``XADD`` and the ``PUBLISH``, atomically: every process sees one order and
one offset per message. A batch of publishes is one pipeline.

A process follows a channel while it has a local subscriber (the hub lets it
go at its next collection pass once it has none): one ``SUBSCRIBE`` per
channel per process, never per client. :meth:`RedisBus.watch` subscribes,
waits for Redis to confirm, then reads the channel's epoch and last offset
(creating the epoch if need be) and has the hub adopt them; pub/sub messages
that came meanwhile are held and handed on after. From then on one reader
greenlet hands the hub each channel's messages in offset order: a duplicate
is skipped, a gap (messages lost while the connection was down) is filled
from the stream first, an epoch change (Redis lost its data) is adopted, and
a gap the stream no longer holds is adopted too (clients that resume across
it get ``resume_failed``). When the pub/sub connection breaks, the reader
reconnects with a backoff, subscribes to every followed channel again and
catches up each one from its stream.

Resume across processes: :meth:`RedisBus.history` reads the stream
(``XRANGE``) so that a client that comes back to another process gets what it
missed (:meth:`channelstream.hub.Hub.subscribe` backfills the local history
with it, then the live messages follow: no gap, no duplicate at the seam).

Redis down: publishes, follows and history reads raise
:class:`~channelstream.hub.bus.EngineUnavailable` naming the server (its
password redacted) and the cause; ``status()`` says ``down``; existing
sockets stay open; everything recovers when Redis is back.
"""

from __future__ import annotations

import logging
import os
import secrets
import time
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import gevent
import redis
import redis.exceptions
from gevent.event import Event
from gevent.lock import RLock

from ..hub.bus import Adopt, Bus, Deliver, EngineUnavailable
from ..hub.channel import ChannelConfig
from ..hub.message import Message
from ..hub.wire import WireError, pack, unpack

log = logging.getLogger(__name__)

#: KEYS: meta, log. ARGV: packed message, history size, log ttl (s, 0 = none),
#: pub/sub channel, epoch for a channel that has none, the publisher's tag for
#: it (may be empty). Publishes "offset:epoch:tag:packed". Returns {offset, epoch}.
PUBLISH_SCRIPT = """
local epoch = redis.call("hget", KEYS[1], "e")
if not epoch then
  epoch = ARGV[5]
  redis.call("hset", KEYS[1], "e", epoch)
end
local offset = redis.call("hincrby", KEYS[1], "s", 1)
if tonumber(ARGV[2]) > 0 then
  redis.call("xadd", KEYS[2], "MAXLEN", ARGV[2], offset .. "-0", "d", ARGV[1])
  if tonumber(ARGV[3]) > 0 then
    redis.call("expire", KEYS[2], ARGV[3])
  end
end
redis.call("publish", ARGV[4], offset .. ":" .. epoch .. ":" .. ARGV[6] .. ":" .. ARGV[1])
return {offset, epoch}
"""

#: KEYS: meta. ARGV: epoch for a channel that has none. Returns {epoch, last offset}.
POSITION_SCRIPT = """
local epoch = redis.call("hget", KEYS[1], "e")
if not epoch then
  epoch = ARGV[1]
  redis.call("hset", KEYS[1], "e", epoch)
end
local offset = redis.call("hget", KEYS[1], "s")
if not offset then
  offset = 0
end
return {epoch, offset}
"""

#: Errors of the Redis client that mean "Redis cannot be reached now".
_DOWN = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)

#: How long :meth:`RedisBus.watch` waits for Redis to confirm a SUBSCRIBE.
WATCH_TIMEOUT = 10.0
#: Pub/sub messages read before the reader hands them on (one batch per channel).
READ_BATCH = 512
#: Own publishes remembered until they come back from Redis (oldest forgotten first).
OWN_MAX = 10_000


def redact(url: str) -> str:
    """``url`` without its password, for logs and status."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit((parts.scheme, user + host, parts.path, parts.query, parts.fragment))


class _Follow:
    """A followed channel: its pub/sub name, where the hub stands, what waits."""

    __slots__ = ("name", "key", "subscribed", "ready", "epoch", "last", "held")

    def __init__(self, name: str, key: str) -> None:
        self.name = name
        self.key = key
        #: Redis confirmed the SUBSCRIBE
        self.subscribed = Event()
        #: the hub adopted the channel's position: messages go straight on
        self.ready = False
        self.epoch = ""
        self.last = 0
        #: pub/sub messages that came before the hub adopted the position
        self.held: list[Message] = []


class RedisBus(Bus):
    """The hub's bus on Redis (see the module doc).

    :param url: ``redis://[:password@]host:port/db`` (``rediss://`` for TLS).
    :param config_of: the hub's ``channel_config`` (history size and age per channel).
    :param key_prefix: prefix of every key and pub/sub channel.
    """

    name = "redis"
    sequences = True

    def __init__(
        self,
        url: str,
        config_of: Callable[[str], ChannelConfig],
        *,
        key_prefix: str = "cs:",
        reconnect_max: float = 10.0,
    ) -> None:
        super().__init__()
        self.url = url
        self.where = redact(url)
        self.key_prefix = key_prefix
        self.reconnect_max = reconnect_max
        self._config_of = config_of
        self._deliver: Deliver | None = None
        self._adopt: Adopt | None = None
        self._client: redis.Redis | None = None
        self._pubsub: Any = None
        # redis-py's PubSub makes its connection on the first command: two
        # greenlets subscribing at once would each make one, and the SUBSCRIBE
        # sent on the one it forgets is never confirmed. One at a time.
        self._pubsub_lock = RLock()
        self._publish: Any = None
        self._position: Any = None
        self._follows: dict[str, _Follow] = {}
        self._by_key: dict[str, _Follow] = {}
        # Messages this process published to channels it follows, by their tag:
        # they come back from Redis as themselves (their class, its raw parts
        # and cached encodings), not as a copy unpacked from the wire.
        self._own: dict[bytes, Message] = {}
        self._own_prefix = secrets.token_hex(4)
        self._own_count = 0
        self._reader: gevent.Greenlet | None = None
        self._stopping = False
        self._up = False
        self._last_error: str | None = None
        #: counters shown in status()
        self.published = 0
        self.received = 0
        self.duplicates = 0
        self.gaps_filled = 0
        self.gaps_lost = 0
        self.epoch_changes = 0
        self.reconnects = 0
        #: publish batches that found the script missing (SCRIPT LOAD, then sent again)
        self.scripts_loaded = 0

    # -- keys ---------------------------------------------------------------------------

    def _meta(self, channel: str) -> str:
        return f"{self.key_prefix}{{{channel}}}:meta"

    def _log(self, channel: str) -> str:
        return f"{self.key_prefix}{{{channel}}}:log"

    def _topic(self, channel: str) -> str:
        return f"{self.key_prefix}{{{channel}}}"

    # -- lifecycle ------------------------------------------------------------------------

    def attach_engine(self, deliver: Deliver, adopt: Adopt) -> None:
        if self._deliver is not None:
            raise RuntimeError("the redis bus is already attached to a hub")
        self._deliver = deliver
        self._adopt = adopt

    def start(self) -> None:
        """Make the client (nothing is connected until first used) and start the reader."""
        self._client = redis.Redis.from_url(
            self.url, socket_connect_timeout=5, socket_timeout=10, health_check_interval=30,
            client_name=f"channelstream-{os.getpid()}",  # who is who in CLIENT LIST
        )
        self._publish = self._client.register_script(PUBLISH_SCRIPT)
        self._position = self._client.register_script(POSITION_SCRIPT)
        self._pubsub = self._client.pubsub()
        self._reader = gevent.spawn(self._read)
        self._reader.name = "redis-bus-reader"
        try:
            self._client.ping()
            self._up = True
        except _DOWN as err:  # reported, not fatal: publishes say why until it is back
            self._down(err)
            log.error("redis engine: %s is unreachable at start: %s", self.where, err)

    def stop(self) -> None:
        self._stopping = True
        if self._reader is not None:
            self._reader.kill(block=True, timeout=2)
        for closer in (self._pubsub, self._client):
            if closer is not None:
                try:
                    closer.close()
                except Exception:  # closing a broken connection may fail; it is closed
                    log.debug("redis engine: close failed", exc_info=True)

    def status(self) -> dict:
        info: dict[str, Any] = {
            "bus": self.name,
            "state": "connected" if self._up else "down",
            "url": self.where,
            "followed": len(self._follows),
            "published": self.published,
            "received": self.received,
            "duplicates": self.duplicates,
            "gaps_filled": self.gaps_filled,
            "gaps_lost": self.gaps_lost,
            "epoch_changes": self.epoch_changes,
            "reconnects": self.reconnects,
            "scripts_loaded": self.scripts_loaded,
        }
        if self._last_error is not None:
            info["last_error"] = self._last_error
        return info

    # -- publishing -----------------------------------------------------------------------

    def publish(self, message: Message) -> None:
        self.publish_many([message])
        return None

    def publish_many(self, messages: list[Message]) -> list[Message | None]:
        """Sequence each message in Redis (one script each, one pipeline in all).

        Each script runs by ``EVALSHA`` straight on the pipeline: redis-py's
        ``Script`` on a pipeline asks ``SCRIPT EXISTS`` first, one more round
        trip per publish for a script Redis nearly always has. When Redis does
        not have it (restarted, ``SCRIPT FLUSH``), the commands answered
        ``NOSCRIPT`` ran nothing: the script is loaded and those are sent again,
        once, in their order; the others ran and are not repeated. (Should
        another process load it between two of them, a later message of the
        batch may take an offset before an earlier one: still one order for
        every process, nothing lost or repeated.)
        """
        client = self._require()
        now = int(time.time() * 1000)
        calls: list[tuple[str, ...]] = []
        tags: list[bytes] = []
        for message in messages:
            if not message.time_ms:
                message.time_ms = now
            config = self._config_of(message.channel)
            tag = self._remember_own(message) if message.channel in self._follows else b""
            if tag:
                tags.append(tag)
            calls.append(
                (
                    self._meta(message.channel),
                    self._log(message.channel),
                    pack(message),
                    str(config.history_size),
                    str(int(config.history_seconds)),
                    self._topic(message.channel),
                    _new_epoch(),
                    tag,
                )
            )
        try:
            missed = self._run_publishes(client, calls)
            if missed:
                self.scripts_loaded += 1
                client.script_load(PUBLISH_SCRIPT)
                if self._run_publishes(client, missed):
                    raise redis.exceptions.NoScriptError(
                        "Redis lost the publish script again right after SCRIPT LOAD"
                    )
        except _DOWN as err:
            self._forget_own(tags)
            raise self._down(err) from None
        except redis.exceptions.NoScriptError as err:
            self._forget_own(tags)
            raise EngineUnavailable(f"redis at {self.where}: {err}") from None
        self._up = True
        self.published += len(messages)
        return [None] * len(messages)

    def _run_publishes(self, client: redis.Redis, calls: list[tuple[str, ...]]) -> list:
        """EVALSHA each call in one pipeline; return the calls Redis answered NOSCRIPT.

        Any other error of a call is raised (the calls before it were done)."""
        sha = self._publish.sha
        pipe = client.pipeline(transaction=False)
        for call in calls:
            pipe.evalsha(sha, 2, *call)
        results = pipe.execute(raise_on_error=False)
        missed = []
        for call, result in zip(calls, results, strict=True):
            if isinstance(result, redis.exceptions.NoScriptError):
                missed.append(call)
            elif isinstance(result, Exception):
                raise result
        return missed

    # -- following ------------------------------------------------------------------------

    def watch(self, channel: str) -> None:
        """Follow ``channel`` (see the module doc); returns once the hub adopted it."""
        follow = self._follows.get(channel)
        if follow is not None and follow.ready:
            return
        if follow is None:
            follow = self._follows[channel] = _Follow(channel, self._topic(channel))
            self._by_key[follow.key] = follow
            try:
                with self._pubsub_lock:
                    self._pubsub.subscribe(follow.key)
            except _DOWN as err:
                self._forget(follow)
                raise self._down(err) from None
        if not follow.subscribed.wait(WATCH_TIMEOUT):
            self._forget(follow)
            raise EngineUnavailable(
                f"redis at {self.where} did not confirm following {channel!r} "
                f"within {WATCH_TIMEOUT:g} s"
            )
        if not follow.ready:
            self._take_position(follow)

    def unwatch(self, channel: str) -> None:
        follow = self._follows.get(channel)
        if follow is None:
            return
        self._forget(follow)
        try:
            with self._pubsub_lock:
                self._pubsub.unsubscribe(follow.key)
        except _DOWN as err:  # the reconnect subscribes to followed channels only
            self._down(err)

    def _forget(self, follow: _Follow) -> None:
        self._follows.pop(follow.name, None)
        self._by_key.pop(follow.key, None)

    def _take_position(self, follow: _Follow) -> None:
        """Read the channel's epoch and last offset; the hub adopts them; held messages go on."""
        self._require()
        try:
            epoch, last = self._position(keys=[self._meta(follow.name)], args=[_new_epoch()])
        except _DOWN as err:
            raise self._down(err) from None
        follow.epoch = _text(epoch)
        follow.last = int(last)
        self._adopt(follow.name, follow.epoch, follow.last)  # type: ignore[misc]
        follow.ready = True
        held, follow.held = follow.held, []
        if held:
            self._hand_on(follow, held)

    def history(self, channel: str, after: int, before: int) -> list[Message]:
        """The stream's messages with ``after < offset < before`` (``XRANGE``), stamped."""
        client = self._require()
        follow = self._follows.get(channel)
        try:
            entries = client.xrange(self._log(channel), f"{after + 1}-0", f"{before - 1}-0")
            if follow is not None:
                epoch = follow.epoch
            else:
                epoch = _text(client.hget(self._meta(channel), "e") or b"")
        except _DOWN as err:
            raise self._down(err) from None
        return self._messages(entries, epoch)

    # -- the reader --------------------------------------------------------------------------

    def _read(self) -> None:
        delay = 0.5
        broken = False
        while not self._stopping:
            try:
                if broken:
                    self._resubscribe()
                    broken = False
                    delay = 0.5
                    log.info("redis engine: pub/sub connection back (%s)", self.where)
                self._listen()
            except _DOWN as err:
                if self._stopping:
                    return
                self._down(err)
                broken = True
                log.warning(
                    "redis engine: pub/sub connection lost (%s); again in %.1fs", err, delay
                )
                gevent.sleep(delay)
                delay = min(delay * 2, self.reconnect_max)
            except Exception:  # a bug: logged with its traceback, then the reader goes on
                log.exception("redis engine: the pub/sub reader failed; restarting it")
                gevent.sleep(delay)

    def _listen(self) -> None:
        pubsub = self._pubsub
        while not self._stopping:
            if not pubsub.subscribed:
                gevent.sleep(0.05)  # nothing followed yet: no connection to read
                continue
            item = pubsub.get_message(timeout=1.0)
            if item is None:
                continue
            batch = [item]
            while len(batch) < READ_BATCH:
                more = pubsub.get_message(timeout=0)
                if more is None:
                    break
                batch.append(more)
            self._up = True
            self._handle(batch)

    def _handle(self, items: Iterable[dict]) -> None:
        runs: dict[_Follow, list[Message]] = {}
        for item in items:
            kind = item.get("type")
            key = _text(item.get("channel", b""))
            follow = self._by_key.get(key)
            if follow is None:
                continue
            if kind == "subscribe":
                follow.subscribed.set()
            elif kind == "message":
                message = self._parse(item["data"])
                if message is not None:
                    self.received += 1
                    runs.setdefault(follow, []).append(message)
        for follow, messages in runs.items():
            if not follow.ready:
                follow.held.extend(messages)
            else:
                self._hand_on(follow, messages)

    def _hand_on(self, follow: _Follow, messages: list[Message]) -> None:
        """Hand the hub ``messages`` of ``follow`` in order: skip duplicates, fill gaps."""
        run: list[Message] = []
        for message in messages:
            if message.epoch != follow.epoch:
                self._flush(follow, run)
                run = []
                self._new_epoch_seen(follow, message)
            if message.offset <= follow.last:
                self.duplicates += 1
                continue
            if message.offset > follow.last + 1:
                self._flush(follow, run)
                run = []
                self._fill(follow, message.offset)
            run.append(message)
            follow.last = message.offset
        self._flush(follow, run)

    def _flush(self, follow: _Follow, run: list[Message]) -> None:
        if run:
            self._deliver(follow.name, run)  # type: ignore[misc]

    def _fill(self, follow: _Follow, upto: int) -> None:
        """Messages before ``upto`` were lost on the way: read them from the stream."""
        try:
            missing = self.history(follow.name, follow.last, upto)
        except EngineUnavailable:
            missing = []
        missing = [m for m in missing if m.epoch == follow.epoch]
        if missing and missing[0].offset == follow.last + 1:
            self.gaps_filled += 1
            self._flush(follow, missing)
            follow.last = missing[-1].offset
        if follow.last < upto - 1:  # the stream no longer holds them: adopt the jump
            self.gaps_lost += 1
            log.warning(
                "redis engine: %s lost messages %d to %d (history no longer holds them)",
                follow.name, follow.last + 1, upto - 1,
            )
            follow.last = upto - 1
            # its subscribers here missed them: the hub closes their outboxes (resume)
            self._adopt(follow.name, follow.epoch, follow.last, lost=True)  # type: ignore[misc]

    def _new_epoch_seen(self, follow: _Follow, message: Message) -> None:
        """Redis lost the channel and a new epoch began: all of it is new here.

        The hub adopts the new epoch from its start; what came before
        ``message`` in it is read from the stream (``_hand_on`` fills the gap).
        """
        self.epoch_changes += 1
        log.warning(
            "redis engine: %s changed epoch %s -> %s (Redis lost its data)",
            follow.name, follow.epoch, message.epoch,
        )
        follow.epoch = message.epoch
        follow.last = 0
        self._adopt(follow.name, follow.epoch, 0)  # type: ignore[misc]

    def _resubscribe(self) -> None:
        """After a reconnect: follow every channel again and catch each one up."""
        self.reconnects += 1
        try:
            self._pubsub.close()
        except Exception:  # the old connection is broken anyway
            log.debug("redis engine: closing the old pub/sub failed", exc_info=True)
        self._pubsub = self._client.pubsub()  # type: ignore[union-attr]
        follows = list(self._follows.values())
        if not follows:
            return
        try:
            with self._pubsub_lock:
                self._pubsub.subscribe(*[f.key for f in follows])
            for follow in follows:
                epoch, last = self._position(keys=[self._meta(follow.name)], args=[_new_epoch()])
                epoch, last = _text(epoch), int(last)
                if epoch != follow.epoch:  # Redis lost it: the new epoch from its start
                    self.epoch_changes += 1
                    follow.epoch, follow.last = epoch, 0
                    self._adopt(follow.name, epoch, 0)  # type: ignore[misc]
                if last > follow.last:
                    self._fill(follow, last + 1)
        except _DOWN as err:
            self._down(err)
            raise
        self._up = True

    # -- helpers --------------------------------------------------------------------------

    def _require(self) -> redis.Redis:
        if self._client is None:
            raise EngineUnavailable(f"the redis engine ({self.where}) is not started")
        return self._client

    def _down(self, err: BaseException) -> EngineUnavailable:
        self._up = False
        self._last_error = f"{type(err).__name__}: {err}"
        return EngineUnavailable(f"redis at {self.where} is unavailable: {err}")

    def _remember_own(self, message: Message) -> bytes:
        self._own_count += 1
        tag = f"{self._own_prefix}.{self._own_count}".encode()
        own = self._own
        own[tag] = message
        if len(own) > OWN_MAX:  # never came back (a gap, a reconnect): forget the oldest
            del own[next(iter(own))]
        return tag

    def _forget_own(self, tags: list[bytes]) -> None:
        for tag in tags:
            self._own.pop(tag, None)

    def _parse(self, data: bytes) -> Message | None:
        try:
            offset, epoch, tag, packed = data.split(b":", 3)
            message = self._own.pop(tag, None) if tag else None
            if message is None:
                message = unpack(packed)
            message.offset = int(offset)
            message.epoch = epoch.decode()
        except (ValueError, WireError) as err:
            log.error("redis engine: a pub/sub message that is not ours was skipped: %s", err)
            return None
        return message

    def _messages(self, entries: list, epoch: str) -> list[Message]:
        result = []
        for entry_id, fields in entries:
            try:
                message = unpack(fields[b"d"])
                message.offset = int(_text(entry_id).split("-", 1)[0])
                message.epoch = epoch
            except (KeyError, ValueError, WireError) as err:
                log.error("redis engine: a history entry that is not ours was skipped: %s", err)
                continue
            result.append(message)
        return result


def _new_epoch() -> str:
    return secrets.token_hex(4)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


__all__ = ["POSITION_SCRIPT", "PUBLISH_SCRIPT", "RedisBus", "redact"]
