"""pumpsim trace and pumpsim diff: a sensor trace replayed into the simulator, and two firmware
versions compared on it (the command-line side; trace.py, trace_replay.py, trace_diff.py do the
work).

    pumpsim trace TRACE [--scenario FILE] [--channels A,B] [--between hold|linear] [--max-hold S]
                        [--hours H] [--seed N] [--station SITE/STATION] [--config FILE]
                        [--firmware DIR] [--out DIR]
    pumpsim diff TRACE --old DIR --new DIR [the same options but --firmware] [--tolerance-s S]
                        [--speed-tolerance P]

``trace`` writes decisions.jsonl (trace_replay.py) and, run in this process (no --firmware),
kpi.txt; it prints the KPI table and the decision counts. With ``--firmware DIR`` the replay runs
in a process of its own with DIR's relaypump (trace_worker.py). ``diff`` replays the trace with
both firmware folders (two processes side by side), writes old.jsonl, new.jsonl and diff.txt
(trace_diff.py) and prints the report: exit 0 when the decisions agree, 1 when they differ.
A firmware folder is a checkout's firmware/ (relaypump/ and station.json): each version runs with
its own station.json unless ``--config`` names one for both; a checkout is taken for its
firmware/, and the same folder as --old and --new is refused. Refusals as pumpsim's: one line,
exit 2, nothing written. Ctrl-C: ``trace`` writes what was simulated and exits 130 (as ``run``);
``diff`` stops its workers, writes no diff and exits 130 (a worker that was interrupted is no
result either).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from host_tools.sim import cli, scenario, trace, trace_diff
from host_tools.sim.agent_controller import REPO
from host_tools.sim.iomodule import IoModule


def add_commands(commands, default_scenario: str) -> None:
    trace_cmd = commands.add_parser(
        "trace",
        help="replay a sensor trace (CSV or telemetry log) into the station; log the agent's "
        "decisions",
        description="Replay recorded station measurements (a CSV trace or a telemetry log; "
        "format: host_tools/sim/trace.py) into the simulated I/O module, the firmware agent in "
        "control, drives and hydraulics simulated; write the agent's decisions (decisions.jsonl) "
        "and the KPIs (kpi.txt) to --out.",
    )
    diff_cmd = commands.add_parser(
        "diff",
        help="replay a trace with two firmware versions and report where their decisions differ",
        description="Replay a trace with two firmware folders (a checkout's firmware/ each) and "
        "report where the agents' decisions differ: first divergence, counts per kind, starts, "
        "stops, energy, DP in band. Exit 0: no divergence, 1: they differ.",
    )
    for cmd in (trace_cmd, diff_cmd):
        cmd.add_argument("trace", metavar="TRACE", help="CSV trace, telemetry log or telemetry.bin")
        cmd.add_argument(
            "--scenario",
            default=default_scenario,
            metavar="FILE",
            help=f"the station, drives and fault schedule (default: {default_scenario})",
        )
        cmd.add_argument(
            "--channels",
            default=None,
            metavar="A,B",
            help="replay only these sensors (default: every one the trace has readings of)",
        )
        cmd.add_argument(
            "--between",
            choices=trace.BETWEEN,
            default="hold",
            help="between samples: hold the last one, or interpolate (default hold)",
        )
        cmd.add_argument(
            "--max-hold",
            type=cli.positive,
            default=trace.DEFAULT_MAX_HOLD_S,
            metavar="S",
            help=f"longest a sample stands, s (default {trace.DEFAULT_MAX_HOLD_S:g})",
        )
        cmd.add_argument(
            "--hours",
            type=cli.number,
            default=None,
            metavar="H",
            help="simulated hours (default: the trace's span, its first row to its last)",
        )
        cmd.add_argument(
            "--seed",
            type=cli.whole,
            default=None,
            metavar="N",
            help=f"seed of every random draw, 0..{cli.SEED_MAX} (default: the scenario's)",
        )
        cmd.add_argument(
            "--station",
            default=None,
            metavar="SITE/STATION",
            help="the station to replay from a log or pumplog export of several (default: the "
            "only one)",
        )
        cmd.add_argument(
            "--config",
            default=None,
            metavar="FILE",
            help="the agent's config, for every version (default: the firmware folder's "
            "station.json)",
        )
    trace_cmd.add_argument(
        "--firmware",
        default=None,
        metavar="DIR",
        help="a firmware folder or a checkout, run in a process of its own (default: this "
        "checkout's firmware, in this process)",
    )
    trace_cmd.add_argument(
        "--out",
        default="build/trace",
        type=cli.folder,
        metavar="DIR",
        help="output folder, created if missing (default: build/trace)",
    )
    diff_cmd.add_argument(
        "--old", required=True, metavar="DIR", help="the old firmware folder (or its checkout)"
    )
    diff_cmd.add_argument(
        "--new", required=True, metavar="DIR", help="the new firmware folder (or its checkout)"
    )
    diff_cmd.add_argument(
        "--tolerance-s",
        type=cli.number,
        default=trace_diff.DEFAULT_TOLERANCE_S,
        metavar="S",
        help="two decisions this far apart or nearer are the same decision, s (default "
        f"{trace_diff.DEFAULT_TOLERANCE_S:g})",
    )
    diff_cmd.add_argument(
        "--speed-tolerance",
        type=cli.number,
        default=trace_diff.DEFAULT_SPEED_TOLERANCE_PCT,
        metavar="P",
        help="speed references this close are the same, %% (default "
        f"{trace_diff.DEFAULT_SPEED_TOLERANCE_PCT:g})",
    )
    diff_cmd.add_argument(
        "--out",
        default="build/trace-diff",
        type=cli.folder,
        metavar="DIR",
        help="output folder, created if missing (default: build/trace-diff)",
    )


@dataclasses.dataclass
class Job:
    scenario: scenario.Scenario
    source: trace.Trace
    channels: list[str] | None
    hours: float
    station: tuple[str, str] | None
    config: Path | None


def check_firmware(folder: str, option: str) -> Path:
    """A firmware folder (relaypump/ in it), or a checkout whose firmware/ is one."""
    path = Path(folder)
    if not path.is_dir():
        raise cli.Refused(f"{option} {folder}: no such folder")
    if not (path / "relaypump" / "__init__.py").is_file():
        if (path / "firmware" / "relaypump" / "__init__.py").is_file():
            return (path / "firmware").resolve()
        raise cli.Refused(
            f"{option} {folder}: no relaypump/ package in it (a firmware folder, or a checkout "
            "with one in firmware/)"
        )
    return path.resolve()


def prepare(args: argparse.Namespace) -> Job:
    """Everything checked before anything runs or is written."""
    chosen = cli.load_scenario(args.scenario)
    if args.seed is not None:
        chosen = dataclasses.replace(chosen, seed=cli.check_seed(args.seed))
    config = Path(args.config).resolve() if args.config else None
    if config is not None and not config.is_file():
        raise cli.Refused(f"--config {args.config}: no such file")
    names_config = config or REPO / chosen.agent_config
    station = None
    if args.station:
        site, _, name = args.station.partition("/")
        if not site or not name:
            raise cli.Refused(f"--station must be SITE/STATION, got {args.station!r}")
        station = (site, name)
    try:
        source = trace.read(args.trace, trace.sensor_names(agent_config=names_config), station)
        channels = [c.strip() for c in (args.channels or "").split(",") if c.strip()] or None
        trace.TraceInputs(source, IoModule(chosen.io_unit), channels, args.between, args.max_hold)
    except trace.TraceError as exc:
        raise cli.Refused(str(exc)) from exc
    hours = args.hours if args.hours is not None else source.span_s / 3600.0
    if args.hours is None:
        if hours <= 0.0:
            raise cli.Refused(f"{args.trace}: one row: a trace needs two rows to span any time")
        limit = cli.hours_limit(chosen)
        if hours > limit:
            raise cli.Refused(
                f"{args.trace}: spans {hours:g} h, past the end of the heating season from "
                f"{chosen.date} (at most {limit:g} h): give --hours"
            )
    cli.check_hours(hours, chosen)
    cli.check_out(Path(args.out))
    return Job(chosen, source, channels, hours, station, config)


def _worker_job(args, job: Job, firmware: Path, decisions: Path) -> dict:
    return {
        "firmware": str(firmware),
        "scenario": str(Path(args.scenario).resolve()),
        "seed": args.seed,
        "trace": str(Path(args.trace).resolve()),
        "station": list(job.station) if job.station else None,
        "channels": job.channels,
        "between": args.between,
        "max_hold_s": args.max_hold,
        "hours": job.hours,
        "config": str(job.config) if job.config else None,
        "decisions": str(decisions.resolve()),
    }


def start_worker(spec: dict, folder: Path) -> subprocess.Popen:
    job_file = folder / f"job-{Path(spec['decisions']).stem}.json"
    job_file.write_text(json.dumps(spec))
    return subprocess.Popen(
        [sys.executable, "-m", "host_tools.sim.trace_worker", str(job_file)],
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )


def stop_workers(procs) -> None:
    """Kill the workers still running (a refusal or Ctrl-C of this process must not leave
    them running on)."""
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def finish_worker(proc: subprocess.Popen, label: str) -> None:
    _, err = proc.communicate()
    if proc.returncode in (cli.EXIT_INTERRUPTED, -signal.SIGINT):
        raise KeyboardInterrupt  # the worker's replay was cut short: no result to report
    if proc.returncode != 0:
        lines = [line for line in err.strip().splitlines() if line.strip()]
        raise cli.Refused(f"{label}: " + (lines[-1] if lines else f"exit {proc.returncode}"))


def print_summary(path: Path) -> None:
    run = trace_diff.load(path)
    s = run.summary
    print(
        f"energy {s.get('energy_kwh')} kWh, DP in band {s.get('dp_in_band_pct')} %, "
        f"starts {s.get('starts')}, station stops {s.get('station_stops')}"
    )
    for key, count in (s.get("counts") or {}).items():
        print(f"  {key}: {count}")


def print_notes(job: Job) -> None:
    """What the first line does not say and a user should not miss."""
    ignored = job.source.ignored
    if ignored:
        listed = ", ".join(ignored[:8]) + (f", ... ({len(ignored)} in all)" if ignored[8:] else "")
        print(f"  columns not replayed (no sensor of that name): {listed}")
    if job.hours * 3600.0 > job.source.span_s + 1.0:
        print(
            f"  the trace ends at {job.source.span_s / 3600.0:g} h: after it every channel is "
            "simulated"
        )


def run_trace(args: argparse.Namespace) -> int:
    job = prepare(args)
    out = Path(args.out)
    firmware = check_firmware(args.firmware, "--firmware") if args.firmware else None
    made = cli.make_out(out)
    decisions = out / "decisions.jsonl"
    print(
        f"pumpsim trace: {job.source.source} on {job.scenario.name}, {job.hours:g} h, "
        f"channels {', '.join(job.channels or job.source.channels())}"
    )
    print_notes(job)
    if firmware is not None:
        with tempfile.TemporaryDirectory() as tmp:
            proc = start_worker(_worker_job(args, job, firmware, decisions), Path(tmp))
            try:
                finish_worker(proc, str(firmware))
            except BaseException:  # refused or Ctrl-C: the folder goes if nothing is in it
                cli.remove(made)
                raise
            finally:
                stop_workers([proc])
        print_summary(decisions)
        print(f"wrote {decisions}")
        return 0
    from relaypump.config import ConfigError

    from host_tools.sim import report
    from host_tools.sim.trace_replay import replay, write_decisions

    try:
        done = replay(
            job.scenario,
            job.source,
            channels=job.channels,
            between=args.between,
            max_hold_s=args.max_hold,
            hours=job.hours,
            config_path=job.config,
            progress=cli.progress_bar(),
        )
    except ConfigError as exc:
        cli.remove(made)
        raise cli.Refused(f"{job.config or REPO / job.scenario.agent_config}: {exc}") from exc
    except (scenario.ScenarioError, trace.TraceError) as exc:
        cli.remove(made)
        raise cli.Refused(str(exc)) from exc
    write_decisions(decisions, done)
    table = report.kpi_table(done.result)
    (out / "kpi.txt").write_text(table + "\n")
    print(table)
    print_summary(decisions)
    print(f"wrote {decisions}, {out / 'kpi.txt'}")
    if getattr(done.result, "interrupted", False):  # Ctrl-C: what was simulated is written
        simulated = done.result.kpis.get("hours", 0.0)
        print(f"pumpsim: interrupted after {simulated:.2f} h of {job.hours:g} h", file=sys.stderr)
        return cli.EXIT_INTERRUPTED
    return 0


def run_diff(args: argparse.Namespace) -> int:
    job = prepare(args)
    for option, value in (
        ("--tolerance-s", args.tolerance_s),
        ("--speed-tolerance", args.speed_tolerance),
    ):
        if not (math.isfinite(value) and value >= 0.0):
            raise cli.Refused(f"{option} must be a number >= 0, got {value:g}")
    old = check_firmware(args.old, "--old")
    new = check_firmware(args.new, "--new")
    if old == new:
        raise cli.Refused(f"--old and --new are the same folder ({old}): nothing to compare")
    out = Path(args.out)
    made = cli.make_out(out)
    print(f"pumpsim diff: {job.source.source}, {job.hours:g} h: {old} against {new}")
    print_notes(job)
    logs = {"old": out / "old.jsonl", "new": out / "new.jsonl"}
    with tempfile.TemporaryDirectory() as tmp:
        procs = {
            label: start_worker(_worker_job(args, job, folder, logs[label]), Path(tmp))
            for label, folder in (("old", old), ("new", new))
        }
        try:
            for label, proc in procs.items():
                finish_worker(proc, f"--{label} {args.old if label == 'old' else args.new}")
        except BaseException:  # refused, or Ctrl-C: no half diff, no worker left running
            stop_workers(procs.values())
            for log in logs.values():
                log.unlink(missing_ok=True)
            cli.remove(made)
            raise
    text, differ = trace_diff.report(
        trace_diff.load(logs["old"]),
        trace_diff.load(logs["new"]),
        args.tolerance_s,
        args.speed_tolerance,
    )
    (out / "diff.txt").write_text(text)
    sys.stdout.write(text)
    print(f"wrote {out / 'diff.txt'}, {logs['old']}, {logs['new']}")
    return 1 if differ else 0
