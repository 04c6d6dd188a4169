"""channelstream: one gevent process serving real-time streams around a hub.

This module deliberately imports nothing: a backend that only needs the
signing client must be able to import ``channelstream.*`` without pulling in
gevent (or getting its process monkey-patched).
"""

__version__ = "0.1.0"
