"""Shared engines: what lets several processes and nodes serve one hub.

An engine keeps what every process must agree on in an existing, well-kept
server, never in one of ours: :mod:`.redis` sequences, keeps and carries the
channels' messages (``hub.engine = redis``), in the shape Centrifugo's Redis
broker proved. Each engine is a bus of the hub (:mod:`channelstream.hub.bus`):
the hub core imports no engine; the runtime picks one from the settings.
"""
