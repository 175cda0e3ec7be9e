"""Fixtures of the bridge tests: the Mosquitto of tests/host_tools/conftest.py with two more users,
``bridge`` (reads the stations, writes their command topics, speaks Sparkplug) and ``scada`` (the
primary host: Sparkplug only); the independent peer and pumpbridge as subprocesses; a key file
(bridge_helpers.py)."""

import pytest
from bridge_helpers import USERS, BridgeBroker, BridgeProcess, Peer

from host_tools.sim.uplink_field import KEY


@pytest.fixture
def broker_class():
    return BridgeBroker


@pytest.fixture
def mqtt_passwords():
    return USERS


@pytest.fixture
def key_file(tmp_path):
    path = tmp_path / "keys"
    path.write_text(f"jia/relay1 1 {KEY.hex()}\n")
    path.chmod(0o600)
    return path


@pytest.fixture
def peer(broker, password_file):
    p = Peer(broker.port, password_file("scada"))
    yield p
    p.close()


@pytest.fixture
def bridge(broker, password_file, key_file, tmp_path):
    b = BridgeProcess(
        broker.port, password_file("bridge"), key_file, tmp_path / "state", tmp_path / "bridge.err"
    )
    b.start()
    yield b
    b.close()
