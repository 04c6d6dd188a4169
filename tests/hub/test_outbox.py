import gevent
import pytest

from channelstream.hub import REASON_OVERFLOW, STICKY, Hub, HubConfig, Message, Outbox

pytestmark = pytest.mark.timeout(30)


def make(max_queue=3, hard_limit=5, **kw):
    hub = Hub(HubConfig(outbox_size=max_queue, outbox_hard_limit=hard_limit))
    outbox = hub.open_outbox(**kw)
    sub = hub.subscribe(outbox, "c")
    return hub, outbox, sub


def publish(hub, body, **kw):
    return hub.publish(Message("c", body, **kw))


def test_overflow_drops_the_oldest_droppable_and_counts_it():
    hub, outbox, sub = make()
    for i in range(6):
        publish(hub, i)
    assert [m.body for m in outbox.drain()] == [3, 4, 5]
    assert outbox.dropped == sub.dropped == 3
    assert hub.channel("c").dropped == 3
    assert hub.stats()["dropped"] == 3


def test_sticky_and_undroppable_messages_are_kept_while_data_is_dropped():
    hub, outbox, _ = make(max_queue=3, hard_limit=10)
    publish(hub, "w", kind=STICKY, type="Wiring")
    publish(hub, "chat", droppable=False)
    for i in range(4):
        publish(hub, i)
    assert [m.body for m in outbox.drain()] == ["w", "chat", 3]
    assert outbox.dropped == 3


def test_past_the_hard_limit_the_outbox_closes_and_discards():
    hub, outbox, sub = make(max_queue=2, hard_limit=4)
    closed = []
    outbox.on_close(closed.append)
    for i in range(5):
        publish(hub, i, droppable=False)
    assert outbox.closed and outbox.close_reason == REASON_OVERFLOW
    assert closed == [outbox]
    assert outbox.drain() == []
    assert not sub.active and hub.channel("c").subscriber_count == 0
    publish(hub, "later")
    assert outbox.drain() == []


def test_byte_bounds_drop_then_close():
    hub, outbox, _ = make(max_queue=100, hard_limit=100, max_bytes=250, hard_bytes=400)
    for i in range(4):
        publish(hub, i, size=100)
    assert [m.body for m in outbox.drain()] == [2, 3]
    assert outbox.queued_bytes == 0
    for i in range(5):
        publish(hub, i, size=100, droppable=False)
    assert outbox.closed and outbox.close_reason == REASON_OVERFLOW


def test_drain_takes_replay_first_and_honours_limit():
    hub = Hub()
    for i in range(3):
        publish(hub, i)
    outbox = hub.open_outbox()
    from channelstream.hub import Start

    hub.subscribe(outbox, "c", start=Start.oldest())
    publish(hub, 3)
    assert [m.body for m in outbox.drain(limit=2)] == [0, 1]
    assert [m.body for m in outbox.drain(limit=2)] == [2, 3]
    assert outbox.drain() == []
    assert outbox.sent == 4 == outbox.delivered


def test_wait_times_out_then_wakes_on_put():
    hub, outbox, _ = make()
    assert outbox.wait(timeout=0.01) is False
    results = []

    def writer():
        results.append(outbox.wait(timeout=5))
        results.append([m.body for m in outbox.drain()])

    greenlet = gevent.spawn(writer)
    gevent.sleep(0)  # the writer runs until it waits
    assert outbox._writer is greenlet
    publish(hub, "x")
    greenlet.join(timeout=2)
    assert results == [True, ["x"]]


def test_wait_returns_at_once_when_something_is_queued():
    hub, outbox, _ = make()
    publish(hub, "x")
    assert outbox.wait(timeout=0) is True


def test_only_one_writer_may_wait():
    _, outbox, _ = make()
    first = gevent.spawn(outbox.wait, 5)
    gevent.sleep(0)
    second = gevent.spawn(outbox.wait, 5)
    second.join(timeout=1)
    assert isinstance(second.exception, RuntimeError)
    first.kill()


def test_a_killed_writer_leaves_the_outbox_usable():
    hub, outbox, _ = make()
    writer = gevent.spawn(outbox.wait)
    gevent.sleep(0)
    writer.kill()
    publish(hub, "x")  # must not try to wake the dead writer
    gevent.sleep(0)
    assert outbox.wait(timeout=0.5) is True
    assert [m.body for m in outbox.drain()] == ["x"]


def test_close_wakes_the_writer_and_keeps_queue_unless_discarded():
    hub, outbox, _ = make()
    writer = gevent.spawn(outbox.wait)
    gevent.sleep(0)
    outbox.close("bye")
    assert writer.get(timeout=1) is True
    publish(hub, "dropped on the floor")
    assert outbox.drain() == []

    hub, outbox, _ = make()
    publish(hub, "kept")
    outbox.close("bye")
    assert [m.body for m in outbox.drain()] == ["kept"]


def test_on_close_after_close_runs_at_once():
    outbox = Outbox(1, 1)
    outbox.close("done")
    seen = []
    outbox.on_close(seen.append)
    assert seen == [outbox]


def test_bad_bounds_are_refused():
    with pytest.raises(ValueError):
        Outbox(0, 10)
    with pytest.raises(ValueError):
        Outbox(10, 5)
    with pytest.raises(ValueError):
        Outbox(10, 10, max_bytes=100, hard_bytes=50)


# -- listeners (consumers without a greenlet) -----------------------------------------


def msg(n):
    return Message("c", {"n": n})


def test_a_listener_is_called_once_per_burst_from_the_hub():
    outbox = Outbox(max_queue=100, hard_limit=200)
    calls = []
    outbox.listen(lambda: calls.append((gevent.getcurrent() is gevent.get_hub(), len(outbox))))
    for n in range(10):
        outbox.put(msg(n))
    assert calls == []  # never from inside the publish
    gevent.sleep(0)
    assert calls == [(True, 10)]


def test_a_listener_that_leaves_messages_queued_is_not_called_again_until_it_drains():
    outbox = Outbox(max_queue=100, hard_limit=200)
    calls = []
    outbox.listen(lambda: calls.append(len(outbox)))
    outbox.put(msg(1))
    gevent.sleep(0)
    outbox.put(msg(2))  # the listener did not drain: it comes back by itself
    gevent.sleep(0)
    assert calls == [1]
    outbox.drain()
    outbox.put(msg(3))
    gevent.sleep(0)
    assert calls == [1, 1]


def test_listening_to_an_outbox_with_messages_calls_at_once_and_close_calls_too():
    outbox = Outbox(max_queue=100, hard_limit=200)
    outbox.put(msg(1))
    seen = []
    outbox.listen(lambda: seen.append((outbox.drain(), outbox.closed)))
    gevent.sleep(0)
    outbox.close("bye")
    gevent.sleep(0)
    assert [(len(batch), closed) for batch, closed in seen] == [(1, False), (0, True)]


def test_unlisten_stops_the_calls_and_a_failing_listener_is_logged(caplog):
    outbox = Outbox(max_queue=100, hard_limit=200, name="box")

    def broken() -> None:
        raise RuntimeError("boom")

    outbox.listen(broken)
    outbox.put(msg(1))
    gevent.sleep(0)
    assert "listener of outbox 'box' failed" in caplog.text
    outbox.drain()
    outbox.unlisten(broken)
    outbox.put(msg(2))
    gevent.sleep(0)
    assert caplog.text.count("failed") == 1


def test_an_outbox_has_either_a_listener_or_a_waiting_writer():
    outbox = Outbox(max_queue=100, hard_limit=200)
    outbox.listen(lambda: None)
    with pytest.raises(RuntimeError, match="listener"):
        outbox.wait(0.01)
    outbox.unlisten(outbox._listener)
    waiter = gevent.spawn(outbox.wait, 1)
    gevent.sleep(0)
    with pytest.raises(RuntimeError, match="waiting writer"):
        outbox.listen(lambda: None)
    outbox.put(msg(1))
    assert waiter.get(timeout=1) is True
