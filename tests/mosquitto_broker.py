"""A Mosquitto broker of the test's own, and a paho-mqtt 2 client to watch it.

Rules:
- The broker is host_tools/uplink/broker_process.py's (127.0.0.1 only, a free port chosen once,
  no anonymous access, ``start``/``stop``/``freeze``/``thaw``/``kill``; its rules are there) with
  the users of PASSWORDS and this ACL: each station may publish only its own topics and read only
  its own command topic; the recorder reads everything; only the control room may publish
  commands. A subclass changes ``passwords``, ``settings`` or ``acl()``.
- TLS (optional): a second listener with a CA and server certificate made in the test with the
  openssl CLI (``make_tls``; the server certificate names 127.0.0.1 and localhost).
- Waits are in wall time with a bound for a loaded CI machine (30 s): a passing test never
  waits for it.
"""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path

import paho.mqtt.client as paho

from host_tools.uplink.broker_process import BrokerProcess, TlsFiles, free_port, mosquitto_path

__all__ = ["PASSWORDS", "SITE", "Mosquitto", "TlsFiles", "Watcher", "acl_text", "free_port",
           "make_tls", "mosquitto_path"]  # fmt: skip

SITE = "jia"
STATIONS = ("relay1", "relay2")
PASSWORDS = {
    "st-relay1": "pw-relay1",
    "st-relay2": "pw-relay2",
    "recorder": "pw-recorder",
    "controlroom": "pw-controlroom",
}
WAIT_S = 30.0


def acl_text(site: str = SITE, stations: tuple[str, ...] = STATIONS) -> str:
    lines = ["user recorder", "topic read relaypump/#", ""]
    lines += ["user controlroom", "topic write relaypump/+/+/cmd", "topic read relaypump/#", ""]
    for station in stations:
        base = f"relaypump/{site}/{station}"
        lines.append(f"user st-{station}")
        for kind in ("status", "telemetry", "event", "ack"):
            lines.append(f"topic write {base}/{kind}")
        lines += [f"topic read {base}/cmd", ""]
    return "\n".join(lines)


def make_tls(directory: Path, name: str = "relaypump-test") -> TlsFiles:
    """A CA (EC P-256) and a server certificate it signed for 127.0.0.1 / localhost."""
    directory.mkdir(parents=True, exist_ok=True)
    ca, ca_key = directory / "ca.pem", directory / "ca.key"
    cert, key, csr = directory / "server.pem", directory / "server.key", directory / "server.csr"
    ext = directory / "server.ext"
    ext.write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature\n"
        "extendedKeyUsage=serverAuth\n"
        "subjectKeyIdentifier=hash\n"
        "authorityKeyIdentifier=keyid,issuer\n"
    )
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run = lambda *args: subprocess.run(args, check=True, capture_output=True)  # noqa: E731
    run("openssl", "req", "-x509", *ec, "-keyout", ca_key, "-out", ca, "-days", "2",
        "-subj", f"/CN={name} CA", "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign")  # fmt: skip
    run("openssl", "req", *ec, "-keyout", key, "-out", csr, "-subj", "/CN=localhost")
    run("openssl", "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
        "-out", cert, "-days", "2", "-extfile", ext)  # fmt: skip
    return TlsFiles(ca, cert, key)


class Mosquitto(BrokerProcess):
    passwords = PASSWORDS
    settings: tuple[str, ...] = ("persistence false", "log_type all")

    def __init__(self, directory: Path, tls: TlsFiles | None = None):
        super().__init__(directory, self.passwords, self.acl(), self.settings, tls)

    def acl(self) -> str:
        return acl_text()


class Watcher:
    """A paho-mqtt 2.2 client (MQTT 3.1.1) in its own thread: subscribes to its topics on every
    connect, keeps every message (topic, payload, retain flag) in arrival order."""

    def __init__(
        self, port, user, topics=(), client_id="", clean=True, qos=1, ca=None, tls_port=None
    ):
        self.messages: list[tuple[str, bytes, bool]] = []
        self.subscribed = 0
        self.granted: list[int] = []
        self.connects = 0
        self._cond = threading.Condition()
        self.topics = list(topics)
        self.qos = qos
        client = paho.Client(
            paho.CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=clean,
            protocol=paho.MQTTv311,
        )
        client.username_pw_set(user, PASSWORDS[user])
        client.reconnect_delay_set(min_delay=1, max_delay=1)
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        if ca is not None:
            client.tls_set(ca_certs=str(ca))
        self.client = client
        client.connect("127.0.0.1", tls_port or port, keepalive=10)
        client.loop_start()
        if self.topics:
            self.wait(lambda: self.subscribed >= 1, what="SUBACK")
        else:
            self.wait(lambda: self.connects >= 1, what="CONNACK")

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        with self._cond:
            self.connects += 1
            self._cond.notify_all()
        for t in self.topics:
            client.subscribe(t, qos=self.qos)

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties):
        with self._cond:
            self.subscribed += 1
            self.granted += [rc.value for rc in reason_codes]
            self._cond.notify_all()

    def _on_message(self, client, userdata, msg):
        with self._cond:
            self.messages.append((msg.topic, bytes(msg.payload), bool(msg.retain)))
            self._cond.notify_all()

    def wait(self, predicate, timeout=WAIT_S, what="the condition"):
        with self._cond:
            if not self._cond.wait_for(predicate, timeout):
                raise AssertionError(f"timed out waiting for {what}; got {self.messages!r}")

    def payloads(self, topic):
        with self._cond:
            return [p for t, p, _ in self.messages if t == topic]

    def publish(self, topic, payload, qos=1):
        info = self.client.publish(topic, payload, qos=qos)
        info.wait_for_publish(WAIT_S)
        return info

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()
