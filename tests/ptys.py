"""A linked pair of ptys made by socat, as the tests' RS-485 cable between two serial ports.

``with SocatPair(tmp_path) as (a, b):`` gives two device paths (symlinks socat made); what one
side writes, the other reads. ``SocatPair(tmp_path, to=device)`` links one new pty to an existing
device instead (e.g. a virtual board's RS-485 pty). socat is started and stopped here (by its pid);
a missing socat skips the test with the way to install it (the Makefile's system-packages does).
A pty carries no parity: a master on it opens with parity N (see README, the bench).
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest

PTY = "pty,raw,echo=0,link={}"


class SocatPair:
    def __init__(self, folder: Path, to: str | None = None) -> None:
        self.a = str(folder / "pty-a")
        self.b = str(folder / "pty-b") if to is None else to
        self.far = PTY.format(self.b) if to is None else f"file:{to},raw,echo=0"
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> tuple[str, str]:
        socat = shutil.which("socat")
        if socat is None:
            pytest.skip("socat is missing: make system-packages (or apt-get install socat)")
        self._process = subprocess.Popen(
            [socat, PTY.format(self.a), self.far],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while not Path(self.a).exists() or not Path(self.b).exists():
            if self._process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"socat did not make {self.a} and {self.b}")
            time.sleep(0.01)
        return self.a, self.b

    def __exit__(self, *exc: object) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(5)
