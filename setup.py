"""Distribution of the channelstream streaming hub and its doors.

One distribution, three import packages: ``channelstream`` (the hub core, the
process layer and every door), ``loom`` (the byte-stream door) and ``demo``
(the /demo page and ``make demo-data``).
"""

import os

from setuptools import find_packages, setup

HERE = os.path.abspath(os.path.dirname(__file__))


def read_version() -> str:
    """Return ``__version__`` from channelstream/__init__.py without importing it."""
    with open(os.path.join(HERE, "channelstream", "__init__.py"), encoding="utf-8") as f:
        for line in f:
            if line.startswith("__version__"):
                return line.split("=", 1)[1].strip().strip("\"'")
    raise RuntimeError("channelstream/__init__.py has no __version__")


setup(
    name="channelstream",
    version=read_version(),
    description="One gevent process that serves real-time streams: "
    "channels, packets, byte streams, ZMQ and G3 frames",
    packages=find_packages(
        include=["channelstream", "channelstream.*", "loom", "loom.*", "demo", "demo.*"]
    ),
    include_package_data=True,
    # the /demo page's HTML, CSS, scripts and vendored socket.io client
    package_data={"demo": ["static/*.*", "static/js/*.js", "static/vendor/*"]},
    zip_safe=False,
    python_requires=">=3.10",
    install_requires=[
        "pyramid",
        "gevent",
        "python-socketio",
        "gunicorn",
        "pika",
        "pyzmq",
        # channelstream.mflow: array-1.0 and bsr_m-1.1 decode to numpy arrays
        "numpy",
        "plaster-pastedeploy",
        "prometheus-client",
        # hub.engine = redis: channels shared by many processes and nodes; hiredis
        # parses replies and pub/sub messages in C (redis-py uses it when present)
        "redis[hiredis]",
        "pydantic>=2",
        # CRC-32C of G3 frames (channelstream.g3); hardware-accelerated
        "crc32c>=2.3",
        # pyramid 2.1 imports pkg_resources, which newer setuptools drops.
        "setuptools<81",
        # AngularJS for the /demo page, served by the app (no CDN)
        "XStatic-Angular",
    ],
    extras_require={
        "test": [
            "pytest",
            "pytest-timeout",
            "hypothesis",
            "websocket-client",
            "requests",
            "ruff",
            # only to prove that channelstream 0.7.1 tokens are read right
            "itsdangerous",
            # /openapi.json: the document is valid, and the live API honours it
            "openapi-spec-validator",
            "schemathesis>=4",
            # the websocket codec is tested against the reference RFC 6455 parser
            "wsproto",
            # PSI's own mflow, the peer of channelstream.mflow's interop tests
            # (run in separate processes; import name mflow)
            "psi-mflow==1.0.0",
            # tests/demo drive Debian's chromium (never a downloaded browser)
            "playwright",
            # spt3g's python side needs it; spt3g 1.0.2 itself is installed by the
            # Makefile with --no-deps (tests/g3 run it as the interop peer)
            "numpy",
        ],
        # bench/zmq.py measures PSI's mflow beside ours
        "bench": ["psutil", "psi-mflow==1.0.0"],
    },
    entry_points={
        "paste.app_factory": ["main = channelstream.wsgi_app:make_app"],
        "paste.server_runner": [
            "main = channelstream.serving.server:serve",
            "gunicorn = channelstream.serving.gunicorn_paste:serve",
        ],
        "console_scripts": [
            "gatd-publish = channelstream.amqp.cli:run",
            "loom-stream = loom.cli:stream_main",
            "loom-cat = loom.cli:cat_main",
            "m_stats = channelstream.mflow.cli.stats:main",
            "m_generate = channelstream.mflow.cli.generate:main",
            "m_dump = channelstream.mflow.cli.dump:main",
            "m_replay = channelstream.mflow.cli.replay:main",
            "m_split = channelstream.mflow.cli.split:main",
            "g3-frames = channelstream.g3.cli:main",
        ],
    },
)
