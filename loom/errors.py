"""The store's refusals, each one the shared client error of its HTTP status.

- :class:`BadStreamId` is a :class:`~channelstream.errors.BadRequest` (400, field ``id``);
- :class:`NoSuchStream` is a :class:`~channelstream.errors.NotFound` (404);
- :class:`StreamExists` is a :class:`~channelstream.errors.Conflict` (409);
- :class:`TooManyStreams`, :class:`OutOfFileDescriptors` and
  :class:`NotOwner` are :class:`~channelstream.errors.Unavailable` (503).

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


class NotOwner(StoreError, Unavailable):
    """This process follows a folder another process owns: it does not write (503).

    Not a 409, which loom answers for a taken id (clients act on it with
    ``force=true``): this one says "not here", whatever the request.

    :param owner: ``{"pid", "url"}`` of the owner (:func:`loom.link.read_owner`).
    """

    code = "not_owner"

    def __init__(self, root: str, owner: dict) -> None:
        where = f"pid {owner.get('pid', '?')}"
        if owner.get("url"):
            where += f", {owner['url']}"
        super().__init__(
            f"loom streams of {root} are written by another process ({where}); this one"
            " serves reads, tails and /spy only: send writes (POST, DELETE) to the owner"
        )
        self.owner = dict(owner)

    def as_dict(self) -> dict:
        return {**super().as_dict(), "owner": self.owner}

    def headers(self) -> dict[str, str]:
        url = self.owner.get("url")
        return {"X-Loom-Owner": url} if url else {}
