"""m_dump's names: mflow's for the first million, sorting in message order beyond."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from channelstream.mflow.dumpfiles import number, parse_name, part_name, read_dump

NUMBERS = st.integers(0, 10**12)


def test_mflow_names():
    assert part_name(0, 0) == "000000_000.raw"
    assert part_name(999_999, 999) == "999999_999.raw"
    assert part_name(1_000_000, 1000) == "a1000000_a1000.raw"
    assert part_name(12_345_678, 2) == "b12345678_002.raw"


@given(NUMBERS, NUMBERS, st.integers(0, 5000), st.integers(0, 5000))
def test_names_sort_as_their_numbers(a, b, pa, pb):
    assert (part_name(a, pa) < part_name(b, pb)) == ((a, pa) < (b, pb))
    assert parse_name(part_name(a, pa)) == (a, pa)


def test_too_large_or_negative():
    with pytest.raises(ValueError):
        number(-1, 6)
    with pytest.raises(ValueError):
        number(10**40, 6)


def test_parse_name_refuses_other_files():
    for name in ("x.raw", "000000_000.txt", "000000-000.raw", "000000_000.raw.tmp", "_0.raw"):
        assert parse_name(name) is None
    assert parse_name("1000000_000.raw") == (1_000_000, 0)  # mflow's own over-wide names


def test_read_dump_groups_parts_by_message_in_numeric_order(tmp_path):
    names = ["000002_000.raw", "000001_001.raw", "1000000_000.raw", "000001_000.raw",
             "999999_000.raw", "a1000001_000.raw", "readme.txt"]
    for name in names:
        (tmp_path / name).write_bytes(name.encode())
    (tmp_path / "000003_000.raw").mkdir()
    got = [(n, [p.rsplit("/", 1)[1] for p in paths]) for n, paths in read_dump(str(tmp_path))]
    assert got == [(1, ["000001_000.raw", "000001_001.raw"]), (2, ["000002_000.raw"]),
                   (999_999, ["999999_000.raw"]), (1_000_000, ["1000000_000.raw"]),
                   (1_000_001, ["a1000001_000.raw"])]
