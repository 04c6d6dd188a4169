"""JSON answers of the HTTP doors: compact standard JSON, never cached.

Every JSON answer (success or error) goes through :func:`json_response`, so
they are written alike (:func:`channelstream.strict_json.dumps`) and all say
``Cache-Control: no-store``: answers of a live service are never reused.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pyramid.response import Response

from ..strict_json import dumps


def json_response(
    data: Any, status: int = 200, *, encode: Callable[[Any], bytes] = dumps
) -> Response:
    """A ``no-store`` JSON response of ``data`` (``encode`` writes it: compact by default)."""
    return Response(
        body=encode(data),
        status=status,
        content_type="application/json",
        charset="utf-8",
        cache_control="no-store",
    )
