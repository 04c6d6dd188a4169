"""PSI's mflow (a separate process) and ours, both ways, every htype, byte for byte."""

from __future__ import annotations

import pytest

from channelstream import mflow
from channelstream.mflow import encode
from tests.mflow import samples
from tests.mflow.support import finish

PSI_SENDER = """
import sys
import mflow
from tests.mflow import samples
stream = mflow.connect(sys.argv[1], mode=mflow.PUSH)
for via, message in samples.loads(sys.stdin.read()):
    if via == "forward":
        stream.forward(message)
    else:
        for index, part in enumerate(message):
            stream.send(part, send_more=index < len(message) - 1)
stream.disconnect()
"""

PSI_RECEIVER = """
import sys
import mflow
from tests.mflow import samples
stream = mflow.connect(sys.argv[1], conn_type=mflow.BIND, receive_timeout=20000)
print("ready", flush=True)
for _ in range(int(sys.argv[2])):
    message = stream.receive()
    print(samples.dumps(None if message is None else message.data), flush=True)
stream.disconnect()
"""

#: Samples PSI's own send handlers encode correctly; the others it cannot send whole
#: (raw-1.0 with several parts or none, dheader-1.0 "none", dimage-1.0 with an appendix),
#: so its peer script sends their parts with mflow's Stream.send.
PSI_FORWARDS = {"array", "raw", "dheader-all", "dheader-all-appendix", "dheader-basic",
                "dimage", "dseries-end"}


@pytest.mark.parametrize("copy", [True, False], ids=["copy", "zero-copy"])
def test_psi_sender_to_our_receiver(psi, procs, address, copy):
    todo = samples.everything()
    plan = [("forward", message) if name in PSI_FORWARDS else
            ("parts", [bytes(part) for part in encode(message)]) for name, message in todo]
    with mflow.connect(address, conn_type=mflow.BIND, receive_timeout=20000,
                       copy=copy) as stream:
        sender = procs.script(PSI_SENDER, address, stdin=-1)
        sender.stdin.write(samples.dumps(plan))
        sender.stdin.close()
        received = [stream.receive() for _ in todo]
        assert finish(sender)[0] == 0
        assert stream.receive(block=False) is None
        assert stream.statistics.messages_received == len(todo)
        assert stream.statistics.messages_malformed == 0
    for (name, message), got in zip(todo, received, strict=True):
        assert got is not None, name
        assert samples.same(got.data, message), name
        assert [bytes(p) for p in encode(got.data)] == [bytes(f) for f in got.frames], name


def test_our_sender_to_psi_receiver(psi, procs, address):
    todo = samples.everything()
    receiver = procs.script(PSI_RECEIVER, address, str(len(todo)))
    assert receiver.stdout.readline().strip() == "ready"
    with mflow.connect(address, mode=mflow.PUSH) as stream:
        for _name, message in todo:
            stream.forward(message)
    status, out, err = finish(receiver)
    assert status == 0, err
    got = [samples.loads(line) for line in out.splitlines()]
    assert len(got) == len(todo)
    for (name, message), data in zip(todo, got, strict=True):
        assert samples.same(data, message), (name, data)


def test_our_bsr_messages_reach_psi_whole(psi, procs, address):
    """PSI's mflow 1.0.0 has no bsr_m handler: its raw-1.0 handler sees every part."""
    from tests.mflow.test_bsr import sample

    script = PSI_RECEIVER.replace("stream.receive()", "stream.receive_raw()")
    receiver = procs.script(script, address, "1")
    assert receiver.stdout.readline().strip() == "ready"
    parts = [bytes(p) for p in encode(sample())]
    with mflow.connect(address, mode=mflow.PUSH) as stream:
        stream.forward(sample())
    status, out, err = finish(receiver)
    assert status == 0, err
    data = samples.loads(out)
    assert [bytes(p or b"") for p in data["data"]] == parts[1:]
