"""A Mosquitto broker of the test's own, and a paho-mqtt 2 client to watch it.

Rules:
- The broker listens on 127.0.0.1 only, on a free port chosen once (a restart keeps it), with no
  anonymous access: a password file (mosquitto_passwd) and an ACL, both written into the test's
  directory. Each station may publish only its own topics and read only its own command topic;
  the recorder reads everything; only the control room may publish commands.
- TLS (optional): a second listener with a CA and server certificate made in the test with the
  openssl CLI (the server certificate names 127.0.0.1 and localhost).
- ``start()`` returns once the port accepts connections (or raises with the broker's log);
  ``stop()`` ends it (SIGTERM, then SIGKILL after 5 s); ``freeze()``/``thaw()`` stop and continue
  the process (a broker that is there but silent); ``kill()`` is SIGKILL.
- Started as root, the broker keeps root (``user root``) so it can read the test's files.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as paho

SITE = "jia"
STATIONS = ("relay1", "relay2")
PASSWORDS = {
    "st-relay1": "pw-relay1",
    "st-relay2": "pw-relay2",
    "recorder": "pw-recorder",
    "controlroom": "pw-controlroom",
}


def mosquitto_path() -> str | None:
    return shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if os.path.exists("/usr/sbin/mosquitto") else None
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


@dataclass(frozen=True)
class TlsFiles:
    ca: Path
    cert: Path
    key: Path


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


class Mosquitto:
    def __init__(self, directory: Path, tls: TlsFiles | None = None):
        exe = mosquitto_path()
        if exe is None:
            raise RuntimeError("mosquitto is not installed (make system-packages)")
        self.exe = exe
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.tls_port = free_port() if tls else None
        self.tls = tls
        self.log_path = self.dir / "mosquitto.log"
        self.proc: subprocess.Popen | None = None
        self._write_files()

    def _write_files(self) -> None:
        passwd = self.dir / "passwd"
        passwd.write_text("".join(f"{u}:{p}\n" for u, p in PASSWORDS.items()))
        subprocess.run(["mosquitto_passwd", "-U", str(passwd)], check=True, capture_output=True)
        (self.dir / "acl").write_text(acl_text())
        conf = [
            "per_listener_settings false",
            "allow_anonymous false",
            f"password_file {passwd}",
            f"acl_file {self.dir / 'acl'}",
            "persistence false",
            "log_type all",
            f"listener {self.port} 127.0.0.1",
        ]
        if os.geteuid() == 0:
            conf.insert(0, "user root")
        if self.tls:
            conf += [
                f"listener {self.tls_port} 127.0.0.1",
                f"cafile {self.tls.ca}",
                f"certfile {self.tls.cert}",
                f"keyfile {self.tls.key}",
            ]
        self.conf = self.dir / "mosquitto.conf"
        self.conf.write_text("\n".join(conf) + "\n")

    def start(self, timeout: float = 5.0) -> None:
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [self.exe, "-c", str(self.conf)], stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited ({self.proc.returncode}):\n{self.log()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"mosquitto did not listen:\n{self.log()}") from None
                time.sleep(0.02)

    def stop(self) -> None:
        if self.proc is None:
            return
        self.thaw()
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self.proc = None

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(5)
            self.proc = None

    def freeze(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGCONT)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


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

    def wait(self, predicate, timeout=5.0, what="the condition"):
        with self._cond:
            if not self._cond.wait_for(predicate, timeout):
                raise AssertionError(f"timed out waiting for {what}; got {self.messages!r}")

    def payloads(self, topic):
        with self._cond:
            return [p for t, p, _ in self.messages if t == topic]

    def publish(self, topic, payload, qos=1):
        info = self.client.publish(topic, payload, qos=qos)
        info.wait_for_publish(5)
        return info

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()
