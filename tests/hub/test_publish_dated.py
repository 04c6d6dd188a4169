"""``Hub.publish_dated``: messages that happened before now keep their time.

A door that reads a log back (the AMQP stream door refilling the packet
window) publishes each message at the time it first happened. History then
answers time queries by that time, and a subscription made meanwhile gets a
dated message only if its window covers it: exactly what a time query made
at the same moment would have given, never older messages as live ones.
"""

from __future__ import annotations

import pytest

from channelstream.hub import ChannelConfig, Message, Start

from .fakes import FakeClock, make_hub


def dated(n: int, time_ms: int, channel: str = "packets", **fields) -> Message:
    message = Message(channel, n, fields={"n": n, **fields})
    message.time_ms = time_ms
    return message


def bodies(outbox) -> list:
    return [m.body for m in outbox.drain()]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1_000_000)


@pytest.fixture
def hub(clock):
    hub = make_hub(clock, history_size=1000, history_seconds=60)
    hub.start()
    yield hub
    hub.stop()


def test_dated_messages_keep_their_time_raised_to_the_last_and_never_ahead(hub, clock):
    published = hub.publish_dated(
        [dated(0, 990_000), dated(1, 995_000), dated(2, 993_000), dated(3, 2_000_000)]
    )
    # 2 is older than 1 (times never decrease); 3 is in the future (now at most)
    assert [m.time_ms for m in published] == [990_000, 995_000, 995_000, 1_000_000]
    assert [m.offset for m in published] == [1, 2, 3, 4]
    channel = hub.channel("packets")
    assert channel.last_time_ms == 1_000_000
    # a plain publish after them is stamped now, as always
    clock.advance(5)
    assert hub.publish(Message("packets", "live")).time_ms == 1_000_005


def test_a_time_query_finds_dated_messages_by_their_own_time(hub, clock):
    hub.publish_dated([dated(n, 1_000_000 - 10_000 + n * 1000) for n in range(10)])
    outbox = hub.open_outbox()
    hub.subscribe(outbox, "packets", start=Start.ms_ago(3_500))
    assert bodies(outbox) == [7, 8, 9]  # received 3 s, 2 s and 1 s ago


def test_a_subscription_made_meanwhile_gets_only_what_its_window_covers(hub, clock):
    # The refill has reached 995 000 when three clients come.
    hub.publish_dated([dated(n, 990_000 + n * 1000) for n in range(6)])  # 990..995 s
    live = hub.open_outbox()
    recent = hub.open_outbox()
    resumed = hub.open_outbox()
    hub.subscribe(live, "packets")  # at 1 000 000
    hub.subscribe(recent, "packets", start=Start.ms_ago(7_000))  # from 993 000
    channel = hub.channel("packets")
    hub.subscribe(resumed, "packets", start=Start.after(channel.epoch, 2))
    assert bodies(recent) == [3, 4, 5]
    assert bodies(resumed) == [2, 3, 4, 5]
    # The rest of the refill: 996..999 s, then two published after the clients came.
    clock.advance(1)
    hub.publish_dated([dated(n, 990_000 + n * 1000) for n in range(6, 10)])
    hub.publish_dated([dated(10, 1_000_000), dated(11, 1_000_001)])
    assert bodies(live) == [10, 11]
    assert bodies(recent) == [6, 7, 8, 9, 10, 11]
    assert bodies(resumed) == [6, 7, 8, 9, 10, 11]
    # What the recent client holds is what the same time query gives now.
    again = hub.open_outbox()
    hub.subscribe(again, "packets", start=Start.ms_ago(7_001))  # now is 1 000 001
    assert bodies(again) == [3, 4, 5, 6, 7, 8, 9, 10, 11]


def test_filters_still_apply_to_dated_messages(hub, clock):
    clock.advance(0)
    mine = hub.open_outbox()
    hub.subscribe(mine, "packets", start=Start.ms_ago(5_000), filter={"room": "hall"})
    everything = hub.open_outbox()
    hub.subscribe(everything, "packets", start=Start.oldest())
    hub.publish_dated(
        [dated(n, 990_000 + n * 1000, room="hall" if n % 2 else "kitchen") for n in range(10)]
    )
    assert bodies(mine) == [5, 7, 9]
    assert bodies(everything) == list(range(10))


def test_plain_publishes_are_offered_as_before_after_a_clock_step_back(hub, clock):
    outbox = hub.open_outbox()
    hub.subscribe(outbox, "packets")
    clock.ms -= 10_000  # the wall clock steps back: live messages still reach everyone
    hub.publish(Message("packets", "a"))
    hub.publish_many([Message("packets", "b"), Message("packets", "c")])
    assert bodies(outbox) == ["a", "b", "c"]


def test_dated_messages_a_window_passed_are_kept_out_of_history(clock):
    hub = make_hub(clock, history_size=1000, history_seconds=10)
    hub.start()
    try:
        hub.publish_dated([dated(0, 900_000), dated(1, 995_000)])
        outbox = hub.open_outbox()
        hub.subscribe(outbox, "packets", start=Start.oldest())
        assert bodies(outbox) == [1]
    finally:
        hub.stop()


def test_what_publish_dated_refuses(hub):
    live = Message("packets", "x")
    hub.publish(live)
    with pytest.raises(ValueError, match="already published"):
        hub.publish_dated([live])
    with pytest.raises(ValueError, match="private"):
        message = Message("packets", "p", audience=frozenset({"ann"}))
        message.time_ms = 1
        hub.publish_dated([message])
    with pytest.raises(ValueError, match="no time_ms"):
        hub.publish_dated([Message("packets", "untimed")])
    twice = dated(1, 999_000)
    with pytest.raises(ValueError, match="twice"):
        hub.publish_dated([twice, twice])
    assert hub.channel("packets").last_offset == 1  # nothing of those was published


def test_only_local_channels_take_dated_messages(clock):
    from channelstream.hub import Hub, HubConfig
    from channelstream.hub.bus import LocalBus

    class EngineBus(LocalBus):
        sequences = True

        def attach_engine(self, deliver, adopt) -> None:
            pass

    hub = Hub(HubConfig(), EngineBus(), clock_ms=clock, monotonic=clock.monotonic)
    hub.configure_channel("packets", ChannelConfig(history_size=10, local=True))
    hub.publish_dated([dated(0, 999_000)])
    assert hub.channel("packets").last_offset == 1
    with pytest.raises(ValueError, match="engine"):
        hub.publish_dated([dated(1, 999_000, channel="chat")])
