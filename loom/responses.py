"""The long-lived responses of loom: upload, stored stream, live tail, spy body.

Each is a Pyramid response whose ``__call__`` drives the socket itself:

- :class:`IngestResponse` answers ``201`` with ``X-Stream-Id`` at once
  (after ``100 Continue`` if the client asked for it), then stores the
  upload as it arrives and ends the (empty, chunked) body when the upload
  ended, so the producer knows its bytes are stored.
- :class:`StoredResponse` sends a stream's bytes up to a known length with
  ``Content-Length``: ``os.sendfile`` from the data file for uncompressed
  streams under our server (``environ[RAW_RESPONSE]``), decoded frames
  otherwise.
- :class:`ChunkedResponse` sends an open-ended body (a :class:`LiveBody`:
  a live tail, the spy) with chunked framing and, under our server, a final
  trailer such as ``X-Stream-State: finished``. While it runs, a
  :class:`~loom.hangup.HangupWatch` watches the client: a client that goes
  away while the body waits for the stream to change ends the response at
  once (its socket, data file and greenlet are released then, not when the
  stream next changes).

Under a server without ``RAW_RESPONSE`` (gunicorn) the same bodies go
through plain WSGI iteration (no sendfile, no trailer).
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from pyramid.response import Response

from channelstream.web.rawresponse import RAW_RESPONSE

from . import frames, hangup
from .disk import drop_cached
from .reader import StreamReader, UploadReader
from .store import FINISHED, Store, Stream

log = logging.getLogger(__name__)

Headers = list[tuple[str, str]]


def _is_head(environ: dict[str, Any]) -> bool:
    return environ.get("REQUEST_METHOD") == "HEAD"


class IngestResponse(Response):
    """``201`` now, then the upload into ``stream``; see the module doc."""

    def __init__(
        self,
        store: Store,
        stream: Stream,
        upload: UploadReader,
        headers: Headers,
        *,
        max_bytes: int = 0,
    ) -> None:
        super().__init__(status=201)
        self._max_bytes = max_bytes
        self._store = store
        self._stream = stream
        self._upload = upload
        self._headers = headers

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        store, stream, upload = self._store, self._stream, self._upload
        raw_response = environ.get(RAW_RESPONSE)
        raw = None
        try:
            upload.start()
            # the headers go out now, while the body is still coming
            if raw_response is not None:
                headers = [*self._headers, ("Transfer-Encoding", "chunked")]
                raw = raw_response("201 Created", [*headers, ("Trailer", "X-Stream-State")])
            else:
                start_response("201 Created", self._headers)(b"")
            self._ingest()
        except BaseException:
            # the client vanished while we answered, the disk failed, or the
            # server is being stopped: never leave the stream live
            store.abort(stream, "the upload failed on the server side")
            raise
        if raw is not None:  # the trailer tells the producer how its stream ended
            try:
                raw.sendall(b"0\r\nX-Stream-State: %s\r\n\r\n" % stream.state.encode())
            except OSError:
                pass  # the producer is gone
            if stream.state != FINISHED:
                raw.close_connection()
        return []

    def _ingest(self) -> None:
        """Store the upload; finish the stream at its end, abort it on a broken one."""
        store, stream, upload, limit = self._store, self._stream, self._upload, self._max_bytes
        while True:
            try:
                data = upload.read()
            except (OSError, ValueError) as err:
                store.abort(stream, f"the producer's connection broke: {err}")
                log.info("loom: stream %s aborted: %s", stream.id, err)
                upload.give_up()
                return
            if not data:
                store.finish(stream)
                return
            if limit and len(data) > limit - stream.size:
                store.append(stream, data[: max(limit - stream.size, 0)])
                store.abort(stream, f"over loom.max_stream_bytes ({limit} bytes)")
                upload.give_up()
                return
            store.append(stream, data)  # may yield (a slow write goes to the thread pool)


class StoredResponse(Response):
    """``length`` raw bytes of ``reader``'s stream with Content-Length.

    With ``cache_window`` (``Store.cache_window``), sendfile goes that many
    bytes at a time and evicts what lies a window behind it from the page
    cache, as the upload did: a GET of a large stream reads it from the disk
    into the same few pages instead of filling the cache.
    """

    def __init__(
        self,
        reader: StreamReader,
        length: int,
        stored: int,
        headers: Headers,
        cache_window: int = 0,
    ):
        super().__init__(status=200)
        self._reader = reader
        self._length = length
        self._stored = stored
        self._headers = [*headers, ("Content-Length", str(length))]
        self._window = cache_window

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        reader = self._reader
        raw_response = environ.get(RAW_RESPONSE)
        if raw_response is None:
            start_response("200 OK", self._headers)
            if _is_head(environ):
                reader.close()
                return []
            return _Closing(self._chunks(), reader)
        try:
            raw = raw_response("200 OK", self._headers)
            if _is_head(environ):
                return []
            if reader.stream.compression == frames.NONE:
                sent = self._sendfile(raw, reader.fd)  # type: ignore[arg-type]
            else:
                sent = 0
                for chunk in self._chunks():
                    raw.sendall(chunk)
                    sent += len(chunk)
            if sent < self._length:  # a damaged file: the client must see the truncation
                raw.close_connection()
        finally:
            reader.close()
        return []

    def _sendfile(self, raw: Any, fd: int) -> int:
        window, length = self._window, self._length
        if not window:
            return raw.sendfile(fd, 0, length)
        sent = 0
        while sent < length:
            n = raw.sendfile(fd, sent, min(window, length - sent))
            if n == 0:  # the file is shorter
                break
            sent += n
            # what the socket may still hold stays: evict only a window behind
            behind = max(0, sent - n - window)
            drop_cached(fd, behind, sent - window - behind)
        return sent

    def _chunks(self) -> Iterator[bytes]:
        # the stored offset that matched ``length`` when the request came: never past it
        while chunk := self._reader.read(self._stored):
            yield chunk


class LiveBody(abc.ABC):
    """The body of an open-ended response (:class:`ChunkedResponse`).

    Iterating it gives the chunks; it may block between them, waiting for
    the stream to change. :meth:`hang_up` may be called (from the gevent
    hub, so it must not block) at any time when the client went away: the
    iteration must then end soon, without sending what is left. :meth:`close`
    releases everything, and is called even if the iteration never started.
    """

    @abc.abstractmethod
    def __iter__(self) -> Iterator[bytes]: ...

    @abc.abstractmethod
    def hang_up(self) -> None:
        """The client is gone: wake the iteration and make it end."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the subscription and the files (idempotent)."""


class ChunkedResponse(Response):
    """An open-ended body; ``trailers()`` gives the final trailers.

    :param body: its ``close()`` is called at the end (also when the client
        went away, or the body never started); its ``hang_up()`` when a
        :class:`~loom.hangup.HangupWatch` sees the client go away, after
        which the connection is closed without the final chunk.
    :param trailers: called once the body ended; its headers go in the
        final chunk (under our server only).
    """

    def __init__(
        self,
        body: LiveBody,
        headers: Headers,
        trailers: Callable[[], Headers] | None = None,
    ) -> None:
        super().__init__(status=200)
        self._body = body
        self._trailers = trailers
        self._headers = headers

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        raw_response = environ.get(RAW_RESPONSE)
        body = self._body
        if raw_response is None:  # the WSGI server iterates (and closes) what we return
            start_response("200 OK", self._headers)
            if _is_head(environ):
                body.close()
                return []
            return _Closing(body, body, hangup.watch(environ, body.hang_up))
        headers = [*self._headers, ("Transfer-Encoding", "chunked")]
        if self._trailers is not None:
            headers.append(("Trailer", "X-Stream-State"))
        watch = None
        try:
            raw = raw_response("200 OK", headers)
            if _is_head(environ):
                return []
            watch = hangup.watch(environ, body.hang_up)
            for chunk in iter(body):
                if chunk:
                    raw.sendall(_chunked.frame(chunk))
            if watch is not None and watch.fired:
                raw.close_connection()  # nobody to send the end to: the socket closes now
                return []
            tail = b"0\r\n"
            for name, value in self._trailers() if self._trailers is not None else ():
                tail += f"{name}: {value}\r\n".encode("latin-1")
            raw.sendall(tail + b"\r\n")
        finally:
            if watch is not None:
                watch.close()
            body.close()
        return []


class _LastChunk:
    """The chunked framing of the last chunk sent, reused for the same bytes object.

    Tailers woken together get the very same bytes (``StreamReader`` shares
    one read of the file): only the first of them copies it into a frame.
    """

    def __init__(self) -> None:
        self.chunk: bytes | None = None
        self.framed = b""

    def frame(self, chunk: bytes) -> bytes:
        if chunk is not self.chunk:
            self.chunk = chunk
            self.framed = b"%x\r\n%b\r\n" % (len(chunk), chunk)
        return self.framed


_chunked = _LastChunk()


class _Closing:
    """A WSGI body: ``chunks``, and ``close()`` (which the WSGI server calls,
    even if it never iterated) closes ``owner`` and stops ``watch``."""

    def __init__(
        self,
        chunks: Iterable[bytes],
        owner: StreamReader | LiveBody,
        watch: hangup.HangupWatch | None = None,
    ) -> None:
        self._chunks = chunks
        self._owner = owner
        self._watch = watch

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._chunks)

    def close(self) -> None:
        if self._watch is not None:
            self._watch.close()
        self._owner.close()
