"""One trace replay with a firmware of one's choice, in a process of its own.

    python -m host_tools.sim.trace_worker JOB.json

Two firmware versions cannot share a process (both are the package ``relaypump``), so
``pumpsim diff`` and ``pumpsim trace --firmware`` run each replay here. JOB is a JSON object:
``firmware`` (a folder holding relaypump/, e.g. a checkout's firmware/), ``scenario`` (TOML),
``seed`` (or null), ``trace``, ``station`` ([site, station] or null), ``channels`` (or null),
``between``, ``max_hold_s``, ``hours`` (or null), ``config`` (the agent's config; null: the
firmware folder's station.json) and ``decisions`` (the JSONL to write; trace_replay.py).
Before anything imports it, relaypump is taken from the firmware folder: a temporary folder with
only a link to its relaypump/ goes first on sys.path (nothing else of the folder can shadow a
module), and the package actually imported is checked. The simulator is this checkout's.
Firmware supported: one whose runtime.py has the board interface (wait_us; commit a49b304 "One
runtime" and later) runs in its own runtime (agent_controller.py); an older one is driven as the
simulator drove it before (trace_replay.DirectAgentController: relaypump.agent.Agent with
next_request, receive, tick; tried back to 50ddaf2). Both need relaypump/codes.py (event names).
Exit 0 written, 2 refused (one line on stderr), 130 interrupted (Ctrl-C; what was simulated
is written).
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path


def use_firmware(folder: Path) -> Path:
    """Put folder/relaypump first on sys.path; the package folder."""
    package = folder / "relaypump"
    if not (package / "__init__.py").is_file():
        raise SystemExit(f"trace_worker: {folder}: no relaypump/ package in it")
    link_dir = Path(tempfile.mkdtemp(prefix="relaypump-"))
    atexit.register(shutil.rmtree, link_dir, True)
    os.symlink(package.resolve(), link_dir / "relaypump")
    sys.path.insert(0, str(link_dir))
    for name in [m for m in sys.modules if m == "relaypump" or m.startswith("relaypump.")]:
        del sys.modules[name]
    import relaypump

    loaded = Path(relaypump.__file__).resolve().parent
    if loaded != package.resolve():
        raise SystemExit(f"trace_worker: imported relaypump from {loaded}, not from {package}")
    missing = [m for m in ("agent.py", "codes.py") if not (package / m).is_file()]
    if missing:
        raise SystemExit(
            f"trace_worker: {folder}: the firmware is older than the tool supports "
            f"(no relaypump/{missing[0]})"
        )
    return package


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m host_tools.sim.trace_worker JOB.json", file=sys.stderr)
        return 2
    job = json.loads(Path(argv[0]).read_text())
    folder = Path(job["firmware"])
    try:
        use_firmware(folder)
    except SystemExit as exc:
        print(exc, file=sys.stderr)
        return 2
    import dataclasses

    from host_tools.sim import scenario as scenario_mod
    from host_tools.sim import trace as trace_mod
    from host_tools.sim.trace_replay import replay, write_decisions

    config = Path(job["config"]) if job.get("config") else folder / "station.json"
    try:
        chosen = scenario_mod.load(job["scenario"])
        if job.get("seed") is not None:
            chosen = dataclasses.replace(chosen, seed=job["seed"])
        names = trace_mod.sensor_names(agent_config=config)
        station = tuple(job["station"]) if job.get("station") else None
        trace = trace_mod.read(job["trace"], names, station)
        result = replay(
            chosen,
            trace,
            channels=job.get("channels"),
            between=job.get("between", "hold"),
            max_hold_s=job.get("max_hold_s", trace_mod.DEFAULT_MAX_HOLD_S),
            hours=job.get("hours"),
            config_path=config,
        )
    except (ValueError, OSError, AttributeError, TypeError, ImportError) as exc:
        # a refused scenario, config or trace; an old firmware whose interface differs
        print(f"trace_worker: {folder}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    write_decisions(Path(job["decisions"]), result)
    if getattr(result.result, "interrupted", False):  # Ctrl-C: a part, not a result to compare
        print("trace_worker: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
