"""Fixtures of the replay tests: the Mosquitto of tests/host_tools/mqtt with one more user,
``replayer``, that may publish every station's topics (a replay speaks for the stations it plays
back), beside the stations, the recorder and the control room of the uplink tests; and no limit
on the messages queued for a subscriber."""

import subprocess
import sys
from pathlib import Path

import pytest

# the broker helper lives with the MQTT session tests, the frame builders with the uplink tests
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "mqtt"))
sys.path.insert(0, str(HERE.parent / "uplink"))

from mosquitto_broker import PASSWORDS, Mosquitto, acl_text, make_tls, mosquitto_path  # noqa: E402

REPLAYER_PASSWORD = "pw-replayer"


class ReplayBroker(Mosquitto):
    def _write_files(self) -> None:
        super()._write_files()
        passwd = self.dir / "passwd"
        users = {**PASSWORDS, "replayer": REPLAYER_PASSWORD}
        passwd.write_text("".join(f"{u}:{p}\n" for u, p in users.items()))
        subprocess.run(["mosquitto_passwd", "-U", str(passwd)], check=True, capture_output=True)
        (self.dir / "acl").write_text(acl_text() + "\nuser replayer\ntopic write relaypump/#\n")
        # a replay as fast as possible outruns a recorder: the broker queues for it without
        # a limit (the default, 1000, drops QoS 1 messages past it, silently)
        with open(self.conf, "a") as f:
            f.write("max_queued_messages 0\n")


@pytest.fixture
def broker(tmp_path):
    if mosquitto_path() is None:
        pytest.skip("mosquitto is not installed (make system-packages installs it as root)")
    b = ReplayBroker(tmp_path / "broker")
    b.start()
    yield b
    b.stop()


@pytest.fixture
def tls_broker(tmp_path):
    """The same broker with a TLS listener too (a CA made in the test: tls_broker.tls.ca)."""
    if mosquitto_path() is None:
        pytest.skip("mosquitto is not installed (make system-packages installs it as root)")
    b = ReplayBroker(tmp_path / "broker", tls=make_tls(tmp_path / "tls"))
    b.start()
    yield b
    b.stop()


@pytest.fixture
def password_file(tmp_path):
    """user -> path of a file holding that user's MQTT password (mode 600)."""

    def make(user: str) -> str:
        path = tmp_path / f"{user}.password"
        path.write_text({**PASSWORDS, "replayer": REPLAYER_PASSWORD}[user] + "\n")
        path.chmod(0o600)
        return str(path)

    return make
