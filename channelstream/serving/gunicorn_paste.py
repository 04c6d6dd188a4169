"""``[server:main] use = egg:channelstream#gunicorn``: gunicorn's paste runner, gevent first.

pserve loads the server runner before the app, and gunicorn's master loads
the app before it forks the workers, which patch the standard library for
gevent only then. Imported here, before the app, the patch reaches every
module the app imports in the master (``ssl`` through redis and urllib3), as
gunicorn asks of a gevent app loaded in the master: the workers start without
gevent's ``MonkeyPatchWarning`` and no module keeps an unpatched ``ssl``.
Everything else is gunicorn's own runner (``egg:gunicorn#main``).
"""

from gevent import monkey

monkey.patch_all()

from gunicorn.app.pasterapp import serve  # noqa: E402  (after the patch, on purpose)

__all__ = ["serve"]
