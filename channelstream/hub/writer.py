"""The writer loop every door runs per connection.

``run_writer`` is the body of a connection's writer greenlet: it waits on the
outbox, drains everything queued, and hands the whole batch to the door's
``write`` callable, which encodes it (``Message.encoded``, cached per message)
and writes it in as few socket writes as the protocol allows. When nothing
comes for ``heartbeat`` seconds it calls ``on_idle`` (a heartbeat frame).
"""

from __future__ import annotations

from collections.abc import Callable

from .message import Message
from .outbox import Outbox


def run_writer(
    outbox: Outbox,
    write: Callable[[list[Message]], object],
    *,
    heartbeat: float | None = None,
    on_idle: Callable[[], object] | None = None,
    batch_limit: int = 0,
    close_on_error: bool = True,
) -> str | None:
    """Feed ``write`` batches from ``outbox`` until the outbox closes.

    What is still queued when the outbox closes is written too (a shutdown
    lets writers flush; an overflow close has already discarded its queue).
    If ``write`` or ``on_idle`` raises (the peer went away), the outbox is
    closed with a reason naming the error (unless ``close_on_error`` is
    false: a channelstream connection outlives its transports) and the
    exception propagates.

    :returns: the outbox's close reason.
    """
    try:
        while True:
            ready = outbox.wait(heartbeat)
            batch = outbox.drain(batch_limit)
            if batch:
                write(batch)
            elif outbox.closed:
                return outbox.close_reason
            elif not ready and on_idle is not None:
                on_idle()
    except BaseException as error:
        if close_on_error:
            outbox.close(f"writer stopped: {type(error).__name__}: {error}", discard=True)
        raise
