"""The channel's filter index delivers exactly what evaluating every filter delivers.

A channel files filtered subscriptions under one (key, value) pair of their
filter and groups identical filters (``channel._FanOut``). These properties
drive a real hub with subscriptions, cancellations and publishes, and compare
each outbox's messages and counters with a reference that evaluates every
subscription's filter on every message (``Filter.matches``: the definition of
a match), then its decimation, in subscription order.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from channelstream.hub import Decimation, Filter, Message
from channelstream.hub.channel import _FanOut
from channelstream.hub.filters import match_key

from .fakes import FakeClock, make_hub

pytestmark = pytest.mark.timeout(120)

PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

KEYS = ["k", "t", "profile_id"]
NAN = math.nan  # one object: an identity match in a dict would be a wrong match
# The values whose Python and JSON equality differ or surprise: 1/1.0/True,
# 0/-0.0/False, "1"/1, None/missing, NaN, floats beyond 2**53, and (fields
# only) unhashable values.
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.sampled_from([0, 1, -1, 70, 2**53 + 1]),
    st.sampled_from([0.0, -0.0, 1.0, 70.0, 0.5, float(2**53), NAN]),
    st.sampled_from(["", "0", "1", "70", "a"]),
)
field_values = st.one_of(scalars, st.just([1]), st.just({"k": 1}), st.just(float("nan")))
filters = st.dictionaries(st.sampled_from(KEYS), scalars, max_size=3)
fields = st.dictionaries(st.sampled_from(KEYS), field_values, max_size=3)
PRINCIPALS = ["ann", "bob"]


@st.composite
def subscriptions(draw):
    return {
        "pairs": draw(filters),
        "every": draw(st.sampled_from([1, 1, 1, 2, 3])),
        "principal": draw(st.sampled_from([None, *PRINCIPALS])),
    }


@st.composite
def publishes(draw):
    audience = draw(st.sampled_from([None, None, None, frozenset({"ann"})]))
    return {"fields": draw(fields), "audience": audience}


operations = st.lists(
    st.one_of(
        st.tuples(st.just("subscribe"), subscriptions()),
        st.tuples(st.just("publish"), publishes()),
        st.tuples(st.just("publish"), publishes()),
        st.tuples(st.just("cancel"), st.integers(0, 30)),
    ),
    max_size=60,
)


class Reference:
    """One subscription as the definition says: visibility, filter, decimation."""

    def __init__(self, pairs: dict, every: int, principal: str | None) -> None:
        self.filter = Filter(pairs)
        self.decimation = Decimation(every) if every > 1 else None
        self.principal = principal
        self.expected: list[Message] = []
        self.active = True

    def offer(self, message: Message) -> None:
        if not self.active or not message.visible_to(self.principal):
            return
        if not self.filter.matches(message):
            return
        if self.decimation is not None and not self.decimation.keep(message):
            return
        self.expected.append(message)


@PROPERTY
@given(ops=operations)
@example(
    ops=[
        ("subscribe", {"pairs": {"k": 1}, "every": 1, "principal": None}),
        ("subscribe", {"pairs": {"k": True}, "every": 1, "principal": None}),
        ("subscribe", {"pairs": {"k": 1.0}, "every": 1, "principal": None}),
        ("publish", {"fields": {"k": True}, "audience": None}),
        ("publish", {"fields": {"k": 1}, "audience": None}),
        ("publish", {"fields": {"k": [1]}, "audience": None}),
    ]
)
@example(
    ops=[
        ("subscribe", {"pairs": {"k": NAN}, "every": 1, "principal": None}),
        ("publish", {"fields": {"k": NAN}, "audience": None}),
    ]
)
def test_the_index_delivers_what_evaluating_every_filter_delivers(ops):
    hub = make_hub(FakeClock())
    subs = []  # (outbox, subscription, reference)
    for op, arg in ops:
        if op == "subscribe":
            outbox = hub.open_outbox(max_queue=1000, hard_limit=1000)
            decimation = Decimation(arg["every"]) if arg["every"] > 1 else None
            sub = hub.subscribe(
                outbox, "c", filter=Filter(arg["pairs"]), decimation=decimation,
                principal=arg["principal"],
            )
            subs.append((outbox, sub, Reference(arg["pairs"], arg["every"], arg["principal"])))
        elif op == "cancel":
            if subs:
                _outbox, sub, reference = subs[arg % len(subs)]
                sub.cancel()
                reference.active = False
        else:
            message = Message("c", None, fields=arg["fields"], audience=arg["audience"])
            hub.publish(message)
            for _outbox, _sub, reference in subs:
                reference.offer(message)
    channel = hub.channel("c")
    if channel is not None and channel._fanout is not None:
        # Kept up to date subscription by subscription, it is what a fresh build gives.
        assert shape(channel._fanout) == shape(_FanOut(channel._subs))
    total = 0
    for outbox, sub, reference in subs:
        assert outbox.drain() == reference.expected
        assert sub.delivered == len(reference.expected)
        total += sub.delivered
    if channel is not None:
        assert channel.delivered == total


def shape(fanout: _FanOut) -> tuple:
    """Who is where in a _FanOut, order included."""
    index = {
        key: {value: [[id(sub) for sub in group.subs] for group in groups]
              for value, groups in table.items()}
        for key, table in fanout.index.items()
    }
    return [id(s) for s in fanout.plain], [id(s) for s in fanout.evaluated], index


@settings(max_examples=500, deadline=None)
@given(a=st.one_of(scalars, field_values), b=scalars)
@example(a=True, b=1)
@example(a=0, b=False)
@example(a=-0.0, b=0)
@example(a=2**53 + 1, b=float(2**53))
def test_match_keys_are_equal_exactly_when_filter_matches(a, b):
    """The key the index files a filter value under, and looks a field up by."""
    matches = Filter({"k": b}).matches(Message("c", None, fields={"k": a}))
    if b != b:  # NaN equals nothing; such filters are never indexed
        assert not matches
        return
    try:
        found = {match_key(b): True}.get(match_key(a), False)
    except TypeError:  # unhashable field value
        found = False
    assert found == matches


def test_identical_filters_share_one_group_and_70_is_70_0():
    hub = make_hub(FakeClock())
    for pairs in ({"k": 70}, {"k": 70.0}, {"k": 70, "t": "a"}, {"t": "a", "k": 70.0}):
        hub.subscribe(hub.open_outbox(), "c", filter=pairs)
    hub.publish(Message("c", None, fields={"k": 70.0, "t": "a"}))
    fanout = hub.channel("c")._fanout
    groups = [group for table in fanout.index.values() for g in table.values() for group in g]
    assert sorted(len(group.subs) for group in groups) == [2, 2]
    assert hub.channel("c").delivered == 4


def test_a_subscription_closed_by_its_overflow_during_fan_out_upsets_no_other():
    """The fan-out walks a snapshot: the group it walks loses a member midway."""
    hub = make_hub(FakeClock())
    small = hub.open_outbox(max_queue=1, hard_limit=1)  # undroppable 2nd message: closed
    hub.subscribe(small, "c", filter={"k": 1})
    others = [hub.open_outbox(max_queue=100, hard_limit=100) for _ in range(3)]
    for outbox in others:
        hub.subscribe(outbox, "c", filter={"k": 1})
    sent = [Message("c", n, fields={"k": 1}, droppable=False) for n in range(3)]
    for message in sent:
        hub.publish(message)
    assert small.closed
    assert hub.channel("c").subscriber_count == 3
    for outbox in others:
        assert outbox.drain() == sent
