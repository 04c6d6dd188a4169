"""The channelstream server API door: signed JSON over HTTP (``views.py``)."""


def includeme(config) -> None:
    config.include(".views")
