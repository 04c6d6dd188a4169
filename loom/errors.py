"""The store's refusals, each one the shared client error of its HTTP status.

- :class:`BadStreamId` is a :class:`~channelstream.errors.BadRequest` (400, field ``id``);
- :class:`NoSuchStream` is a :class:`~channelstream.errors.NotFound` (404);
- :class:`StreamExists` is a :class:`~channelstream.errors.Conflict` (409);
- :class:`TooManyStreams` and :class:`OutOfFileDescriptors` are
  :class:`~channelstream.errors.Unavailable` (503).

Views let them through: the exception views of
:mod:`channelstream.web.errorviews` answer ``{"error": message, "code": ...}``
(plus ``"field"``) with the status, as for every other client error. The
messages of the 404 and the 409 are the seed's, word for word (clients
match on them). Nothing here imports a framework: the store raises these.
"""

from __future__ import annotations

from channelstream.errors import BadRequest, ClientError, Conflict, NotFound, Unavailable


class StoreError(ClientError):
    """Base of the store's refusals; ``str()`` is client-safe."""


class BadStreamId(StoreError, BadRequest):
    """An id that is not acceptable (400, field ``id``)."""

    def __init__(self, message: str, *, field: str | None = "id") -> None:
        super().__init__(message, field=field)


class NoSuchStream(StoreError, NotFound):
    """No stream has that id (404)."""

    def __init__(self, stream_id: str) -> None:
        super().__init__(f"The stream with ID {stream_id} does not exist")


class StreamExists(StoreError, Conflict):
    """The id is taken and ``force`` was not given (409)."""

    def __init__(self, stream_id: str) -> None:
        super().__init__(
            f"The stream with ID {stream_id} already exists. "
            "Specify force=true query param to override."
        )


class TooManyStreams(StoreError, Unavailable):
    """``loom.max_streams`` live streams already (503)."""

    def __init__(self, max_live: int) -> None:
        super().__init__(f"{max_live} streams are live already (loom.max_streams)")


class OutOfFileDescriptors(StoreError, Unavailable):
    """The process is (nearly) out of file descriptors (503, ``loom.fd_reserve``).

    :param open_fds: how many are open (None: the open itself failed, EMFILE).
    :param limit: the process's ``RLIMIT_NOFILE``.
    :param reserve: ``loom.fd_reserve``.
    """

    def __init__(self, open_fds: int | None, limit: int, reserve: int) -> None:
        if open_fds is None:
            state = (
                f"the server has no file descriptors left (RLIMIT_NOFILE {limit},"
                f" loom.fd_reserve {reserve})"
            )
        else:
            state = (
                f"the server has {open_fds} file descriptors open of its limit of {limit}"
                f" (RLIMIT_NOFILE), and keeps {reserve} free for other work (loom.fd_reserve)"
            )
        super().__init__(f"{state}: try again later")
