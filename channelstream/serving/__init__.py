"""The process: the server runner, the runtime, the door registry, gunicorn.

- :mod:`.server`: ``[server:main] use = egg:channelstream`` (monkey-patches
  gevent on import, so this package's ``__init__`` imports nothing);
- :mod:`.runtime`: one process's hub, doors and settings with one lifecycle,
  and where the Pyramid registry keeps it (:func:`~.runtime.get_runtime`);
- :mod:`.doors`: the door contract, supervised loop doors, the registry;
- :mod:`.gunicorn_conf`, :mod:`.gunicorn_worker`: production under gunicorn.
"""
