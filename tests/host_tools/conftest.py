"""Fixtures shared by the host-tool tests: a Mosquitto broker started by the test itself (password
file + ACL of tests/mosquitto_broker.py; plain, or with a TLS listener and a CA made in the test)
and files holding a user's MQTT password. A directory that needs another broker overrides
``broker_class`` (and ``mqtt_passwords`` for its extra users), not the fixtures themselves."""

import pytest
from mosquitto_broker import PASSWORDS, Mosquitto, make_tls, mosquitto_path


@pytest.fixture
def broker_class():
    return Mosquitto


@pytest.fixture
def mqtt_passwords():
    return PASSWORDS


def _started(broker_class, where, tls=None):
    if mosquitto_path() is None:
        pytest.skip("mosquitto is not installed (make system-packages installs it as root)")
    b = broker_class(where, tls=tls)
    b.start()
    return b


@pytest.fixture
def broker(tmp_path, broker_class):
    b = _started(broker_class, tmp_path / "broker")
    yield b
    b.stop()


@pytest.fixture
def tls_broker(tmp_path, broker_class):
    """The same broker with a TLS listener too (a CA made in the test: tls_broker.tls.ca)."""
    b = _started(broker_class, tmp_path / "broker", make_tls(tmp_path / "tls"))
    yield b
    b.stop()


@pytest.fixture
def password_file(tmp_path, mqtt_passwords):
    """user -> path of a file holding that user's MQTT password (mode 600)."""

    def make(user: str) -> str:
        path = tmp_path / f"{user}.password"
        path.write_text(mqtt_passwords[user] + "\n")
        path.chmod(0o600)
        return str(path)

    return make
