import pytest

from channelstream.hub import STICKY, Decimation, Filter, Message


def fields(**values):
    return Message("c", None, fields=values)


def test_every_pair_must_match():
    query = Filter({"profile_id": "abc", "temperature": 70})
    assert query.matches(fields(profile_id="abc", temperature=70, other=1))
    assert not query.matches(fields(profile_id="abc", temperature=71))
    assert not query.matches(fields(profile_id="abc"))


def test_equality_is_json_equality():
    assert Filter({"t": 70}).matches(fields(t=70.0))
    assert not Filter({"t": 70}).matches(fields(t="70"))
    assert not Filter({"public": True}).matches(fields(public=1))
    assert not Filter({"n": 1}).matches(fields(n=True))
    assert Filter({"public": False}).matches(fields(public=False))
    assert Filter({"x": None}).matches(fields(x=None))
    assert not Filter({"x": None}).matches(fields())


def test_empty_filter_matches_everything_and_is_falsy():
    assert not Filter({})
    assert Filter({}).matches(fields())


@pytest.mark.parametrize("value", [[1], {"a": 1}, object()])
def test_non_scalar_values_are_refused(value):
    with pytest.raises(ValueError, match="must be a string, number, boolean or null"):
        Filter({"k": value})


def kept(decimation, messages):
    return [m.body for m in messages if decimation.keep(m)]


def test_every_nth_keeps_the_first_then_every_nth():
    messages = [Message("c", i) for i in range(10)]
    assert kept(Decimation(every=3), messages) == [0, 3, 6, 9]


def test_every_nth_never_decimates_sticky_messages():
    messages = [Message("c", i, kind=STICKY, type="W") if i % 2 else Message("c", i)
                for i in range(6)]
    assert kept(Decimation(every=2), messages) == [0, 1, 3, 4, 5]


def test_per_type_counts_each_type_and_zero_drops_it():
    types = ["T", "S", "T", "T", "S", "C", "T", "S"]
    messages = [Message("c", i, type=t) for i, t in enumerate(types)]
    decimation = Decimation(per_type={"T": 2, "S": 0})
    assert kept(decimation, messages) == [0, 3, 5]


def test_bad_decimations_are_refused():
    with pytest.raises(ValueError):
        Decimation(every=0)
    with pytest.raises(ValueError):
        Decimation(per_type={"T": -1})
