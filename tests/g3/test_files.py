"""Files: raw or compressed by name, written with a type filter, appended to."""

from __future__ import annotations

import pytest

from channelstream.g3 import FrameReader, FrameWriter, G3FrameType
from channelstream.g3.files import compression_of
from tests.g3.helpers import make_frame


def _frames(n: int, start: int = 0) -> list:
    return [make_frame(G3FrameType.Timepoint, n=i) for i in range(start, start + n)]


def test_compression_by_name() -> None:
    assert [compression_of(n) for n in ("a.g3", "a.g3.gz", "a.bz2", "x/a.g3.xz", "data")] == [
        None, "gz", "bz2", "xz", None]


@pytest.mark.parametrize("name", ["run.g3", "run.g3.gz", "run.g3.bz2", "run.g3.xz", "data"])
def test_files_round_trip(tmp_path, name: str) -> None:
    path = tmp_path / name
    with FrameWriter(path) as writer:
        for frame in _frames(50):
            writer.write(frame)
    assert [f["n"] for f in FrameReader(path)] == list(range(50))


def test_writer_streams_append_and_tell(tmp_path) -> None:
    path = tmp_path / "a.g3"
    with FrameWriter(path, streams=[G3FrameType.Wiring]) as writer:
        writer.write(make_frame(G3FrameType.Timepoint, n=0))
        writer.write(make_frame(G3FrameType.Wiring, n=1))
        assert writer.tell() == len(make_frame(G3FrameType.Wiring, n=1).encode())
    with FrameWriter(path, append=True) as writer:
        writer.write(make_frame(G3FrameType.Scan, n=2))
    assert [(f.type.name, f["n"]) for f in FrameReader(path)] == [("Wiring", 1), ("Scan", 2)]
    with pytest.raises(ValueError, match="append"):
        FrameWriter(tmp_path / "b.g3.gz", append=True)
