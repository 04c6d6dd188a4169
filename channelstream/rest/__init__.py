"""The channelstream server API door: signed JSON over HTTP.

:mod:`.views` (the routes), :mod:`.schemas` (pydantic models of the bodies),
:mod:`.openapi` (their part of ``/openapi.json``).
"""

from pyramid.config import Configurator

from ..web.openapi import add_fragment
from . import openapi


def includeme(config: Configurator) -> None:
    """Add the server API routes and their OpenAPI fragment."""
    config.include(".views")
    add_fragment(config.registry, openapi.fragment())
