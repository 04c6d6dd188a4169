"""jsonpart: the fast decoder agrees with json.loads; the encoder is json.dumps."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from channelstream.mflow import jsonpart

VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(VALUES)
def test_round_trip_and_same_bytes_as_json_dumps(value):
    raw = jsonpart.dumps(value)
    assert raw == json.dumps(value).encode()
    assert jsonpart.loads(raw) == value
    assert jsonpart.loads(memoryview(raw)) == value


@given(st.text(max_size=30))
def test_any_text_decodes_or_fails_like_json_loads(text):
    try:
        expected = json.loads(text)
    except ValueError:
        with pytest.raises(ValueError):
            jsonpart.loads(text.encode("utf-8", "surrogatepass"))
        return
    assert jsonpart.loads(text.encode()) == expected


@pytest.mark.parametrize("raw", [b' {"a": 1} ', b'{"a": 1}\n', b"\t[1]"])
def test_whitespace_around(raw):
    assert jsonpart.loads(raw) == json.loads(raw)


@pytest.mark.parametrize("raw", [b'{"a": 1} x', b"", b"\xff", b'{"a": 1}{}'])
def test_errors(raw):
    with pytest.raises(ValueError):
        jsonpart.loads(raw)
