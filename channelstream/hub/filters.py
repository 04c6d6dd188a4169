"""Subscription filters and decimation.

A filter is a set of key/value pairs; a message matches when every pair equals
the message field of the same key (the GATD query, an AMQP ``x-match: all``
binding). Equality is JSON equality: ``70`` matches ``70.0``, but ``true`` does
not match ``1`` and ``"70"`` does not match ``70``.

Decimation keeps every Nth message, overall or per message type
(G3ThrottledNetworkSender's ``frame_decimation``, m_split's ``modulo``). The
first message of each count is kept, then every Nth after it; N = 0 drops that
type entirely.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .message import Message

_MISSING = object()


def _json_equal(a: Any, b: Any) -> bool:
    # bool is an int in Python, not in JSON: keep them apart.
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    return a == b


def fields_match(fields: Mapping[str, Any], pairs: tuple[tuple[str, Any], ...]) -> bool:
    """Whether every (key, value) of ``pairs`` is a field JSON-equal to it
    (a missing field equals nothing): the definition of a filter match."""
    for key, value in pairs:
        if not _json_equal(fields.get(key, _MISSING), value):
            return False
    return True


class _BoolKey:
    """The index key of a boolean: equal to nothing but itself."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<{self.name}>"


_NOT_INDEXED = (("", _MISSING),)  # Filter.index_pairs of a filter with a NaN value
_TRUE_KEY = _BoolKey("true")
_FALSE_KEY = _BoolKey("false")


def match_key(value: Any) -> Any:
    """``value`` as a dict key under JSON equality, for the channel's filter index.

    For a JSON scalar ``b`` that is not NaN and any value ``a`` that keeps
    Python's hash/equality contract (every JSON scalar does),
    ``match_key(a) == match_key(b)`` exactly when ``a`` is JSON-equal to
    ``b`` (:meth:`Filter.matches`), and their hashes agree: ``70`` and
    ``70.0`` share a key, ``True`` and ``1`` do not (booleans get keys of
    their own), ``"70"`` and ``70`` do not. Unhashable values raise
    ``TypeError`` when looked up; they equal no scalar.
    """
    if value is True:
        return _TRUE_KEY
    if value is False:
        return _FALSE_KEY
    return value


class Filter:
    """All key/value pairs must match the message's fields.

    :param pairs: scalar values only (str, int, float, bool, None).
    :raises ValueError: when a value is not a scalar.
    """

    __slots__ = ("pairs", "_index_pairs")

    def __init__(self, pairs: Mapping[str, Any]) -> None:
        for key, value in pairs.items():
            if not isinstance(key, str):
                raise ValueError(f"filter keys must be strings, not {key!r}")
            if value is not None and not isinstance(value, (str, int, float, bool)):
                raise ValueError(
                    f"filter value for {key!r} must be a string, number, "
                    f"boolean or null, not {type(value).__name__}"
                )
        self.pairs = tuple(pairs.items())
        self._index_pairs: tuple[tuple[str, Any], ...] | None = None

    def __bool__(self) -> bool:
        return bool(self.pairs)

    def matches(self, message: Message) -> bool:
        return fields_match(message.fields, self.pairs)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.pairs)

    def index_pairs(self) -> tuple[tuple[str, Any], ...] | None:
        """The pairs sorted by key, values as :func:`match_key`: two filters
        with equal index pairs match exactly the same messages. None when a
        value is NaN (it equals nothing, not even itself: such a filter is
        left to :meth:`matches`). Computed once."""
        if self._index_pairs is None:
            pairs = []
            for key, value in self.pairs:
                if value != value:  # NaN
                    self._index_pairs = _NOT_INDEXED
                    return None
                pairs.append((key, match_key(value)))
            pairs.sort(key=lambda pair: pair[0])
            self._index_pairs = tuple(pairs)
        return None if self._index_pairs is _NOT_INDEXED else self._index_pairs


class Decimation:
    """Keep every Nth message, overall and/or per type.

    :param every: keep one data message in ``every`` (1 keeps all). Sticky
        messages are never decimated by ``every``.
    :param per_type: ``{type: N}``; keep one message in N of that type, drop
        the type when N is 0. Applies to sticky messages too, as the
        throttled G3 sender does. Types not listed pass.
    """

    __slots__ = ("every", "per_type", "_count", "_type_counts")

    def __init__(self, every: int = 1, per_type: Mapping[str, int] | None = None) -> None:
        if every < 1:
            raise ValueError("decimation 'every' must be >= 1")
        per_type = dict(per_type or {})
        for key, n in per_type.items():
            if not isinstance(n, int) or n < 0:
                raise ValueError(f"decimation for type {key!r} must be an integer >= 0")
        self.every = every
        self.per_type = per_type
        self._count = 0
        self._type_counts: dict[str, int] = {}

    def __bool__(self) -> bool:
        return self.every > 1 or bool(self.per_type)

    def fresh(self) -> Decimation:
        """The same decimation with its counts at zero."""
        return Decimation(self.every, self.per_type)

    def keep(self, message: Message) -> bool:
        """Count ``message`` and say whether to keep it. Stateful."""
        n = self.per_type.get(message.type) if message.type is not None else None
        if n is not None:
            if n == 0:
                return False
            seen = self._type_counts.get(message.type, 0)
            self._type_counts[message.type] = seen + 1
            if seen % n:
                return False
        if self.every > 1 and not message.sticky:
            seen = self._count
            self._count = seen + 1
            return seen % self.every == 0
        return True
