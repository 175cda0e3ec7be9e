"""What the bridge tests share: a Mosquitto with the bridge's and the SCADA host's users, the
independent peer (peer_host.py on pysparkplug, in .venv-peer, made by `make setup`) and pumpbridge
as subprocesses, and the simulated station run in wall time."""

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from mosquitto_broker import PASSWORDS, Mosquitto, acl_text

ROOT = Path(__file__).resolve().parents[3]
PEER_PYTHON = ROOT / ".venv-peer" / "bin" / "python"
PEER_SCRIPT = Path(__file__).with_name("peer_host.py")
USERS = {**PASSWORDS, "bridge": "pw-bridge", "scada": "pw-scada"}
GROUP, NODE = "jia", "pumpbridge"


class BridgeBroker(Mosquitto):
    def _write_files(self) -> None:
        super()._write_files()
        passwd = self.dir / "passwd"
        passwd.write_text("".join(f"{u}:{p}\n" for u, p in USERS.items()))
        subprocess.run(["mosquitto_passwd", "-U", str(passwd)], check=True, capture_output=True)
        (self.dir / "acl").write_text(
            acl_text() + "\nuser bridge\ntopic read relaypump/#\ntopic write relaypump/+/+/cmd\n"
            "topic readwrite spBv1.0/#\n\nuser scada\ntopic readwrite spBv1.0/#\n"
        )


class Peer:
    """The primary host: every Sparkplug message it decoded, as dicts, in arrival order."""

    def __init__(self, port: int, password_file: str, group: str = GROUP):
        if not PEER_PYTHON.exists():
            pytest.fail(f"{PEER_PYTHON} is missing: `make setup` makes .venv-peer")
        self.proc = subprocess.Popen(
            [str(PEER_PYTHON), str(PEER_SCRIPT), "--port", str(port), "--user", "scada",
             "--password-file", password_file, "--group", group],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.messages: list[dict] = []
        self._cond = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()
        self.wait(lambda m: m["type"] == "READY", what="the peer's SUBACK", timeout=15)

    def _read(self) -> None:
        for line in self.proc.stdout:
            with self._cond:
                self.messages.append(json.loads(line))
                self._cond.notify_all()

    def find(self, predicate, start: int = 0) -> list[dict]:
        with self._cond:
            return [m for m in self.messages[start:] if predicate(m)]

    def wait(self, predicate, timeout: float = 10.0, what: str = "a message", start: int = 0):
        """The first message from index `start` on that satisfies predicate."""
        with self._cond:
            ok = self._cond.wait_for(
                lambda: any(predicate(m) for m in self.messages[start:]), timeout
            )
            if not ok:
                tail = [(m["type"], m.get("device"), m.get("seq")) for m in self.messages[-20:]]
                raise AssertionError(f"timed out waiting for {what}; last messages: {tail}")
            return next(m for m in self.messages[start:] if predicate(m))

    def mark(self) -> int:
        with self._cond:
            return len(self.messages)

    def send(self, order: dict) -> None:
        mark = self.mark()
        self.proc.stdin.write(json.dumps(order) + "\n")
        self.proc.stdin.flush()
        self.wait(lambda m: m["type"] == "SENT", what="the peer's publish", start=mark)

    def close(self) -> None:
        self.proc.stdin.close()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


class BridgeProcess:
    """pumpbridge in a process of its own (python -m host_tools.uplink.bridge)."""

    def __init__(self, port: int, password_file: str, keys: Path, state: Path, log: Path, extra=()):
        self.argv = [sys.executable, "-m", "host_tools.uplink.bridge", "--site", "jia",
                     "--port", str(port), "--user", "bridge", "--password-file", password_file,
                     "--keys", str(keys), "--state-dir", str(state), "--ack-timeout", "20",
                     "--keepalive", "5", *extra]  # fmt: skip
        self.log = log
        self.proc: subprocess.Popen | None = None

    def start(self) -> str:
        """Started; returns its first line (it names the bdSeq)."""
        with open(self.log, "ab") as err:
            self.proc = subprocess.Popen(
                self.argv, stdout=subprocess.PIPE, stderr=err, text=True, cwd=ROOT
            )
        line = self.proc.stdout.readline()
        assert line.startswith("pumpbridge: edge node"), f"{line!r}\n{self.stderr()}"
        return line

    def stderr(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self) -> int:
        """SIGTERM: the bridge publishes its NDEATH and disconnects."""
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(10)
        self.proc = None
        return code

    def kill(self) -> None:
        """SIGKILL: the socket dies, the broker publishes the will."""
        self.proc.kill()
        self.proc.wait(5)
        self.proc = None

    def close(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(5)


def run_field_until(field, predicate, wall_s: float = 30.0) -> bool:
    """The simulated station runs (1 virtual s at a time) until predicate() or wall_s of real
    time: the bridge and the peer live in wall time, the station in virtual time."""
    deadline = time.monotonic() + wall_s
    while time.monotonic() < deadline:
        if field.run_until(predicate, 1):
            return True
        time.sleep(0.01)  # the other processes get the CPU
    return predicate()
