"""Fixtures of the mflow tests: addresses, peer processes (PSI's mflow, bsread), our tools.

PSI's mflow (``pip install psi-mflow==1.0.0``, import name ``mflow``) and
bsread (``psi-bsread``, installed without dependencies by ``make``) run only
in separate processes, as scripts. Tests that need one skip with a reason
when it is missing, except in CI (``CI=true``), where they fail instead.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.mflow.support import Procs, require_peer
from tests.support.server import free_port


@pytest.fixture
def psi() -> None:
    """PSI's mflow must be installed (it is used in subprocesses only)."""
    require_peer("mflow", "psi-mflow==1.0.0")


@pytest.fixture
def bsread() -> None:
    """bsread must be installed (subprocesses only)."""
    require_peer("bsread", "psi-bsread==2.0.1")


@pytest.fixture
def address() -> str:
    """A tcp://127.0.0.1 address whose port was free a moment ago."""
    return f"tcp://127.0.0.1:{free_port()}"


@pytest.fixture
def procs() -> Iterator[Procs]:
    """Start processes with ``procs.script/tool/psi_tool``; killed at the end if still running."""
    running = Procs()
    yield running
    running.kill_all()
