"""``G3Pipeline`` and ``G3Module``: spt3g's processing chain, in Python.

Semantics of spt3g 1.0.2 (``G3Pipeline.cxx``, ``modconstruct.py``):

* ``pipe.Add(x, **kwargs)``: ``x`` is a G3Module instance, a G3Module or
  other class (instantiated with ``kwargs``), a function (called as
  ``x(frame, **kwargs)``), a callable instance (no ``kwargs``), or a
  ``@pipesegment`` (called as ``x(pipe, **kwargs)`` to add its modules).
* ``Run()``: the first module is called with ``None`` and returns frames;
  each is pushed through the following modules depth-first, in order.
  When the first module returns nothing, an EndProcessing frame goes
  through the others (from the second), and the pipeline is spent: it
  runs once.
* A module returns ``None`` or ``True`` (pass the frame on), ``False`` or
  ``[]`` (drop it), a frame, or an iterable of frames. EndProcessing may
  not be swallowed: ``False`` lets it through, and a module that returns
  other frames must end them with it.
* ``signal_halt`` (default): SIGINT stops the pipeline after the frame in
  flight (a second SIGINT interrupts); ``G3Pipeline.halt_processing()``
  does the same from code.

Not carried over: the PipelineInfo frame spt3g inserts after the first
module (it records spt3g's version and the modules' arguments in a class
this library does not encode), ``subprocess=True``, and the graph option.
After ``Run`` (normally or by an exception) every module with a
``Close()`` method is closed, so its sockets and threads end with the run.
"""

from __future__ import annotations

import inspect
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from .errors import G3Error
from .frame import G3Frame
from .frametype import G3FrameType

log = logging.getLogger(__name__)


class G3Module:
    """Base class of pipeline modules: implement ``Process(frame)``.

    Calling a module (``module(frame)``) runs ``Process`` and returns its
    output as a list of frames, as spt3g's ``G3Module.__call__`` does.
    """

    __g3module__ = True

    def Process(self, frame: G3Frame | None) -> Any:
        raise NotImplementedError(f"{type(self).__name__} has no Process method")

    def __call__(self, frame: G3Frame | None) -> list[G3Frame]:
        return outputs(self.Process(frame), frame, type(self).__name__)


def outputs(result: Any, frame: G3Frame | None, name: str = "module") -> list[G3Frame]:
    """A module's return value as the list of frames it passes on."""
    if result is None or result is True:
        return [] if frame is None else [frame]
    if result is False:
        if frame is not None and frame.type == G3FrameType.EndProcessing:
            return [frame]
        return []
    if isinstance(result, G3Frame):
        return [result]
    if isinstance(result, Iterable) and not isinstance(result, (str, bytes)):
        frames = list(result)
        for item in frames:
            if not isinstance(item, G3Frame):
                raise TypeError(f"{name} returned {type(item).__name__} among its frames")
        return frames
    if isinstance(result, (int, float)):  # a truthy value other than True
        return [] if frame is None else [frame]
    raise TypeError(f"{name} returned {type(result).__name__}, not frames, None or a bool")


def pipesegment(func: Callable[..., Any]) -> Callable[..., Any]:
    """Mark ``func(pipe, **kwargs)`` as a segment: ``pipe.Add(func)`` lets it add modules."""
    func.__pipesegment__ = True  # type: ignore[attr-defined]
    return func


pipesegment_nodoc = pipesegment


def indexmod(func: Any) -> Any:
    """spt3g's documentation marker for modules; does nothing else."""
    func.__g3module__ = True
    return func


def usefulfunc(func: Any) -> Any:
    """spt3g's documentation marker for functions; does nothing else."""
    func.__g3usefulfunc__ = True
    return func


def build_module(obj: Any, name: str, kwargs: dict[str, Any]) -> Callable[[Any], Any]:
    """A callable ``f(frame) -> return value`` for whatever ``Add`` was given."""
    if isinstance(obj, G3Module):
        if kwargs:
            raise TypeError(f"{name}: arguments cannot be passed to a module instance")
        return obj.Process
    if inspect.isclass(obj):
        instance = obj(**kwargs)
        if isinstance(instance, G3Module):
            return instance.Process
        if not callable(instance):
            raise TypeError(f"{name}: instances of {obj.__name__} are not callable")
        return instance
    if not callable(obj):
        raise TypeError(f"{name}: not a module, a class or a callable: {obj!r}")
    if inspect.isfunction(obj) or inspect.ismethod(obj) or inspect.isbuiltin(obj):
        if kwargs:
            return lambda frame: obj(frame, **kwargs)
        return obj
    if kwargs:
        raise TypeError(f"{name}: arguments cannot be passed to a callable instance")
    return obj


class _Stage:
    __slots__ = ("name", "func", "owner", "frames", "seconds")

    def __init__(self, name: str, func: Callable[[Any], Any], owner: Any) -> None:
        self.name = name
        self.func = func
        self.owner = owner  # the object to Close() after the run
        self.frames = 0
        self.seconds = 0.0


class G3Pipeline:
    """A chain of modules (see the module doc)."""

    _halt = False

    def __init__(self) -> None:
        self._stages: list[_Stage] = []
        self._ran = False
        self._prefix = ""
        #: the frame being processed when a module raised
        self.last_frame: G3Frame | None = None

    def Add(self, module: Any, name: str | None = None, subprocess: bool = False,
            **kwargs: Any) -> None:
        """Add a module, class, callable or pipe segment (keyword arguments go to it)."""
        if subprocess:
            raise G3Error("subprocess=True is not supported by channelstream.g3")
        if self._ran:
            raise G3Error("the pipeline has already run")
        callable_name = getattr(module, "__name__", None) or type(module).__name__
        name = self._prefix + (name or f"{getattr(module, '__module__', '') or ''}.{callable_name}")
        if getattr(module, "__pipesegment__", False):
            outer, self._prefix = self._prefix, name + "/"
            try:
                module(self, **kwargs)
            finally:
                self._prefix = outer
            return
        func = build_module(module, name, kwargs)
        owner = getattr(func, "__self__", None)
        if owner is None:
            owner = func
        self._stages.append(_Stage(name, func, owner))

    @staticmethod
    def halt_processing() -> None:
        """Stop every running pipeline after the frames in flight."""
        G3Pipeline._halt = True

    def Run(self, profile: bool = False, graph: bool = False,
            signal_halt: bool = True) -> None:
        """Run the pipeline to its end (see the module doc). It runs once."""
        if self._ran:
            raise G3Error("Pipeline has already been run and needs to be re-initialized")
        if not self._stages:
            raise G3Error("No mods present when running pipeline")
        self._ran = True
        previous = self._catch_sigint() if signal_halt else None
        try:
            stages = self._stages
            while not G3Pipeline._halt:
                if not self._push(None, 0, profile):
                    break
            if len(stages) > 1:
                self._push(G3Frame(G3FrameType.EndProcessing), 1, profile)
        finally:
            G3Pipeline._halt = False
            if previous is not None:
                signal.signal(signal.SIGINT, previous)
            self._close_all()
        if profile:
            self._print_profile()

    def _push(self, frame: G3Frame | None, index: int, profile: bool) -> int:
        stage = self._stages[index]
        start = time.perf_counter() if profile else 0.0
        try:
            result = stage.func(frame)
            out = outputs(result, frame, stage.name)
        except BaseException:
            self.last_frame = frame
            log.warning("exception in module %s", stage.name)
            raise
        if profile:
            stage.seconds += time.perf_counter() - start
            stage.frames += 1
        if frame is not None and frame.type == G3FrameType.EndProcessing:
            if not out:
                raise G3Error(f'No output on EndProcessing frame in module "{stage.name}"')
            if out[-1].type != G3FrameType.EndProcessing:
                raise G3Error(
                    f'Last queued output frame from module "{stage.name}" on EndProcessing '
                    "not an EndProcessing frame."
                )
        if index + 1 < len(self._stages):
            for item in out:
                self._push(item, index + 1, profile)
        return len(out)

    def _catch_sigint(self) -> Any:
        if threading.current_thread() is not threading.main_thread():
            return None
        try:
            previous = signal.getsignal(signal.SIGINT)

            def on_sigint(signum: int, _frame: Any) -> None:
                log.warning("SIGINT received: halting data processing after the current "
                            "frame; send SIGINT again to abort at once")
                G3Pipeline._halt = True
                signal.signal(signal.SIGINT, signal.default_int_handler)

            signal.signal(signal.SIGINT, on_sigint)
            return previous
        except ValueError:
            return None

    def _close_all(self) -> None:
        for stage in self._stages:
            close = getattr(stage.owner, "Close", None)
            if callable(close):
                try:
                    close()
                except Exception:
                    log.exception("closing module %s failed", stage.name)

    def _print_profile(self) -> None:
        print("Pipeline profiling results:")
        total = 0.0
        for stage in self._stages:
            per = stage.seconds / stage.frames if stage.frames else 0.0
            print(f"{stage.name}: {stage.seconds:.6f} s, {stage.frames} frames "
                  f"({per:.6f} s per input frame)")
            total += stage.seconds
        print(f"Total: {total:.6f} s")

    def __repr__(self) -> str:
        return f"<G3Pipeline of {len(self._stages)} modules>"
