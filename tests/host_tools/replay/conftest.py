"""Fixtures of the replay tests: the Mosquitto of tests/host_tools/conftest.py with one more user,
``replayer``, that may publish every station's topics (a replay speaks for the stations it plays
back), beside the stations, the recorder and the control room of the uplink tests; and no limit
on the messages queued for a subscriber."""

import sys
from pathlib import Path

import pytest
from mosquitto_broker import PASSWORDS, Mosquitto, acl_text

# the frame builders live with the uplink tests
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "uplink"))

REPLAYER_PASSWORD = "pw-replayer"


class ReplayBroker(Mosquitto):
    passwords = {**PASSWORDS, "replayer": REPLAYER_PASSWORD}
    # a replay as fast as possible outruns a recorder: the broker queues for it without a limit
    # (the default, 1000, drops QoS 1 messages past it, silently)
    settings = (*Mosquitto.settings, "max_queued_messages 0")

    def acl(self) -> str:
        return acl_text() + "\nuser replayer\ntopic write relaypump/#\n"


@pytest.fixture
def broker_class():
    return ReplayBroker


@pytest.fixture
def mqtt_passwords():
    return ReplayBroker.passwords
