"""Fixtures of the end-to-end uplink tests: the Mosquitto broker of tests/host_tools/mqtt (password
file + ACL; started by the test, stopped after)."""

import sys
from pathlib import Path

import pytest

# the broker helper lives with the MQTT session tests; one copy of it for all
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "mqtt"))

from mosquitto_broker import Mosquitto, make_tls, mosquitto_path  # noqa: E402


@pytest.fixture
def broker(tmp_path):
    if mosquitto_path() is None:
        pytest.skip("mosquitto is not installed (make system-packages installs it as root)")
    b = Mosquitto(tmp_path / "broker")
    b.start()
    yield b
    b.stop()


@pytest.fixture
def tls_broker(tmp_path):
    if mosquitto_path() is None:
        pytest.skip("mosquitto is not installed (make system-packages installs it as root)")
    b = Mosquitto(tmp_path / "broker", tls=make_tls(tmp_path / "tls"))
    b.start()
    yield b
    b.stop()
