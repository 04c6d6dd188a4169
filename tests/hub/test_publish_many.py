"""``Hub.publish_many`` gives every subscription what one publish per message gives.

A batch is fanned out run by run (``Channel.publish_many``): unfiltered
subscriptions get a run in one ``Outbox.put_many``, whose bounds are enforced
once per run. The property below drives two hubs with the same subscriptions,
one publishing message by message and one in batches, and compares every
outbox, counter and history; bounds are small so that drops and closes happen.
"""

from __future__ import annotations

import itertools

import gevent
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from channelstream.hub import Decimation, Filter, Message

from .fakes import FakeClock, make_hub

pytestmark = pytest.mark.timeout(120)

PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

CHANNELS = ["a", "b"]

subscriptions = st.fixed_dictionaries(
    {
        "channel": st.sampled_from(CHANNELS),
        "filter": st.sampled_from([None, None, {"k": 1}, {"k": 2}]),
        "every": st.sampled_from([1, 1, 1, 2]),
        "principal": st.sampled_from([None, "ann", "bob"]),
        "max_queue": st.integers(1, 6),
        "extra_hard": st.integers(0, 6),
        "max_bytes": st.sampled_from([0, 0, 250]),
    }
)

messages = st.fixed_dictionaries(
    {
        "channel": st.sampled_from(CHANNELS),
        "k": st.sampled_from([1, 2, None]),
        "audience": st.sampled_from([None, None, None, frozenset({"ann"})]),
        "excluded": st.sampled_from([None, None, None, frozenset({"bob"})]),
        "droppable": st.booleans(),
        "size": st.sampled_from([0, 100]),
    }
)


def build(spec: dict, n: int) -> Message:
    return Message(
        spec["channel"],
        n,
        fields={} if spec["k"] is None else {"k": spec["k"]},
        audience=spec["audience"],
        excluded=spec["excluded"],
        droppable=spec["droppable"],
        size=spec["size"],
    )


def subscribe_all(hub, specs):
    outboxes = []
    for spec in specs:
        outbox = hub.open_outbox(
            max_queue=spec["max_queue"],
            hard_limit=spec["max_queue"] + spec["extra_hard"],
            max_bytes=spec["max_bytes"],
            hard_bytes=spec["max_bytes"] * 2,
        )
        sub = hub.subscribe(
            outbox,
            spec["channel"],
            filter=Filter(spec["filter"]) if spec["filter"] else None,
            decimation=Decimation(spec["every"]) if spec["every"] > 1 else None,
            principal=spec["principal"],
        )
        outboxes.append((outbox, sub))
    return outboxes


def observed(hub, outboxes):
    result = []
    for outbox, sub in outboxes:
        result.append(
            (
                [(m.channel, m.body, m.offset) for m in outbox.drain()],
                outbox.delivered,
                outbox.dropped,
                outbox.closed,
                sub.delivered,
                sub.dropped,
            )
        )
    for name in CHANNELS:
        channel = hub.channel(name)
        if channel is not None:
            result.append(
                (
                    name,
                    channel.published,
                    channel.delivered,
                    channel.dropped,
                    [(m.body, m.offset) for m in channel.history.all()],
                )
            )
    return result


@PROPERTY
@given(
    subs=st.lists(subscriptions, max_size=8),
    specs=st.lists(messages, max_size=30),
    cuts=st.lists(st.integers(0, 30), max_size=6),
)
def test_a_batch_delivers_what_one_publish_per_message_delivers(subs, specs, cuts):
    one_by_one, batched = make_hub(FakeClock()), make_hub(FakeClock())
    outboxes_one = subscribe_all(one_by_one, subs)
    outboxes_batched = subscribe_all(batched, subs)
    for n, spec in enumerate(specs):
        one_by_one.publish(build(spec, n))
    bounds = sorted({0, len(specs), *(c for c in cuts if c <= len(specs))})
    for start, end in itertools.pairwise(bounds):
        batched.publish_many([build(spec, n) for n, spec in enumerate(specs) if start <= n < end])
    assert observed(batched, outboxes_batched) == observed(one_by_one, outboxes_one)


def test_a_message_published_by_a_close_callback_mid_batch_keeps_offset_order():
    """An outbox closed by its overflow during a run publishes a 'gone' notice
    from its callback: every other outbox still gets offsets in order."""
    hub = make_hub(FakeClock())
    small = hub.open_outbox(max_queue=1, hard_limit=1)
    hub.subscribe(small, "c")
    small.on_close(lambda _outbox: hub.publish(Message("c", "gone", droppable=False)))
    others = [hub.open_outbox(max_queue=100, hard_limit=100) for _ in range(3)]
    for outbox in others:
        hub.subscribe(outbox, "c")
    batch = [Message("c", n, droppable=False) for n in range(3)]
    batch.insert(2, Message("c", "pm", audience=frozenset({"x"}), droppable=False))
    hub.publish_many(batch)
    assert small.closed
    for outbox in others:
        offsets = [m.offset for m in outbox.drain()]
        assert offsets == sorted(offsets) and len(offsets) == 4  # 0, 1, 2 and "gone"


def test_an_unfiltered_subscription_gets_a_run_in_one_wake_up():
    hub = make_hub(FakeClock())
    outbox = hub.open_outbox()
    hub.subscribe(outbox, "c")
    calls = []
    outbox.listen(lambda: calls.append(len(outbox.drain())))
    hub.publish_many([Message("c", n) for n in range(50)])
    gevent.sleep(0)
    assert calls == [50]


def test_a_published_message_cannot_be_published_again_in_a_batch():
    hub = make_hub(FakeClock())
    message = hub.publish(Message("c", 1))
    with pytest.raises(ValueError, match="already published"):
        hub.publish_many([Message("c", 2), message])
    assert hub.channel("c").last_offset == 1


def test_the_same_message_twice_in_a_batch_is_refused_before_anything_is_published():
    hub = make_hub(FakeClock())
    message = Message("c", 1)
    with pytest.raises(ValueError, match="twice in one batch"):
        hub.publish_many([Message("c", 0), message, message])
    assert hub.channel("c") is None or hub.channel("c").last_offset == 0
