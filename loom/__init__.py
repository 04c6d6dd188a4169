"""loom: the byte-stream door (live producer uploads tailed by readers).

The loom door lives here; it is filled in by a later change.
"""
