"""Runtime: lifecycle order, idempotence, status, socket.io overrides."""

from __future__ import annotations

import pytest

from channelstream.hub import Hub
from channelstream.serving.doors import DoorStartError, DoorState, LoopDoor
from channelstream.serving.runtime import Runtime, RuntimeState, hub_config
from channelstream.settings import default_settings


class Idle(LoopDoor):
    def __init__(self, name, journal):
        super().__init__(name)
        self.journal = journal

    def open(self):
        self.journal.append(("open", self.name))

    def run(self):
        while not self.wait(10):
            pass

    def close(self):
        self.journal.append(("close", self.name))


class Failing(Idle):
    def open(self):
        raise OSError(98, "Address already in use")


def test_hub_config_follows_the_settings():
    settings = default_settings(
        {
            "hub.history_size": "7",
            "hub.history_seconds": "2m",
            "hub.outbox_size": "10",
            "hub.outbox_hard_limit": "20",
            "hub.gc_interval": "500ms",
            "gc_channels_after": "1h",
        }
    )
    config = hub_config(settings)
    assert config.default_channel.history_size == 7
    assert config.default_channel.history_seconds == 120.0
    assert (config.outbox_size, config.outbox_hard_limit) == (10, 20)
    assert config.gc_interval == 0.5
    assert config.channel_idle_after == 3600.0


def test_start_and_stop_in_order_and_idempotent():
    journal = []
    runtime = Runtime(default_settings())
    runtime.doors.add(Idle("a", journal))
    runtime.doors.add(Idle("b", journal))
    assert runtime.status()["status"] == "degraded"
    runtime.start()
    runtime.start()
    assert runtime.state is RuntimeState.RUNNING
    assert runtime.hub.stats()["running"] is True
    status = runtime.status()
    assert status["status"] == "ok"
    assert status["doors"]["a"]["state"] == DoorState.RUNNING.value
    assert status["uptime_seconds"] >= 0
    assert not runtime.stopping.is_set()
    runtime.stop(1.0)
    runtime.stop(1.0)
    assert runtime.stopping.is_set()
    assert runtime.state is RuntimeState.STOPPED
    assert runtime.hub.stats()["running"] is False
    assert journal == [("open", "a"), ("open", "b"), ("close", "b"), ("close", "a")]
    with pytest.raises(RuntimeError, match="cannot start a runtime that is stopped"):
        runtime.start()


class Linked(Idle):
    """A door that keeps a connection and reports it as its state."""

    link = DoorState.CONNECTED

    def status(self):
        info = super().status()
        if info["state"] == DoorState.RUNNING.value:
            info["state"] = self.link.value
        return info


@pytest.mark.parametrize(
    ("link", "health"),
    [
        (DoorState.CONNECTED, "ok"),
        (DoorState.WAITING, "ok"),  # a source whose producer is off loses nothing
        (DoorState.FINISHED, "ok"),
        (DoorState.CONNECTING, "degraded"),
        (DoorState.RETRYING, "degraded"),
    ],
)
def test_a_connected_or_waiting_door_is_healthy_a_connecting_or_retrying_one_is_not(
    link, health
):
    runtime = Runtime(default_settings())
    door = Linked("link", [])
    door.link = link
    runtime.doors.add(door)
    runtime.start()
    try:
        status = runtime.status()
        assert status["doors"]["link"]["state"] == link.value
        assert status["status"] == health
    finally:
        runtime.stop(1.0)


def test_hub_stop_closes_outboxes_with_the_shutdown_reason():
    runtime = Runtime(default_settings())
    runtime.start()
    outbox = runtime.hub.open_outbox()
    runtime.stop(1.0)
    assert outbox.closed
    assert outbox.close_reason == "server shutting down"


def test_a_door_that_cannot_start_stops_the_hub():
    journal = []
    hub = Hub(hub_config(default_settings()))
    runtime = Runtime(default_settings(), hub=hub)
    runtime.doors.add(Idle("ok", journal))
    runtime.doors.add(Failing("tcp_streamer", journal))
    with pytest.raises(DoorStartError, match="door 'tcp_streamer' failed to start"):
        runtime.start()
    assert journal == [("open", "ok"), ("close", "ok")]
    assert hub.stats()["running"] is False
    assert runtime.state is RuntimeState.STOPPED


def test_stop_before_start_is_harmless():
    runtime = Runtime(default_settings())
    runtime.stop(1.0)
    assert runtime.state is RuntimeState.STOPPED


def test_override_socketio_only_before_start():
    runtime = Runtime(default_settings())
    before = runtime.settings
    after = runtime.override_socketio(path="io", ping_interval=5.0)
    assert runtime.settings is after
    assert (after.socketio.path, after.socketio.ping_interval) == ("io", 5.0)
    assert before.socketio.path == "socket.io"
    with pytest.raises(TypeError):
        runtime.override_socketio(no_such_field=1)
    runtime.start()
    with pytest.raises(RuntimeError, match="before the runtime starts"):
        runtime.override_socketio(path="late")
    runtime.stop(1.0)



def test_start_freezes_what_exists_out_of_the_collectors_full_passes():
    import gc

    gc.unfreeze()
    runtime = Runtime(default_settings())
    runtime.start()
    try:
        assert gc.get_freeze_count() > 0
    finally:
        runtime.stop(1.0)
        gc.unfreeze()
