"""Frame objects: the four scalar classes as Python values, every other class opaque.

A frame maps names to *blobs*, each blob one object serialized by cereal's
portable binary archive (spt3g 1.0.2, ``G3Frame::blob_encode``)::

    u8   1                     archive byte order: 1 = little-endian (0 = big)
    u32  0x80000001            polymorphic type id 1, first use: a name follows
    u64  len, bytes            the class name, e.g. "G3Int"
    u32  0x80000001            shared pointer id 1, first use: the object follows
    u32  1                     the class's version
    u32  1                     G3FrameObject's version (the base class)
    ...                        the payload: G3Int i64, G3Double f64, G3Bool u8,
                               G3String u64 len + bytes

:class:`G3Int`, :class:`G3Double`, :class:`G3Bool` and :class:`G3String` are
decoded when their blob has exactly this layout (version 1, nothing left
over); any other blob, including a scalar class of another version, is an
:class:`OpaqueObject` that keeps its bytes and is written back unchanged.
Decoding a blob never raises: what is not a known scalar is opaque.
"""

from __future__ import annotations

import struct
from typing import Any, ClassVar

_POINTER_NEW = 0x80000001
#: Payloads at least this big are kept apart from their header (no join copy).
_JOIN_BELOW = 64 * 1024
_MIN_I64, _MAX_I64 = -(1 << 63), (1 << 63) - 1


class G3FrameObject:
    """Base of everything a frame holds; :meth:`blob` is its serialized form."""

    __slots__ = ()
    class_name: ClassVar[str] = "G3FrameObject"

    def blob(self) -> bytes:
        raise NotImplementedError

    def blob_parts(self) -> Any:
        """The blob as one buffer or a tuple of buffers (to write without joining them)."""
        return self.blob()

    def Summary(self) -> str:
        return str(self)

    def Description(self) -> str:
        return str(self)


def _prefix(class_name: str, order: str) -> bytes:
    name = class_name.encode("ascii")
    flag = 1 if order == "<" else 0
    return (
        struct.pack(order + "BIQ", flag, _POINTER_NEW, len(name))
        + name
        + struct.pack(order + "III", _POINTER_NEW, 1, 1)
    )


class _Scalar(G3FrameObject):
    __slots__ = ("value",)
    _prefix_le: ClassVar[bytes]
    _prefix_be: ClassVar[bytes]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._prefix_le = _prefix(cls.class_name, "<")
        cls._prefix_be = _prefix(cls.class_name, ">")

    def __eq__(self, other: object) -> bool:
        if type(other) is type(self):
            return self.value == other.value  # type: ignore[attr-defined]
        return NotImplemented

    def __hash__(self) -> int:
        return hash((type(self), self.value))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.value!r})"

    def __str__(self) -> str:
        return str(self.value)


class G3Int(_Scalar):
    """A signed 64-bit integer (spt3g's ``G3Int``)."""

    __slots__ = ()
    class_name = "G3Int"

    def __init__(self, value: int = 0) -> None:
        value = int(value)
        if not _MIN_I64 <= value <= _MAX_I64:
            raise OverflowError(f"G3Int holds a signed 64-bit integer, not {value}")
        self.value = value

    def blob(self) -> bytes:
        return self._prefix_le + struct.pack("<q", self.value)


class G3Double(_Scalar):
    """A 64-bit float (spt3g's ``G3Double``)."""

    __slots__ = ()
    class_name = "G3Double"

    def __init__(self, value: float = 0.0) -> None:
        self.value = float(value)

    def blob(self) -> bytes:
        return self._prefix_le + struct.pack("<d", self.value)


class G3Bool(_Scalar):
    """A boolean (spt3g's ``G3Bool``)."""

    __slots__ = ()
    class_name = "G3Bool"

    def __init__(self, value: bool = False) -> None:
        self.value = bool(value)

    def blob(self) -> bytes:
        return self._prefix_le + (b"\x01" if self.value else b"\x00")


class G3String(_Scalar):
    """A string (spt3g's ``G3String``: bytes on the wire, UTF-8 here).

    Bytes that are not UTF-8 are kept as lone surrogates (``surrogateescape``)
    and written back as they came.
    """

    __slots__ = ()
    class_name = "G3String"

    def __init__(self, value: str = "") -> None:
        if not isinstance(value, str):
            raise TypeError(f"G3String holds a str, not {type(value).__name__}")
        self.value = value

    def blob(self) -> bytes:
        data = self.value.encode("utf-8", "surrogateescape")
        return self._prefix_le + struct.pack("<Q", len(data)) + data

    def blob_parts(self) -> Any:
        data = self.value.encode("utf-8", "surrogateescape")
        if len(data) < _JOIN_BELOW:
            return self._prefix_le + struct.pack("<Q", len(data)) + data
        return (self._prefix_le + struct.pack("<Q", len(data)), data)

    def __str__(self) -> str:
        return f'"{self.value}"'


class OpaqueObject(G3FrameObject):
    """An object of a class this library does not decode, carried as its blob.

    :param blob: the serialized object exactly as a frame holds it.
    """

    __slots__ = ("_blob", "_class_name")

    def __init__(self, blob: bytes | bytearray | memoryview) -> None:
        self._blob = blob
        self._class_name: str | None = None

    @property
    def class_name(self) -> str:  # type: ignore[override]
        """The serialized class name ("G3VectorDouble"), or "" when the blob has none."""
        if self._class_name is None:
            self._class_name = blob_class_name(self._blob) or ""
        return self._class_name

    def blob(self) -> bytes | bytearray | memoryview:
        return self._blob

    def __len__(self) -> int:
        return len(self._blob)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, OpaqueObject):
            return bytes(self._blob) == bytes(other._blob)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(bytes(self._blob))

    def __repr__(self) -> str:
        return f"OpaqueObject({self.class_name or '?'}, {len(self._blob)} bytes)"

    def __str__(self) -> str:
        return f"<{self.class_name or 'unknown class'}: {len(self._blob)} bytes, not decoded>"


_WRAP: dict[type, type[_Scalar]] = {bool: G3Bool, int: G3Int, float: G3Double, str: G3String}

SCALAR_CLASSES: dict[str, type[_Scalar]] = {
    cls.class_name: cls for cls in (G3Int, G3Double, G3Bool, G3String)
}


def blob_class_name(blob: bytes | bytearray | memoryview) -> str | None:
    """The class name a blob declares, or None if its header is not readable."""
    if len(blob) < 13 or blob[0] not in (0, 1):
        return None
    order = "<" if blob[0] == 1 else ">"
    pid, length = struct.unpack_from(order + "IQ", blob, 1)
    if not pid & 0x80000000 or length > len(blob) - 13:
        return None
    return bytes(blob[13 : 13 + length]).decode("utf-8", "replace")


def decode_blob(blob: bytes | bytearray | memoryview) -> G3FrameObject:
    """The object a blob holds: a scalar when its layout is exactly a known one, else opaque."""
    for cls in SCALAR_CLASSES.values():
        for prefix, order in ((cls._prefix_le, "<"), (cls._prefix_be, ">")):
            n = len(prefix)
            if len(blob) < n or blob[:n] != prefix:
                continue
            scalar = _decode_payload(cls, blob, n, order)
            if scalar is not None:
                return scalar
    return OpaqueObject(blob)


def _decode_payload(cls: type[_Scalar], blob: Any, at: int, order: str) -> _Scalar | None:
    rest = len(blob) - at
    obj = cls.__new__(cls)
    if cls is G3Int and rest == 8:
        (obj.value,) = struct.unpack_from(order + "q", blob, at)
    elif cls is G3Double and rest == 8:
        (obj.value,) = struct.unpack_from(order + "d", blob, at)
    elif cls is G3Bool and rest == 1:
        obj.value = blob[at] != 0
    elif cls is G3String and rest >= 8:
        (length,) = struct.unpack_from(order + "Q", blob, at)
        if length != rest - 8:
            return None
        obj.value = bytes(blob[at + 8 :]).decode("utf-8", "surrogateescape")
    else:
        return None
    return obj


def to_object(value: Any) -> G3FrameObject:
    """What ``frame[name] = value`` stores: a G3FrameObject as is, Python scalars wrapped.

    ``bool`` becomes :class:`G3Bool`, ``int`` :class:`G3Int`, ``float``
    :class:`G3Double`, ``str`` :class:`G3String` (as spt3g does); anything
    else is a :class:`TypeError`.
    """
    wrap = _WRAP.get(type(value))
    if wrap is not None:
        return wrap(value)
    if isinstance(value, G3FrameObject):
        return value
    if isinstance(value, bool):
        return G3Bool(value)
    if isinstance(value, int):
        return G3Int(value)
    if isinstance(value, float):
        return G3Double(value)
    if isinstance(value, str):
        return G3String(value)
    raise TypeError(
        f"a frame holds G3FrameObjects, bool, int, float or str; not {type(value).__name__}"
    )


def to_python(obj: G3FrameObject) -> Any:
    """What ``frame[name]`` returns: a scalar's value, any other object itself."""
    if isinstance(obj, _Scalar):
        return obj.value
    return obj
