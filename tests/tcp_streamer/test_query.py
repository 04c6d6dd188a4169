"""QueryBuffer: one JSON object out of bytes that arrive in any pieces (no I/O)."""

from __future__ import annotations

import json

import pytest

from channelstream.hub import Start
from channelstream.tcp_streamer import QueryBuffer, QueryError


def same(a, b):
    return a.filter.as_dict() == b.filter.as_dict() and a.start == b.start


def feed_all(pieces, max_bytes=65536):
    buffer = QueryBuffer(max_bytes)
    for piece in pieces:
        query = buffer.feed(piece)
        if query is not None:
            return query
    return None


QUERY = '  {"profile_id": "caf\u00e9 }{[", "esc": "a\\"}\\\\", "temperature": 70, "time": 5000}'


def test_a_query_split_at_every_byte_gives_the_same_query():
    raw = QUERY.encode()
    whole = feed_all([raw])
    assert whole.filter.as_dict() == {
        "profile_id": "caf\u00e9 }{[",
        "esc": 'a"}\\',
        "temperature": 70,
    }
    assert whole.start == Start.ms_ago(5000)
    for cut in range(1, len(raw)):
        query = feed_all([raw[:cut], raw[cut:]])
        assert same(query, whole), cut
    one_by_one = feed_all([raw[i : i + 1] for i in range(len(raw))])
    assert same(one_by_one, whole)


def test_an_incomplete_object_waits_and_a_complete_one_ends_the_query():
    buffer = QueryBuffer(1000)
    assert buffer.feed(b'{"a": "}') is None
    assert buffer.feed(b'"') is None
    query = buffer.feed(b'}{"ignored": "whatever follows"')
    assert query.filter.as_dict() == {"a": "}"}
    assert query.start == Start.live()


def test_whitespace_alone_is_not_a_query_yet():
    buffer = QueryBuffer(1000)
    assert buffer.feed(b" \r\n\t") is None
    assert buffer.empty
    assert buffer.feed(b"{}").filter.as_dict() == {}


@pytest.mark.parametrize(
    "raw, problem",
    [
        (b"hello", "not valid JSON"),
        (b"[1, 2]", "not an array"),
        (b"[", "not an array"),
        (b"42", "not a number"),
        (b'"text"', "not a string"),
        (b"true", "not a boolean"),
        (b"null", "not null"),
        (b"{'a': 1}", "not valid JSON"),
        (b'{"a": 1]', "not valid JSON"),
        (b'{"a": NaN}', "NaN is not a JSON number"),
        (b'{"a": 1e999}', "out of range"),
        (b'{"a": "\\ud800"}', "lone surrogate"),
        (b'{"a": "\xff"}', "not UTF-8"),
        (b'{"a": [1]}', "'a'"),
        (b'{"a": {"b": 1}}', "'a'"),
        (b'{"time": -1}', '"time"'),
        (b'{"time": "5"}', '"time"'),
        (b"{" + b'"a":[' * 40, "nested deeper than 32"),
    ],
)
def test_bad_queries_are_named(raw, problem):
    with pytest.raises(QueryError, match=problem.replace("[", r"\[")):
        feed_all([raw])


def test_the_length_bound_counts_every_byte_received():
    assert feed_all([b'{"a": "' + b"x" * 10 + b'"}'], max_bytes=19) is not None
    with pytest.raises(QueryError, match="longer than 18 bytes"):
        feed_all([b'{"a": "' + b"x" * 10 + b'"}'], max_bytes=18)
    buffer = QueryBuffer(10)
    assert buffer.room == 11
    with pytest.raises(QueryError, match="longer than 10 bytes"):
        buffer.feed(b'{"a": "xxxx')
    with pytest.raises(QueryError, match="longer than 10 bytes"):
        QueryBuffer(10).feed(b" " * 11)


def test_an_incomplete_query_is_described():
    buffer = QueryBuffer(1000)
    assert buffer.incomplete("no query within 1 s").startswith("no query within 1 s; send")
    buffer.feed(b'{"a": 1')
    message = buffer.incomplete("the connection ended")
    assert message.startswith("the connection ended: the query is not a complete JSON object")
    assert "Expecting ',' delimiter" in message
    json.dumps(message)  # goes into the error line as is
