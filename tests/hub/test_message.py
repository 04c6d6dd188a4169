import pytest

from channelstream.hub import DATA, STICKY, Message


def test_sticky_message_needs_a_type():
    with pytest.raises(ValueError, match="type"):
        Message("c", b"", kind=STICKY)


def test_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="kind"):
        Message("c", b"", kind="other")


def test_sticky_messages_are_never_droppable():
    assert not Message("c", b"", kind=STICKY, type="Wiring").droppable
    assert Message("c", b"", kind=DATA).droppable
    assert not Message("c", b"", droppable=False).droppable


def test_encoding_is_computed_once_per_codec():
    calls = []

    def codec(message):
        calls.append(message)
        return b"encoded"

    def other(message):
        return b"other"

    message = Message("c", {"a": 1})
    assert [message.encoded(codec) for _ in range(3)] == [b"encoded"] * 3
    assert message.encoded(other) == b"other"
    assert len(calls) == 1


def test_visibility_follows_audience_and_exclusions():
    private = Message("c", "x", audience=frozenset({"ann", "bob"}), excluded=frozenset({"bob"}))
    assert private.visible_to("ann")
    assert not private.visible_to("bob")
    assert not private.visible_to("carl")
    assert not private.visible_to(None)
    public = Message("c", "x", excluded=frozenset({"bob"}))
    assert public.visible_to(None) and public.visible_to("ann")
    assert not public.visible_to("bob")


def test_replaced_keeps_the_sequence_stamp_and_drops_the_cache():
    message = Message("c", {"v": 1})
    message.offset, message.epoch, message.time_ms = 7, "e", 1000
    message.encoded(repr)
    edited = message.replaced({"v": 2})
    assert (edited.offset, edited.epoch, edited.time_ms) == (7, "e", 1000)
    assert edited.body == {"v": 2} and message.body == {"v": 1}
    assert edited.encoded(lambda m: str(m.body).encode()) == b"{'v': 2}"
