import pytest

from channelstream.hub import STICKY, ChannelConfig, Decimation, Message, Start

from .fakes import FakeClock, make_hub


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def hub(clock):
    return make_hub(clock, history_size=5)


def publish(hub, body, channel="c", **kw):
    return hub.publish(Message(channel, body, **kw))


def bodies(outbox):
    return [m.body for m in outbox.drain()]


def test_messages_are_stamped_with_offset_epoch_and_time(hub, clock):
    first = publish(hub, "a")
    clock.advance(5)
    second = publish(hub, "b")
    assert (first.offset, second.offset) == (1, 2)
    assert first.epoch == second.epoch == hub.channel("c").epoch
    assert second.time_ms - first.time_ms == 5


def test_time_never_goes_backwards_when_the_clock_does(hub, clock):
    first = publish(hub, "a")
    clock.ms -= 10_000
    second = publish(hub, "b")
    assert second.time_ms == first.time_ms


def test_a_message_cannot_be_published_twice(hub):
    message = publish(hub, "a")
    with pytest.raises(ValueError, match="already published"):
        hub.publish(message)


def test_live_subscription_gets_only_new_messages(hub):
    publish(hub, "old")
    outbox = hub.open_outbox()
    hub.subscribe(outbox, "c")
    publish(hub, "new")
    assert bodies(outbox) == ["new"]


def test_resume_after_an_offset_replays_exactly_what_was_missed(hub):
    seen = [publish(hub, i) for i in range(3)]
    last = seen[-1]
    publish(hub, 3)
    publish(hub, 4)
    outbox = hub.open_outbox()
    sub = hub.subscribe(outbox, "c", start=Start.after(last.epoch, last.offset))
    publish(hub, 5)
    assert sub.resume_error is None
    assert bodies(outbox) == [3, 4, 5]


def test_resume_at_the_last_offset_is_not_an_error(hub):
    last = publish(hub, "a")
    outbox = hub.open_outbox()
    sub = hub.subscribe(outbox, "c", start=Start.after(last.epoch, last.offset))
    assert sub.resume_error is None and bodies(outbox) == []


@pytest.mark.parametrize(
    "make_start, reason",
    [
        (lambda epoch: Start.after("other-epoch", 1), "epoch changed"),
        (lambda epoch: Start.after(epoch, 99), "ahead of the channel"),
        (lambda epoch: Start.after(epoch, 1), "no longer reaches back"),
    ],
)
def test_resume_that_cannot_be_honoured_says_why_and_goes_live(hub, make_start, reason):
    for i in range(10):  # history keeps 5: offsets 6..10
        publish(hub, i)
    outbox = hub.open_outbox()
    sub = hub.subscribe(outbox, "c", start=make_start(hub.channel("c").epoch))
    publish(hub, "live")
    assert reason in sub.resume_error
    assert bodies(outbox) == ["live"]


def test_ms_ago_replays_exactly_the_window(hub, clock):
    for i in range(5):
        publish(hub, i)
        clock.advance(1000)
    # messages at t-5000, t-4000, ..., t-1000
    outbox = hub.open_outbox()
    hub.subscribe(outbox, "c", start=Start.ms_ago(3000))
    publish(hub, "live")
    assert bodies(outbox) == [2, 3, 4, "live"]


def test_oldest_replays_all_history(hub):
    for i in range(7):
        publish(hub, i)
    outbox = hub.open_outbox()
    hub.subscribe(outbox, "c", start=Start.oldest())
    assert bodies(outbox) == [2, 3, 4, 5, 6]


def test_history_age_limit_bounds_what_a_time_query_gets(clock):
    hub = make_hub(clock, history_size=100, history_seconds=2)
    for i in range(5):
        publish(hub, i)
        clock.advance(1000)
    outbox = hub.open_outbox()
    hub.subscribe(outbox, "c", start=Start.ms_ago(60_000))
    assert bodies(outbox) == [3, 4]


def test_new_subscription_gets_latest_sticky_per_type_in_first_seen_order(hub):
    publish(hub, "cal-1", kind=STICKY, type="Calibration")
    publish(hub, "wiring-1", kind=STICKY, type="Wiring")
    publish(hub, "scan", type="Scan")
    publish(hub, "cal-2", kind=STICKY, type="Calibration")
    outbox = hub.open_outbox()
    hub.subscribe(outbox, "c")
    publish(hub, "scan-2", type="Scan")
    assert bodies(outbox) == ["cal-2", "wiring-1", "scan-2"]


def test_sticky_state_survives_history_trimming(hub):
    publish(hub, "wiring", kind=STICKY, type="Wiring")
    for i in range(20):
        publish(hub, i)
    outbox = hub.open_outbox()
    hub.subscribe(outbox, "c", start=Start.oldest())
    assert bodies(outbox) == ["wiring", 15, 16, 17, 18, 19]


def test_sticky_inside_the_replay_is_not_sent_twice(hub):
    publish(hub, "w1", kind=STICKY, type="Wiring")
    for i in range(5):
        publish(hub, i)
    publish(hub, "w2", kind=STICKY, type="Wiring")
    outbox = hub.open_outbox()
    hub.subscribe(outbox, "c", start=Start.oldest())
    assert bodies(outbox) == [1, 2, 3, 4, "w2"]


def test_filter_applies_to_replay_and_live(hub):
    publish(hub, "a", fields={"k": 1})
    publish(hub, "b", fields={"k": 2})
    outbox = hub.open_outbox()
    hub.subscribe(outbox, "c", start=Start.oldest(), filter={"k": 1})
    publish(hub, "c", fields={"k": 1})
    publish(hub, "d", fields={"k": 2})
    assert bodies(outbox) == ["a", "c"]


def test_decimation_counts_across_replay_and_live(hub):
    for i in range(4):
        publish(hub, i)
    outbox = hub.open_outbox()
    hub.subscribe(outbox, "c", start=Start.oldest(), decimation=Decimation(every=2))
    for i in range(4, 8):
        publish(hub, i)
    assert bodies(outbox) == [0, 2, 4, 6]


def test_private_messages_reach_only_their_audience(hub):
    outboxes = {}
    for user in ("ann", "bob", "carl"):
        outboxes[user] = hub.open_outbox()
        hub.subscribe(outboxes[user], "c", principal=user)
    publish(hub, "to ann and bob", audience=frozenset({"ann", "bob"}))
    publish(hub, "not to carl", excluded=frozenset({"carl"}))
    publish(hub, "to all")
    assert bodies(outboxes["ann"]) == ["to ann and bob", "not to carl", "to all"]
    assert bodies(outboxes["bob"]) == ["to ann and bob", "not to carl", "to all"]
    assert bodies(outboxes["carl"]) == ["to all"]


def test_an_outbox_subscribes_once_per_channel(hub):
    outbox = hub.open_outbox()
    hub.subscribe(outbox, "c")
    with pytest.raises(ValueError, match="already subscribed"):
        hub.subscribe(outbox, "c")


def test_one_outbox_can_hold_several_channels(hub):
    outbox = hub.open_outbox()
    hub.subscribe(outbox, "a")
    hub.subscribe(outbox, "b")
    publish(hub, 1, channel="a")
    publish(hub, 2, channel="b")
    assert [(m.channel, m.body) for m in outbox.drain()] == [("a", 1), ("b", 2)]
    outbox.subscriptions["a"].cancel()
    publish(hub, 3, channel="a")
    publish(hub, 4, channel="b")
    assert bodies(outbox) == [4]


def test_counters_per_channel_and_subscription(hub):
    everyone = hub.open_outbox()
    only_k = hub.open_outbox()
    all_sub = hub.subscribe(everyone, "c")
    k_sub = hub.subscribe(only_k, "c", filter={"k": 1})
    publish(hub, "x", fields={"k": 1})
    publish(hub, "y", fields={"k": 2})
    channel = hub.channel("c")
    assert channel.published == 2
    assert (all_sub.delivered, k_sub.delivered) == (2, 1)
    assert channel.delivered == 3
    assert channel.stats()["subscribers"] == 2


def test_edit_replaces_the_message_in_history(hub):
    original = publish(hub, {"text": "helo"})
    channel = hub.channel("c")
    assert channel.replace(original.replaced({"text": "hello"}))
    outbox = hub.open_outbox()
    hub.subscribe(outbox, "c", start=Start.oldest())
    assert bodies(outbox) == [{"text": "hello"}]


def test_reconfigure_trims_history_now(hub):
    for i in range(5):
        publish(hub, i)
    hub.configure_channel("c", ChannelConfig(history_size=2))
    assert [m.body for m in hub.channel("c").history] == [3, 4]
    assert hub.channel_config("c").history_size == 2
    assert hub.channel_config("other").history_size == 5


def test_ms_ago_says_when_history_lost_part_of_the_window(hub, clock):
    for i in range(10):  # history keeps 5
        publish(hub, i)
        clock.advance(1000)
    outbox = hub.open_outbox()
    cut = hub.subscribe(outbox, "c", start=Start.ms_ago(8000))
    assert "no longer reaches back 8000 ms" in cut.resume_error
    assert bodies(outbox) == [5, 6, 7, 8, 9]
    whole = hub.subscribe(hub.open_outbox(), "c", start=Start.ms_ago(4000))
    assert whole.resume_error is None


def test_sticky_messages_cannot_be_private():
    with pytest.raises(ValueError, match="cannot be private"):
        Message("c", "state", kind=STICKY, type="state", audience=frozenset({"ann"}))


def test_each_subscription_counts_its_own_decimation(hub):
    shared = Decimation(every=2)
    first, second = hub.open_outbox(), hub.open_outbox()
    hub.subscribe(first, "c", decimation=shared)
    publish(hub, 0)
    hub.subscribe(second, "c", decimation=shared)
    publish(hub, 1)
    publish(hub, 2)
    assert bodies(first) == [0, 2]
    assert bodies(second) == [1]


def test_resume_replaces_the_subscription_and_purges_what_the_replay_repeats(hub):
    outbox = hub.open_outbox()
    sub = hub.subscribe(outbox, "c")
    other = hub.subscribe(outbox, "d")
    first = publish(hub, "a")
    publish(hub, "b")
    publish(hub, "other", channel="d")
    # the client saw "a" only; "b" is still queued here
    resumed = hub.resume(sub, Start.after(first.epoch, first.offset))
    assert resumed is not sub and not sub.active and resumed.resume_error is None
    publish(hub, "c")
    batch = outbox.drain()
    assert [m.body for m in batch] == ["b", "other", "c"]
    assert outbox.last_replayed == 1
    assert other.active


def test_a_resume_that_cannot_be_honoured_changes_nothing(hub):
    outbox = hub.open_outbox()
    sub = hub.subscribe(outbox, "c")
    publish(hub, "queued")
    kept = hub.resume(sub, Start.after("another-epoch", 1))
    assert kept is sub and sub.active and "epoch" in sub.resume_error
    assert bodies(outbox) == ["queued"]


def test_purge_removes_one_channel_from_the_queue(hub):
    outbox = hub.open_outbox()
    hub.subscribe(outbox, "c")
    hub.subscribe(outbox, "d")
    publish(hub, 1, size=10)
    publish(hub, 2, channel="d", size=10)
    assert outbox.purge("c") == 1
    assert outbox.queued_bytes == 10
    assert bodies(outbox) == [2]
