"""The per-process control channel: a call aimed at one process, over Redis pub/sub.

Each process listens on its own pub/sub channel ``<prefix>ctl:<process id>``
(one ``SUBSCRIBE`` on one connection of its own, beside the channel
engine's). A call is one ``PUBLISH`` of a JSON request there::

    {"id": "<call id>", "op": "subscribe", "args": {...}, "reply_to": "<caller's channel>"}

(``<prefix>ctl-all``, which every process also listens on, carries
broadcasts: ``{"id", "op", "args", "from": "<process id>"}``, served by every
other process, answered by none: :meth:`Control.broadcast`), and the owner
answers with one ``PUBLISH`` on the caller's channel::

    {"id": "<call id>", "ok": <result>}                  # done
    {"id": "<call id>", "status": 404, "error": {...}}   # refused: the error's JSON body

Contract of :meth:`Control.call`, every wait bounded:

- ``PUBLISH`` answered 0 receivers: nobody listens there (the process
  stopped or died): :class:`OwnerGone` (503) at once;
- no answer within ``timeout``: :class:`GatewayTimeout` (504);
- Redis down, or this process's own subscription not up: ``EngineUnavailable``
  (503 naming Redis);
- else the result, or the owner's refusal raised here with its status and body.

Requests are served in their own greenlets (a pool of :data:`MAX_SERVING`;
past it a request is refused with 503 at once), never in the reader: a handler
may wait on Redis itself (following a channel), which the reader must be free
to confirm. Handlers are plain functions ``args -> JSON-able result`` that may
raise :class:`~channelstream.errors.ClientError`.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable
from typing import Any

import gevent
import gevent.pool
import redis
import redis.exceptions
from gevent.event import AsyncResult

from ..errors import ClientError, Unavailable
from ..hub.bus import EngineUnavailable
from ..strict_json import dumps

log = logging.getLogger(__name__)

#: Requests served at once by one process; more are refused (503).
MAX_SERVING = 64
#: Errors of the Redis client that mean "Redis cannot be reached now".
DOWN = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)

Handler = Callable[[dict[str, Any]], Any]


class GatewayTimeout(ClientError):
    """The process that owns what was asked for did not answer in time."""

    status = 504
    code = "owner_timeout"


class OwnerGone(Unavailable):
    """Nobody listens on the process's control channel: it stopped or died."""

    code = "owner_gone"


class Refused(ClientError):
    """The owner refused the call: its status and JSON body, passed on as they were."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(str(body.get("error", "refused")), field=body.get("field"))
        self.status = status  # type: ignore[misc]
        self.code = str(body.get("code", "refused"))  # type: ignore[misc]
        self.body = body

    def as_dict(self) -> dict[str, Any]:
        return dict(self.body)


class Control:
    """This process's control channel (see the module doc).

    :param key_prefix: the engine's prefix (``redis.key_prefix``).
    :param process_id: this process's id, unique over the cluster.
    :param timeout: seconds :meth:`call` waits for an answer.
    :param where: the Redis server as shown in errors (password redacted).
    """

    def __init__(self, key_prefix: str, process_id: str, timeout: float, where: str) -> None:
        self.key_prefix = key_prefix
        self.process_id = process_id
        self.timeout = timeout
        self.where = where
        self.topic = self.topic_of(process_id)
        #: every process listens here too (:meth:`broadcast`)
        self.everyone = f"{key_prefix}ctl-all"
        self._handlers: dict[str, Handler] = {}
        self._waiting: dict[str, AsyncResult] = {}
        self._pool = gevent.pool.Pool(MAX_SERVING)
        self._client: redis.Redis | None = None
        self._reader: gevent.Greenlet | None = None
        self._listening = False
        self._stopping = False
        #: counters shown in status()
        self.calls = 0
        self.served = 0
        self.refused_busy = 0
        self.timeouts = 0
        self.owners_gone = 0

    def rename(self, process_id: str) -> None:
        """Be ``process_id`` from now on (before :meth:`start`): a gunicorn
        worker forked from the master that built this is a process of its own."""
        self.process_id = process_id
        self.topic = self.topic_of(process_id)

    def topic_of(self, process_id: str) -> str:
        return f"{self.key_prefix}ctl:{process_id}"

    def handle(self, op: str, handler: Handler) -> None:
        """Serve requests ``op`` with ``handler`` (before :meth:`start`)."""
        self._handlers[op] = handler

    # -- lifecycle ----------------------------------------------------------------------

    def start(self, client: redis.Redis) -> None:
        """Start listening on this process's channel (the reader reconnects by itself)."""
        self._client = client
        self._reader = gevent.spawn(self._read)
        self._reader.name = "redis-control-reader"

    def stop(self) -> None:
        self._stopping = True
        if self._reader is not None:
            self._reader.kill(block=True, timeout=2)
        self._pool.kill(block=True, timeout=2)
        for waiting in self._waiting.values():
            waiting.set_exception(EngineUnavailable("the process is stopping"))

    @property
    def listening(self) -> bool:
        """True while this process's subscription is up (answers can reach it)."""
        return self._listening

    def status(self) -> dict[str, Any]:
        return {
            "process_id": self.process_id,
            "listening": self._listening,
            "calls": self.calls,
            "served": self.served,
            "refused_busy": self.refused_busy,
            "timeouts": self.timeouts,
            "owners_gone": self.owners_gone,
        }

    # -- calling ------------------------------------------------------------------------

    def call(self, process_id: str, op: str, args: dict[str, Any], what: str) -> Any:
        """Run ``op`` on process ``process_id``; see the module doc for the outcomes.

        ``what`` names the target in errors (``"connection <id>"``).
        """
        client = self._client
        if client is None or not self._listening:
            raise EngineUnavailable(
                f"redis at {self.where}: this process's control channel is not up, so the"
                f" process that owns {what} cannot be asked"
            )
        self.calls += 1
        call_id = uuid.uuid4().hex
        answer = self._waiting[call_id] = AsyncResult()
        request = {"id": call_id, "op": op, "args": args, "reply_to": self.topic}
        try:
            try:
                receivers = client.publish(self.topic_of(process_id), dumps(request))
            except DOWN as err:
                raise EngineUnavailable(f"redis at {self.where} is unavailable: {err}") from None
            if not receivers:
                self.owners_gone += 1
                raise OwnerGone(
                    f"{what} belongs to process {process_id}, which no longer listens on"
                    f" redis at {self.where} (stopped or died); its records expire soon"
                )
            try:
                reply = answer.get(timeout=self.timeout)
            except gevent.Timeout:
                self.timeouts += 1
                raise GatewayTimeout(
                    f"process {process_id}, which owns {what}, did not answer over redis at"
                    f" {self.where} within {self.timeout:g} s"
                ) from None
        finally:
            self._waiting.pop(call_id, None)
        if "ok" in reply:
            return reply["ok"]
        raise Refused(int(reply.get("status", 500)), reply.get("error") or {})

    def broadcast(self, op: str, args: dict[str, Any]) -> None:
        """Have every other process run ``op`` (no answer; a process that is not
        listening now misses it). Redis down: ``EngineUnavailable``."""
        client = self._client
        if client is None:
            raise EngineUnavailable(f"redis at {self.where}: the control channel is not started")
        packet = {"id": uuid.uuid4().hex, "op": op, "args": args, "from": self.process_id}
        try:
            client.publish(self.everyone, dumps(packet))
        except DOWN as err:
            raise EngineUnavailable(f"redis at {self.where} is unavailable: {err}") from None

    # -- the reader -----------------------------------------------------------------------

    def _read(self) -> None:
        delay = 0.5
        while not self._stopping:
            pubsub = self._client.pubsub()  # type: ignore[union-attr]
            try:
                pubsub.subscribe(self.topic, self.everyone)
                while not self._stopping:
                    item = pubsub.get_message(timeout=1.0)
                    if item is None:
                        continue
                    if item["type"] == "subscribe" and _text(item["channel"]) == self.topic:
                        self._listening = True
                        delay = 0.5
                    elif item["type"] == "message":
                        self._dispatch(item["data"])
            except DOWN as err:
                if self._stopping:
                    return
                self._listening = False
                log.warning("redis control channel lost (%s); again in %.1fs", err, delay)
                gevent.sleep(delay)
                delay = min(delay * 2, 10.0)
            except Exception:  # a bug: logged with its traceback, then the reader goes on
                self._listening = False
                log.exception("redis control channel: the reader failed; restarting it")
                gevent.sleep(delay)
            finally:
                try:
                    pubsub.close()
                except Exception:  # the connection may be broken already
                    log.debug("redis control channel: close failed", exc_info=True)
        self._listening = False

    def _dispatch(self, data: bytes) -> None:
        try:
            packet = json.loads(data)
            call_id = str(packet["id"])
        except (ValueError, KeyError, TypeError) as err:
            log.error("redis control channel: skipped a packet that is not ours: %s", err)
            return
        if "from" in packet:  # a broadcast: served here unless it is ours
            if packet["from"] == self.process_id:
                return
            if self._pool.full():
                self.refused_busy += 1
                log.warning("redis control channel: too busy for broadcast %r", packet.get("op"))
            else:
                self._pool.spawn(self._serve, packet)
            return
        if "reply_to" not in packet:  # an answer to one of our calls
            waiting = self._waiting.get(call_id)
            if waiting is not None:  # else it came after the caller gave up
                waiting.set(packet)
            return
        if self._pool.full():
            self.refused_busy += 1
            body = {"error": "the owning process is too busy to answer", "code": "busy"}
            self._reply(packet, {"status": 503, "error": body})
            return
        self._pool.spawn(self._serve, packet)

    def _serve(self, packet: dict[str, Any]) -> None:
        handler = self._handlers.get(str(packet.get("op")))
        try:
            if handler is None:
                raise Unavailable(f"this process does not serve {packet.get('op')!r}")
            answer: dict[str, Any] = {"ok": handler(packet.get("args") or {})}
            self.served += 1
        except ClientError as err:
            answer = {"status": err.status, "error": err.as_dict()}
        except EngineUnavailable as err:
            answer = {"status": 503, "error": {"error": str(err), "code": "engine_unavailable"}}
        except Exception:  # a bug here: the caller gets a 500, the traceback goes to the log
            log.exception("redis control channel: %r failed", packet.get("op"))
            answer = {"status": 500, "error": {"error": "internal error", "code": "internal"}}
        if "reply_to" in packet:
            self._reply(packet, answer)
        elif "ok" not in answer:
            log.warning("redis control channel: broadcast %r failed: %s", packet.get("op"), answer)

    def _reply(self, packet: dict[str, Any], answer: dict[str, Any]) -> None:
        answer["id"] = packet["id"]
        try:
            self._client.publish(str(packet["reply_to"]), dumps(answer))  # type: ignore[union-attr]
        except DOWN as err:  # the caller times out and says so
            log.warning("redis control channel: could not answer (%s)", err)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


__all__ = ["Control", "GatewayTimeout", "OwnerGone", "Refused"]
