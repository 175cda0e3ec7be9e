"""pumpsim: the simulated relay pump station, the firmware agent in control.

    pumpsim [run] [--scenario FILE] [--hours H] [--seed N] [--out DIR] [--record-trace]
    pumpsim serve --port DEVICE [--scenario FILE] [--baud B] [--hours H]
    pumpsim trace TRACE [...]                   a sensor trace replayed (trace_cli.py)
    pumpsim diff TRACE --old DIR --new DIR      two firmware versions on one trace (trace_cli.py)

`run` (the default) simulates in virtual time and writes the KPI table, the plot and the telemetry
log; `serve` makes the simulated drives and I/O module answer on a serial port in real time.
Rules for the command line:
- Every refusal is one line on stderr naming what is wrong, and exit status 2; nothing is created
  by a refused run (the output folder is made only once everything else has been checked, and
  removed again if it was made for a run that is then refused).
- Ctrl-C stops a run cleanly: what was simulated so far is written, exit status 130.
- The progress bar redraws in place only on a terminal; into a pipe or a log it prints a line
  every 10 %.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import math
import os
import stat
import sys
import time
from pathlib import Path

from relaypump.config import ConfigError

from host_tools.sim import report, scenario, telemetry_log
from host_tools.sim.agent_controller import REPO, AgentController
from host_tools.sim.run import run

SEASON_END = (4, 1)  # the demand model covers the heating season: 1 Nov .. 31 Mar
SEED_MAX = 2**31 - 1
# The rates a board's agent can be set to (its bus.baud): serving at any other rate talks to no one.
BAUDS = (1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200)
EXIT_REFUSED = 2
EXIT_INTERRUPTED = 130


class Refused(Exception):
    """A command line or file the run cannot start with; str() is the one line to print."""


class Parser(argparse.ArgumentParser):
    """A usage error is one line too (argparse prints the whole usage first); subcommands'
    parsers are of this class (add_subparsers takes the parent's)."""

    def error(self, message: str):
        self.exit(EXIT_REFUSED, f"{self.prog}: {message} ({self.prog} --help lists the options)\n")


def progress_bar(stream=sys.stderr):
    start = time.monotonic()
    on_terminal = stream.isatty()
    shown = [-1]

    def show(fraction: float) -> None:
        elapsed = time.monotonic() - start
        if on_terminal:
            filled = int(fraction * 40)
            stream.write(
                f"\r[{'#' * filled}{'.' * (40 - filled)}] {fraction * 100:5.1f} %  {elapsed:6.1f} s"
            )
            if fraction >= 1.0:
                stream.write("\n")
        else:
            decile = int(fraction * 10)
            if decile == shown[0]:
                return
            shown[0] = decile
            stream.write(f"{decile * 10:3d} %  {elapsed:6.1f} s\n")
        stream.flush()

    return show


def hours_limit(chosen: scenario.Scenario) -> float:
    """Hours from the scenario's start to the end of its heating season."""
    start = dt.datetime.combine(chosen.date, dt.time())
    year = start.year + (1 if start.month >= 11 else 0)
    end = dt.datetime(year, *SEASON_END)
    return (end - start).total_seconds() / 3600.0


def check_hours(hours: float, chosen: scenario.Scenario) -> float:
    if math.isnan(hours) or math.isinf(hours):
        raise Refused(f"--hours must be a finite number of hours, got {hours}")
    if hours <= 0.0:
        raise Refused(f"--hours must be more than 0, got {hours:g}")
    if hours * 3600.0 < chosen.step_s:  # no step at all: an empty run, every KPI n/a
        raise Refused(
            f"--hours {hours:g} is shorter than one plant step ({chosen.step_s:g} s = "
            f"{chosen.step_s / 3600.0:.2g} h)"
        )
    limit = hours_limit(chosen)
    if hours > limit:
        raise Refused(
            f"--hours {hours:g} runs past the end of the heating season (31 Mar): "
            f"from {chosen.date} at most {limit:g} h"
        )
    return hours


def check_seed(seed: int) -> int:
    if not 0 <= seed <= SEED_MAX:
        raise Refused(f"--seed must be 0..{SEED_MAX}, got {seed}")
    return seed


def check_out(out: Path) -> None:
    """Refuse an output folder that cannot be made or written, before anything is simulated."""
    if out.exists():
        if not out.is_dir():
            raise Refused(f"--out {out}: exists and is not a folder")
        if not os.access(out, os.W_OK | os.X_OK):
            raise Refused(f"--out {out}: folder is not writable")
        return
    parent = out.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise Refused(f"--out {out}: {parent} is not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise Refused(f"--out {out}: cannot create it in {parent} (not writable)")


def make_out(out: Path) -> list[Path]:
    """Create the output folder; the folders this call made (to remove on a refusal)."""
    made = []
    for folder in reversed([out, *out.parents]):
        if not folder.exists():
            try:
                folder.mkdir()
            except OSError as exc:
                remove(made)
                raise Refused(f"--out {out}: cannot create {folder} ({exc.strerror})") from exc
            made.append(folder)
    probe = out / ".pumpsim-write-check"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        remove(made)
        raise Refused(f"--out {out}: cannot write there ({exc.strerror})") from exc
    return made


def remove(made: list[Path]) -> None:
    for folder in reversed(made):
        try:
            folder.rmdir()
        except OSError:
            pass


def load_scenario(path: str) -> scenario.Scenario:
    if not path.strip():  # would be read as the current folder: "(file): Is a directory"
        raise Refused(f"--scenario must name a TOML file, got {path!r}")
    try:
        return scenario.load(path)
    except scenario.ScenarioError as exc:
        raise Refused(str(exc)) from exc


def agent_for(chosen: scenario.Scenario) -> AgentController:
    config_path = Path(chosen.agent_config)
    if not config_path.is_absolute():
        config_path = REPO / config_path
    try:
        return AgentController(chosen)
    except ConfigError as exc:
        raise Refused(f"{config_path}: {exc}") from exc
    except ValueError as exc:  # ScenarioError: the scenario's bus against the agent's config
        raise Refused(str(exc)) from exc


def simulate(args: argparse.Namespace) -> int:
    chosen = load_scenario(args.scenario)
    if args.seed is not None:
        chosen = dataclasses.replace(chosen, seed=check_seed(args.seed))
    hours = check_hours(args.hours if args.hours is not None else chosen.hours, chosen)
    out = Path(args.out)
    check_out(out)
    controller = agent_for(chosen)
    make_out(out)
    print(f"pumpsim: {chosen.name}, {hours:g} h, seed {chosen.seed}, the firmware agent in control")
    station = writer = None
    if args.record_trace:  # what the I/O module's card reads, every second (trace.py)
        from host_tools.sim.trace_replay import recording

        controller, station, writer = recording(chosen, controller, out / "trace.csv")
    started = time.monotonic()
    try:
        result = run(chosen, controller, hours=hours, progress=progress_bar(), station=station)
    finally:
        if writer is not None:
            writer.close()
    wall = max(time.monotonic() - started, 1e-9)
    simulated_h = result.kpis.get("hours", hours)
    frames = result.telemetry or telemetry_log.station_frames(result)
    telemetry_log.write(out / "telemetry.bin", frames)
    report.plot(result, out / "day.png")
    table = report.kpi_table(result)
    (out / "kpi.txt").write_text(table + "\n")
    print(table)
    print(f"real-time factor {simulated_h * 3600.0 / wall:.0f}x ({wall:.1f} s)")
    print(
        f"wrote {out / 'kpi.txt'}, {out / 'day.png'}, {out / 'telemetry.bin'} ({len(frames)} frames)"
    )
    if writer is not None:
        print(f"wrote {writer.path} ({writer.rows} rows)")
    if getattr(result, "interrupted", False):
        print(f"pumpsim: interrupted after {simulated_h:.2f} h of {hours:g} h", file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0


def check_port(device: str) -> None:
    try:
        mode = os.stat(device).st_mode
    except OSError as exc:
        raise Refused(f"--port {device}: {exc.strerror}") from exc
    if stat.S_ISDIR(mode):
        raise Refused(f"--port {device}: is a folder, not a serial port")
    if not stat.S_ISCHR(mode):
        raise Refused(f"--port {device}: is not a serial port (not a character device)")
    try:
        fd = os.open(device, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    except OSError as exc:
        raise Refused(f"--port {device}: {exc.strerror}") from exc
    try:
        if not os.isatty(fd):
            raise Refused(f"--port {device}: is not a serial port (not a tty)")
    finally:
        os.close(fd)


def serve(args: argparse.Namespace) -> int:
    from host_tools.sim.serial_port import serve_forever

    chosen = load_scenario(args.scenario)
    if args.baud is not None and args.baud not in BAUDS:
        raise Refused(f"--baud must be one of {', '.join(map(str, BAUDS))}, got {args.baud}")
    if args.baud is None and chosen.baud not in BAUDS:
        raise Refused(
            f"{args.scenario}: bus.baud {chosen.baud} is not a rate a board's agent can use "
            f"({', '.join(map(str, BAUDS))}); give --baud"
        )
    if args.hours is not None:
        check_hours(args.hours, chosen)
    check_port(args.port)
    try:
        return serve_forever(chosen, args.port, args.baud, args.hours)
    except OSError as exc:  # busy (another serve), unplugged, settings refused (SerialException)
        raise Refused(f"--port {args.port}: {exc.strerror or exc}") from exc


def number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None


def positive(text: str) -> float:
    """A finite number > 0 (a duration in seconds, say)."""
    value = number(text)
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text!r}")
    return value


def folder(text: str) -> str:
    """--out: an empty one would be the current folder (an unset variable in a script, say)."""
    if not text.strip():
        raise argparse.ArgumentTypeError(f"must name a folder, got {text!r}")
    return text


def whole(text: str) -> int:
    try:
        return int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None


def parser() -> argparse.ArgumentParser:
    default_scenario = os.path.relpath(scenario.DEFAULT_SCENARIO)
    if default_scenario.startswith(os.pardir):  # run from outside the checkout: not ../../..
        default_scenario = str(scenario.DEFAULT_SCENARIO)
    top = Parser(
        prog="pumpsim",
        description="The simulated relay pump station (pumps, network, drives, I/O module on "
        "Modbus RTU), the firmware agent in control. Without a command: run.",
        epilog="pumpsim run --help, serve --help, trace --help and diff --help describe each "
        "command.",
    )
    commands = top.add_subparsers(dest="command", metavar="{run,serve,trace,diff}")
    run_cmd = commands.add_parser(
        "run",
        help="simulate in virtual time; write kpi.txt, day.png, telemetry.bin (the default)",
        description="Simulate the station in virtual time with the firmware agent in control "
        "and write kpi.txt (KPI table), day.png (plot) and telemetry.bin (uplink frames) to --out.",
    )
    serve_cmd = commands.add_parser(
        "serve",
        help="make the simulated drives and I/O module answer on a serial port in real time",
        description="Serve the station's simulated devices on a real serial port (a USB-RS-485 "
        "adapter on a bench, or a pty) in real time, for a board running the agent: each drive "
        "answers Modbus RTU on its scenario unit id (1, 2, 3 in the shipped scenarios) and the "
        "I/O module on its own (10), at 8E1 and the scenario's baud rate. The plant runs in real "
        "time and follows the scenario's fault schedule; Ctrl-C stops.",
    )
    for cmd in (run_cmd, serve_cmd):
        cmd.add_argument(
            "--scenario",
            default=default_scenario,
            metavar="FILE",
            help=f"scenario TOML file (default: {default_scenario})",
        )
    run_cmd.add_argument(
        "--hours",
        type=number,
        default=None,
        metavar="H",
        help="simulated hours (default: the scenario's hours, 24 in the shipped ones)",
    )
    run_cmd.add_argument(
        "--seed",
        type=whole,
        default=None,
        metavar="N",
        help=f"seed of every random draw, 0..{SEED_MAX} (default: the scenario's seed)",
    )
    run_cmd.add_argument(
        "--out",
        default="build/sim",
        type=folder,
        metavar="DIR",
        help="output folder, created if missing (default: build/sim)",
    )
    run_cmd.add_argument(
        "--record-trace",
        action="store_true",
        help="also write trace.csv: the I/O module's inputs as its card read them, every second "
        "(a sensor trace for pumpsim trace / diff)",
    )
    serve_cmd.add_argument(
        "--port", required=True, metavar="DEVICE", help="serial device, e.g. /dev/ttyUSB0"
    )
    serve_cmd.add_argument(
        "--baud",
        type=whole,
        default=None,
        metavar="B",
        help="baud rate: 1200, 2400, 4800, 9600, 19200, 38400, 57600 or 115200 (default: the "
        "scenario's, 19200 in the shipped ones)",
    )
    serve_cmd.add_argument(
        "--hours",
        type=number,
        default=None,
        metavar="H",
        help="stop after H hours of real time (default: until Ctrl-C)",
    )
    from host_tools.sim import trace_cli

    trace_cli.add_commands(commands, default_scenario)
    return top


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in ("run", "serve", "trace", "diff", "-h", "--help"):
        argv.insert(0, "run")
    args = parser().parse_args(argv)
    try:
        if args.command in ("trace", "diff"):
            from host_tools.sim import trace_cli

            command = trace_cli.run_trace if args.command == "trace" else trace_cli.run_diff
            return command(args)
        return serve(args) if args.command == "serve" else simulate(args)
    except Refused as exc:
        print(f"pumpsim: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    except KeyboardInterrupt:
        print("pumpsim: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
