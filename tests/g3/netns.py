"""Run a test scenario in a private network namespace: ``python -m tests.g3.netns TARGET ARGS``.

spt3g's listen modes bind every interface; inside a namespace of its own
(only ``lo``, up) such a peer is reachable by nothing but the scenario, and
cannot collide with ports of other tests or sessions. The process enters
the namespace itself (``unshare(CLONE_NEWNET)``, root only), so both ends
(this process and the spt3g peers it starts) live there.

``TARGET`` is ``module:function``; the function gets the JSON-decoded
``ARGS`` as keyword arguments and returns something JSON-encodable, printed
as the last line of stdout. ``monkey_patch=True`` among the arguments
monkey-patches the process for gevent first (as channelstream's server is).
:func:`run_in_netns` is the test side.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import fcntl
import importlib
import json
import os
import socket
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

CLONE_NEWNET = 0x40000000
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1
REPO = Path(__file__).resolve().parents[2]
RESULT = "RESULT "


def enter_private_netns() -> None:
    """Move this process into a new network namespace and bring its loopback up."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    if libc.unshare(CLONE_NEWNET) != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"unshare(CLONE_NEWNET) failed: {os.strerror(error)}")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(sock, SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(sock, SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | IFF_UP))


def netns_problem() -> str | None:
    """Why private network namespaces cannot be used here, or None if they can."""
    if not sys.platform.startswith("linux"):
        return "network namespaces need Linux"
    probe = subprocess.run(
        [sys.executable, "-c", "from tests.g3.netns import enter_private_netns as e; e()"],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )
    if probe.returncode != 0:
        lines = probe.stderr.strip().splitlines()
        return f"cannot make a private network namespace: {lines[-1] if lines else '?'}"
    return None


def run_in_netns(target: str, timeout: float = 90.0, **kwargs: Any) -> Any:
    """Run ``target(**kwargs)`` in a fresh process inside a private network namespace."""
    proc = subprocess.run(
        [sys.executable, "-m", "tests.g3.netns", target, json.dumps(kwargs)],
        cwd=REPO, capture_output=True, text=True, timeout=timeout,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith(RESULT)]
    if proc.returncode != 0 or not lines:
        raise AssertionError(
            f"scenario {target} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}"
        )
    return json.loads(lines[-1][len(RESULT):])


def main(argv: list[str]) -> None:
    target, args = argv[0], json.loads(argv[1]) if len(argv) > 1 else {}
    if args.pop("monkey_patch", False):
        from gevent import monkey

        monkey.patch_all()
    enter_private_netns()
    module_name, _, function = target.partition(":")
    result = getattr(importlib.import_module(module_name), function)(**args)
    sys.stdout.write(RESULT + json.dumps(result) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main(sys.argv[1:])
