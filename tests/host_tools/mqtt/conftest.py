"""Fixtures: a Mosquitto broker started by the test itself (plain, or with a TLS listener too)."""

import pytest
from mosquitto_broker import Mosquitto, make_tls, mosquitto_path


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
