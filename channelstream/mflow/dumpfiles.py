"""m_dump's folder layout: one file per part, named so that names sort in message order.

Layout (mflow's)::

    folder/{message:06d}_{part:03d}.raw      message and part numbers from 0

``m_dump -s N`` keeps only the parts numbered below ``N - 1`` (mflow's "skip
from the Nth part"), so a message may have fewer files than it had parts.

mflow's counter simply grew to seven digits after message 999,999, and
``1000000_000.raw`` sorts before ``999999_000.raw``. Here a number too wide
for its field gets a letter saying how many digits too wide it is, and
letters sort after digits: ``999999`` < ``a1000000`` < ``a9999999`` <
``b10000000``; parts past 999 likewise (``a1000``). Plain ``sorted()`` of
the names, as mflow's m_replay does, is therefore message order, and the
first million messages keep mflow's exact names.

:func:`read_dump` accepts both, and also mflow's own over-wide names (it
sorts by the numbers, not by the names).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator

MESSAGE_WIDTH = 6
PART_WIDTH = 3
SUFFIX = ".raw"
_NAME = re.compile(r"^([a-z]?)(\d+)_([a-z]?)(\d+)\.raw$")


def number(value: int, width: int) -> str:
    """``value`` zero-padded to ``width``, or letter-prefixed when wider (see above)."""
    if value < 0:
        raise ValueError("numbers in dump names are not negative")
    text = str(value)
    if len(text) <= width:
        return text.zfill(width)
    extra = len(text) - width
    if extra > 26:
        raise ValueError(f"{value} is too large for a dump name")
    return chr(ord("a") + extra - 1) + text


def part_name(message: int, part: int) -> str:
    """The file name of part ``part`` of message ``message``."""
    return f"{number(message, MESSAGE_WIDTH)}_{number(part, PART_WIDTH)}{SUFFIX}"


def parse_name(name: str) -> tuple[int, int] | None:
    """(message, part) of a dump file name, or None if it is not one."""
    match = _NAME.match(name)
    if match is None:
        return None
    return int(match.group(2)), int(match.group(4))


def read_dump(folder: str) -> Iterator[tuple[int, list[str]]]:
    """(message number, paths of its parts in order) for each message of a dump, in order.

    Files that are not named like dump parts are ignored.
    """
    entries = []
    with os.scandir(folder) as scan:
        for entry in scan:
            numbers = parse_name(entry.name)
            if numbers is not None and entry.is_file():
                entries.append((numbers, entry.path))
    entries.sort()
    current, paths = None, []
    for (message, _part), path in entries:
        if message != current and paths:
            yield current, paths
            paths = []
        current = message
        paths.append(path)
    if paths:
        yield current, paths


def count_parts(folder: str) -> int:
    """How many dump part files ``folder`` holds (0 if it does not exist)."""
    if not os.path.isdir(folder):
        return 0
    with os.scandir(folder) as scan:
        return sum(1 for entry in scan if parse_name(entry.name) is not None)
