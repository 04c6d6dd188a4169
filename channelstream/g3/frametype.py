"""Frame types: ``G3FrameType``, spt3g's enum of one-character codes.

On the wire a frame type is a ``u32``; spt3g's standard types are ASCII
codes (``Timepoint`` = ``'T'`` = 84). spt3g also allows ad-hoc types of up
to four characters (``G3Frame("ABCD")``), right-justified: the last
character is the low byte. Any ``u32`` read from the wire is a valid
:class:`G3FrameType`; unknown codes become members named after their
characters (``G3FrameType(0x4142)`` is named ``"AB"``).

Timepoint and Scan frames are *data*: a streaming server may drop them for
a slow client and never replays them; every other type is *metadata*.
"""

from __future__ import annotations

import enum


class G3FrameType(enum.IntEnum):
    """spt3g's frame types (codes as in spt3g 1.0.2's ``G3Frame.h``)."""

    Timepoint = ord("T")
    Housekeeping = ord("H")
    Observation = ord("O")
    Scan = ord("S")
    Map = ord("M")
    InstrumentStatus = ord("I")
    PipelineInfo = ord("P")
    EndProcessing = ord("Z")
    Calibration = ord("C")
    Wiring = ord("W")
    GcpSlow = ord("G")
    Ephemeris = ord("E")
    LightCurve = ord("L")
    Statistics = ord("R")
    none = ord("N")

    @classmethod
    def _missing_(cls, value: object) -> G3FrameType | None:
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 0xFFFFFFFF:
            member = int.__new__(cls, value)
            member._name_ = adhoc_name(value)
            member._value_ = value
            return member
        return None

    @property
    def key(self) -> str:
        """The character code (the low byte, as spt3g's ``.key``)."""
        return chr(self.value & 0xFF)

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return f"G3FrameType.{self.name}"


def adhoc_name(code: int) -> str:
    """The printable name of a frame type code: its non-zero bytes, high first."""
    chars = [(code >> shift) & 0xFF for shift in (24, 16, 8, 0)]
    return "".join(chr(c) if 32 <= c < 127 else f"\\x{c:02x}" for c in chars if c)


def adhoc_type(code: str) -> G3FrameType:
    """The frame type of an ad-hoc code of 1 to 4 characters (spt3g's ``G3Frame("ABCD")``)."""
    raw = code.encode("latin-1") if isinstance(code, str) else bytes(code)
    if not 1 <= len(raw) <= 4:
        raise ValueError("an ad-hoc frame type must be 1 to 4 characters")
    return G3FrameType(int.from_bytes(raw, "big"))


#: Types a streaming server may drop for a slow client and never replays.
DATA_TYPES = frozenset({G3FrameType.Timepoint, G3FrameType.Scan})


def is_data(frame_type: int) -> bool:
    """True for Timepoint and Scan frames (droppable, not replayed)."""
    return frame_type in DATA_TYPES
