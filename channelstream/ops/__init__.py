"""Operations routes: ``/healthz``, ``/metrics``, ``/admin``, ``/openapi.json``.

Each module is a feature with its own ``includeme``; none is a door: they
read the runtime, the hub and the doors' ``status()``.
"""
