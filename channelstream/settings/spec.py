"""How a settings field is declared: its parser, its default as ini text, its doc.

:func:`setting` is used in the dataclasses of :mod:`channelstream.settings.keys`
(and by any door that declares its own group); the key of a field follows
from its place (see :mod:`channelstream.settings.keys`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from .parsers import Parser

#: The ``dataclasses.field`` metadata key that holds a field's :class:`Spec`.
SPEC_KEY = "channelstream.setting"


@dataclasses.dataclass(frozen=True)
class Spec:
    """How one key is read: its parser, its default as ini text, its doc."""

    parse: Parser
    default: str
    doc: str


def setting(parse: Parser, default: str, doc: str) -> Any:
    """Declare a settings field; its key follows from its place (see module doc)."""
    return dataclasses.field(metadata={SPEC_KEY: Spec(parse, default, doc)})
