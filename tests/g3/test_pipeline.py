"""G3Pipeline: spt3g's module semantics, EndProcessing, halting, closing modules."""

from __future__ import annotations

import pytest

from channelstream.g3 import G3Error, G3Frame, G3FrameType
from channelstream.g3.pipeline import G3Module, G3Pipeline, pipesegment
from tests.g3.helpers import make_frame

T, E = G3FrameType.Timepoint, G3FrameType.EndProcessing


def _source(n: int):
    count = [0]

    def source(frame):
        assert frame is None
        if count[0] >= n:
            return []
        count[0] += 1
        return make_frame(T, n=count[0])

    return source


class Collect:
    def __init__(self) -> None:
        self.frames: list[G3Frame] = []

    def __call__(self, frame: G3Frame) -> None:
        self.frames.append(frame)


def test_frames_flow_then_end_processing() -> None:
    sink = Collect()
    pipe = G3Pipeline()
    pipe.Add(_source(3))
    pipe.Add(sink)
    pipe.Run()
    assert [(f.type, f.get("n")) for f in sink.frames] == [(T, 1), (T, 2), (T, 3), (E, None)]
    with pytest.raises(G3Error, match="already been run"):
        pipe.Run()


def test_return_values() -> None:
    def module(frame: G3Frame):
        n = frame.get("n")
        if n == 1:
            return False  # dropped
        if n == 2:
            return True
        if n == 3:
            return [frame, make_frame(T, n=30)]
        if n == 4:
            return make_frame(T, n=40)
        return None

    sink = Collect()
    pipe = G3Pipeline()
    pipe.Add(_source(5))
    pipe.Add(module)
    pipe.Add(sink)
    pipe.Run()
    assert [f.get("n") for f in sink.frames] == [2, 3, 30, 40, 5, None]


def test_depth_first_order() -> None:
    trace = []

    def split(frame):
        return [frame, make_frame(T, n=frame.get("n", 0) * 10)] if frame.type == T else None

    def tag(frame):
        trace.append(frame.get("n"))

    pipe = G3Pipeline()
    pipe.Add(_source(2))
    pipe.Add(split)
    pipe.Add(tag)
    pipe.Run()
    assert trace == [1, 10, 2, 20, None]


def test_kwargs_classes_instances_and_segments() -> None:
    seen = []

    def with_args(frame, key, value):
        if frame.type == T:
            frame[key] = value

    class Scale(G3Module):
        def __init__(self, factor: int) -> None:
            self.factor = factor

        def Process(self, frame):
            if frame.type == T:
                frame["scaled"] = frame["n"] * self.factor

    @pipesegment
    def segment(pipe, factor=2):
        pipe.Add(Scale, factor=factor)
        pipe.Add(lambda frame: seen.append(dict(frame.items())))

    pipe = G3Pipeline()
    pipe.Add(_source(2))
    pipe.Add(with_args, key="tag", value="x")
    pipe.Add(segment, factor=3)
    pipe.Run()
    assert seen[:2] == [{"n": 1, "tag": "x", "scaled": 3}, {"n": 2, "tag": "x", "scaled": 6}]
    frame = make_frame(T, n=2)
    assert Scale(2)(frame) == [frame] and frame["scaled"] == 4  # spt3g: a call gives a list
    with pytest.raises(TypeError, match="cannot be passed"):
        G3Pipeline().Add(Scale(1), factor=2)
    with pytest.raises(G3Error, match="subprocess"):
        G3Pipeline().Add(Scale, subprocess=True, factor=1)


def test_end_processing_cannot_be_swallowed() -> None:
    def eat(frame):
        return []

    pipe = G3Pipeline()
    pipe.Add(_source(1))
    pipe.Add(eat)
    with pytest.raises(G3Error, match="No output on EndProcessing"):
        pipe.Run()

    def swap(frame):
        return [make_frame(T)] if frame.type == E else None

    pipe = G3Pipeline()
    pipe.Add(_source(1))
    pipe.Add(swap)
    with pytest.raises(G3Error, match="not an EndProcessing frame"):
        pipe.Run()

    sink = Collect()
    pipe = G3Pipeline()
    pipe.Add(_source(1))
    pipe.Add(lambda frame: False)  # False on EndProcessing lets it through
    pipe.Add(sink)
    pipe.Run()
    assert [f.type for f in sink.frames] == [E]


def test_halt_processing_and_bad_returns() -> None:
    def halting(frame):
        if frame.get("n") == 2:
            G3Pipeline.halt_processing()

    sink = Collect()
    pipe = G3Pipeline()
    pipe.Add(_source(100))
    pipe.Add(halting)
    pipe.Add(sink)
    pipe.Run()
    assert [f.get("n") for f in sink.frames] == [1, 2, None]

    pipe = G3Pipeline()
    pipe.Add(_source(1))
    pipe.Add(lambda frame: "text")
    with pytest.raises(TypeError, match="returned str"):
        pipe.Run()
    assert pipe.last_frame is not None and pipe.last_frame["n"] == 1


def test_modules_are_closed_after_a_failed_run() -> None:
    closed = []

    class Resource:
        def __call__(self, frame):
            raise RuntimeError("boom")

        def Close(self):
            closed.append(True)

    pipe = G3Pipeline()
    pipe.Add(_source(1))
    pipe.Add(Resource)
    with pytest.raises(RuntimeError, match="boom"):
        pipe.Run()
    assert closed == [True]


def test_profile_prints(capsys) -> None:
    pipe = G3Pipeline()
    pipe.Add(_source(2))
    pipe.Add(Collect())
    pipe.Run(profile=True)
    assert "Pipeline profiling results" in capsys.readouterr().out
