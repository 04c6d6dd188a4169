"""The m_* tools as processes: with each other, with PSI's tools, Ctrl-C, bad input."""

from __future__ import annotations

import json
import os
import pty
import re
import signal
import time

import pytest

from channelstream import mflow
from channelstream.mflow import encode
from channelstream.mflow.dumpfiles import part_name
from tests.mflow import samples
from tests.mflow.support import finish, interrupt, read_line
from tests.support.server import free_port
from tests.support.wait import wait_for


def tcp() -> str:
    return f"tcp://127.0.0.1:{free_port()}"


def messages_of_every_kind() -> list[list[bytes]]:
    return [[bytes(p) for p in encode(message)] for _name, message in samples.everything()]


def no_traceback(err: str) -> None:
    assert "Traceback" not in err, err


def receive_all(stream, count: int) -> list[list[bytes]]:
    got = []
    for _ in range(count):
        message = stream.receive_frames()
        assert message is not None, f"only {len(got)} of {count} messages came"
        got.append([bytes(f) for f in message])
    return got


def send_all(stream, messages: list[list[bytes]]) -> None:
    for parts in messages:
        stream.send_parts(parts)


def files_in(folder) -> int:
    return len(os.listdir(folder)) if os.path.isdir(folder) else 0


def dump(procs, tool_name: str, tmp_path, messages, *, psi_tool: bool = False) -> str:
    """Dump ``messages`` with ``tool_name`` (ours or PSI's) into a new folder; return it."""
    source = tcp()
    folder = str(tmp_path / f"dump-{tool_name}-{psi_tool}")
    with mflow.connect(source, conn_type=mflow.BIND, mode=mflow.PUSH) as push:
        start = procs.psi_tool if psi_tool else procs.tool
        dumper = start(tool_name, source, folder)
        send_all(push, messages)
        total = sum(len(m) for m in messages)
        wait_for(lambda: files_in(folder) == total, what=f"{total} dump files")
    if psi_tool:
        dumper.kill()  # PSI's m_dump cannot be stopped cleanly (a TypeError at Ctrl-C)
        finish(dumper)
    else:
        status, out, err = interrupt(dumper)
        assert status == 0, err
        assert f"Dumped {len(messages)} messages" in out
    return folder


def replay(procs, folder: str, count: int, *, psi_tool: bool = False) -> list[list[bytes]]:
    address = tcp()
    start = procs.psi_tool if psi_tool else procs.tool
    replayer = start("m_replay", folder, "-a", address.replace("127.0.0.1", "*"))
    with mflow.connect(address, receive_timeout=20000) as pull:
        got = receive_all(pull, count)
    status, _out, err = finish(replayer)
    assert status == 0, err
    return got


def test_dump_then_replay_is_byte_identical(procs, tmp_path):
    messages = messages_of_every_kind() * 3
    folder = dump(procs, "m_dump", tmp_path, messages)
    names = sorted(os.listdir(folder))
    assert names[0] == "000000_000.raw" and names[-1] == f"{len(messages) - 1:06d}_000.raw"
    assert replay(procs, folder, len(messages)) == messages


def test_psi_dump_replayed_by_ours(psi, procs, tmp_path):
    messages = messages_of_every_kind()
    folder = dump(procs, "m_dump", tmp_path, messages, psi_tool=True)
    assert replay(procs, folder, len(messages)) == messages


def test_our_dump_replayed_by_psi(psi, procs, tmp_path):
    messages = messages_of_every_kind()
    folder = dump(procs, "m_dump", tmp_path, messages)
    assert replay(procs, folder, len(messages), psi_tool=True) == messages


@pytest.mark.parametrize("psi_tool", [False, True], ids=["ours", "psi"])
def test_names_past_a_million_messages_replay_in_order(request, procs, tmp_path, psi_tool):
    if psi_tool:
        request.getfixturevalue("psi")
    folder = tmp_path / "big"
    folder.mkdir()
    numbers = [999_998, 999_999, 1_000_000, 9_999_999, 10_000_000]
    for number in numbers:
        (folder / part_name(number, 0)).write_bytes(json.dumps({"n": number}).encode())
        (folder / part_name(number, 1)).write_bytes(b"p1")
    (folder / "notes.txt").write_text("not a part")
    assert sorted(os.listdir(folder))[:-1] == [part_name(n, p) for n in numbers for p in (0, 1)]
    got = replay(procs, str(folder), len(numbers), psi_tool=psi_tool)
    assert [json.loads(m[0])["n"] for m in got] == numbers
    assert all(m[1] == b"p1" for m in got)


def test_dump_skip_keeps_the_first_parts(procs, tmp_path):
    source, folder = tcp(), str(tmp_path / "skip")
    with mflow.connect(source, conn_type=mflow.BIND, mode=mflow.PUSH) as push:
        dumper = procs.tool("m_dump", source, folder, "-s", "3")
        read_line(dumper)
        send_all(push, [[b"0", b"1", b"2", b"3"], [b"a"]])
        wait_for(lambda: files_in(folder) == 3, what="3 files")
    status, out, err = interrupt(dumper)
    assert status == 0, err
    assert sorted(os.listdir(folder)) == ["000000_000.raw", "000000_001.raw", "000001_000.raw"]
    assert "Dumped 2 messages (5 parts" in out


def test_dump_to_the_screen(procs):
    source = tcp()
    with mflow.connect(source, conn_type=mflow.BIND, mode=mflow.PUSH) as push:
        dumper = procs.tool("m_dump", source)
        assert "the screen" in read_line(dumper)
        push.send_parts([b'{"htype": "raw-1.0"}', b"\x00\x01"])
        assert read_line(dumper).strip() == '[0 0] 20 bytes: {"htype": "raw-1.0"}'
        assert read_line(dumper).strip() == "[0 1] 2 bytes: b'\\x00\\x01'"
    status, out, err = interrupt(dumper)
    assert status == 0 and "Dumped 1 messages" in out, err


def test_dump_refuses_a_folder_that_holds_a_dump(procs, tmp_path):
    (tmp_path / "000000_000.raw").write_bytes(b"x")
    status, _out, err = finish(procs.tool("m_dump", tcp(), str(tmp_path)))
    assert status == 1 and err.startswith("m_dump: error:") and "already holds a dump" in err
    assert len(err.strip().splitlines()) == 1


def split_config(tmp_path, source: str, streams: list[dict]) -> str:
    path = tmp_path / "split.json"
    path.write_text(json.dumps({"source": {"address": source, "mode": "PULL",
                                           "queue_size": 10}, "streams": streams}))
    return str(path)


def test_split_modulo_keeps_multipart_messages_whole(procs, tmp_path):
    source = tcp()
    outs = [free_port(), free_port()]
    config = split_config(tmp_path, source, [
        {"address": f"tcp://*:{outs[0]}", "mode": "PUSH"},
        {"address": f"tcp://*:{outs[1]}", "mode": "push", "modulo": 3},
    ])
    messages = [[json.dumps({"htype": "raw-1.0", "n": n}).encode(), b"a" * n, b"b"]
                for n in range(1, 10)]
    with mflow.connect(source, conn_type=mflow.BIND, mode=mflow.PUSH) as push, \
            mflow.connect(f"tcp://127.0.0.1:{outs[0]}", receive_timeout=20000) as all_, \
            mflow.connect(f"tcp://127.0.0.1:{outs[1]}", receive_timeout=20000) as third:
        splitter = procs.tool("m_split", "-c", config)
        read_line(splitter)
        send_all(push, messages)
        assert receive_all(all_, 9) == messages
        assert receive_all(third, 3) == [messages[2], messages[5], messages[8]]
        assert third.receive_frames(block=False) is None
    status, out, err = interrupt(splitter)
    assert status == 0, err
    assert "Split 9 messages" in out
    assert re.search(rf":{outs[0]}: 9 sent, 0 dropped", out)
    assert re.search(rf":{outs[1]}: 3 sent, 0 dropped", out)


def test_split_positional_form_binds_the_outputs(procs):
    source, out = tcp(), tcp()
    with mflow.connect(source, conn_type=mflow.BIND, mode=mflow.PUSH) as push:
        splitter = procs.tool("m_split", source, out)
        read_line(splitter)
        with mflow.connect(out, receive_timeout=20000) as pull:
            send_all(push, [[b"x", b"y"]])
            assert receive_all(pull, 1) == [[b"x", b"y"]]
    status, out_text, err = interrupt(splitter)
    assert status == 0, err
    assert "Split 2 parts" in out_text and "libzmq's proxy" in out_text  # one output: C proxy
    assert "2 parts sent, 0 dropped" in out_text


PACED_SENDER = """
import json, sys, time
from channelstream import mflow
with mflow.connect(sys.argv[1], conn_type=mflow.BIND, mode=mflow.PUSH) as push:
    for n in range(int(sys.argv[2])):
        push.send_parts([json.dumps({"n": n}).encode(), b"z" * 50000])
        if n % 5 == 4:
            time.sleep(0.002)  # slower than the live reader: only the stuck output is stuck
"""


def test_split_a_stuck_output_never_stalls_the_others(procs, tmp_path):
    source, stuck, live = tcp(), free_port(), free_port()
    config = split_config(tmp_path, source, [
        {"address": f"tcp://*:{stuck}", "queue_size": 5},
        {"address": f"tcp://*:{live}"},
    ])
    count = 600
    with mflow.connect(f"tcp://127.0.0.1:{stuck}", queue_size=5) as _never_reads, \
            mflow.connect(f"tcp://127.0.0.1:{live}", receive_timeout=20000) as pull:
        splitter = procs.tool("m_split", "-c", config)
        read_line(splitter)
        sender = procs.script(PACED_SENDER, source, str(count))
        got = receive_all(pull, count)
        assert [json.loads(m[0])["n"] for m in got] == list(range(count))
        assert finish(sender)[0] == 0
        status, out, err = interrupt(splitter)
    assert status == 0, err
    sent, dropped = map(int, re.search(rf":{stuck}: (\d+) sent, (\d+) dropped", out).groups())
    assert dropped > 0 and sent + dropped == count
    assert re.search(rf":{live}: {count} sent, 0 dropped", out)


def test_split_with_one_slow_output_loses_nothing(procs):
    source, out = tcp(), tcp()
    with mflow.connect(source, conn_type=mflow.BIND, mode=mflow.PUSH) as push:
        splitter = procs.tool("m_split", source, out)
        read_line(splitter)
        messages = [[b"%d" % n, b"q" * 10000] for n in range(300)]
        send_all(push, messages)  # all sent before anyone reads the output
        with mflow.connect(out, receive_timeout=20000) as pull:
            assert receive_all(pull, 300) == messages
    status, text, err = interrupt(splitter)
    assert status == 0 and "600 parts sent, 0 dropped" in text, err


@pytest.mark.parametrize(("config", "reason"), [
    ("{not json", "is not JSON"),
    ('{"streams": []}', "lacks source"),
    ('{"source": {"address": "tcp://127.0.0.1:1"}, "streams": []}', "non-empty list"),
    ('{"source": {"address": "tcp://127.0.0.1:1", "mode": "PUSH"}, "streams": [{}]}',
     "source.mode must be PULL or SUB"),
    ('{"source": {"address": "tcp://127.0.0.1:1"}, "streams": [{"address": "tcp://*:2", '
     '"modulo": 0}]}', "streams[0].modulo must be an integer >= 1"),
    ('{"source": {"address": "tcp://127.0.0.1:1"}, "streams": [{"address": "tcp://*:2", '
     '"modul": 3}]}', "unknown key(s) modul"),
    ('{"source": {"address": "nowhere"}, "streams": [{"address": "tcp://*:2"}]}',
     "source.address must be an address"),
])
def test_split_config_errors_are_one_line(procs, tmp_path, config, reason):
    path = tmp_path / "bad.json"
    path.write_text(config)
    status, _out, err = finish(procs.tool("m_split", "-c", str(path)))
    assert status == 1, err
    assert err.startswith("m_split: error:") and reason in err
    assert len(err.strip().splitlines()) == 1


def test_an_address_in_use_is_one_line(procs):
    address = tcp()
    with mflow.connect(address, conn_type=mflow.BIND):
        status, _out, err = finish(procs.tool("m_generate", "-a", address, "-n", "1"))
    assert status == 1 and err.startswith("m_generate: error: Unable to bind")
    assert len(err.strip().splitlines()) == 1


def test_replay_of_a_missing_folder_is_one_line(procs, tmp_path):
    status, _out, err = finish(procs.tool("m_replay", str(tmp_path / "nope"), "-a", tcp()))
    assert status == 1 and "does not exist" in err and len(err.strip().splitlines()) == 1


def test_replay_to_pub_waits_for_its_subscribers(procs, tmp_path):
    messages = messages_of_every_kind()
    folder = tmp_path / "pub"
    folder.mkdir()
    for number, parts in enumerate(messages):
        for index, part in enumerate(parts):
            (folder / part_name(number, index)).write_bytes(part)
    address = tcp()
    replayer = procs.tool("m_replay", str(folder), "-a", address, "-m", "pub", "-w", "2")
    assert "Waiting for 2 subscriber" in read_line(replayer)
    subs = [mflow.connect(address, mode=mflow.SUB, receive_timeout=20000) for _ in range(2)]
    try:
        for sub in subs:
            assert receive_all(sub, len(messages)) == messages
    finally:
        for sub in subs:
            sub.disconnect()
    status, out, err = finish(replayer)
    assert status == 0 and f"Replayed {len(messages)} messages" in out, err


def test_generate_and_stats(procs):
    address = tcp()
    stats = procs.tool("m_stats", address, "-i", "0.1")
    assert "mflow stats started" in read_line(stats)
    generator = procs.tool("m_generate", "-a", address.replace("127.0.0.1", "*"), "-s",
                           "0.001", "-n", "200")
    status, out, err = finish(generator)
    assert status == 0, err
    assert "Messages received:           200 messages" in out
    seen_traffic = False
    while True:  # rate lines until an idle one after traffic: all 200 were counted
        match = re.search(r"Message rate:\s+([\d.]+) Hz", read_line(stats))
        if match is None:
            continue
        if float(match.group(1)) > 0:
            seen_traffic = True
        elif seen_traffic:
            break
    status, out, err = interrupt(stats)
    assert status == 0, err
    assert "Messages received:           200 messages" in out
    header = {"htype": "raw-1.0", "type": "int32", "shape": [1, 262], "frame": 0}
    size = 200 * (len(json.dumps(header)) + 1048) + sum(len(str(n)) - 1 for n in range(200))
    assert f"Total bytes received:      {size / 1e6:.3f} MB" in out


def test_generate_header_shape_holds_integers(procs, address):
    generator = procs.tool("m_generate", "-a", address.replace("127.0.0.1", "*"), "-s",
                           "0.0001", "-n", "1")
    with mflow.connect(address, receive_timeout=20000) as pull:
        message = pull.receive()
    assert finish(generator)[0] == 0
    header = message.data["header"]
    assert header["shape"] == [1, 26] and all(type(n) is int for n in header["shape"])
    assert len(message.data["data"][0]) == 4 * 26


SIGINT_CASES = {
    "m_stats": (lambda a, f: [a], "Sampling interval", "No messages received."),
    "m_generate": (lambda a, f: ["-a", a], "Sending messages", "Terminated by user."),
    "m_dump": (lambda a, f: [a, f], "Dumping", "Dumped 0 messages"),
    "m_split": (lambda a, f: [a, tcp()], "Splitting", "Split 0 parts"),
    "m_split -c": (lambda a, f: ["-c", f], "Splitting", "Split 0 messages"),
    "m_replay": (lambda a, f: [f, "-a", a, "-m", "pub", "-w", "1"], "Waiting",
                 "nothing sent"),
}


@pytest.mark.parametrize("tool", sorted(SIGINT_CASES))
def test_ctrl_c_prints_the_summary_and_exits_0(procs, tmp_path, tool):
    args, first, summary = SIGINT_CASES[tool]
    folder = tmp_path / "f"
    if tool == "m_split -c":
        folder = tmp_path / "split.json"
        folder.write_text(json.dumps({"source": {"address": tcp()}, "streams": [
            {"address": tcp(), "modulo": 2}]}))
        tool = "m_split"
    if tool == "m_replay":
        folder.mkdir()
        (folder / "000000_000.raw").write_bytes(b"{}")
    proc = procs.tool(tool, *args(tcp(), str(folder)))
    assert first in read_line(proc)
    status, out, err = interrupt(proc)
    assert status == 0, err
    assert summary in out
    no_traceback(err)


def test_replay_blocked_on_a_missing_peer_stops_on_ctrl_c(procs, tmp_path):
    (tmp_path / "000000_000.raw").write_bytes(b"{}")
    proc = procs.tool("m_replay", str(tmp_path), "-a", tcp())
    assert "Replaying" in read_line(proc)
    proc.send_signal(signal.SIGINT)
    status, out, err = finish(proc)
    assert status == 0 and "Replayed 0 messages" in out, err


def test_progress_lines_only_on_a_terminal(procs, tmp_path):
    folder = tmp_path / "p"
    folder.mkdir()
    for number in range(2000):
        (folder / part_name(number, 0)).write_bytes(b"{}")
    address = tcp()
    leader, follower = pty.openpty()
    replayer = procs.tool("m_replay", str(folder), "-a", address, stdout=follower)
    os.close(follower)
    with mflow.connect(address, receive_timeout=20000) as pull:
        for _ in range(2000):
            assert pull.receive_frames() is not None
            if _ % 100 == 0:
                time.sleep(0.05)  # slow enough that a progress line is due
    assert finish(replayer)[0] == 0
    text = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:
            break
        if not chunk:
            break
        text += chunk
    os.close(leader)
    assert b"\r" in text and b"messages" in text
    plain = replay(procs, str(folder), 2000)
    assert len(plain) == 2000
