"""Fixtures of the fleet tests: the simulator's telemetry (recorded once per session) and a
Mosquitto configured for a fleet (host_tools.uplink.fleet.FleetBroker)."""

import pytest

from host_tools.uplink import fleet

RECORDED_HOURS = 0.2  # 72 frames; the stations replay it from their own offsets, round and round


@pytest.fixture(scope="session")
def recording(tmp_path_factory):
    """Telemetry frames of a short simulator run (the agent in control of the simulated plant)."""
    out = tmp_path_factory.mktemp("sim")
    return fleet.load_recording(fleet.record_telemetry(out, RECORDED_HOURS))


@pytest.fixture
def mosquitto():
    if fleet.mosquitto_path() is None:
        pytest.skip("mosquitto is not installed (make system-packages installs it as root)")


@pytest.fixture
def fleet_broker(tmp_path, mosquitto):
    """A fleet broker of 3 stations (s0001..s0003), started; stopped after the test."""
    b = fleet.FleetBroker(tmp_path / "broker", stations=3, queue_limit=10_000)
    b.start()
    yield b
    b.stop()
