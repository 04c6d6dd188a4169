"""The Autobahn testsuite's fuzzing client against an echo endpoint on the project's websocket.

``tests/web/autobahn/echo_server.py`` serves ``/echo`` (the project's HTTP server
answers the upgrade, :class:`channelstream.web.websocket.WebSocket` with a keeping
:class:`~channelstream.web.wsframes.FrameReader` echoes); ``wstest -m fuzzingclient``
runs every case of sections 1-10 against it: framing, pings and pongs, reserved bits,
opcodes, fragmentation, UTF-8 (fail fast included), close handling, limits up to
16 MiB messages, auto-fragmentation. Sections 12 and 13 (permessage-deflate) are left
out: the server offers no extension. Every case must come out OK (or INFORMATIONAL,
Autobahn's word for "no expectation").

wstest runs on Python 2.7 only; ``tests/web/autobahn/install.sh`` installs it (pinned)
into ``$AUTOBAHN_HOME``; without it this test is skipped, saying so. A run takes
about 25 s on an idle 2-core machine.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tests.support.broker import in_ci
from tests.support.server import REPO, free_port
from tests.support.wait import wait_for

HERE = Path(__file__).parent / "autobahn"
#: What a run may take at most (the whole test's timeout is above it).
RUN_TIMEOUT = 480
#: Outcomes accepted for a case (its behaviour, and its closing behaviour).
ACCEPTED = {"OK", "INFORMATIONAL"}

pytestmark = pytest.mark.timeout(RUN_TIMEOUT + 60)


def _python27() -> Path:
    if "AUTOBAHN_PYTHON" in os.environ:
        return Path(os.environ["AUTOBAHN_PYTHON"])
    root = Path.home() / ".pyenv"
    pyenv = shutil.which("pyenv")
    if pyenv is not None:
        root = Path(subprocess.run([pyenv, "root"], capture_output=True, text=True).stdout.strip())
    return root / "versions" / "2.7.18" / "bin" / "python"


def _site() -> Path:
    default = Path.home() / ".cache" / "channelstream" / "autobahn-py27"
    return Path(os.environ.get("AUTOBAHN_HOME", default))


WSTEST = (
    "import site, sys; site.addsitedir(sys.argv.pop(1)); sys.argv[0] = 'wstest'; "
    "from autobahntestsuite.wstest import run; run()"
)


@pytest.fixture
def echo_url(tmp_path: Path):
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with open(tmp_path / "echo.log", "wb") as log:
        process = subprocess.Popen(
            [sys.executable, str(HERE / "echo_server.py"), str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for(lambda: _answers(f"http://127.0.0.1:{port}/"), what="the echo server")
        yield f"ws://127.0.0.1:{port}/echo"
    finally:
        process.terminate()
        process.wait(10)


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.ConnectionError:
        return False


def test_autobahn_fuzzing_client_finds_nothing(echo_url, tmp_path):
    python27, site = _python27(), _site()
    if not python27.exists() or not (site / "autobahntestsuite").is_dir():
        missing = f"Autobahn testsuite not installed in {site}: run {HERE / 'install.sh'}"
        if in_ci():
            pytest.fail(f"{missing} (CI is set: .ci/run installs it)")
        pytest.skip(missing)
    reports = tmp_path / "reports"
    spec = {
        "outdir": str(reports),
        "servers": [{"agent": "channelstream", "url": echo_url}],
        "cases": ["1.*", "2.*", "3.*", "4.*", "5.*", "6.*", "7.*", "9.*", "10.*"],
        "exclude-cases": [],
        "exclude-agent-cases": {},
    }
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    run = subprocess.run(
        [str(python27), "-c", WSTEST, str(site), "-m", "fuzzingclient", "-s", "spec.json"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    results = json.loads((reports / "index.json").read_text())["channelstream"]
    assert len(results) > 290  # every case of sections 1-10 ran
    failed = {}
    for case, result in results.items():
        if {result["behavior"], result["behaviorClose"]} - ACCEPTED:
            report = json.loads((reports / result["reportfile"]).read_text())
            failed[case] = (result["behavior"], result["behaviorClose"], report["description"])
    assert not failed, json.dumps(failed, indent=1)
