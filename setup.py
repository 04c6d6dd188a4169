"""Distribution of the channelstream streaming hub and its doors.

One distribution, two import packages: ``channelstream`` (the hub core, the
process layer and every door) and ``loom`` (the byte-stream door).
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
    packages=find_packages(include=["channelstream", "channelstream.*", "loom", "loom.*"]),
    include_package_data=True,
    zip_safe=False,
    python_requires=">=3.10",
    install_requires=[
        "pyramid",
        "gevent",
        "gevent-websocket",
        "python-socketio",
        "gunicorn",
        "pika",
        "pyzmq",
        "plaster-pastedeploy",
        "prometheus-client",
        "pydantic>=2",
        # CRC-32C of G3 frames (channelstream.g3); hardware-accelerated
        "crc32c>=2.3",
        # pyramid 2.1 imports pkg_resources, which newer setuptools drops.
        "setuptools<81",
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
            # spt3g's python side needs it; spt3g 1.0.2 itself is installed by the
            # Makefile with --no-deps (tests/g3 run it as the interop peer)
            "numpy",
        ],
        "bench": ["psutil"],
    },
    entry_points={
        "paste.app_factory": ["main = channelstream.wsgi_app:make_app"],
        "paste.server_runner": ["main = channelstream.server:serve"],
        "console_scripts": [
            "gatd-publish = channelstream.amqp.cli:run",
            "loom-stream = loom.cli:stream_main",
            "loom-cat = loom.cli:cat_main",
            "g3-frames = channelstream.g3.cli:main",
        ],
    },
)
