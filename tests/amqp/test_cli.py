"""The gatd-publish console script, run as a real process."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from tests.amqp.conftest import door_status
from tests.support.broker import BoundQueue
from tests.support.server import BIN, REPO, free_port
from tests.support.wait import wait_for

SCRIPT = BIN / "gatd-publish"


def gatd_publish(*args: str, stdin: str = "", env: dict[str, str] | None = None):
    environ = {k: v for k, v in os.environ.items() if k != "CHANNELSTREAM_AMQP_URL"}
    environ.update({"PYTHONPATH": str(REPO), **(env or {})})
    return subprocess.run(
        [str(SCRIPT), *args],
        input=stdin.encode(),
        capture_output=True,
        env=environ,
        timeout=60,
        check=False,
    )


@pytest.mark.broker
def test_ndjson_on_stdin_is_published_with_headers(broker_url, exchange):
    packets = [{"profile_id": "aaaaaaaaaa", "temperature": 70, "n": n} for n in range(3)]
    packets.append({"profile_id": "aaaaaaaaaa", "temperature": 69, "n": 3})
    stdin = "\n".join(json.dumps(packet) for packet in packets) + "\n\n"
    with BoundQueue(broker_url, exchange, {"x-match": "all", "temperature": 70}) as seventy:
        done = gatd_publish("--url", broker_url, "--exchange", exchange, stdin=stdin)
        assert done.returncode == 0, done.stderr
        assert seventy.rest() == packets[:3]
    message = done.stderr.decode()
    assert f"published 4 packets to exchange '{exchange}'" in message
    assert "guest:guest" not in message


@pytest.mark.broker
def test_packets_as_arguments_reach_the_server(amqp_server, broker_url, exchange):
    server = amqp_server()
    done = gatd_publish(
        "--url", broker_url, "--exchange", exchange, "-q", '{"n": 1}', '{"n": 2}'
    )
    assert (done.returncode, done.stderr) == (0, b"")
    wait_for(lambda: door_status(server)["consumed"] == 2, what="2 packets consumed")


@pytest.mark.broker
def test_lines_that_are_not_packets_are_reported_and_skipped(broker_url, exchange):
    stdin = '{"n": 1}\n[1, 2]\nnot json\n{"n": 2}\n'
    with BoundQueue(broker_url, exchange, None) as queue:
        done = gatd_publish("--url", broker_url, "--exchange", exchange, stdin=stdin)
        assert queue.rest() == [{"n": 1}, {"n": 2}]
    assert done.returncode == 1
    message = done.stderr.decode()
    assert "line 2: skipped: a packet must be a JSON object, not an array" in message
    assert "line 3: skipped: not JSON" in message


def test_an_unreachable_broker_fails_with_its_address_and_no_password():
    port = free_port()
    done = gatd_publish(
        "--url", f"amqp://guest:hunter22@127.0.0.1:{port}/", stdin='{"n": 1}\n'
    )
    assert done.returncode == 1
    message = done.stderr.decode()
    assert f"cannot connect to amqp://guest:***@127.0.0.1:{port}/ (127.0.0.1:{port})" in message
    assert "Connection refused" in message
    assert "hunter22" not in message
    assert "Traceback" not in message


def test_the_url_can_come_from_the_environment():
    port = free_port()
    done = gatd_publish(
        stdin='{"n": 1}\n', env={"CHANNELSTREAM_AMQP_URL": f"amqp://u:hunter22@127.0.0.1:{port}/"}
    )
    assert done.returncode == 1
    assert f"127.0.0.1:{port}" in done.stderr.decode()
    assert "hunter22" not in done.stderr.decode()


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1/", "not a url", "amqp://guest:hunter22@127.0.0.1:notaport/"]
)
def test_a_bad_url_is_a_usage_error(url):
    done = gatd_publish("--url", url, '{"n": 1}')
    assert done.returncode == 2
    message = done.stderr.decode()
    assert message.startswith("gatd-publish: bad --url:")
    assert "hunter22" not in message
