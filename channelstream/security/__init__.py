"""Who may call what: the auth gate, request signatures, bearer tokens, CORS.

- :mod:`.signing`: the signature wire format, its checks and the replay
  guard (standard library only: the Python client and backends use it);
- :mod:`.gate`: the ``auth`` view option (``api``/``admin``) and
  :func:`~.gate.require_api` / :func:`~.gate.require_admin` for doors;
- :mod:`.tokens`: bearer tokens compared in constant time;
- :mod:`.cors`: the CORS tween for ``allow_cors`` origins.

This ``__init__`` imports nothing, so that importing
:mod:`channelstream.security.signing` pulls in no framework.
"""
