"""Every setting of the service, parsed and validated once at startup.

The ``[app:main]`` section of an ini file is turned into one frozen
:class:`Settings` value by :func:`parse_settings`; nothing else in the
project reads raw settings. Each field declares its ini key, its parser, its
default (written as it would be in the ini) and a one-line doc, so
:mod:`.keys`, where the fields are declared, is also the reference of every
key (``python -m channelstream.settings`` prints it). This module reads those
declarations: it parses, applies the environment, validates, lists.

Keys are an ops contract: unprefixed channelstream keys (``secret``,
``admin_secret``, ``allow_posting_from``, ...) and one prefix per door or
subsystem (``hub.``, ``packets.``, ``amqp.``, ``tcp_streamer.``, ``loom.``,
``zmq.``, ``g3.``, ``demo.``, ``socketio.``). The key of a grouped field is
``<group>.<field>``: ``settings.tcp_streamer.listen`` is the ini key
``tcp_streamer.listen``.

Every key can be overridden from the environment by
``CHANNELSTREAM_<KEY>`` (dots become underscores, upper case:
``CHANNELSTREAM_SECRET``, ``CHANNELSTREAM_AMQP_URL``) so that secrets can
stay out of ini files. The environment wins over the ini.

Rules for keys that are not declared here:

- under a known prefix: startup stops (it is a typo or an option that does
  not exist, and silently ignoring it would hide a misconfiguration);
- ``pyramid.*``: passed through to Pyramid (:attr:`Settings.pyramid`);
- ``here`` and ``__file__`` (PasteDeploy's): used for relative paths only;
- anything else: one warning naming the key, then ignored.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import os
import types
import typing
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from .endpoints import bind_conflict
from .g3 import listen_port
from .keys import (
    AmqpSettings,
    DemoSettings,
    G3Settings,
    HttpSettings,
    HubSettings,
    LoomSettings,
    PacketsSettings,
    RedisSettings,
    Settings,
    SocketIOSettings,
    TcpStreamerSettings,
    ZmqSettings,
)
from .spec import SPEC_KEY, Spec

log = logging.getLogger(__name__)

ENV_PREFIX = "CHANNELSTREAM_"
_IGNORED_KEYS = frozenset({"here", "__file__"})
_PASSTHROUGH_PREFIXES = ("pyramid.",)


class SettingsError(ValueError):
    """A setting is missing, unknown or has a bad value.

    ``str(err)`` names the key first: ``tcp_streamer.listen: expected
    host:port, got 'abc'``.
    """

    def __init__(self, key: str, message: str) -> None:
        super().__init__(key, message)
        self.key = key
        self.message = message

    def __str__(self) -> str:
        return f"{self.key}: {self.message}"


# -- the declared keys (:mod:`.keys`) ----------------------------------------


@dataclasses.dataclass(frozen=True)
class SettingInfo:
    """One declared key, as shown in docs: key, env variable, default, doc."""

    key: str
    env: str
    default: str
    doc: str
    group: str | None
    name: str
    spec: Spec


def env_name(key: str) -> str:
    """Return the environment variable that overrides ``key``."""
    return ENV_PREFIX + key.replace(".", "_").upper()


#: Each group prefix (``hub``) and its dataclass (``HubSettings``), from :class:`Settings`.
_GROUP_TYPES: dict[str, type] = {
    name: hint
    for name, hint in typing.get_type_hints(Settings).items()
    if dataclasses.is_dataclass(hint)
}

#: Prefixes under which every key must be declared.
KNOWN_PREFIXES = tuple(f"{name}." for name in _GROUP_TYPES)


def iter_settings() -> Iterator[SettingInfo]:
    """Yield every declared key in declaration order (top level, then groups)."""
    for f in dataclasses.fields(Settings):
        spec = f.metadata.get(SPEC_KEY)
        if spec is not None:
            yield SettingInfo(f.name, env_name(f.name), spec.default, spec.doc, None, f.name, spec)
    for group, cls in _GROUP_TYPES.items():
        for f in dataclasses.fields(cls):
            key = f"{group}.{f.name}"
            spec = f.metadata[SPEC_KEY]
            yield SettingInfo(key, env_name(key), spec.default, spec.doc, group, f.name, spec)


_INFOS: dict[str, SettingInfo] = {info.key: info for info in iter_settings()}


# -- parsing ---------------------------------------------------------------


def parse_value(key: str, raw: str, *, here: str | os.PathLike[str] | None = None) -> Any:
    """Parse one declared key's raw text; raise :class:`SettingsError` naming it.

    Relative paths are resolved against ``here`` (default: the current
    directory).
    """
    info = _INFOS.get(key)
    if info is None:
        raise SettingsError(key, _unknown_message(key))
    try:
        value = info.spec.parse(raw)
    except ValueError as err:
        raise SettingsError(key, str(err)) from None
    base = Path(here or os.getcwd())
    if isinstance(value, Path):
        return value if value.is_absolute() else base / value
    if isinstance(value, tuple) and any(isinstance(item, Path) for item in value):
        return tuple(
            base / item if isinstance(item, Path) and not item.is_absolute() else item
            for item in value
        )
    return value


def parse_settings(raw: Mapping[str, str], environ: Mapping[str, str] = os.environ) -> Settings:
    """Build the validated :class:`Settings` from an ini section's keys.

    ``raw`` is the ``[app:main]`` mapping (PasteDeploy's ``here`` may be in
    it; relative paths are resolved against it). ``environ`` supplies
    ``CHANNELSTREAM_<KEY>`` overrides. Raises :class:`SettingsError` on the
    first bad key; logs one warning per unknown unprefixed key.
    """
    here = raw.get("here") or os.getcwd()
    pyramid: dict[str, str] = {}
    for key in raw:
        if key in _IGNORED_KEYS or key in _INFOS:
            continue
        if key.startswith(_PASSTHROUGH_PREFIXES):
            pyramid[key] = raw[key]
        elif key.startswith(KNOWN_PREFIXES):
            raise SettingsError(key, _unknown_message(key))
        else:
            log.warning("ignoring unknown setting %r%s", key, _suggestion(key))

    top: dict[str, Any] = {}
    grouped: dict[str, dict[str, Any]] = {group: {} for group in _GROUP_TYPES}
    for info in _INFOS.values():
        env = environ.get(info.env)
        text = env if env is not None else raw.get(info.key, info.default)
        try:
            value = parse_value(info.key, text, here=here)
        except SettingsError as err:
            if env is not None:
                raise SettingsError(
                    info.key, f"{err.message} (from environment variable {info.env})"
                ) from None
            raise
        if info.group is None:
            top[info.name] = value
        else:
            grouped[info.group][info.name] = value

    settings = Settings(
        **top,
        **{group: _GROUP_TYPES[group](**values) for group, values in grouped.items()},
        pyramid=types.MappingProxyType(pyramid),
    )
    validate(settings)
    return settings


def validate(settings: Settings) -> None:
    """Check the rules that span several keys; raise :class:`SettingsError`."""
    if settings.hub.outbox_hard_limit < settings.hub.outbox_size:
        raise SettingsError(
            "hub.outbox_hard_limit",
            f"must be >= hub.outbox_size ({settings.hub.outbox_size}), "
            f"got {settings.hub.outbox_hard_limit}",
        )
    if settings.hub.engine == "redis" and not settings.redis.url:
        raise SettingsError("redis.url", "is empty but hub.engine = redis: say where Redis is")
    conflict = bind_conflict(
        ("zmq.sources", settings.zmq.sources), ("zmq.outputs", settings.zmq.outputs)
    )
    if conflict is not None:
        raise SettingsError(*conflict)
    _validate_g3(settings.g3)
    if settings.require_secrets:
        for key in ("secret", "admin_secret"):
            if not getattr(settings, key):
                raise SettingsError(
                    key,
                    "is empty but require_secrets = true; "
                    f"set it in the environment variable {env_name(key)} (or in the ini)",
                )


def _validate_g3(g3: G3Settings) -> None:
    """Files of ``g3.sources`` exist; no two G3 listeners take the same address."""
    taken: list[tuple[str | None, int, str]] = []
    if g3.listen is not None:
        host, port = g3.listen
        taken.append((None if host == "*" else host, port, "g3.listen"))
    for entry in g3.sources:
        if isinstance(entry, Path):
            if not entry.is_file():
                raise SettingsError("g3.sources", f"no such file: {str(entry)!r}")
            continue
        bound = listen_port(entry)
        if bound is None:
            continue
        host, port = bound
        for other_host, other_port, other in taken:
            everywhere = _ANY_HOSTS.intersection((host, other_host))
            if port and port == other_port and (everywhere or host == other_host):
                raise SettingsError(
                    "g3.sources", f"{entry!r} listens on port {port}, as {other} does"
                )
        taken.append((host, port, repr(entry)))


#: Hosts that listen on every interface (None: the library's '*').
_ANY_HOSTS = frozenset({None, "0.0.0.0", "::", ""})


def replace_group(settings: Settings, group: str, **changes: Any) -> Settings:
    """Return a copy of ``settings`` with fields of one group replaced, re-validated.

    ``replace_group(s, "socketio", ping_interval=5.0)``. Values must already
    be typed (use :func:`parse_value` on raw text).
    """
    if group not in _GROUP_TYPES:
        raise KeyError(group)
    new_group = dataclasses.replace(getattr(settings, group), **changes)
    new = dataclasses.replace(settings, **{group: new_group})
    validate(new)
    return new


def default_settings(raw: Mapping[str, str] | None = None) -> Settings:
    """Return the defaults, with ``raw`` keys applied, ignoring the environment."""
    return parse_settings(raw or {}, environ={})


def _unknown_message(key: str) -> str:
    return f"unknown setting {key!r}{_suggestion(key)}"


def _suggestion(key: str) -> str:
    close = difflib.get_close_matches(key, list(_INFOS), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def reference() -> str:
    """Return every key as ini text, with its doc and environment variable."""
    lines = []
    for info in iter_settings():
        lines.append(f"# {info.doc} (env {info.env})")
        lines.append(f"{info.key} = {info.default}".rstrip())
    return "\n".join(lines)


__all__ = [
    "ENV_PREFIX",
    "KNOWN_PREFIXES",
    "SettingInfo",
    "SettingsError",
    "default_settings",
    "env_name",
    "iter_settings",
    "parse_settings",
    "parse_value",
    "reference",
    "replace_group",
    "validate",
    # the declarations (:mod:`.keys`)
    "Settings",
    "HubSettings",
    "RedisSettings",
    "PacketsSettings",
    "AmqpSettings",
    "TcpStreamerSettings",
    "LoomSettings",
    "ZmqSettings",
    "G3Settings",
    "DemoSettings",
    "SocketIOSettings",
    "HttpSettings",
]
