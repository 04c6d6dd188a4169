"""The loom door: one process per storage folder, retention kicked by stream ends."""

from __future__ import annotations

import os

import pytest

from channelstream.hub import Hub
from channelstream.settings import SettingsError, default_settings
from loom.door import LoomDoor
from tests.support.wait import wait_for


def make_door(tmp_path, **keys: str) -> LoomDoor:
    settings = default_settings({"loom.storage_dir": str(tmp_path), **keys}).loom
    return LoomDoor(settings, Hub())


@pytest.mark.parametrize(
    ("key", "bad", "allowed"),
    [
        ("loom.fsync", "sometimes", "never, finish, always"),
        ("loom.fsync", "never, always", "never, finish, always"),
        ("loom.compression", "gzip", "none, zlib"),
    ],
)
def test_a_bad_fsync_or_compression_is_refused_naming_the_key_and_the_choices(
    tmp_path, key, bad, allowed
):
    with pytest.raises(SettingsError) as info:
        make_door(tmp_path, **{key: bad})
    assert str(info.value) == f"{key}: expected one of {allowed}, got {bad!r}"


@pytest.mark.parametrize("fsync", ["never", "finish", "always"])
@pytest.mark.parametrize("compression", ["none", "zlib"])
def test_each_fsync_and_compression_choice_reaches_the_store(tmp_path, fsync, compression):
    door = make_door(tmp_path, **{"loom.fsync": fsync, "loom.compression": compression})
    assert (door.settings.fsync, door.settings.compression) == (fsync, compression)
    assert (door.store.fsync, door.store.compression) == (fsync, compression)


def test_a_second_process_on_the_same_folder_stands_by_with_the_owners_pid(tmp_path):
    first, second = make_door(tmp_path), make_door(tmp_path)
    first.start()
    second.start()
    try:
        assert first.ready and first.status()["serving"] is True
        assert not second.ready and f"pid {os.getpid()}" in second.standby
        assert second.status()["serving"] is False
    finally:
        first.stop(5)
        second.stop(5)
    third = make_door(tmp_path)  # the lock went with the first door
    third.start()
    try:
        assert third.ready
    finally:
        third.stop(5)


def test_stopping_aborts_live_streams_and_an_end_kicks_retention(tmp_path):
    door = make_door(tmp_path, **{"loom.retention_bytes": "10", "loom.retention_interval": "1h"})
    door.start()
    try:
        store = door.store
        old, _ = store.create("old", None)
        store.append(old, b"x" * 100)
        live, _ = store.create("live", None)
        store.finish(old)  # kicks the retention loop at once (its interval is an hour)
        wait_for(lambda: store.find("old") is None, timeout=5, what="retention to purge old")
        assert store.find("live") is live
    finally:
        door.stop(5)
    assert live.state == "aborted" and "stopped" in live.reason
