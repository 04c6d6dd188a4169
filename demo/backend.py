"""The demo's backend: what a web app's server side does for its chat page.

A page never holds ``secret``. It asks this backend (through the demo routes
of :mod:`demo.views`) for a connection, to join a channel, to post; the
backend checks the request against what the demo itself made and calls the
signed server API (:class:`channelstream.client.ChannelstreamClient`) as any
backend would. It is not an open door to the server API:

- it acts only for **demo users**: a user name it made, or a name the server
  does not know; a name of a user some other backend made is refused (409),
  so the page cannot become that user and read its private messages;
- it acts only on **demo channels**: :data:`DEFAULT_CHANNELS`, those it
  created, or names the server does not know yet (created with
  :data:`CHANNEL_CONFIG`); a channel of another app is refused (409);
- every call names a connection the demo made (``conn_id``), and acts as
  that connection's user: posts, edits and deletes of its own messages
  (the demo remembers who posted what), its own state;
- everything it keeps is bounded: at most :attr:`Limits.connections`
  connections (past it the oldest is disconnected on the server and
  forgotten), :attr:`Limits.users` names, :attr:`Limits.channels` channels
  it created, :attr:`Limits.channels_per_connection`, and
  :attr:`Limits.messages` remembered messages (the oldest can no longer be
  edited).

Greenlet safety: each method may yield (it calls the server over HTTP);
the bookkeeping is plain dict updates done after the calls, so concurrent
requests can at worst both pass a check that one of them would have failed
a moment later (two tabs taking one new name), which is harmless here.

Errors are :class:`channelstream.errors.ClientError` subclasses with a
message for the page; an error answer of the server API passes through
with its status (404 unknown connection: the page signs in again).
"""

from __future__ import annotations

import dataclasses
import re
import uuid as uuid_module
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from channelstream.client import ChannelstreamClient, ChannelstreamError
from channelstream.errors import (
    BadRequest,
    ClientError,
    Conflict,
    NotFound,
    Unavailable,
)

#: Channels every page starts in; the bot of ``make demo-data`` talks in them.
DEFAULT_CHANNELS: tuple[str, ...] = ("lobby", "random")

#: Settings of every demo channel (``/channel_config`` keys): presence with
#: user lists, state changes, and a history that joining pages are shown.
CHANNEL_CONFIG: Mapping[str, Any] = {
    "notify_presence": True,
    "broadcast_presence_with_user_lists": True,
    "notify_state": True,
    "store_history": True,
    "history_size": 50,
}

#: The bot user of ``make demo-data`` (:mod:`demo.data`); the page marks its messages.
BOT_USER = "hubbot"

#: User states a page may pick (public key ``status``).
STATUSES: tuple[str, ...] = ("online", "away", "busy")

#: The public state key of demo users.
STATUS_KEY = "status"

USER_NAME = re.compile(r"[\w.@-][\w .@-]{0,31}")
CHANNEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,39}")
MAX_TEXT = 2000


@dataclasses.dataclass(frozen=True)
class Limits:
    """Bounds of what the demo keeps and asks the server for."""

    connections: int = 100
    users: int = 500
    channels: int = 32
    channels_per_connection: int = 8
    messages: int = 5000


@dataclasses.dataclass
class DemoConnection:
    """A connection the demo made: its user and the channels it joined."""

    conn_id: str
    user: str
    channels: set[str]


@dataclasses.dataclass(frozen=True)
class Posted:
    """A message a demo user posted: enough to edit or delete it later."""

    user: str
    channel: str
    pm_users: tuple[str, ...]


def check_user_name(name: Any) -> str:
    """A valid demo user name, or 400 naming ``username``."""
    if not isinstance(name, str) or not USER_NAME.fullmatch(name.strip()):
        raise BadRequest(
            "username: 1 to 32 letters, digits, spaces, '.', '@', '-' or '_'", field="username"
        )
    return name.strip()


def check_channel_name(name: Any, field: str = "channel") -> str:
    """A valid demo channel name, or 400 naming ``field``."""
    if not isinstance(name, str) or not CHANNEL_NAME.fullmatch(name):
        raise BadRequest(
            f"{field}: 1 to 40 letters, digits, '.', '-' or '_', starting with a letter or digit",
            field=field,
        )
    return name


def check_text(text: Any) -> str:
    """Message text of 1 to :data:`MAX_TEXT` characters, or 400 naming ``text``."""
    if not isinstance(text, str) or not text.strip() or len(text) > MAX_TEXT:
        raise BadRequest(f"text: 1 to {MAX_TEXT} characters", field="text")
    return text


def check_conn_id(conn_id: Any) -> str:
    """A connection id (a UUID, as ``/connect`` takes it), or 400 naming ``conn_id``."""
    try:
        return str(uuid_module.UUID(str(conn_id)))
    except ValueError:
        raise BadRequest("conn_id: not a connection id", field="conn_id") from None


def visible_history(history: Iterable[Mapping[str, Any]], user: str) -> list[dict[str, Any]]:
    """The channel history entries ``user`` may see (private ones only to their pm_users)."""
    shown = []
    for entry in history:
        pm_users = entry.get("pm_users") or ()
        if pm_users and user not in pm_users:
            continue
        if user in (entry.get("exclude_users") or ()):
            continue
        shown.append(dict(entry))
    return shown


class Bounded(OrderedDict):
    """An insertion-ordered dict of at most ``size`` items; ``touch`` keeps one recent."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def touch(self, key: Any) -> None:
        if key in self:
            self.move_to_end(key)

    def overflow(self) -> list[tuple[Any, Any]]:
        """Remove and return the oldest items past ``size``."""
        removed = []
        while len(self) > self.size:
            removed.append(self.popitem(last=False))
        return removed


class DemoBackend:
    """The demo's server side (see the module doc).

    :param client: returns the signing client of the server to call; the
        demo views make it from the address the request came in on.
    :param limits: the bounds of :class:`Limits`.
    """

    def __init__(
        self, client: Callable[[], ChannelstreamClient], limits: Limits | None = None
    ) -> None:
        self._client = client
        self.limits = limits or Limits()
        self.connections: Bounded = Bounded(self.limits.connections)
        self.users: Bounded = Bounded(self.limits.users)
        self.channels: Bounded = Bounded(self.limits.channels)
        self.posted: Bounded = Bounded(self.limits.messages)

    # -- sessions ---------------------------------------------------------------------

    def session(self, username: Any, channels: Any = None, conn_id: Any = None) -> dict[str, Any]:
        """Sign in: a connection of ``username`` on ``channels``, with what the page shows.

        ``conn_id`` (the page's previous one) is reused: a connection the
        server still has is kept (the page then resumes by offset); after a
        restart it is made again under the same id. Returns ``{"conn_id",
        "username", "state", "statuses", "channels": {name: channel view}}``
        (see :meth:`_channel_views`).
        """
        name = check_user_name(username)
        wanted = self._channel_list(channels)
        conn = check_conn_id(conn_id) if conn_id is not None else str(uuid_module.uuid4())
        known = self.connections.get(conn)
        if known is not None and known.user != name:
            raise Conflict("conn_id: a connection of another user", field="conn_id")
        self._check_user(name)
        self._check_channels(wanted)
        answer = self._call(
            lambda hub: hub.connect(
                name,
                wanted,
                conn_id=conn,
                channel_configs={channel: dict(CHANNEL_CONFIG) for channel in wanted},
                fresh_user_state={STATUS_KEY: STATUSES[0]},
                state_public_keys=[STATUS_KEY],
                info=_INFO,
            )
        )
        self.users[name] = True
        self.users.touch(name)
        self.users.overflow()
        self._remember_channels(wanted)
        self.connections[conn] = DemoConnection(conn, name, set(wanted))
        self.connections.touch(conn)
        for old_id, _ in self.connections.overflow():
            self._forget_connection(old_id)
        return {
            "conn_id": answer["conn_id"],
            "username": answer["username"],
            "state": answer["state"],
            "statuses": list(STATUSES),
            "channels": self._channel_views(answer["channels_info"], name),
        }

    def subscribe(self, conn_id: Any, channel: Any) -> dict[str, Any]:
        """Join ``channel``: ``{"channel": name, "view": channel view}``."""
        conn = self._connection(conn_id)
        name = check_channel_name(channel)
        if name not in conn.channels and len(conn.channels) >= self.limits.channels_per_connection:
            raise Conflict(
                f"channel: a demo page joins at most {self.limits.channels_per_connection} "
                "channels; leave one first",
                field="channel",
            )
        self._check_channels([name])
        answer = self._call(
            lambda hub: hub.subscribe(
                conn.conn_id, [name], channel_configs={name: dict(CHANNEL_CONFIG)}, info=_INFO
            )
        )
        self._remember_channels([name])
        conn.channels.add(name)
        views = self._channel_views(answer["channels_info"], conn.user)
        return {"channel": name, "view": views.get(name)}

    def unsubscribe(self, conn_id: Any, channel: Any) -> dict[str, Any]:
        """Leave ``channel``: ``{"channels": [names still joined]}``."""
        conn = self._connection(conn_id)
        name = check_channel_name(channel)
        answer = self._call(lambda hub: hub.unsubscribe(conn.conn_id, [name]))
        conn.channels.discard(name)
        return {"channels": answer["channels"]}

    def set_status(self, conn_id: Any, status: Any) -> dict[str, Any]:
        """Set the user's public ``status`` (one of :data:`STATUSES`): ``{"state": ...}``."""
        conn = self._connection(conn_id)
        if status not in STATUSES:
            raise BadRequest(f"status: one of {', '.join(STATUSES)}", field="status")
        answer = self._call(
            lambda hub: hub.user_state(conn.user, {STATUS_KEY: status}, [STATUS_KEY])
        )
        return {"state": answer["user_state"]}

    # -- messages -----------------------------------------------------------------------

    def post(self, conn_id: Any, channel: Any, text: Any, to: Any = None) -> dict[str, Any]:
        """Post ``text`` in a joined ``channel`` (privately ``to`` one user if given).

        A private message goes to ``to`` and to the sender (``pm_users``).
        Returns the server's echo of the message (its ``uuid``...).
        """
        conn = self._connection(conn_id)
        name = self._joined(conn, channel)
        body = check_text(text)
        pm_users: tuple[str, ...] = ()
        if to is not None:
            target = check_user_name(to)
            pm_users = (target, conn.user) if target != conn.user else (conn.user,)
        item: dict[str, Any] = {
            "channel": name,
            "user": conn.user,
            "message": {"text": body},
        }
        if pm_users:
            item["pm_users"] = list(pm_users)
        echo = self._call(lambda hub: hub.message(item))[0]
        self.posted[echo["uuid"]] = Posted(conn.user, name, pm_users)
        self.posted.overflow()
        return echo

    def edit(self, conn_id: Any, message_uuid: Any, text: Any) -> dict[str, Any]:
        """Change the text of one's own message: the server's echo of the edit."""
        conn = self._connection(conn_id)
        key, posted = self._own(conn, message_uuid)
        item = {
            "uuid": key,
            "channel": posted.channel,
            "pm_users": list(posted.pm_users),
            "message": {"text": check_text(text)},
        }
        return self._call(lambda hub: hub.edit_messages(item))[0]

    def delete(self, conn_id: Any, message_uuid: Any) -> dict[str, Any]:
        """Delete one's own message: the server's echo of the delete."""
        conn = self._connection(conn_id)
        key, posted = self._own(conn, message_uuid)
        item = {"uuid": key, "channel": posted.channel, "pm_users": list(posted.pm_users)}
        answer = self._call(lambda hub: hub.delete_messages(item))[0]
        self.posted.pop(key, None)
        return answer

    # -- what the demo knows ---------------------------------------------------------

    def stats(self) -> dict[str, int]:
        """How much the demo keeps (shown on the page, bounded by :attr:`limits`)."""
        return {
            "connections": len(self.connections),
            "users": len(self.users),
            "channels": len(self.channels),
            "messages": len(self.posted),
        }

    # -- helpers --------------------------------------------------------------------------

    def _call(self, call: Callable[[ChannelstreamClient], Any]) -> Any:
        """Run one server API call; map its failures to errors for the page."""
        try:
            return call(self._client())
        except ChannelstreamError as err:
            if err.status in (401, 403):
                raise Unavailable(
                    f"the server refused the demo's own signed call ({err.message}): "
                    "allow_posting_from must admit the server's own address"
                ) from None
            raise _passed_on(err) from None
        except OSError as err:
            raise Unavailable(f"the server API did not answer the demo: {err}") from None

    def _connection(self, conn_id: Any) -> DemoConnection:
        conn = self.connections.get(check_conn_id(conn_id))
        if conn is None:
            raise NotFound("unknown demo connection: sign in again", field="conn_id")
        self.connections.touch(conn.conn_id)
        return conn

    def _joined(self, conn: DemoConnection, channel: Any) -> str:
        name = check_channel_name(channel)
        if name not in conn.channels:
            raise Conflict(f"channel: join {name} first", field="channel")
        return name

    def _own(self, conn: DemoConnection, message_uuid: Any) -> tuple[str, Posted]:
        key = str(message_uuid)
        posted = self.posted.get(key)
        if posted is None or posted.user != conn.user:
            raise NotFound("uuid: not a message of yours the demo remembers", field="uuid")
        return key, posted

    def _channel_list(self, channels: Any) -> list[str]:
        if channels is None:
            return list(DEFAULT_CHANNELS)
        if not isinstance(channels, list):
            raise BadRequest("channels: a list of channel names", field="channels")
        names = sorted({check_channel_name(c, "channels") for c in channels})
        if len(names) > self.limits.channels_per_connection:
            raise BadRequest(
                f"channels: at most {self.limits.channels_per_connection}", field="channels"
            )
        return names

    def _check_user(self, name: str) -> None:
        """Refuse the bot's name, and the name of a user that some other backend made."""
        if name == BOT_USER:
            raise Conflict(
                f"username: {name} is the demo's bot; pick another name", field="username"
            )
        if name in self.users:
            return
        try:
            self._client().user_state(name, {})
        except ChannelstreamError as err:
            if err.status == 404:
                return  # the server does not know it: a new demo user
            raise _passed_on(err) from None
        except OSError as err:
            raise Unavailable(f"the server API did not answer the demo: {err}") from None
        raise Conflict(
            f"username: {name} is a user of another app on this server; pick another name",
            field="username",
        )

    def _check_channels(self, names: Sequence[str]) -> None:
        """Refuse channels of another app; refuse new ones past the demo's bound."""
        unknown = [n for n in names if n not in DEFAULT_CHANNELS and n not in self.channels]
        if not unknown:
            return
        existing = self._call(
            lambda hub: hub.info(channels=unknown, include_history=False, include_users=False)
        )["channels"]
        taken = sorted(set(unknown) & set(existing))
        if taken:
            raise Conflict(
                f"channel: {', '.join(taken)} belongs to another app on this server",
                field="channel",
            )
        if len(self.channels) + len(unknown) > self.limits.channels:
            self._prune_channels()
            if len(self.channels) + len(unknown) > self.limits.channels:
                raise Conflict(
                    f"channel: the demo has made {len(self.channels)} channels, its limit; "
                    "join one of them",
                    field="channel",
                )

    def _prune_channels(self) -> None:
        """Forget channels the server collected (they can be made again)."""
        names = list(self.channels)
        if not names:
            return
        existing = self._call(
            lambda hub: hub.info(channels=names, include_history=False, include_users=False)
        )["channels"]
        for name in names:
            if name not in existing:
                self.channels.pop(name, None)

    def _remember_channels(self, names: Iterable[str]) -> None:
        for name in names:
            if name not in DEFAULT_CHANNELS:
                self.channels[name] = True

    def _forget_connection(self, conn_id: str) -> None:
        try:
            self._client().disconnect(conn_id)
        except (ChannelstreamError, OSError):
            pass  # gone already, or the server is away: nothing more to free

    @staticmethod
    def _channel_views(info: Mapping[str, Any], user: str) -> dict[str, Any]:
        """Per channel: ``{"history", "users": [{"user", "state"}], "epoch", "last_offset"}``."""
        states = {entry["user"]: entry["state"] for entry in info.get("users", ())}
        views = {}
        for name, channel in info.get("channels", {}).items():
            views[name] = {
                "history": visible_history(channel.get("history", ()), user),
                "users": [{"user": u, "state": states.get(u, {})} for u in channel["users"]],
                "epoch": channel.get("epoch"),
                "last_offset": channel.get("last_offset", 0),
            }
        return views


#: What ``/connect`` and ``/subscribe`` return about channels: history, users, public state.
_INFO = {"include_history": True, "include_users": True, "return_public_state": True}


class ServerApiError(ClientError):
    """An error answer of the server API, passed on to the page with its status
    (a 5xx becomes 503: the demo's call failed, not the demo route)."""

    code = "server_api_error"

    def __init__(self, err: ChannelstreamError) -> None:
        body = err.body if isinstance(err.body, Mapping) else {}
        super().__init__(f"server API: {err.message}", field=body.get("field"))
        self.status = err.status if 400 <= err.status < 500 else 503  # type: ignore[misc]
        self.code = err.code or ServerApiError.code  # type: ignore[misc]


def _passed_on(err: ChannelstreamError) -> ClientError:
    return ServerApiError(err)
