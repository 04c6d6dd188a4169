"""The channelstream use of the hub: users, connections, channels, presence.

``ChatState`` keeps what channelstream 0.7.1 kept (users with state, their
connections, channels with settings, history and presence) and routes every
frame through the hub: each channelstream channel is the hub channel
``channel:<name>``, each user's private messages go through ``user:<name>``,
and each connection owns one hub outbox that its transports (websocket,
long-poll, SSE, socket.io) drain in turn. The REST views and the transports
are doors over this package; it imports neither.
"""

from ..serving.runtime import get_runtime
from .frames import PM_RESUME_KEY
from .state import ChatConfig, ChatState

__all__ = ["PM_RESUME_KEY", "ChatConfig", "ChatState", "includeme"]

#: Registry key of the process's ChatState.
CHAT_KEY = "channelstream.chat"


def includeme(config) -> None:
    """Create the process's ChatState on the runtime's hub (with the Redis
    directory under ``hub.engine = redis``), and its collector loop."""
    from .collector import ChatCollector

    runtime = get_runtime(config.registry)
    settings = runtime.settings
    directory = None
    if settings.hub.engine == "redis":  # presence, user state, connections in Redis
        from ..engines.directory import RedisDirectory

        directory = RedisDirectory(
            settings.redis.url,
            key_prefix=settings.redis.key_prefix,
            presence_ttl=settings.redis.presence_ttl,
            control_timeout=settings.redis.control_timeout,
            user_ttl=settings.gc_users_after,
            settings_ttl=settings.gc_channels_after,
        )
    chat = ChatState(
        runtime.hub,
        ChatConfig(
            gc_conns_after=settings.gc_conns_after,
            gc_users_after=settings.gc_users_after,
            gc_channels_after=settings.gc_channels_after,
        ),
        directory=directory,
    )
    config.registry[CHAT_KEY] = chat
    if directory is not None:
        runtime.doors.add(directory.service)
    runtime.doors.add(ChatCollector(chat))
