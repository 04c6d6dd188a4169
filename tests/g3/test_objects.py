"""Scalar objects as Python values; every other blob opaque and kept byte for byte."""

from __future__ import annotations

import math
import struct

import pytest

from channelstream.g3.objects import (
    G3Bool,
    G3Double,
    G3Int,
    G3String,
    OpaqueObject,
    blob_class_name,
    decode_blob,
    to_object,
    to_python,
)


@pytest.mark.parametrize(
    "obj",
    [G3Int(0), G3Int(-(1 << 63)), G3Int((1 << 63) - 1), G3Double(1.5), G3Double(-0.0),
     G3Bool(True), G3Bool(False), G3String(""), G3String("héllo wörld"),
     G3String("bad \udcff utf-8")],
)
def test_scalars_round_trip(obj) -> None:
    decoded = decode_blob(obj.blob())
    assert type(decoded) is type(obj)
    assert decoded == obj
    assert decoded.blob() == obj.blob()


def test_double_nan_and_inf() -> None:
    assert math.isnan(decode_blob(G3Double(math.nan).blob()).value)
    assert decode_blob(G3Double(math.inf).blob()).value == math.inf


def test_blob_layout_matches_spt3g() -> None:
    # u8 1, u32 0x80000001, u64 len + name, u32 0x80000001, u32 1, u32 1, payload
    assert G3Int(5).blob() == (
        b"\x01" + struct.pack("<IQ", 0x80000001, 5) + b"G3Int"
        + struct.pack("<III", 0x80000001, 1, 1) + struct.pack("<q", 5)
    )
    assert G3String("ab").blob().endswith(struct.pack("<Q", 2) + b"ab")
    assert G3Bool(True).blob()[-1:] == b"\x01"


def test_int_range() -> None:
    with pytest.raises(OverflowError):
        G3Int(1 << 63)


def test_big_endian_scalar_blob() -> None:
    blob = (b"\x00" + struct.pack(">IQ", 0x80000001, 5) + b"G3Int"
            + struct.pack(">III", 0x80000001, 1, 1) + struct.pack(">q", -7))
    assert decode_blob(blob) == G3Int(-7)


@pytest.mark.parametrize(
    "blob",
    [
        G3Int(5).blob() + b"\0",  # trailing byte
        G3Int(5).blob()[:-1],  # short payload
        G3Int(5).blob().replace(struct.pack("<III", 0x80000001, 1, 1),
                                struct.pack("<III", 0x80000001, 2, 1)),  # version 2
        G3String("abc").blob()[:-1],  # length says 3, 2 bytes follow
        b"",
        b"\x07garbage",
    ],
)
def test_unexpected_layouts_are_opaque_not_errors(blob: bytes) -> None:
    obj = decode_blob(blob)
    assert isinstance(obj, OpaqueObject)
    assert obj.blob() == blob


def test_opaque_class_name() -> None:
    blob = (b"\x01" + struct.pack("<IQ", 0x80000001, 14) + b"G3VectorDouble"
            + struct.pack("<III", 0x80000001, 1, 1) + b"\x00" * 12)
    obj = decode_blob(blob)
    assert isinstance(obj, OpaqueObject)
    assert obj.class_name == "G3VectorDouble"
    assert len(obj) == len(blob)
    assert blob_class_name(b"\x01" + struct.pack("<IQ", 0x80000001, 1 << 40)) is None


def test_python_values_become_objects_as_in_spt3g() -> None:
    assert type(to_object(True)) is G3Bool
    assert type(to_object(3)) is G3Int
    assert type(to_object(3.0)) is G3Double
    assert type(to_object("x")) is G3String
    assert to_python(G3Int(4)) == 4
    with pytest.raises(TypeError, match="NoneType"):
        to_object(None)
    with pytest.raises(TypeError, match="list"):
        to_object([1])
