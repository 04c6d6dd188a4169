"""socket.io resume restores every stream of a connection, cut at every point.

As tests/transports/test_resume_streams.py, through socket.io (websocket and
polling): the client processes the first ``k`` messages, loses the others
(they reached it, but it went away before handling them), and reconnects with
the ``resume`` it holds, which names only the streams that delivered to it.
"""

from __future__ import annotations

import pytest

from tests.transports.test_resume_streams import COUNT, Run, count

pytestmark = pytest.mark.timeout(120)


@pytest.mark.parametrize("transport", ["websocket", "polling"])
@pytest.mark.parametrize("cut", range(COUNT + 1))
def test_socketio_resume_restores_every_stream(api, stream, cut, transport):
    run = Run(api)
    first = stream(auth={"conn_id": run.conn_id, "resume": {}}, transports=[transport])
    first.next("user_connect")
    seen = 0
    for n in range(COUNT):
        run.publish(n)
        frames = first.frames(1)
        seen += 1
        if n < cut:
            run.take(frames)  # else: received, but lost before it was handled
    assert seen == COUNT
    first.close()
    second = stream(auth={"conn_id": run.conn_id, "resume": run.resume}, transports=[transport])
    second.next("user_connect")
    missing = COUNT - len(run.taken)
    if missing:
        run.take(second.frames(missing))
    assert count([f for _, frames in second.quiet(0.3) for f in frames or ()]) == 0
    run.check()
