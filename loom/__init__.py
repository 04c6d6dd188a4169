"""loom: live byte streams with persistence, tailing and spy (the ProboCI loom API).

Producers ``POST /stream/<id>`` a byte stream (a build's stdout) with JSON
metadata; readers ``GET /stream/<id>`` what is stored and then the live tail
until the producer ends; ``/spy`` shows every stream at once. The routes
are described in :mod:`loom.views`.

Parts:

- :mod:`loom.store`: streams on disk, explicit states, restart recovery,
  retention (no hub, no HTTP); :mod:`loom.ids`: valid and fresh stream ids;
  :mod:`loom.errors`: the store's refusals, each a shared client error;
- :mod:`loom.frames`: the optional zlib framing of stored data;
- :mod:`loom.events`: the store's changes as small notifications on hub
  channels (``loom``, ``loom:<id>``), and readers that wait on them;
- :mod:`loom.link`, :mod:`loom.mirror`: those events carried from the
  folder's owner to the other processes that share the folder;
- :mod:`loom.reader`: reading stored bytes, and incremental upload reads;
- :mod:`loom.responses`, :mod:`loom.spy`, :mod:`loom.views`: the HTTP side;
  :mod:`loom.hangup`: a tail or spy whose client went away ends at once;
- :mod:`loom.cli`: ``loom-stream`` and ``loom-cat``.

The door ``loom`` (:class:`loom.door.LoomDoor`) opens the store when the runtime
starts (marking streams that were live as aborted), applies retention
every ``loom.retention_interval`` and after each stream ends, and aborts
the live streams when the runtime stops.

Streams are written by one process: the door takes an exclusive lock on
``<storage_dir>/.lock``. Another process on the same folder (another
gunicorn worker) follows it when the hub has a shared engine
(``hub.engine = redis``): reads, tails and ``/spy`` work there, writes
answer 503 naming the owner (:mod:`loom.link`, :mod:`loom.mirror`); on the
local bus it serves no loom route (503 naming the owner's pid) instead of
corrupting the streams of the first.
"""

from __future__ import annotations

import logging
from typing import Any

from channelstream.serving.runtime import get_runtime
from channelstream.web.openapi import add_fragment

from . import openapi
from .door import DOOR_NAME, REGISTRY_KEY, LoomDoor, get_door
from .views import add_off_routes, add_routes

log = logging.getLogger(__name__)

__all__ = ["DOOR_NAME", "REGISTRY_KEY", "LoomDoor", "get_door", "includeme"]


#: Why loom is off when ``require_secrets`` is set and ``loom.tokens`` is not.
OFF_WITHOUT_TOKENS = (
    "loom is off: require_secrets = true and loom.tokens is empty (anyone could read, "
    "overwrite and delete streams); set loom.tokens (or CHANNELSTREAM_LOOM_TOKENS)"
)


def includeme(config: Any) -> None:
    """Register the door, the routes (:mod:`loom.views`) and their OpenAPI fragment.

    A server that requires secrets (``require_secrets``) serves loom only with
    bearer tokens: without ``loom.tokens`` it says so at startup and every
    loom route answers 503 saying why.
    """
    runtime = get_runtime(config.registry)
    settings = runtime.settings
    if settings.require_secrets and not settings.loom.tokens:
        log.warning(OFF_WITHOUT_TOKENS)
        add_off_routes(config, OFF_WITHOUT_TOKENS)
        return
    door = LoomDoor(settings.loom, runtime.hub, url=lambda: runtime.url)
    runtime.doors.add(door)
    config.registry[REGISTRY_KEY] = door
    add_routes(config)
    add_fragment(config.registry, openapi.fragment())
