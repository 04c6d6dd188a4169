"""The spt3g 1.0.2 side of the interop tests: a script run in its own process.

It imports ``spt3g.core`` (never this project) and talks JSON lines::

    python spt3g_peer.py write PATH FRAMES        write FRAMES with G3Writer
    python spt3g_peer.py read SOURCE [OPTIONS]    read with G3Reader, print each frame
    python spt3g_peer.py send HOST PORT FRAMES [OPTIONS]
                                                  send FRAMES with G3NetworkSender
                                                  (or G3ThrottledNetworkSender)

FRAMES is a JSON list of ``{"type": "Timepoint", "objects": {name: [class, value]}}``
(classes: G3Int, G3Double, G3Bool, G3String, G3VectorDouble, G3VectorInt,
G3VectorString, G3MapDouble, G3Timestream). Printed frames are
``{"frame": {"type": ..., "objects": {name: [class, value]}}}``; other lines are
``{"event": ...}``. Options (JSON in ``--options``):

* read: ``timeout`` (G3Reader's), ``stall`` (wait for a line on stdin after
  the first frame, before taking more);
* send: ``max_queue_size``, ``decimation`` ({type name: N}: throttled
  sender), ``wait`` (wait for a line on stdin before the first frame), ``pace``
  (seconds between frames).
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np
from spt3g import core

CLASSES = {
    "G3Int": core.G3Int,
    "G3Double": core.G3Double,
    "G3Bool": core.G3Bool,
    "G3String": core.G3String,
    "G3VectorDouble": core.G3VectorDouble,
    "G3VectorInt": core.G3VectorInt,
    "G3VectorString": core.G3VectorString,
    "G3MapDouble": core.G3MapDouble,
    "G3Timestream": lambda v: core.G3Timestream(np.asarray(v, dtype=float)),
}


def emit(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def make_frame(spec):
    frame = core.G3Frame(getattr(core.G3FrameType, spec["type"]))
    for name, (cls, value) in spec.get("objects", {}).items():
        frame[name] = CLASSES[cls](value)
    return frame


def describe(frame):
    objects = {}
    for name in frame.keys():
        value = frame[name]
        if isinstance(value, bool):
            objects[name] = ["G3Bool", value]
        elif isinstance(value, int):
            objects[name] = ["G3Int", value]
        elif isinstance(value, float):
            objects[name] = ["G3Double", value]
        elif isinstance(value, str):
            objects[name] = ["G3String", value]
        elif isinstance(value, core.G3Timestream):
            objects[name] = ["G3Timestream", np.asarray(value).tolist()]
        elif isinstance(value, core.G3MapDouble):
            objects[name] = ["G3MapDouble", dict(value)]
        else:
            try:
                objects[name] = [type(value).__name__, list(value)]
            except TypeError:  # G3PipelineInfo and others
                objects[name] = [type(value).__name__, str(value)]
    return {"type": frame.type.name, "objects": objects}


def cmd_write(path, frames):
    writer = core.G3Writer(path)
    for spec in frames:
        writer(make_frame(spec))
    writer(core.G3Frame(core.G3FrameType.EndProcessing))
    del writer
    emit({"event": "written"})


def cmd_read(source, options):
    kwargs = {}
    if "timeout" in options:
        kwargs["timeout"] = options["timeout"]
    stalled = [bool(options.get("stall"))]

    def show(frame):
        if frame.type != core.G3FrameType.EndProcessing:
            emit({"frame": describe(frame)})
            if stalled[0]:
                emit({"event": "stalled"})
                sys.stdin.readline()
                stalled[0] = False

    emit({"event": "reading"})
    pipe = core.G3Pipeline()
    pipe.Add(core.G3Reader, filename=source, **kwargs)
    pipe.Add(show)
    pipe.Run()
    emit({"event": "end"})


def cmd_send(host, port, frames, options):
    queue = options.get("max_queue_size", 0)
    if "decimation" in options:
        decimation = {getattr(core.G3FrameType, k): v for k, v in options["decimation"].items()}
        sender = core.G3ThrottledNetworkSender(
            hostname=host, port=port, max_queue_size=queue, frame_decimation=decimation
        )
    else:
        sender = core.G3NetworkSender(hostname=host, port=port, max_queue_size=queue)
    pending = list(frames)
    first = [True]

    def source(frame):
        if first[0]:
            first[0] = False
            emit({"event": "ready"})
            if options.get("wait"):
                sys.stdin.readline()
        if not pending:
            return []
        if options.get("pace"):
            time.sleep(options["pace"])
        return [make_frame(pending.pop(0))]

    pipe = core.G3Pipeline()
    pipe.Add(source)
    pipe.Add(sender)
    pipe.Run()
    emit({"event": "sent"})


def main(argv):
    command = argv[0]
    if command == "write":
        cmd_write(argv[1], json.loads(argv[2]))
    elif command == "read":
        source = json.loads(argv[1]) if argv[1].startswith("[") else argv[1]
        cmd_read(source, json.loads(argv[2]) if len(argv) > 2 else {})
    elif command == "send":
        options = json.loads(argv[4]) if len(argv) > 4 else {}
        cmd_send(argv[1], int(argv[2]), json.loads(argv[3]), options)
    else:
        raise SystemExit(f"unknown command {command!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
