"""``python -m channelstream.settings``: print every key, its default and its doc, as ini text."""

from . import reference

print(reference())
