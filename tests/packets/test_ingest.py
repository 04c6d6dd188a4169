"""POST /packets through the real server: every body form, both kinds of caller,
the errors; what is accepted is seen by a TCP streamer client, what is
refused is not (all or nothing)."""

from __future__ import annotations

import json
import re
import socket

import pytest
import requests

from channelstream.client import ChannelstreamClient
from tests.support.packets import (
    OTHER_TOKEN,
    TOKEN,
    StreamClient,
    ndjson_body,
    new_run,
    post_packets,
    run_packets_server,
    signing_client,
)

pytestmark = pytest.mark.timeout(60)

MAX_INGEST = 2 * 1024 * 1024


@pytest.fixture(scope="module")
def ingest_server(tmp_path_factory: pytest.TempPathFactory):
    yield from run_packets_server(
        tmp_path_factory.mktemp("ingest"), **{"packets.max_ingest_bytes": str(MAX_INGEST)}
    )


@pytest.fixture
def signed(ingest_server) -> ChannelstreamClient:
    return signing_client(ingest_server)


@pytest.fixture
def watch(ingest_server):
    """A TCP streamer client of a fresh run: ``(run, client)``."""
    run = new_run()
    with StreamClient(ingest_server).send({"run": run, "time": 60000}) as client:
        yield run, client


def fence(server, run):
    """Publish a last packet; the watcher's packets before it are all it got."""
    response = post_packets(server, {"run": run, "fence": True})
    assert response.status_code == 202


def seen(client):
    got = client.until(lambda p: p.get("fence") is True)
    return got[:-1]


def packets_of(run, count, **extra):
    return [{"run": run, "seq": n, **extra} for n in range(count)]


# -- body forms ----------------------------------------------------------------------------


def test_one_object(ingest_server, watch):
    run, client = watch
    packet = {"run": run, "profile_id": "abcdefghij", "temperature": 70, "raw": [1, {"a": 2}]}
    response = post_packets(ingest_server, packet)
    assert response.status_code == 202
    assert response.json() == {"accepted": 1}
    assert response.headers["Content-Type"].startswith("application/json")
    fence(ingest_server, run)
    assert seen(client) == [packet]


def test_an_array_of_objects(ingest_server, watch):
    run, client = watch
    packets = packets_of(run, 5)
    assert post_packets(ingest_server, packets).json() == {"accepted": 5}
    assert post_packets(ingest_server, []).json() == {"accepted": 0}
    fence(ingest_server, run)
    assert seen(client) == packets


@pytest.mark.parametrize(
    "content_type",
    ["application/x-ndjson", "application/x-ndjson; charset=utf-8", "application/jsonl"],
)
def test_ndjson_by_content_type(ingest_server, watch, content_type):
    run, client = watch
    packets = packets_of(run, 3, name="caf\u00e9")
    body = ndjson_body(packets)
    response = post_packets(ingest_server, body, content_type=content_type)
    assert response.json() == {"accepted": 3}
    one = post_packets(ingest_server, ndjson_body(packets[:1]), content_type=content_type)
    assert one.json() == {"accepted": 1}
    fence(ingest_server, run)
    assert seen(client) == [*packets, packets[0]]


def test_ndjson_is_detected_without_its_content_type(ingest_server, watch):
    run, client = watch
    packets = packets_of(run, 4)
    lines = [json.dumps(p).encode() for p in packets]
    body = lines[0] + b"\r\n\n" + lines[1] + b"\n   \n" + lines[2] + b"\r\n" + lines[3]
    for content_type in (None, "application/json", "text/plain"):
        response = post_packets(ingest_server, body, content_type=content_type)
        assert response.json() == {"accepted": 4}, content_type
    fence(ingest_server, run)
    assert seen(client) == packets * 3


def test_a_pretty_printed_object_is_one_packet(ingest_server, watch):
    run, client = watch
    packet = {"run": run, "nested": {"a": [1, 2]}}
    body = json.dumps(packet, indent=2).encode()
    assert post_packets(ingest_server, body).json() == {"accepted": 1}
    fence(ingest_server, run)
    assert seen(client) == [packet]


# -- callers ---------------------------------------------------------------------------------


def test_a_signed_request_is_accepted(ingest_server, signed, watch):
    run, client = watch
    packets = packets_of(run, 3)
    assert signed.call("POST", "/packets", packets) == (202, {"accepted": 3})
    status, answer = signed.call(
        "POST",
        "/packets",
        ndjson_body(packets),
        headers={"Content-Type": "application/x-ndjson"},
    )
    assert (status, answer) == (202, {"accepted": 3})
    fence(ingest_server, run)
    assert seen(client) == packets * 2


def test_a_signed_request_gets_the_ingest_bound_not_max_body_size(ingest_server, signed):
    # max_body_size is 1 MiB by default; packets.max_ingest_bytes is 2 MiB here.
    packets = [{"pad": "x" * 1000, "seq": n} for n in range(1400)]
    body = json.dumps(packets).encode()
    assert 1024 * 1024 < len(body) < MAX_INGEST
    assert signed.call("POST", "/packets", body) == (202, {"accepted": 1400})


def test_every_configured_token_works(ingest_server):
    response = post_packets(ingest_server, {"a": 1}, token=OTHER_TOKEN)
    assert response.json() == {"accepted": 1}


def test_a_wrong_token_is_401_and_publishes_nothing(ingest_server, watch):
    run, client = watch
    for token in ("wrong", "ingest-token-", "", "ingest-token-1 ingest-token-2"):
        response = post_packets(ingest_server, {"run": run}, token=token)
        assert response.status_code == 401, token
        assert response.json()["code"] == "unauthorized"
    fence(ingest_server, run)
    assert seen(client) == []


def test_an_unsigned_request_without_token_is_401(ingest_server, signed, watch):
    run, client = watch
    response = post_packets(ingest_server, {"run": run}, token=None)
    assert response.status_code == 401
    assert response.json()["reason"] == "missing"
    basic = post_packets(ingest_server, {"run": run}, token=None, auth=("user", "ingest-token-1"))
    assert basic.status_code == 401
    # Signed for another body: refused.
    body = json.dumps({"run": run}).encode()
    headers = signed.signed_headers("POST", "/packets", b"{}")
    tampered = post_packets(ingest_server, body, token=None, headers=headers)
    assert tampered.status_code == 401
    assert tampered.json()["reason"] == "bad_signature"
    fence(ingest_server, run)
    assert seen(client) == []


@pytest.mark.parametrize("param", ["token", "access_token"])
def test_a_token_in_the_url_is_never_accepted(ingest_server, param):
    response = requests.post(
        f"{ingest_server.url}/packets?{param}=ingest-token-1",
        data=b'{"a": 1}',
        timeout=10,
    )
    assert response.status_code == 401
    assert "never accepted" in response.json()["error"]
    assert "ingest-token-1" not in response.text


# -- refusals --------------------------------------------------------------------------------


def test_an_array_item_that_is_not_an_object_is_400_naming_its_index(ingest_server, watch):
    run, client = watch
    response = post_packets(ingest_server, [{"run": run}, {"run": run}, [1], {"run": run}])
    assert response.status_code == 400
    body = response.json()
    assert body["index"] == 2
    assert body["error"] == "item 2 of the array is not a JSON object (it is an array)"
    fence(ingest_server, run)
    assert seen(client) == []  # all or nothing


@pytest.mark.parametrize(
    "lines, line, problem",
    [
        ([b'{"a": 1}', b"42", b'{"a": 2}'], 2, "line 2 is not a JSON object (it is a number)"),
        ([b'{"a": 1}', b'{"a": 2}', b'{"a": '], 3, "line 3 is not valid JSON"),
        ([b'{"a": 1}', b"", b'{"a": NaN}'], 3, "NaN is not a JSON number"),
        ([b'{"a": 1}', b'{"a": "\xff"}'], 2, "line 2 is not valid JSON"),
    ],
)
def test_an_ndjson_line_that_is_not_an_object_is_400_naming_the_line(
    ingest_server, watch, lines, line, problem
):
    run, client = watch
    body = b"\n".join(lines).replace(b'{"a"', f'{{"run": "{run}", "a"'.encode())
    for content_type in ("application/x-ndjson", None):
        response = post_packets(ingest_server, body, content_type=content_type)
        assert response.status_code == 400, content_type
        answer = response.json()
        assert answer["line"] == line
        assert problem in answer["error"]
    fence(ingest_server, run)
    assert seen(client) == []  # all or nothing


@pytest.mark.parametrize(
    "body, problem",
    [
        (b"", "the body is empty"),
        (b"  \n ", "the body is empty"),
        (b"42", "it is a number"),
        (b'"packet"', "it is a string"),
        (b"null", "it is null"),
        (b'{"a": 1', "not valid JSON"),
        (b"{'a': 1}", "not valid JSON"),
        (b'{"a": Infinity}', "Infinity is not a JSON number"),
        (b'{"a": "\\udc00"}', "lone surrogate"),
        (b"[" * 100 + b"]" * 100, "nested deeper"),
    ],
)
def test_a_body_that_is_not_packets_is_400(ingest_server, body, problem):
    response = post_packets(ingest_server, body)
    assert response.status_code == 400
    assert problem in response.json()["error"]


def announce(server, length, headers):
    """Send only the head of a POST announcing ``length`` bytes; return the status line.

    The answer comes without the body: nothing of it is read.
    """
    head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    request = (
        f"POST /packets HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {length}\r\n{head}\r\n"
    )
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(request.encode())
        answer = b""
        while b"\r\n\r\n" not in answer:
            answer += sock.recv(65536)
        head, body = answer.split(b"\r\n\r\n", 1)
        length = int(re.search(rb"Content-Length: (\d+)", head).group(1))
        while len(body) < length:
            body += sock.recv(65536)
    return head.decode("latin-1").split("\r\n", 1)[0], body.decode()


def test_a_body_over_max_ingest_bytes_is_413_before_it_is_read(ingest_server, signed):
    status, answer = announce(ingest_server, MAX_INGEST + 1, {"Authorization": f"Bearer {TOKEN}"})
    assert status.startswith("HTTP/1.1 413 ")
    assert f"the limit is {MAX_INGEST} bytes" in answer
    signature = signed.signed_headers("POST", "/packets", b"")
    status, _ = announce(ingest_server, 10**9, signature)
    assert status.startswith("HTTP/1.1 413 ")


def test_a_chunked_body_over_max_ingest_bytes_is_413(ingest_server):
    def chunked():
        for _ in range(MAX_INGEST // 65536 + 2):
            yield b" " * 65536

    response = post_packets(ingest_server, chunked())
    assert response.status_code == 413
    assert "over the limit" in response.json()["error"]


def test_credentials_are_checked_before_the_body_is_read(ingest_server):
    status, _ = announce(ingest_server, 10**9, {"Authorization": "Bearer wrong"})
    assert status.startswith("HTTP/1.1 401 ")
    status, answer = announce(ingest_server, 10**9, {})
    assert status.startswith("HTTP/1.1 401 ")
    assert "missing" in answer


def test_only_post(ingest_server):
    response = requests.get(ingest_server.url + "/packets", timeout=10)
    assert response.status_code == 405
    assert response.json()["code"] == "method_not_allowed"
