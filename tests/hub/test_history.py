import pytest

from channelstream.hub.history import History
from channelstream.hub.message import Message


def stamped(offset, time_ms):
    message = Message("c", offset)
    message.offset, message.epoch, message.time_ms = offset, "e", time_ms
    return message


def test_keeps_at_most_size_messages():
    history = History(3)
    for offset in range(1, 11):
        history.append(stamped(offset, offset), now_ms=offset)
    assert [m.offset for m in history] == [8, 9, 10]
    assert history.first_offset == 8
    assert len(history) == 3


def test_size_zero_keeps_nothing():
    history = History(0)
    history.append(stamped(1, 1), now_ms=1)
    assert len(history) == 0 and history.first_offset is None
    assert history.after(0) == [] and history.since(0) == [] and history.all() == []


def test_age_limit_trims_on_append_and_on_trim():
    history = History(100, max_age_ms=1000)
    for offset, t in enumerate([0, 500, 900, 1400], start=1):
        history.append(stamped(offset, t), now_ms=t)
    # at 1400 everything older than 400 is gone
    assert [m.time_ms for m in history] == [500, 900, 1400]
    history.trim(now_ms=2000)
    assert [m.time_ms for m in history] == [1400]
    history.trim(now_ms=10_000)
    assert len(history) == 0


def test_after_returns_messages_newer_than_an_offset():
    history = History(5)
    for offset in range(1, 9):
        history.append(stamped(offset, offset * 10), now_ms=offset * 10)
    assert [m.offset for m in history.after(5)] == [6, 7, 8]
    assert [m.offset for m in history.after(0)] == [4, 5, 6, 7, 8]
    assert history.after(8) == []


def test_since_finds_the_first_message_at_or_after_a_time():
    history = History(10)
    for offset, t in enumerate([10, 20, 20, 30], start=1):
        history.append(stamped(offset, t), now_ms=t)
    assert [m.offset for m in history.since(20)] == [2, 3, 4]
    assert [m.offset for m in history.since(21)] == [4]
    assert history.since(31) == []


def test_compaction_keeps_offsets_addressable():
    history = History(10)
    for offset in range(1, 5001):
        history.append(stamped(offset, offset), now_ms=offset)
    assert [m.offset for m in history] == list(range(4991, 5001))
    assert history.get(4995).offset == 4995
    assert history.get(4990) is None and history.get(5001) is None
    assert len(history._items) < 2100  # dead prefix is released


def test_replace_swaps_the_stored_message():
    history = History(3)
    for offset in range(1, 4):
        history.append(stamped(offset, offset), now_ms=offset)
    edited = history.get(2).replaced("edited")
    assert history.replace(edited)
    assert history.get(2).body == "edited"
    gone = stamped(9, 9)
    assert not history.replace(gone)


def test_negative_bounds_are_refused():
    with pytest.raises(ValueError):
        History(-1)
    with pytest.raises(ValueError):
        History(1, max_age_ms=-5)
