import time

import gevent
import pytest

from channelstream.hub import Hub, Message
from channelstream.hub.writer import run_writer

pytestmark = pytest.mark.timeout(30)


def test_queued_messages_reach_write_as_one_batch():
    hub = Hub()
    outbox = hub.open_outbox()
    hub.subscribe(outbox, "c")
    batches = []
    writer = gevent.spawn(run_writer, outbox, batches.append)
    gevent.sleep(0)
    for i in range(5):
        hub.publish(Message("c", i))
    gevent.sleep(0)
    hub.publish(Message("c", 5))
    gevent.sleep(0)
    outbox.close("done")
    assert writer.get(timeout=1) == "done"
    assert [[m.body for m in batch] for batch in batches] == [[0, 1, 2, 3, 4], [5]]


def test_idle_callback_runs_when_nothing_comes():
    hub = Hub()
    outbox = hub.open_outbox()
    beats = []
    writer = gevent.spawn(run_writer, outbox, list, heartbeat=0.01, on_idle=lambda: beats.append(1))
    began = time.monotonic()
    gevent.sleep(0.1)  # the point: ten heartbeat periods pass with nothing queued
    outbox.close("done")
    writer.join(timeout=10)
    elapsed = time.monotonic() - began
    assert 3 <= len(beats) <= elapsed / 0.01 + 2  # about one per period, however long it took


def test_a_failing_write_closes_the_outbox_and_propagates():
    hub = Hub()
    outbox = hub.open_outbox()
    hub.subscribe(outbox, "c")

    def write(batch):
        raise BrokenPipeError("peer gone")

    writer = gevent.spawn(run_writer, outbox, write)
    gevent.sleep(0)
    hub.publish(Message("c", 1))
    writer.join(timeout=1)
    assert isinstance(writer.exception, BrokenPipeError)
    assert outbox.closed and "BrokenPipeError" in outbox.close_reason
    assert hub.channel("c").subscriber_count == 0


def test_shutdown_lets_the_writer_flush_what_is_queued():
    hub = Hub()
    hub.start()
    outbox = hub.open_outbox()
    hub.subscribe(outbox, "c")
    hub.publish(Message("c", "last"))
    written = []
    hub.stop()
    reason = run_writer(outbox, lambda batch: written.extend(m.body for m in batch))
    assert written == ["last"] and reason == "server shutting down"
