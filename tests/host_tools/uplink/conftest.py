"""Fixtures of the uplink host tool tests: the Mosquitto broker of tests/host_tools/mqtt (password
file + ACL: stations st-relay1/st-relay2 publish their own topics, ``recorder`` reads everything,
``controlroom`` may publish commands), and credentials files for the tools."""

import sys
from pathlib import Path

import pytest

# the broker helper lives with the MQTT session tests; one copy of it for both
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "mqtt"))

from mosquitto_broker import PASSWORDS, Mosquitto, make_tls, mosquitto_path  # noqa: E402


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
    """The same broker with a TLS listener too (a CA made in the test: tls_broker.tls.ca)."""
    if mosquitto_path() is None:
        pytest.skip("mosquitto is not installed (make system-packages installs it as root)")
    b = Mosquitto(tmp_path / "broker", tls=make_tls(tmp_path / "tls"))
    b.start()
    yield b
    b.stop()


@pytest.fixture
def password_file(tmp_path):
    """user -> path of a file holding that user's MQTT password (mode 600)."""

    def make(user: str) -> str:
        path = tmp_path / f"{user}.password"
        path.write_text(PASSWORDS[user] + "\n")
        path.chmod(0o600)
        return str(path)

    return make
