"""Every ini key, declared: one frozen dataclass per group, and :class:`Settings`.

The reference of every key (``python -m channelstream.settings`` prints it):
each field declares, with :func:`~channelstream.settings.spec.setting`, its
parser, its default (written as it would be in the ini) and a one-line doc;
its key follows from its place (``hub.history_size`` is the field
``history_size`` of :class:`HubSettings`, the group ``hub`` of
:class:`Settings`; a field of :class:`Settings` itself is an unprefixed key).
A new group is a dataclass here and a field of :class:`Settings`.

Declarations only: :mod:`channelstream.settings` reads them to parse, override
from the environment, validate and list the keys, and builds the values.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path

from .endpoints import OUTPUT, SOURCE, ZmqEndpoint, zmq_endpoints
from .g3 import G3Source, channel_name, frame_decimation, g3_sources
from .parsers import (
    IPNetwork,
    as_bool,
    as_list,
    as_path,
    as_str,
    choices,
    duration,
    host_port,
    integer,
    ip_networks,
    non_empty,
    one_of,
    optional,
    origins,
    url,
)
from .spec import setting


@dataclasses.dataclass(frozen=True)
class HubSettings:
    """``hub.*``: the hub core (channels, history, subscriber outboxes)."""

    history_size: int = setting(integer(0), "100", "messages kept per channel by default")
    history_seconds: float = setting(
        duration(), "0", "max age of channel history (0 = no age limit)"
    )
    outbox_size: int = setting(integer(1), "1000", "soft bound of each subscriber's outbox")
    outbox_hard_limit: int = setting(
        integer(1), "10000", "hard bound of an outbox (>= hub.outbox_size)"
    )
    gc_interval: float = setting(duration(positive=True), "30", "how often idle channels are swept")
    engine: str = setting(
        one_of(("local", "redis")),
        "local",
        "where channels' offsets, history and fan-out live: local (this process) or redis"
        " (shared by every process and node on redis.url)",
    )


@dataclasses.dataclass(frozen=True)
class RedisSettings:
    """``redis.*``: the Redis server of ``hub.engine = redis``."""

    url: str = setting(
        url("redis", "rediss"),
        "",
        "redis://[:password@]host:port/db (a password is better in CHANNELSTREAM_REDIS_URL)",
    )
    key_prefix: str = setting(non_empty, "cs:", "prefix of every key and pub/sub channel")
    presence_ttl: float = setting(
        duration(1.0),
        "30",
        "a process's connections, presence and user records expire this long after it stops"
        " refreshing them (it refreshes every quarter of it): the users of a killed process"
        " part within it",
    )
    control_timeout: float = setting(
        duration(0.1),
        "5",
        "how long a call aimed at a connection on another process waits for that process"
        " to answer over Redis (then 504)",
    )


@dataclasses.dataclass(frozen=True)
class PacketsSettings:
    """``packets.*``: the GATD packet channel."""

    channel: str = setting(non_empty, "packets", "hub channel that carries GATD packets")
    history_seconds: float = setting(duration(), "300", "how far back packet queries may start")
    history_size: int = setting(integer(0), "100000", "packets kept in the packet history")
    ingest_tokens: tuple[str, ...] = setting(
        as_list, "", "bearer tokens POST /packets accepts besides a signed request"
    )
    max_ingest_bytes: int = setting(
        integer(1), "4194304", "largest POST /packets body in bytes (larger: 413, not read)"
    )


def _stream_name(raw: str) -> str:
    """``amqp.stream``: empty (off) or a queue name RabbitMQ accepts for a stream."""
    name = raw.strip()
    if not name:
        return ""
    if len(name.encode("utf-8")) > 255:
        raise ValueError("a queue name is at most 255 bytes")
    if name.startswith("amq."):
        raise ValueError(f"{name!r}: names starting with 'amq.' are reserved by RabbitMQ")
    return name


@dataclasses.dataclass(frozen=True)
class AmqpSettings:
    """``amqp.*``: RabbitMQ; an empty URL turns every AMQP door off."""

    url: str = setting(url("amqp", "amqps"), "", "broker URL (empty = AMQP doors off)")
    exchange: str = setting(non_empty, "streamer_exchange", "headers exchange of the packets")
    prefetch: int = setting(
        integer(1, 65535), "1000", "packets the broker may send ahead of acks (basic.qos)"
    )
    reconnect_max: float = setting(
        duration(positive=True), "30", "longest wait between reconnections (1 s doubling to it)"
    )
    max_body_size: int = setting(
        integer(1), "1048576", "largest packet body in bytes (larger: counted malformed, dropped)"
    )
    stream: str = setting(
        _stream_name,
        "",
        "RabbitMQ stream bound to the exchange that every process reads the packets from,"
        " refilling its window from it (and POST /packets publishes into the exchange);"
        " empty = one exclusive queue per process",
    )
    stream_max_bytes: int = setting(
        integer(0),
        str(1024**3),
        "bound of the stream on disk, in bytes (0 = none); its age bound is"
        " packets.history_seconds",
    )


@dataclasses.dataclass(frozen=True)
class TcpStreamerSettings:
    """``tcp_streamer.*``: the GATD TCP streamer door."""

    listen: tuple[str, int] | None = setting(
        optional(host_port), "127.0.0.1:22500", "host:port to listen on (empty = off)"
    )
    query_timeout: float = setting(
        duration(positive=True), "10", "a client that sends no complete query in time is closed"
    )
    max_query_bytes: int = setting(integer(2), "65536", "largest query a client may send, in bytes")
    outbox_size: int = setting(
        integer(0), "0", "packets queued per client before the oldest drop (0 = hub.outbox_size)"
    )
    send_timeout: float = setting(
        duration(), "60", "a client that takes longer to accept one write is closed (0 = never)"
    )


@dataclasses.dataclass(frozen=True)
class LoomSettings:
    """``loom.*``: the byte-stream door."""

    storage_dir: Path = setting(
        as_path, "var/loom", "where streams are stored (relative to the ini)"
    )
    tokens: tuple[str, ...] = setting(
        as_list, "", "bearer tokens every loom route needs (empty = open)"
    )
    fsync: str = setting(
        one_of(("never", "finish", "always")),
        "finish",
        "what survives a power loss: never (nothing is fsynced), finish (a stream's creation,"
        " end and deletion are fsynced, folder included, before they are acknowledged),"
        " always (also each chunk, before readers get it)",
    )
    cache_window: int = setting(
        integer(0),
        str(32 * 1024 * 1024),
        "bytes of each stream kept in the page cache: older data is written back and"
        " evicted during the upload and after a GET sends it (0 = the kernel decides)",
    )
    compression: str = setting(one_of(("none", "zlib")), "none", "stored data: none or zlib frames")
    compression_level: int = setting(integer(1, 9), "1", "zlib level when compression = zlib")
    retention_age: float = setting(
        duration(), "0", "finished/aborted streams older than this are purged (0 = keep)"
    )
    retention_bytes: int = setting(
        integer(0), "0", "stored bytes past which the oldest ended streams are purged (0 = no cap)"
    )
    retention_interval: float = setting(
        duration(positive=True), "60", "how often retention is applied (also after each end)"
    )
    max_streams: int = setting(integer(1), "10000", "live streams at once (more: 503)")
    max_stream_bytes: int = setting(
        integer(0), "0", "largest stream in bytes; a producer past it is cut off (0 = no limit)"
    )
    fd_reserve: int = setting(
        integer(0),
        "128",
        "file descriptors kept free for everything else: a new upload (or reader) that"
        " would leave fewer of the process's RLIMIT_NOFILE free gets a 503",
    )
    role: str = setting(
        one_of(("auto", "follow")),
        "auto",
        "auto: own the storage folder when no other process does, else follow it (reads,"
        " tails and /spy here, writes 503 naming the owner; needs hub.engine = redis);"
        " follow: never own it",
    )


@dataclasses.dataclass(frozen=True)
class ZmqSettings:
    """``zmq.*``: ZMQ sources feeding channels and outputs serving them.

    Each entry of ``sources`` and ``outputs`` is a validated
    :class:`~channelstream.settings.endpoints.ZmqEndpoint` (its keys and
    defaults are in :mod:`channelstream.settings.endpoints`).
    """

    sources: tuple[ZmqEndpoint, ...] = setting(
        zmq_endpoints(SOURCE),
        "",
        'JSON array of sources feeding channels: [{"address": "tcp://host:9999", "channel":'
        ' ..., "mode": "pull"|"sub", "conn_type", "queue_size": 100, "name"}]',
    )
    outputs: tuple[ZmqEndpoint, ...] = setting(
        zmq_endpoints(OUTPUT),
        "",
        'JSON array of outputs serving channels: [{"address": "tcp://*:9998", "channel": ...,'
        ' "mode": "push"|"pub", "modulo": 1, "conn_type", "queue_size": 100, "name"}]',
    )
    max_inline_bytes: int = setting(
        integer(0),
        "65536",
        "binary parts up to this size reach web clients as base64, larger ones as their size",
    )
    max_message_bytes: int = setting(
        integer(1),
        str(64 * 1024 * 1024),
        "largest message a ZMQ source accepts, in bytes (a larger part: libzmq drops it and"
        " disconnects the sender; a larger whole: counted too_large, dropped)",
    )


@dataclasses.dataclass(frozen=True)
class G3Settings:
    """``g3.*``: the G3 frame sources feeding a channel and the streaming server serving it.

    ``sources`` entries are ``tcp://`` URLs (str) or files (:class:`~pathlib.Path`,
    resolved against the ini's folder); see :mod:`channelstream.settings.g3`.
    """

    listen: tuple[str, int] | None = setting(
        optional(host_port),
        "",
        "host:port of the G3 streaming server serving g3.channel (*:port = every"
        " interface; empty = off)",
    )
    sources: tuple[G3Source, ...] = setting(
        g3_sources,
        "",
        "G3 sources feeding g3.channel: tcp://host:port (connect), tcp://*:port or"
        " tcp://*@ADDR:port (listen), files (read once)",
    )
    channel: str = setting(
        channel_name, "g3", "the channelstream channel the sources feed and the server serves"
    )
    max_queue_size: int = setting(
        integer(0),
        "100",
        "frames queued per G3 client past which its oldest Timepoint/Scan frames are dropped"
        " (0 = hub.outbox_size)",
    )
    max_client_bytes: int = setting(
        integer(1),
        str(256 * 1024 * 1024),
        "bytes queued per G3 client past which its oldest Timepoint/Scan frames are dropped;"
        " if metadata alone passes it, the client is disconnected",
    )
    decimation: Mapping[str, int] = setting(
        frame_decimation,
        "",
        "G3 clients get one frame in N of these types (G3ThrottledNetworkSender's"
        " frame_decimation): Timepoint=10, Scan=0 (0 = none of that type)",
    )
    source_timeout: float = setting(
        duration(),
        "0",
        "a TCP source silent this long ends and is opened again (0 = wait forever)",
    )
    max_frame_size: int = setting(
        integer(64),
        str(64 * 1024 * 1024),
        "largest frame a source accepts, in bytes (larger: counted in errors, the source"
        " opened again)",
    )


@dataclasses.dataclass(frozen=True)
class DemoSettings:
    """``demo.*``: the /demo page."""

    enabled: bool = setting(as_bool, "true", "serve the /demo page")


@dataclasses.dataclass(frozen=True)
class SocketIOSettings:
    """``socketio.*``: the socket.io server (the server runner may override some)."""

    path: str = setting(non_empty, "socket.io", "URL path of the socket.io endpoint")
    transports: tuple[str, ...] = setting(
        choices(("websocket", "polling")), "websocket, polling", "allowed transports"
    )
    ping_interval: float = setting(duration(positive=True), "25", "engine.io ping interval")
    ping_timeout: float = setting(duration(positive=True), "20", "engine.io ping timeout")
    cors_allowed_origins: tuple[str, ...] = setting(
        as_list, "", "origins allowed to connect (empty = same origin only)"
    )
    max_payload: int = setting(integer(1), "1000000", "largest accepted packet, in bytes")
    join_policy: str = setting(
        one_of(("subscribed", "joinable", "any")),
        "subscribed",
        "channels a client may join: subscribed (those the backend gave its connection),"
        " joinable (also channels /channel_config marks joinable), any (also new ones)",
    )
    max_client_channels_per_user: int = setting(
        integer(0), "100", "channels one user's clients may create by joining (0 = none)"
    )
    max_client_channels: int = setting(
        integer(0), "10000", "channels all clients together may create by joining (0 = none)"
    )


@dataclasses.dataclass(frozen=True)
class HttpSettings:
    """``http.*``: the HTTP server (the pserve runner and the gunicorn worker alike).

    Deadlines and bounds of *reading* requests, and caps on connections. A
    response is never cut by them: SSE, long-poll, loom tails and socket.io
    polls stream for as long as they like, and a websocket, once taken over,
    is no longer the HTTP server's.
    """

    header_timeout: float = setting(
        duration(positive=True),
        "10",
        "time to send a request line and its headers, from the connection (or from the"
        " first byte of a later request); then 408 and close",
    )
    keepalive_timeout: float = setting(
        duration(positive=True), "20", "an idle kept-alive connection is closed after this"
    )
    body_timeout: float = setting(
        duration(),
        "300",
        "a request body that sends no byte for this long fails: 408, or a loom upload is"
        " aborted (0 = wait forever)",
    )
    max_connections: int = setting(
        integer(1), "4096", "connections served at once; more are answered 503 and closed"
    )
    max_connections_per_address: int = setting(
        integer(0),
        "256",
        "connections at once from one client address; more get 503 (0 = no cap; behind a"
        " proxy every client has the proxy's address)",
    )
    max_request_line: int = setting(
        integer(64), "8192", "longest request line in bytes (longer: 414 and close)"
    )
    max_header_line: int = setting(
        integer(64), "16384", "longest header line in bytes (longer: 431 and close)"
    )
    max_headers: int = setting(integer(1), "100", "most header lines of a request (more: 431)")
    max_header_bytes: int = setting(
        integer(64), "32768", "most bytes of all header lines of a request (more: 431)"
    )


@dataclasses.dataclass(frozen=True)
class Settings:
    """The whole validated configuration; built by :func:`parse_settings` only."""

    secret: str = setting(as_str, "", "HMAC secret backends sign server API calls with")
    admin_secret: str = setting(as_str, "", "secret that guards the admin routes")
    allow_posting_from: tuple[IPNetwork, ...] = setting(
        ip_networks,
        "",
        "addresses/networks allowed to call the server API (0.0.0.0 or empty = any)",
    )
    port: int | None = setting(
        optional(integer(0, 65535)), "", "informational only; [server:main] port is what binds"
    )
    signature_window: float = setting(
        duration(positive=True), "60", "how far a signature's time may be from the server's"
    )
    require_secrets: bool = setting(
        as_bool, "false", "refuse to start unless secret and admin_secret are set"
    )
    gc_channels_after: float = setting(
        duration(positive=True), "3600", "idle empty channels are collected after this"
    )
    legacy_secret_header: bool = setting(
        as_bool,
        "false",
        "also accept 0.7.1 backends' x-channelstream-secret header (fresh tokens only)",
    )
    replay_cache_size: int = setting(
        integer(1),
        "100000",
        "signatures remembered against replay (when full: 503)",
    )
    max_body_size: int = setting(
        integer(1), "1048576", "largest server API request body in bytes (larger: 413)"
    )
    admin_max_failures: int = setting(
        integer(0),
        "10",
        "failed admin logins one address may make within admin_failure_window (then 429;"
        " 0 = no limit)",
    )
    admin_failure_window: float = setting(
        duration(positive=True), "60", "how long a failed admin login counts"
    )
    healthz_details: str = setting(
        one_of(("public", "admin")),
        "public",
        "who sees /healthz's details (doors, hub): anyone, or admins only (others: status)",
    )
    allow_cors: tuple[str, ...] = setting(
        origins,
        "",
        "origins (scheme://host[:port]) allowed by CORS; * = any; empty = no CORS",
    )
    gc_conns_after: float = setting(
        duration(positive=True), "30", "a connection with no transport is collected after this"
    )
    gc_users_after: float = setting(
        duration(positive=True), "3600", "a user with no connection is forgotten after this"
    )
    listen_timeout: float = setting(
        duration(positive=True), "5", "how long a long-poll /listen waits for a first message"
    )
    client_heartbeat: float = setting(
        duration(positive=True), "5", "interval of the heartbeat frame [] on /ws and SSE"
    )
    hub: HubSettings
    redis: RedisSettings
    packets: PacketsSettings
    amqp: AmqpSettings
    tcp_streamer: TcpStreamerSettings
    loom: LoomSettings
    zmq: ZmqSettings
    g3: G3Settings
    demo: DemoSettings
    socketio: SocketIOSettings
    http: HttpSettings
    #: ``pyramid.*`` keys, passed through to the Pyramid Configurator untouched.
    pyramid: Mapping[str, str] = dataclasses.field(default_factory=dict)
