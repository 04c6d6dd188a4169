"""The HTTP edge: what every HTTP door stands on.

- :mod:`.httpserver`: the process's HTTP server (gevent's pywsgi) with
  websocket takeover, TCP_NODELAY, one-write responses and a redacted
  access log; :mod:`.requestio` (reading requests under deadlines and
  bounds, refusing them) and :mod:`.rawresponse` (bodies an app writes
  itself: sendfile, chunked with trailers) beside it;
- :mod:`.wsframes`: the RFC 6455 frame codec (pure, bounded);
- :mod:`.websocket`: a server-side websocket on a non-blocking socket,
  driven by libev watchers (no greenlet per connection);
- :mod:`.bodies`: bounded request-body reading;
- :mod:`.responses`: the JSON answers (compact, ``no-store``);
- :mod:`.errorviews`: every error of the Pyramid app as JSON.

Doors (``transports``, ``sio``, ``rest``, ``loom`` ...) import from here;
nothing here imports a door, the hub or the serving layer.
"""
