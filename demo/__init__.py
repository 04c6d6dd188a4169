"""The ``/demo`` page: the whole hub moving, on one screen.

One AngularJS page (``static/``; AngularJS from the ``XStatic-Angular``
package, socket.io's client vendored under ``static/vendor/``: nothing comes
from a CDN) that a newcomer opens after ``make serve``:

- chat: sign in with a name, join and leave channels, presence lists with
  each user's state, private messages, edits and deletes of one's own
  messages, history on join. The page never holds ``secret``: it asks the
  demo's backend (:mod:`demo.backend`, through :mod:`demo.views`), which
  calls the signed server API as any backend would, and gets its frames on
  the websocket ``/ws`` with ``resume``;
- GATD: a key/value query (with "start N s in the past") over socket.io
  ``/stream`` and the packet rate;
- loom: ``/streams`` and a pane that tails the selected stream;
- frame channels (ZMQ, G3: :mod:`demo.frames`);
- status: ``/healthz`` and the counts of the admin stats, with small charts.

It reconnects after a restart or a network drop, resumes by offset, and says
what happened (also when history no longer reached back: ``resume_failed``).

``make demo-data`` (:mod:`demo.data`) makes all of it move.

Served only when ``demo.enabled`` (on in development.ini, off in
production.ini); included by :data:`channelstream.wsgi_app.FEATURES`.
"""

from __future__ import annotations

from pyramid.config import Configurator

from channelstream.serving.runtime import get_runtime

from .backend import DemoBackend
from .frames import FrameTaps, frame_channels
from .views import BACKEND_KEY, LINK_KEY, TAPS_KEY, HubLink, add_routes


def includeme(config: Configurator) -> None:
    """Add the demo's routes and its backend when ``demo.enabled``; else nothing.

    Binds and calls nothing: the backend learns the server's address from
    the first demo request.
    """
    runtime = get_runtime(config.registry)
    settings = runtime.settings
    if not settings.demo.enabled:
        return
    link = HubLink(settings.secret, settings.admin_secret)
    config.registry[LINK_KEY] = link
    config.registry[BACKEND_KEY] = DemoBackend(link)
    config.registry[TAPS_KEY] = FrameTaps(runtime.hub, frame_channels(settings))
    add_routes(config)
