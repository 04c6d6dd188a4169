"""QueryBuffer: one JSON object out of bytes that arrive in any pieces (no I/O)."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from channelstream import strict_json
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
        (b'{"a":' + b"[" * 40, "nested deeper than 32"),
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


# -- refused at the first byte that cannot belong to a JSON object --------------------------


@pytest.mark.parametrize(
    "raw, at, problem",
    [
        (b"{bad json\n", 1, "expected a property name in double quotes at byte 1, found 'b'"),
        (b"  {bad", 3, "at byte 3"),
        (b"{'a': 1}", 1, 'found "\'"'),
        (b'{"a" 1}', 5, "expected ':' after the property name at byte 5"),
        (b'{"a": 1]', 7, "expected ',' or '}' at byte 7, found ']'"),
        (b'{"a": [1}', 8, "expected ',' or ']' at byte 8"),
        (b'{"a": }', 6, "expected a value at byte 6"),
        (b'{"a": 1,}', 8, "expected a property name"),
        (b'{"a": [1,]}', 9, "expected a value"),
        (b'{"a": tru,', 9, "expected 'true' at byte 9"),
        (b'{"a": nul}', 9, "expected 'null'"),
        (b'{"a": 01', 7, "no digit after a leading zero"),
        (b'{"a": -x', 7, "a digit after '-'"),
        (b'{"a": 1.e', 8, "a digit after the decimal point"),
        (b'{"a": 1e+}', 9, "a digit in the exponent"),
        (b'{"a": 1 2', 8, "expected ',' or '}'"),
        (b'{"a": "x\ty"}', 8, "no raw control character"),
        (b'{"a": "\\x"}', 8, "a valid escape"),
        (b'{"a": "\\u12g4"}', 11, "four hex digits"),
        (b'{"a": "\xff', None, "not UTF-8 (byte 7)"),
        (b'{"a": "\xc3\x28', None, "not UTF-8 (byte 7)"),
        (b'{"a": "caf\xff\n', None, "not UTF-8 (byte 10)"),  # the first problem is named
        (b'{"a": NaN', None, "NaN is not a JSON number"),
        (b'{"a": -Infinity', None, "-Infinity is not a JSON number"),
        (b'{"a": \xc3\xa9', 6, "byte 0xc3"),
    ],
)
def test_a_syntax_error_is_refused_at_its_byte_without_waiting_for_the_end(raw, at, problem):
    """No closing brace, often no newline: the bad byte alone is enough."""
    buffer = QueryBuffer(1000)
    with pytest.raises(QueryError, match=re.escape(problem)) as err:
        for index in range(len(raw)):  # byte by byte: refused at the bad one, not later
            buffer.feed(raw[index : index + 1])
            if at is not None:
                assert index < at, f"byte {at} was accepted"
    if at is not None:
        assert str(err.value).startswith("the query is not valid JSON: expected")


@pytest.mark.parametrize(
    "prefix",
    [
        b'{"a"',
        b'{"a',
        b'{"a": "b\\',
        b'{"a": "b\\u00',
        b'{"a": "caf\xc3',  # inside a two-byte character
        b'{"a": t',
        b'{"a": fals',
        b'{"a": -',
        b'{"a": 0',
        b'{"a": 12.',
        b'{"a": 1e',
        b'{"a": 1E-',
        b'{"a": 1.5e+7',
        b'{"a": 1,',
        b'{\n  "a": 1\n',  # a pretty-printed query spans lines: a newline ends nothing
        b'{"a": [1, {"b": [true, null',
    ],
)
def test_a_valid_beginning_waits_for_more(prefix):
    buffer = QueryBuffer(1000)
    for index in range(len(prefix)):
        assert buffer.feed(prefix[index : index + 1]) is None


scalars = st.none() | st.booleans() | st.integers(-(10**20), 10**20) | st.text(max_size=8)
scalars |= st.floats(allow_nan=False, allow_infinity=False)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)


@settings(max_examples=150, deadline=None)
@given(
    obj=st.dictionaries(st.text(max_size=6), values, max_size=4),
    indent=st.sampled_from([None, 0, 2]),
    ascii_only=st.booleans(),
    cuts=st.lists(st.integers(0, 400), max_size=6),
)
def test_any_json_object_split_anywhere_is_read_as_a_whole_one_is(obj, indent, ascii_only, cuts):
    """Never refused before its last byte; then the same query, or the same refusal."""
    raw = json.dumps(obj, indent=indent, ensure_ascii=ascii_only).encode()
    try:
        whole: object = QueryBuffer(65536).feed(raw)
    except QueryError as err:  # nested values, "time": -1...: refused by parse_query only
        whole = str(err)
        assert "not valid JSON" not in whole and "UTF-8" not in whole, whole
    buffer = QueryBuffer(65536)
    points = sorted({cut for cut in cuts if 0 < cut < len(raw)})
    pieces = [raw[a:b] for a, b in zip([0, *points], [*points, len(raw)], strict=True)]
    for piece in pieces[:-1]:
        assert buffer.feed(piece) is None
    try:
        split: object = buffer.feed(pieces[-1] + b"\n trailing {[ garbage")
    except QueryError as err:
        split = str(err)
    if isinstance(whole, str):
        assert split == whole
    else:
        assert same(split, whole)


@settings(max_examples=300, deadline=None)
@given(
    obj=st.dictionaries(st.text(max_size=6), values, min_size=1, max_size=4),
    data=st.data(),
)
def test_a_mutated_object_is_accepted_exactly_when_json_accepts_it(obj, data):
    """One byte changed, added or removed: the scanner agrees with the JSON decoder."""
    raw = bytearray(json.dumps(obj).encode())
    at = data.draw(st.integers(0, len(raw) - 1))
    byte = data.draw(st.sampled_from(b'{}[]":,\\ 0123456789.eE+-tfnulrsaxN\t\n\x01\xc3\xff'))
    mutation = data.draw(st.sampled_from(["replace", "insert", "delete"]))
    if mutation == "replace":
        raw[at] = byte
    elif mutation == "insert":
        raw.insert(at, byte)
    else:
        del raw[at]
    raw = bytes(raw)
    try:
        decoded = strict_json.loads(raw)
    except ValueError:
        decoded = None
    buffer = QueryBuffer(65536)
    try:
        result = buffer.feed(raw)
    except QueryError as err:
        result = err
    if isinstance(decoded, dict):
        # JSON accepts it: the scanner must not refuse it (parse_query may: nested values).
        assert not (isinstance(result, QueryError) and "JSON" in str(result)), raw
        assert result is not None, raw
    elif result is not None and not isinstance(result, QueryError):
        # The scanner saw a complete object: JSON must agree on that object's text.
        assert raw.lstrip().startswith(b"{"), raw
        assert _object_prefix_decodes(raw), raw


def _object_prefix_decodes(raw: bytes) -> bool:
    text = raw.decode("utf-8", "replace").lstrip()
    try:
        value, _ = json.JSONDecoder().raw_decode(text)
    except ValueError:
        return False
    return isinstance(value, dict)
