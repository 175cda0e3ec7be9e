"""A Mosquitto process of a test's or a bench's own: its files, its port, start, stop.

    broker = BrokerProcess(directory, passwords, acl, settings=["persistence false"])
    broker.start()           returns once the port accepts connections
    ... 127.0.0.1:broker.port (and broker.tls_port with tls=TlsFiles(ca, cert, key))
    broker.stop()

Rules:
- Loopback only, on a free port chosen once: a restart (stop, start) keeps it, so clients come
  back to the same address.
- No anonymous access: a password file (``user:password`` lines hashed in place by
  mosquitto_passwd) and the ACL text, both written into ``directory`` with the config and the
  broker's log (``mosquitto.log``). Only ``passwords=None`` (the benches' throwaway broker)
  allows anonymous clients, with no ACL. ``settings`` are further config lines (persistence, queue
  limits, log types), written before the listeners.
- TLS (optional): a second listener with the given CA, certificate and key (the broker does not
  ask clients for certificates).
- Started as root, the broker keeps root (``user root``) so it can read and write those files.
- ``start()`` raises RuntimeError with the broker's log when it exits or does not listen within
  ``timeout``; ``stop()`` is SIGTERM (a persistent broker saves its database), then SIGKILL after
  ``timeout``; ``terminate()`` is SIGTERM without waiting (``running`` tells when it is gone);
  ``kill()`` is SIGKILL; ``freeze()``/``thaw()`` are SIGSTOP/SIGCONT: a broker that is there (the
  kernel still accepts connections) but silent.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path


def mosquitto_path() -> str | None:
    return shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if os.path.exists("/usr/sbin/mosquitto") else None
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class TlsFiles:
    ca: Path
    cert: Path
    key: Path


class BrokerProcess:
    def __init__(
        self,
        directory: Path,
        passwords: dict[str, str] | None,
        acl: str = "",
        settings: list[str] | tuple[str, ...] = (),
        tls: TlsFiles | None = None,
    ):
        exe = mosquitto_path()
        if exe is None:
            raise RuntimeError("mosquitto is not installed (make system-packages)")
        self.exe = exe
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.tls = tls
        self.tls_port = free_port() if tls else None
        self.log_path = self.dir / "mosquitto.log"
        self.proc: subprocess.Popen | None = None
        self.conf = self.dir / "mosquitto.conf"
        self._passwords, self._acl, self._settings = passwords, acl, tuple(settings)
        self._write_files()

    def _write_files(self) -> None:
        """The password file, the ACL and the config (a subclass may rewrite them after)."""
        conf = ["per_listener_settings false", "allow_anonymous true"]
        if self._passwords is not None:
            passwd = self.dir / "passwd"
            passwd.write_text("".join(f"{u}:{p}\n" for u, p in self._passwords.items()))
            subprocess.run(["mosquitto_passwd", "-U", str(passwd)], check=True, capture_output=True)
            (self.dir / "acl").write_text(self._acl)
            conf = [
                "per_listener_settings false",
                "allow_anonymous false",
                f"password_file {passwd}",
                f"acl_file {self.dir / 'acl'}",
            ]
        conf += [*self._settings, f"listener {self.port} 127.0.0.1"]
        if os.geteuid() == 0:
            conf.insert(0, "user root")
        if self.tls:
            conf += [
                f"listener {self.tls_port} 127.0.0.1",
                f"cafile {self.tls.ca}",
                f"certfile {self.tls.cert}",
                f"keyfile {self.tls.key}",
            ]
        self.conf.write_text("\n".join(conf) + "\n")

    def start(self, timeout: float = 30.0) -> None:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [self.exe, "-c", str(self.conf)], stdout=log, stderr=subprocess.STDOUT
            )
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
                time.sleep(0.01)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def terminate(self) -> None:
        if self.proc is not None:
            self.proc.terminate()

    def stop(self, timeout: float = 60.0) -> None:
        if self.proc is None:
            return
        self.thaw()
        self.proc.terminate()
        try:
            self.proc.wait(timeout)
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

    def log(self, last: int | None = None) -> str:
        """The broker's log (its ``last`` lines)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return text if last is None else "\n".join(text.splitlines()[-last:])
