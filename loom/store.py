"""Streams on disk: an append-only data file and a metadata file per stream.

Layout under ``loom.storage_dir``::

    streams/<id>.data    the stream's bytes (raw, or zlib frames: loom.frames)
    streams/<id>.json    {"id", "metadata", "state", "created", "ended",
                          "size", "stored", "compression", "reason"}

A stream id is validated before it touches a path (:func:`check_id`):
letters, digits, ``.``, ``_``, ``-``, starting with a letter or digit, at
most :data:`MAX_ID_LENGTH` characters, so no id can name another folder.

States are explicit: ``live`` while its producer uploads, then ``finished``
(the upload ended cleanly) or ``aborted`` (the producer's connection
dropped, the stream was replaced or deleted while live, or the server
restarted while it was live). The metadata file is rewritten (atomically:
temporary file, rename) at each state change; the data file is appended
with one ``write`` per chunk as the upload arrives, so a reader (and a
process restarted after SIGKILL) finds every byte a reader could have seen.

``loom.fsync`` says what survives a power loss (or a kernel crash); fsync
runs in gevent's thread pool, so it stalls only the request that waits for it:

- ``never``: nothing is fsynced. A stream may come back shorter, in an
  earlier state (a finished one as aborted "server restarted"), not at all,
  and a deleted or purged one may come back.
- ``finish`` (the default): before the 201 of its ``POST``, a new stream's
  metadata file and the folder (its names, and the removal of a stream it
  replaced) are fsynced; before a stream says it ended (its state in
  ``GET /streams/<id>``, the ``X-Stream-State`` trailer of its upload and
  of its tails, the spy's ``END``), its data file, then its new metadata
  file (fsynced before it is renamed over the old one), then the folder
  are; before ``DELETE`` answers (and before a purge returns), the folder
  is, after the unlinks. So an acknowledged stream exists, a finished one
  comes back finished with every byte, an aborted one aborted, a deleted
  one stays deleted; a stream that was live comes back aborted ("server
  restarted") with whatever part of its data the disk had (maybe none).
- ``always``: as ``finish``, and each chunk is fsynced before any reader
  is told of it (and before the next chunk is read from the producer): a
  stream that was live comes back with at least every byte a reader was sent.

On :meth:`Store.open`, streams found ``live`` become ``aborted`` ("server
restarted") with the size of what is on disk (a partial compressed frame is
cut off). Retention (:meth:`Store.purge`) removes the oldest ended streams
by age and by total stored bytes; live streams are never purged.

The store imports nothing of the hub or of HTTP: the door passes a
``notify(stream, event)`` callback, called after each change with event
``"start"``, ``"data"``, ``"end"`` or ``"delete"`` (its files were
removed: deleted, replaced or purged; a live one had its ``"end"``
first). All methods run in the process's
gevent thread and do not yield except where they say so.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gevent
from gevent.lock import Semaphore

from . import frames
from .disk import (
    fd_limit,
    in_pool,
    open_fds,
    out_of_fds,
    sync_dir,
    sync_file,
    write_all,
    write_back,
    write_synced,
)
from .errors import NoSuchStream, OutOfFileDescriptors, StoreError, StreamExists, TooManyStreams
from .ids import check_id, new_id

log = logging.getLogger(__name__)

LIVE = "live"
FINISHED = "finished"
ABORTED = "aborted"
STATES = (LIVE, FINISHED, ABORTED)

FSYNC_NEVER, FSYNC_FINISH, FSYNC_ALWAYS = "never", "finish", "always"

#: A data write slower than this (seconds) sends writes to the thread pool...
SLOW_WRITE = 0.002
#: ...for this long (seconds) after it.
SLOW_WRITE_HOLD = 1.0
#: Default of ``Store.cache_window`` (``loom.cache_window``).
CACHE_WINDOW = 32 * 1024 * 1024
#: Chunks at least this big are compressed in the thread pool.
POOL_COMPRESS = 16 * 1024
#: Frames stored as is after one that did not shrink, before trying again.
INCOMPRESSIBLE_SKIP = 16
#: File descriptors an upload holds: its connection and its data file.
FDS_PER_UPLOAD = 2
#: Default of ``Store.fd_reserve`` (``loom.fd_reserve``).
FD_RESERVE = 128

Notify = Callable[["Stream", str], None]


@dataclass(eq=False)
class Stream:
    """One stream instance. A replaced stream's object lives on for its readers.

    ``size`` counts raw bytes, ``stored`` the bytes of the data file that hold
    them (equal without compression); readers never read past ``stored``.
    """

    id: str
    metadata: Any
    state: str
    created: float
    compression: str
    data_path: Path
    ended: float | None = None
    size: int = 0
    stored: int = 0
    reason: str | None = None
    fd: int | None = None
    #: an append is writing in the thread pool (the fd must stay open)
    writing: bool = False
    #: an fd detached by an end during such a write, closed when it returns
    orphan_fd: int | None = None
    #: bytes of the data file written back to the disk (Store.cache_window)
    flushed: int = 0
    #: a write-back of this stream is running (one at a time)
    flushing: bool = False
    #: zlib frames to store as is before trying to compress again
    skip_compress: int = 0
    #: the last frames readers decoded (file offset -> (raw bytes, next offset)),
    #: so that the tailers of a compressed stream decode each frame once
    decoded: dict[int, tuple[bytes, int]] = field(default_factory=dict, repr=False)
    #: held by the reader decoding a frame (a large one in the thread pool,
    #: yielding), so that readers woken with it wait for it in ``decoded``
    decoding: Semaphore = field(default_factory=Semaphore, repr=False)
    #: the last bytes a reader read of an uncompressed stream (file offset,
    #: end offset, bytes), so that tailers woken together read the file once
    last_read: tuple[int, int, bytes] | None = field(default=None, repr=False)
    #: its end is being made durable (still ``live`` until it is; no appends)
    ending: bool = False
    #: metadata writes begun; only the last one begun may rename its file
    meta_writes: int = 0

    @property
    def live(self) -> bool:
        return self.state == LIVE

    def info(self) -> dict[str, Any]:
        """The JSON-able description (``GET /streams``, the metadata file)."""
        return {
            "id": self.id,
            "metadata": self.metadata,
            "state": self.state,
            "created": self.created,
            "ended": self.ended,
            "size": self.size,
            "stored": self.stored,
            "compression": self.compression,
            "reason": self.reason,
        }


class Store:
    """Every stream under one folder; see the module doc.

    :param root: ``loom.storage_dir``.
    :param fsync: ``never``, ``finish`` or ``always``: what each one
        guarantees after a power loss is in the module doc.
    :param compression: ``none`` or ``zlib`` for new streams (a stream keeps
        the format it was written with).
    :param notify: called as ``notify(stream, event)`` after each change.
    :param cache_window: how much of a stream stays in the page cache. Each
        time that many bytes have been appended, the data is written back to
        the disk (in the thread pool) and all but the last ``cache_window``
        bytes leave the page cache; a GET of a finished stream drops what it
        has sent (:func:`loom.disk.drop_cached`). 0 = the kernel decides. Uploads and
        GETs then recycle the same pages: a fresh page-cache page cost 5-8 us
        here (most likely a VM host backing memory it had taken back), which
        halved ingest in every other run; a recycled one costs nothing.
    :param fd_reserve: file descriptors of the process's ``RLIMIT_NOFILE``
        that uploads leave free (:meth:`create` refuses one with
        :class:`OutOfFileDescriptors` past that), and readers
        (:meth:`admit_reader`).
    """

    def __init__(
        self,
        root: Path,
        *,
        fsync: str = FSYNC_FINISH,
        compression: str = frames.NONE,
        level: int = 1,
        max_live: int = 10000,
        notify: Notify | None = None,
        cache_window: int = CACHE_WINDOW,
        fd_reserve: int = FD_RESERVE,
    ) -> None:
        if fsync not in (FSYNC_NEVER, FSYNC_FINISH, FSYNC_ALWAYS):
            raise ValueError(f"bad fsync policy {fsync!r}")
        if compression not in frames.COMPRESSIONS:
            raise ValueError(f"bad compression {compression!r}")
        self.root = Path(root)
        self.folder = self.root / "streams"
        self.fsync = fsync
        self.compression = compression
        self.level = level
        self.max_live = max_live
        self.cache_window = cache_window
        self.fd_reserve = fd_reserve
        self.notify: Notify = notify or (lambda stream, event: None)
        self._streams: dict[str, Stream] = {}
        self._live = 0
        self.purged = 0
        #: times a write was slow enough to send writes to the thread pool
        self.slow_writes = 0
        #: the longest inline data write, in seconds
        self.slowest_write = 0.0
        self._slow_until = 0.0

    # -- startup ------------------------------------------------------------

    def open(self) -> None:
        """Create the folder and load every stream; streams found live become aborted
        (durably, as the policy says). May yield."""
        self.folder.mkdir(parents=True, exist_ok=True)
        for path in sorted(self.folder.glob("*.json")):
            try:
                self._load(path)
            except (OSError, ValueError, KeyError, TypeError, StoreError) as err:
                log.warning("loom: skipping unreadable stream file %s: %s", path.name, err)
        for path in self.folder.glob("*.tmp"):
            path.unlink(missing_ok=True)
        if self.fsync != FSYNC_NEVER:
            sync_dir(self.folder)  # the folder itself, its leftovers removed
            sync_dir(self.root)

    def read_stream(self, path: Path) -> Stream:
        """A stream as its metadata file ``path`` describes it (not registered).

        :raises OSError, ValueError, KeyError, TypeError, StoreError: unreadable.
        """
        info = json.loads(path.read_text(encoding="utf-8"))
        stream_id = check_id(info["id"])
        if path.name != f"{stream_id}.json" or info["state"] not in STATES:
            raise ValueError("id or state does not match the file")
        compression = info.get("compression", frames.NONE)
        if compression not in frames.COMPRESSIONS:
            raise ValueError(f"unknown compression {compression!r}")
        return Stream(
            id=stream_id,
            metadata=info.get("metadata"),
            state=info["state"],
            created=float(info["created"]),
            compression=compression,
            data_path=self.folder / f"{stream_id}.data",
            ended=info.get("ended"),
            size=int(info.get("size", 0)),
            stored=int(info.get("stored", 0)),
            reason=info.get("reason"),
        )

    def _load(self, path: Path) -> None:
        stream = self.read_stream(path)
        stream_id = stream.id
        self._streams[stream_id] = stream
        if stream.state == LIVE:
            self._recover(stream)
            stream.state, stream.reason = ABORTED, "server restarted while the stream was live"
            stream.ended = time.time()
            self._write_meta(stream, sync=self.fsync != FSYNC_NEVER)
            log.info(
                "loom: stream %s was live at restart: aborted, %d bytes", stream_id, stream.size
            )

    def _recover(self, stream: Stream) -> None:
        """Size a data file left by a process that died (cut a partial frame)."""
        try:
            fd = os.open(stream.data_path, os.O_RDWR)
        except FileNotFoundError:
            stream.size = stream.stored = 0
            return
        try:
            length = os.fstat(fd).st_size
            if stream.compression == frames.ZLIB:
                stored, raw = frames.scan(fd, length)
                if stored < length:
                    os.ftruncate(fd, stored)
                stream.stored, stream.size = stored, raw
            else:
                stream.stored = stream.size = length
        finally:
            os.close(fd)

    # -- queries --------------------------------------------------------------

    def get(self, stream_id: str) -> Stream:
        """The current stream of that id; :class:`NoSuchStream` if none."""
        stream = self._streams.get(check_id(stream_id))
        if stream is None:
            raise NoSuchStream(stream_id)
        return stream

    def find(self, stream_id: str) -> Stream | None:
        """The current stream of that id, or None (no validation)."""
        return self._streams.get(stream_id)

    def streams(self) -> list[Stream]:
        """Every stream, oldest first."""
        return sorted(self._streams.values(), key=lambda s: s.created)

    def live_streams(self) -> list[Stream]:
        return [s for s in self.streams() if s.live]

    @property
    def stored_bytes(self) -> int:
        return sum(s.stored for s in self._streams.values())

    # -- file descriptors ---------------------------------------------------------

    def check_fds(self, need: int = FDS_PER_UPLOAD) -> None:
        """Refuse work that needs ``need`` more file descriptors when fewer than
        ``fd_reserve`` of the process's limit would then be left.

        Counts the open descriptors (:func:`loom.disk.open_fds`).
        :raises OutOfFileDescriptors: 503 naming the limit and the reserve.
        """
        limit, count = fd_limit(), open_fds()
        if count is not None and count + need > limit - self.fd_reserve:
            raise OutOfFileDescriptors(count, limit, self.fd_reserve)

    def admit_reader(self, fd: int) -> None:
        """Refuse a reader whose data file got descriptor ``fd`` if that proves
        that fewer than ``fd_reserve`` are free (no descriptor below ``fd`` is:
        the kernel gives the lowest free one), without counting them.

        :raises OutOfFileDescriptors: the caller closes ``fd``.
        """
        limit = fd_limit()
        if fd + 1 > limit - self.fd_reserve:
            raise OutOfFileDescriptors(fd + 1, limit, self.fd_reserve)

    def out_of_fds(self, err: OSError) -> OutOfFileDescriptors | None:
        """The 503 to raise for ``err`` if it is EMFILE/ENFILE, else None."""
        return OutOfFileDescriptors(None, fd_limit(), self.fd_reserve) if out_of_fds(err) else None

    # -- producers --------------------------------------------------------------

    def create(
        self, stream_id: str | None, metadata: Any, *, force: bool = False
    ) -> tuple[Stream, bool]:
        """Create a live stream; return it and whether it replaced another.

        Under ``loom.fsync`` finish/always its metadata file and the folder
        are fsynced before it returns (this yields; the stream is already
        registered, so its id is taken meanwhile): the caller then says 201.

        :raises BadStreamId: a bad id. :raises StreamExists: taken, no force.
        :raises TooManyStreams: ``max_live`` live streams already.
        :raises OutOfFileDescriptors: fewer than ``fd_reserve`` would be left.
        """
        if stream_id is None:
            stream_id = new_id()
            while stream_id in self._streams:  # 64 random bits: never in practice
                stream_id = new_id()
        check_id(stream_id)
        old = self._streams.get(stream_id)
        if old is not None and not force:
            raise StreamExists(stream_id)
        if self._live >= self.max_live:
            raise TooManyStreams(self.max_live)
        self.check_fds()
        if old is not None:
            self._remove(old, "replaced by a new stream with the same id")
        stream = Stream(
            id=stream_id,
            metadata=metadata,
            state=LIVE,
            created=time.time(),
            compression=self.compression,
            data_path=self.folder / f"{stream_id}.data",
        )
        # one writer per file, which only ever writes at its end
        try:
            stream.fd = os.open(stream.data_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        except OSError as err:
            raise self.out_of_fds(err) or err from None
        self._streams[stream_id] = stream
        self._live += 1
        # the metadata file, renamed into place, then the folder (yields)
        self._write_meta(stream, sync=self.fsync != FSYNC_NEVER)
        if stream.live:  # not deleted or replaced meanwhile
            self.notify(stream, "start")
        return stream, old is not None

    def append(self, stream: Stream, data: bytes | memoryview) -> None:
        """Append ``data`` to a live stream (ignored once it is not live).

        A write to the page cache takes microseconds and runs inline; once
        one took longer than :data:`SLOW_WRITE` (the kernel throttles writers
        while a slow disk catches up with dirty pages), writes go through
        gevent's thread pool for :data:`SLOW_WRITE_HOLD` seconds, so that
        they stall only their producer, never the event loop. May yield.
        One producer per stream: calls for one stream must not overlap. If
        the stream ends meanwhile (replaced, deleted, server stopping), the
        bytes in flight are not counted. Under ``loom.fsync = always`` the
        bytes are fsynced before they are counted (``stored``), so no reader
        can read them before they are on the disk.
        """
        fd = stream.fd
        if fd is None or not data:
            return
        if stream.writing:
            raise RuntimeError(f"stream {stream.id}: appends overlap (one producer per stream)")
        if stream.compression == frames.ZLIB:
            pieces = [
                data[start : start + frames.MAX_FRAME_RAW]
                for start in range(0, len(data), frames.MAX_FRAME_RAW)
            ]
        else:
            pieces = [data]
        always = self.fsync == FSYNC_ALWAYS
        held_stored = held_raw = 0  # under "always", counted only once fsynced
        stream.writing = True
        try:
            for chunk in pieces:
                raw = len(chunk)
                piece = self._encode(stream, chunk) if stream.compression == frames.ZLIB else chunk
                if stream.fd is not fd:
                    return
                if time.monotonic() < self._slow_until:
                    in_pool(write_all, fd, piece)
                else:
                    began = time.monotonic()
                    write_all(fd, piece)
                    took = time.monotonic() - began
                    self.slowest_write = max(self.slowest_write, took)
                    if took > SLOW_WRITE:
                        self._slow_until = time.monotonic() + SLOW_WRITE_HOLD
                        self.slow_writes += 1
                if stream.fd is not fd:
                    return
                if always:
                    held_stored += len(piece)
                    held_raw += raw
                else:
                    stream.stored += len(piece)
                    stream.size += raw
            if always:
                sync_file(fd)  # before any reader can read these bytes
                if stream.fd is not fd:
                    return
                stream.stored += held_stored
                stream.size += held_raw
            if (
                self.cache_window
                and not stream.flushing
                and stream.stored - stream.flushed >= self.cache_window
            ):
                # beside the upload, not in its way: an fdatasync of a window
                # takes ~15 ms, which tailers would otherwise wait for
                stream.flushing = True
                gevent.spawn(self._flush, stream, os.dup(fd), stream.stored)
        finally:
            stream.writing = False
            if stream.orphan_fd is not None:
                orphan, stream.orphan_fd = stream.orphan_fd, None
                os.close(orphan)
        if stream.fd is fd:
            self.notify(stream, "data")

    def _flush(self, stream: Stream, fd: int, end: int) -> None:
        """Write ``stream``'s data back up to ``end`` and drop the part before
        the last ``cache_window`` bytes from the page cache (tailers read the
        recent part; readers further behind read the disk). ``fd`` is this
        job's own duplicate: the stream may end, and close its own, meanwhile.
        """
        keep_from = max(0, end - self.cache_window)
        drop_from = max(0, stream.flushed - self.cache_window)
        try:
            in_pool(write_back, fd, drop_from, keep_from)
            stream.flushed = end
        except OSError as err:
            if err.errno != errno.EINVAL:  # EINVAL: a filesystem without them
                log.warning("loom: stream %s: write-back failed: %s", stream.id, err)
        finally:
            os.close(fd)
            stream.flushing = False

    def _encode(self, stream: Stream, chunk: bytes | memoryview) -> bytes:
        """A zlib frame of ``chunk``; large ones are compressed in the thread pool
        (zlib releases the GIL: the other core works); data that did not shrink
        makes the next :data:`INCOMPRESSIBLE_SKIP` frames be stored as is."""
        if stream.skip_compress:
            stream.skip_compress -= 1
            return frames.encode_stored(chunk)
        if len(chunk) >= POOL_COMPRESS:
            frame, shrank = in_pool(frames.encode, chunk, self.level)
        else:
            frame, shrank = frames.encode(chunk, self.level)
        if not shrank:
            stream.skip_compress = INCOMPRESSIBLE_SKIP
        return frame

    def finish(self, stream: Stream) -> None:
        """The upload ended cleanly: ``finished`` (if still live)."""
        self._end(stream, FINISHED, None)

    def abort(self, stream: Stream, reason: str) -> None:
        """The upload cannot go on: ``aborted`` with ``reason`` (if still live)."""
        self._end(stream, ABORTED, reason)

    def _end(self, stream: Stream, state: str, reason: str | None, *, save: bool = True) -> None:
        """End a live stream: no more appends, then ``state``.

        With ``save`` (the stream stays) its metadata file is rewritten; under
        ``loom.fsync`` finish/always the data file, that file and the folder
        are fsynced first, in that order, and only then does the stream leave
        ``live`` and notify ``end`` (so nothing says it ended before the disk
        does); this yields, during which it stays ``live`` with
        :attr:`Stream.ending` set. Without ``save`` (it is being removed),
        or under ``never``: no yield, so the id cannot be taken again in
        between. A removal may overtake an end in progress (that end then
        changes nothing); another saved end may not.
        """
        if stream.state != LIVE or (save and stream.ending):
            return
        fd, stream.fd = stream.fd, None
        durable = save and self.fsync != FSYNC_NEVER
        if stream.writing and fd is not None:
            # the append in flight closes it (its bytes are not counted); sync a twin
            stream.orphan_fd = fd
            fd = os.dup(fd) if durable else None
        ended = time.time()
        if durable:
            stream.ending = True
            try:
                if fd is not None:
                    try:
                        sync_file(fd)
                    finally:
                        os.close(fd)  # before the metadata takes one: 2 per upload at most
                        fd = None
                final = {**stream.info(), "state": state, "reason": reason, "ended": ended}
                self._write_meta(stream, final, sync=True)
            finally:
                stream.ending = False
            if stream.state != LIVE:  # removed meanwhile: that ended it
                return
        stream.state, stream.reason, stream.ended = state, reason, ended
        self._live -= 1
        if fd is not None:
            os.close(fd)
        if save and not durable:  # no yield
            self._write_meta(stream, sync=False)
        self.notify(stream, "end")

    def delete(self, stream_id: str) -> Stream:
        """Remove a stream and its files (a live one is aborted first); under
        ``loom.fsync`` finish/always the folder is fsynced before it returns
        (this yields)."""
        stream = self.get(stream_id)
        self._remove(stream, "deleted")
        if self.fsync != FSYNC_NEVER:
            sync_dir(self.folder)
        return stream

    def _remove(self, stream: Stream, reason: str) -> None:
        """Forget ``stream`` and unlink its files; readers keep their open files."""
        del self._streams[stream.id]
        self._end(stream, ABORTED, reason, save=False)
        for path in (stream.data_path, self._meta_path(stream.id)):
            path.unlink(missing_ok=True)
        self.notify(stream, "delete")

    # -- retention --------------------------------------------------------------

    def purge(
        self, *, max_age: float = 0.0, max_bytes: int = 0, now: float | None = None
    ) -> list[str]:
        """Remove ended streams older than ``max_age`` seconds, then the oldest
        ended ones while more than ``max_bytes`` are stored (0 = no limit).
        Under ``loom.fsync`` finish/always the folder is then fsynced (this yields).

        :returns: the ids removed, oldest first.
        """
        now = time.time() if now is None else now
        removed: list[str] = []
        ended = sorted(
            (s for s in self._streams.values() if not s.live), key=lambda s: s.ended or s.created
        )
        total = self.stored_bytes
        # oldest first: the streams too old are a prefix, then those over the size cap
        for stream in ended:
            too_old = max_age > 0 and now - (stream.ended or stream.created) > max_age
            if not too_old and not (max_bytes > 0 and total > max_bytes):
                break
            total -= stream.stored
            self._remove(stream, "purged")
            removed.append(stream.id)
        if removed:
            self.purged += len(removed)
            log.info("loom: retention purged %d streams: %s", len(removed), ", ".join(removed))
            if self.fsync != FSYNC_NEVER:
                sync_dir(self.folder)
        return removed

    # -- files ------------------------------------------------------------------

    def _meta_path(self, stream_id: str) -> Path:
        return self.folder / f"{stream_id}.json"

    def _write_meta(
        self, stream: Stream, info: dict[str, Any] | None = None, *, sync: bool
    ) -> None:
        """Write ``info`` (default: ``stream.info()``) as the metadata file,
        atomically: a temporary file, renamed over the old one.

        With ``sync`` the temporary file is fsynced before the rename and the
        folder after it; this yields. The rename is skipped if meanwhile the
        stream was replaced or removed (its successor's file stays) or
        another write of its metadata began (the later one wins).
        """
        path = self._meta_path(stream.id)
        tmp = path.with_name(f"{path.name}.{secrets.token_hex(4)}.tmp")
        data = json.dumps(info or stream.info(), separators=(",", ":")).encode()
        stream.meta_writes += 1
        number = stream.meta_writes
        if sync:
            write_synced(tmp, data)
        else:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                write_all(fd, data)
            finally:
                os.close(fd)
        if self._streams.get(stream.id) is stream and stream.meta_writes == number:
            os.replace(tmp, path)
            if sync:
                sync_dir(self.folder)
        else:
            tmp.unlink(missing_ok=True)

    def close(self) -> None:
        """Abort every live stream ("server stopping"); used on shutdown."""
        for stream in self.live_streams():
            self.abort(stream, "server stopped while the stream was live")


def open_data(stream: Stream) -> int:
    """Open a stream's data file for reading; raises OSError if it is gone."""
    return os.open(stream.data_path, os.O_RDONLY)
