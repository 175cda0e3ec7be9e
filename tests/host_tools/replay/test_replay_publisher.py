"""pumpreplay's own MQTT 3.1.1 QoS 1 publisher (host_tools/uplink/publisher.py): against the real
Mosquitto (a refused login, keepalive through an idle spell, packet ids that wrap, every frame
arriving in order at a subscriber), and against a peer that breaks the protocol."""

import socket
import threading
import time
from types import SimpleNamespace

import paho.mqtt.client as paho
import pytest

from host_tools.uplink import broker as uplink_broker
from host_tools.uplink.publisher import Publisher, _remaining, connect_packet


def args(user=None, password_file=None, ca=None, client_id="replay-test"):
    return SimpleNamespace(user=user, password_file=password_file, ca=ca, client_id=client_id)


def test_a_wrong_password_is_a_refusal_naming_the_reason(broker, tmp_path):
    wrong = tmp_path / "wrong.password"
    wrong.write_text("not-it\n")
    pub = Publisher(args("replayer", str(wrong)), window=10)
    with pytest.raises(uplink_broker.ToolError) as err:
        pub.connect("127.0.0.1", broker.port, 30)
    assert err.value.code == 4
    assert str(err.value).startswith("the broker refused the connection: ")
    assert "not authorized" in str(err.value) or "bad user name" in str(err.value)


def test_frames_arrive_in_order_across_the_packet_id_wrap_and_an_idle_spell(broker, password_file):
    got: list[bytes] = []
    sub = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="sub", protocol=paho.MQTTv311)
    sub.username_pw_set("recorder", open(password_file("recorder")).read().strip())
    subscribed = threading.Event()
    sub.on_connect = lambda c, *a: c.subscribe("relaypump/+/+/telemetry", qos=1)
    sub.on_subscribe = lambda *a: subscribed.set()
    sub.on_message = lambda c, u, m: got.append((m.qos, m.payload))  # QoS 1 both ways: 1
    sub.connect("127.0.0.1", broker.port)
    sub.loop_start()
    try:
        assert subscribed.wait(30)
        pub = Publisher(args("replayer", password_file("replayer")), window=1000)
        pub.connect("127.0.0.1", broker.port, keepalive=1)
        count = 70_000  # packet ids 1..65535, then from 1 again
        for i in range(count):
            pub.publish("relaypump/jia/relay1/telemetry", i.to_bytes(4, "big"))
        assert pub.drain(60) and pub.acked == count
        idle_until = time.monotonic() + 2.5  # Mosquitto drops a client silent for 1.5 keepalives
        while time.monotonic() < idle_until:
            pub.pump(0.2)
        pub.publish("relaypump/jia/relay1/telemetry", count.to_bytes(4, "big"))
        assert pub.drain(10) and pub.acked == count + 1
        pub.disconnect()
        deadline = time.monotonic() + 30
        while len(got) < count + 1 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        sub.loop_stop()
        sub.disconnect()
    assert got == [(1, i.to_bytes(4, "big")) for i in range(count + 1)]


def test_a_bulk_over_tls_is_acknowledged_whole(tls_broker, password_file):
    """Partial TLS writes and reads of a non-blocking socket: 30,000 frames, window 10,000."""
    pub = Publisher(
        args("replayer", password_file("replayer"), ca=str(tls_broker.tls.ca)), window=10_000
    )
    pub.connect("127.0.0.1", tls_broker.tls_port, 30)
    for i in range(30_000):
        pub.publish(f"relaypump/jia/relay{i % 3}/telemetry", bytes(80) + i.to_bytes(4, "big"))
    assert pub.drain(60) and pub.acked == pub.published == 30_000
    pub.disconnect()


class BadPeer:
    """Accepts one client, answers its CONNECT with CONNACK, then sends `then` and closes;
    ``heard``: the bytes it received."""

    def __init__(self, then: bytes):
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.then = then
        self.heard = b""
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.server.accept()
        with conn:
            self.heard += conn.recv(1024)
            conn.sendall(b"\x20\x02\x00\x00")
            self.heard += conn.recv(
                1024
            )  # the publish (read: a close with unread bytes is a reset)
            conn.sendall(self.then)
            time.sleep(0.2)
        self.server.close()


@pytest.mark.parametrize(
    "then, why",
    [
        (b"\x40\x02\x00\x4d", "PUBACK for packet id 77, which is not in flight"),
        (b"\x30\x05\x00\x01ab", "unexpected packet 300500016162"),
        (b"", "the broker closed the connection"),
    ],
)
def test_a_peer_breaking_the_protocol_is_a_lost_broker(then, why):
    peer = BadPeer(then)
    pub = Publisher(args(), window=10)
    pub.connect("127.0.0.1", peer.port, 30)
    pub.publish("relaypump/jia/relay1/telemetry", b"x")
    with pytest.raises(uplink_broker.ToolError) as err:
        pub.drain(5)
    assert str(err.value) == f"lost the broker after 0 acknowledged messages ({why})"
    assert err.value.code == 4


def test_the_bytes_on_the_wire():
    peer = BadPeer(b"\x40\x02\x00\x01")  # PUBACK of packet id 1
    pub = Publisher(args(client_id="c1"), window=10)
    pub.connect("127.0.0.1", peer.port, 30)
    pub.publish("relaypump/jia/relay1/telemetry", b"frame")
    assert pub.drain(5) and pub.acked == 1
    topic = b"relaypump/jia/relay1/telemetry"
    publish = b"\x32" + bytes([2 + len(topic) + 2 + 5]) + b"\x00\x1e" + topic + b"\x00\x01frame"
    assert peer.heard == connect_packet("c1", 30, None, None) + publish  # QoS 1, retain off


def test_connect_packet_layout():
    raw = connect_packet("c1", 30, "u", "pw")
    assert raw == (
        b"\x10\x15\x00\x04MQTT\x04\xc2\x00\x1e" + b"\x00\x02c1" + b"\x00\x01u" + b"\x00\x02pw"
    )
    assert connect_packet("", 60, None, None) == b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c\x00\x00"


def test_remaining_length_is_the_specs_variable_length():  # MQTT 3.1.1, 2.2.3
    cases = {0: "00", 127: "7f", 128: "8001", 16383: "ff7f", 16384: "808001", 2097152: "80808001"}
    assert {n: _remaining(n).hex() for n in cases} == cases


class SilentPeer:
    """Answers CONNECT, then reads everything and answers nothing: a frozen broker (its kernel
    still takes the bytes)."""

    def __init__(self):
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.done = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        conn, _ = self.server.accept()
        with conn:
            conn.recv(1024)
            conn.sendall(b"\x20\x02\x00\x00")
            conn.settimeout(0.1)
            while not self.done.is_set():
                try:
                    conn.recv(1 << 16)
                except TimeoutError:
                    pass
        self.server.close()


def test_a_broker_that_stops_answering_is_lost_after_one_and_a_half_keepalives():
    """A full window used to wait for PUBACKs forever (pumpreplay hung on a frozen broker)."""
    peer = SilentPeer()
    pub = Publisher(args(), window=4)
    pub.connect("127.0.0.1", peer.port, 2)  # keepalive 2 s: lost after 3 s of silence
    start = time.monotonic()
    try:
        with pytest.raises(uplink_broker.ToolError) as err:
            for _ in range(10):
                pub.publish("relaypump/jia/relay1/telemetry", b"x")
    finally:
        peer.done.set()
        pub.disconnect()
    assert str(err.value) == "lost the broker after 0 acknowledged messages (no answer for 3 s)"
    assert err.value.code == 4 and 3 <= time.monotonic() - start < 10
