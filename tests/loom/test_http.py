"""The loom HTTP API against the real server, with curl (the seed's examples verbatim)."""

from __future__ import annotations

import json
import os
import select
import socket
import subprocess
import time

import requests

from tests.loom.conftest import curl, popen, sha, wait_for_stream
from tests.support.server import REPO, RunningServer
from tests.support.wait import wait_for


def seed_command(server, command: str) -> str:
    """A curl line of the seed, pointed at our server's port."""
    return command.replace("localhost:3060", f"localhost:{server.port}")


def run_shell(command: str, cwd, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", "-c", command], cwd=cwd, capture_output=True, timeout=timeout, check=False
    )


def headers_of(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    """Status, headers (lower-case names) and body of ``curl -i`` output (after any 100)."""
    while raw.startswith(b"HTTP/1.1 100"):
        raw = raw.split(b"\r\n\r\n", 1)[1]
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, body


def test_the_seed_post_example_creates_a_stream_with_a_generated_id(loom_server, tmp_path):
    (tmp_path / "file.txt").write_bytes(b"contents of file.txt\n")
    command = seed_command(
        loom_server,
        'curl -i -X POST  -H x-stream-metadata:"{\\"meta\\": true}" '
        "http://localhost:3060/stream/ --data-binary @file.txt",
    )
    done = run_shell(command, tmp_path)
    assert done.returncode == 0, done.stderr
    status, headers, body = headers_of(done.stdout)
    assert status == 201
    assert body == b"X-Stream-State: finished\r\n"  # no body; curl -i shows the trailer
    stream_id = headers["x-stream-id"]
    assert stream_id.startswith("loom-")
    got = requests.get(f"{loom_server.url}/stream/{stream_id}", timeout=10)
    assert got.content == b"contents of file.txt\n"
    assert json.loads(got.headers["X-Stream-Metadata"]) == {"meta": True}
    assert got.headers["Content-Type"] == "application/octet-stream"
    assert got.headers["Content-Length"] == str(len(got.content))
    assert got.headers["X-Stream-State"] == "finished"


def test_the_seed_get_examples_tail_and_notail(loom_server, tmp_path):
    producer = popen(
        ["bash", "-c", "printf 'first\\n'; sleep 1.5; printf 'second\\n'"], stdout=subprocess.PIPE
    )
    upload = popen(
        [
            "curl",
            "--silent",
            "--show-error",
            "-X",
            "POST",
            "-T",
            ".",
            f"{loom_server.url}/stream/seedget",
        ],
        stdin=producer.stdout,
    )
    producer.stdout.close()
    # stored before the producer's pause: ?notail must show it, and only it
    wait_for_stream(loom_server, "seedget", until=lambda info: info["size"] >= len(b"first\n"))
    tail = popen(
        [
            "bash",
            "-c",
            seed_command(loom_server, "curl --no-buffer http://localhost:3060/stream/:id").replace(
                ":id", "seedget"
            ),
        ]
    )
    notail = run_shell(
        seed_command(loom_server, "curl http://localhost:3060/stream/:id?notail").replace(
            ":id", "seedget"
        ),
        tmp_path,
    )
    assert notail.returncode == 0 and notail.stdout == b"first\n"
    out, err = tail.communicate(timeout=15)
    assert tail.returncode == 0, err
    assert out == b"first\nsecond\n"
    assert upload.wait(15) == 0


def test_201_and_the_id_reach_the_producer_while_its_upload_is_still_open(loom_server):
    upload = popen(
        [
            "curl",
            "--silent",
            "--show-error",
            "--no-progress-meter",
            "-D",
            "/dev/stderr",
            "-o",
            "/dev/null",
            "-X",
            "POST",
            "-T",
            ".",
            f"{loom_server.url}/stream/early",
        ],
        stdin=subprocess.PIPE,
    )
    upload.stdin.write(b"first part\n")
    upload.stdin.flush()
    seen = b""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        _, created, rest = seen.partition(b"201 Created")
        if created and b"\r\n\r\n" in rest:
            break
        readable, _, _ = select.select([upload.stderr], [], [], 1)
        if readable:
            seen += os.read(upload.stderr.fileno(), 4096)
    assert b"HTTP/1.1 201 Created" in seen and b"X-Stream-Id: early" in seen
    assert upload.poll() is None  # the upload is still open
    wait_for(  # stored while the upload is open
        lambda: (
            requests.get(f"{loom_server.url}/stream/early?notail", timeout=5).content
            == b"first part\n"
        ),
        timeout=10,
        what="the first part to be stored",
    )
    assert upload.poll() is None
    upload.stdin.write(b"second part\n")
    upload.stdin.close()
    assert upload.wait(10) == 0
    got = requests.get(f"{loom_server.url}/stream/early", timeout=5)
    assert got.content == b"first part\nsecond part\n"
    assert got.headers["X-Stream-State"] == "finished"


def test_binary_data_round_trips_byte_for_byte(loom_server, tmp_path):
    data = os.urandom(3 << 20) + bytes(range(256)) * 100
    (tmp_path / "blob").write_bytes(data)
    done = subprocess.run(
        ["curl", "-sS", "-X", "POST", "--data-binary", "@blob", f"{loom_server.url}/stream/blob"],
        cwd=tmp_path,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    got = curl("-D", "/dev/stderr", f"{loom_server.url}/stream/blob")
    assert sha(got.stdout) == sha(data)
    assert f"Content-Length: {len(data)}".encode() in got.stderr


def test_a_get_stepping_through_a_small_cache_window_sends_every_byte(tmp_path):
    """With loom.cache_window at 64 KiB, the upload is written back and evicted
    every 64 KiB and a GET sends 64 KiB at a time, evicting behind itself."""
    data = os.urandom((1 << 20) + 12345)
    (tmp_path / "blob").write_bytes(data)
    app = {"loom.cache_window": "65536"}
    with RunningServer(REPO / "development.ini", tmp_path, app=app) as server:
        posted = curl(
            "-X",
            "POST",
            "--data-binary",
            f"@{tmp_path / 'blob'}",
            f"{server.url}/stream/windowed",
            timeout=60,
        )
        assert posted.returncode == 0, posted.stderr
        for _ in range(2):  # the second GET reads what the first evicted
            got = curl("-D", "/dev/stderr", f"{server.url}/stream/windowed")
            assert sha(got.stdout) == sha(data)
            assert f"Content-Length: {len(data)}".encode() in got.stderr


def test_409_then_force_replaces_with_the_replaced_header(loom_server):
    url = f"{loom_server.url}/stream/taken"
    assert requests.post(url, data=b"one", timeout=5).status_code == 201
    again = requests.post(url, data=b"two", timeout=5)
    assert again.status_code == 409
    assert again.json()["error"] == (
        "The stream with ID taken already exists. Specify force=true query param to override."
    )
    assert requests.get(url, timeout=5).content == b"one"
    forced = requests.post(url + "?force=true", data=b"three", timeout=5)
    assert forced.status_code == 201 and forced.headers["x-stream-replaced"] == "true"
    assert requests.get(url, timeout=5).content == b"three"
    first = requests.post(f"{loom_server.url}/stream/fresh?force=true", data=b"x", timeout=5)
    assert first.status_code == 201 and "x-stream-replaced" not in first.headers


def test_404_400_head_delete_and_the_list(loom_server):
    missing = requests.get(f"{loom_server.url}/stream/nothing", timeout=5)
    assert missing.status_code == 404
    assert missing.json()["error"] == "The stream with ID nothing does not exist"
    bad = requests.post(
        f"{loom_server.url}/stream/meta",
        data=b"x",
        headers={"X-Stream-Metadata": "{nope"},
        timeout=5,
    )
    assert bad.status_code == 400 and "X-Stream-Metadata" in bad.json()["error"]
    assert requests.get(f"{loom_server.url}/streams/meta", timeout=5).status_code == 404
    requests.post(
        f"{loom_server.url}/stream/listed",
        data=b"12345",
        headers={"X-Stream-Metadata": '{"task": {"id": "t1"}, "buildId": "b1"}'},
        timeout=5,
    )
    head = requests.head(f"{loom_server.url}/stream/listed", timeout=5)
    assert head.status_code == 200 and head.headers["Content-Length"] == "5"
    assert head.headers["X-Stream-State"] == "finished" and head.content == b""
    listed = {
        s["id"]: s for s in requests.get(f"{loom_server.url}/streams", timeout=5).json()["streams"]
    }
    entry = listed["listed"]
    assert entry["state"] == "finished" and entry["size"] == 5
    assert entry["metadata"] == {"task": {"id": "t1"}, "buildId": "b1"}
    assert entry["created"] <= entry["ended"]
    deleted = requests.delete(f"{loom_server.url}/stream/listed", timeout=5)
    assert deleted.status_code == 200 and deleted.json()["deleted"] is True
    assert requests.get(f"{loom_server.url}/stream/listed", timeout=5).status_code == 404
    assert requests.put(f"{loom_server.url}/stream/listed", timeout=5).status_code == 405


def test_path_traversal_attempts_are_refused_and_touch_nothing(loom_server):
    storage = loom_server.tmp_dir / "var" / "loom"
    before = sorted(p.name for p in storage.rglob("*"))
    for target in (
        "/stream/..%2F..%2Fdevelopment.ini",
        "/stream/%2E%2E",
        "/stream/.hidden",
        "/stream/a%2Fb",
        "/stream/%00x",
        "/stream/" + "x" * 200,
    ):
        for method in ("GET", "POST", "DELETE"):
            done = (
                curl(
                    "-X",
                    method,
                    "--path-as-is",
                    "-d",
                    "x",
                    "-w",
                    "%{http_code}",
                    "-o",
                    "/dev/null",
                    loom_server.url + target,
                )
                if method == "POST"
                else curl(
                    "-X",
                    method,
                    "--path-as-is",
                    "-w",
                    "%{http_code}",
                    "-o",
                    "/dev/null",
                    loom_server.url + target,
                )
            )
            assert done.stdout == b"400", (method, target, done.stdout)
    # a raw ../ in the path: curl would normalise it, so send it by hand
    with socket.create_connection(("127.0.0.1", loom_server.port), timeout=5) as sock:
        sock.sendall(b"GET /stream/../../development.ini HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 400") or answer.startswith(b"HTTP/1.1 404")
    assert b"[app:main]" not in answer
    assert sorted(p.name for p in storage.rglob("*")) == before
