"""``G3Frame``: a frame type and named objects, behaving like spt3g's ``core.G3Frame``.

A frame is a mapping from names (str) to objects. Reading an item gives a
scalar's Python value (``int``, ``float``, ``bool``, ``str``) or the object
itself (an :class:`~.objects.OpaqueObject` for classes this library does
not decode); assigning a Python scalar stores it as G3Bool/G3Int/G3Double/
G3String, as spt3g does. A name can be assigned once (spt3g's rule): delete
it first to replace it.

Entries keep their order (a decoded frame: the order on the wire; a new
one: insertion order). A frame decoded from bytes keeps those bytes:
:meth:`G3Frame.encode` returns them unchanged until the frame is modified,
so a frame passed through is sent byte for byte as it came, and a frame is
encoded once however many clients it goes to. Objects are decoded only
when read. Objects put in a frame must not be changed afterwards (the
frame's cached bytes would not follow), as with spt3g's cached blobs.
"""

from __future__ import annotations

from collections.abc import ItemsView, Iterator, KeysView, ValuesView
from typing import Any

from . import wire
from .errors import G3Error
from .frametype import G3FrameType, adhoc_type
from .objects import G3FrameObject, OpaqueObject, _Scalar, decode_blob, to_object, to_python

_MISSING = object()
#: Frames smaller than this are joined into one buffer when encoded.
_JOIN_BELOW = 64 * 1024


class G3KeyExistsError(G3Error):
    """A frame already holds the name (spt3g's RuntimeError "Previously existing key")."""


class G3Frame:
    """A G3 frame. ``G3Frame()``, ``G3Frame(G3FrameType.Scan)``, ``G3Frame(other)``
    (a copy) or ``G3Frame("ABCD")`` (an ad-hoc type of 1 to 4 characters)."""

    __slots__ = ("_type", "_items", "_raw", "_filename")

    def __init__(self, frame_type: Any = G3FrameType.none) -> None:
        # the encoded frame: its bytes, or its buffers (a large frame not yet joined)
        self._raw: bytes | tuple[wire.Buffer, ...] | None = None
        self._filename = ""
        if type(frame_type) is G3FrameType:
            self._type = frame_type
            self._items = {}
        elif isinstance(frame_type, G3Frame):
            self._type = frame_type._type
            self._items: dict[str, Any] = dict(frame_type._items)
            self._raw = frame_type._raw
        elif isinstance(frame_type, str):
            self._type = adhoc_type(frame_type)
            self._items = {}
        else:
            self._type = G3FrameType(frame_type)
            self._items = {}

    @classmethod
    def _from_wire(cls, frame_type: int, items: dict[str, Any], raw: bytes) -> G3Frame:
        frame = cls.__new__(cls)
        frame._type = G3FrameType(frame_type)
        frame._items = items  # name -> G3FrameObject, or its undecoded blob (memoryview)
        frame._raw = raw
        frame._filename = ""
        return frame

    # -- type -------------------------------------------------------------------------------

    @property
    def type(self) -> G3FrameType:
        return self._type

    @type.setter
    def type(self, value: Any) -> None:
        self._type = G3FrameType(value)
        self._raw = None

    # -- mapping ----------------------------------------------------------------------------

    def _object(self, name: str) -> G3FrameObject:
        value = self._items[name]
        if not isinstance(value, G3FrameObject):
            value = decode_blob(value)
            self._items[name] = value
        return value

    def object(self, name: str) -> G3FrameObject:
        """The object stored under ``name`` (a G3Int, not its int). KeyError if absent."""
        return self._object(name)

    def __getitem__(self, name: str) -> Any:
        return to_python(self._object(name))

    def __setitem__(self, name: str, value: Any) -> None:
        if not isinstance(name, str):
            raise TypeError(f"frame keys are str, not {type(name).__name__}")
        if name in self._items:
            raise G3KeyExistsError(f'Previously existing key "{name}"')
        self._items[name] = to_object(value)
        self._raw = None

    def __delitem__(self, name: str) -> None:
        del self._items[name]
        self._raw = None

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._items))

    def keys(self) -> KeysView[str]:
        return self._items.keys()

    def values(self) -> ValuesView[Any]:
        return {name: self[name] for name in self._items}.values()

    def items(self) -> ItemsView[str, Any]:
        return {name: self[name] for name in self._items}.items()

    def get(self, name: str, default: Any = None) -> Any:
        if name in self._items:
            return self[name]
        return default

    def pop(self, name: str, default: Any = _MISSING) -> Any:
        if name not in self._items:
            if default is _MISSING:
                raise KeyError(name)
            return default
        value = self[name]
        del self[name]
        return value

    # -- bytes ------------------------------------------------------------------------------

    def encode(self) -> bytes:
        """The frame's bytes (cached; the bytes it was decoded from while unmodified)."""
        raw = self._raw
        if type(raw) is bytes:
            return raw
        parts = self.encoded()[0]
        raw = self._raw = parts[0] if len(parts) == 1 else b"".join(parts)
        return raw  # type: ignore[return-value]

    def encoded(self) -> tuple[tuple[wire.Buffer, ...], int]:
        """The frame's bytes as buffers to write in order, and their total size.

        A small frame is one buffer (its cached :meth:`encode`); a large one
        keeps large objects in buffers of their own, so that a sender can
        write them (``sendmsg``) without joining them into one more copy.
        Cached too, until the frame is modified.
        """
        raw = self._raw
        if type(raw) is bytes:
            return (raw,), len(raw)
        if raw is not None:
            return raw, sum(len(part) for part in raw)
        entries = []
        for name, value in self._items.items():
            blob = value.blob_parts() if isinstance(value, G3FrameObject) else value
            entries.append((name.encode("utf-8", "surrogateescape"), blob))
        parts, total = wire.encode_parts(self._type, entries)
        if total < _JOIN_BELOW:
            joined = b"".join(parts)
            self._raw = joined
            return (joined,), total
        self._raw = tuple(parts)
        return self._raw, total

    @property
    def hash(self) -> bytes:
        """The serialized frame (spt3g's ``G3Frame.hash``)."""
        return self.encode()

    def __reduce__(self) -> tuple[Any, ...]:
        from .codec import decode_frame

        return (decode_frame, (self.encode(),))

    # -- display ----------------------------------------------------------------------------

    def __str__(self) -> str:
        lines = [f"Frame ({self._type}) ["]
        for name in sorted(self._items):
            obj = self._object(name)
            cls = obj.class_name or "unknown class"
            if isinstance(obj, OpaqueObject):
                lines.append(f'"{name}" ({cls}) => not decoded, {len(obj)} bytes')
            else:
                lines.append(f'"{name}" ({cls}) => {obj}')
        lines.append("]")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"<G3Frame {self._type} with {len(self._items)} objects>"

    @property
    def filename(self) -> str:
        """The file a G3Reader with ``track_filename=True`` read the frame from."""
        return self._filename


def describe(frame: G3Frame) -> dict[str, Any]:
    """A JSON-ready view of a frame: its type and its objects.

    ``{"type": "Timepoint", "objects": {"n": 5, "v": {"class": "G3VectorDouble",
    "bytes": 28}}}``: scalars as their values (doubles may be NaN or
    infinite: a strict JSON encoder must decide how to write those), any
    other object as its class name and blob size.
    """
    objects: dict[str, Any] = {}
    for name in frame.keys():
        obj = frame.object(name)
        if isinstance(obj, _Scalar):
            objects[name] = obj.value
        else:
            blob = obj.blob()
            objects[name] = {"class": obj.class_name, "bytes": len(blob)}
    return {"type": frame.type.name, "objects": objects}
