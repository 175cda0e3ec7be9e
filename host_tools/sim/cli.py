"""pumpsim: run the simulated station for a day and write the KPI table, the plot and the log.

pumpsim [--scenario FILE] [--hours H] [--seed N] [--out DIR] [--controller agent|reference]
pumpsim serve --port /dev/ttyUSB0 [--scenario FILE] [--baud 19200]   (devices on a serial port)
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

from host_tools.sim import report, scenario, telemetry_log
from host_tools.sim.agent_controller import AgentController
from host_tools.sim.run import run


def progress_bar(stream=sys.stderr):
    start = time.monotonic()

    def show(fraction: float) -> None:
        filled = int(fraction * 40)
        elapsed = time.monotonic() - start
        stream.write(
            f"\r[{'#' * filled}{'.' * (40 - filled)}] {fraction * 100:5.1f} %  {elapsed:6.1f} s"
        )
        if fraction >= 1.0:
            stream.write("\n")
        stream.flush()

    return show


def simulate(args: argparse.Namespace) -> int:
    try:
        chosen = scenario.load(args.scenario)
    except scenario.ScenarioError as exc:
        print(f"pumpsim: {exc}", file=sys.stderr)
        return 2
    changes = {}
    if args.seed is not None:
        changes["seed"] = args.seed
    chosen = dataclasses.replace(chosen, **changes)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    hours = args.hours if args.hours is not None else chosen.hours
    try:
        controller = AgentController(chosen)
    except ValueError as exc:  # ScenarioError (bus vs config), ConfigError
        print(f"pumpsim: {exc}", file=sys.stderr)
        return 2
    print(f"pumpsim: {chosen.name}, {hours:g} h, seed {chosen.seed}, the firmware agent in control")
    started = time.monotonic()
    result = run(chosen, controller, hours=hours, progress=progress_bar())
    wall = time.monotonic() - started
    frames = result.telemetry or telemetry_log.station_frames(result)
    telemetry_log.write(out / "telemetry.bin", frames)
    report.plot(result, out / "day.png")
    table = report.kpi_table(result)
    (out / "kpi.txt").write_text(table + "\n")
    print(table)
    print(f"real-time factor {hours * 3600.0 / wall:.0f}x ({wall:.1f} s)")
    print(
        f"wrote {out / 'kpi.txt'}, {out / 'day.png'}, {out / 'telemetry.bin'} ({len(frames)} frames)"
    )
    return 0


def serve(args: argparse.Namespace) -> int:
    from host_tools.sim.serial_port import serve_forever

    try:
        chosen = scenario.load(args.scenario)
    except scenario.ScenarioError as exc:
        print(f"pumpsim: {exc}", file=sys.stderr)
        return 2
    return serve_forever(chosen, args.port, args.baud, args.hours)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="pumpsim", description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default=str(scenario.DEFAULT_SCENARIO))
    if argv[:1] == ["serve"]:
        parser.add_argument("command")
        parser.add_argument("--port", required=True, help="serial device, e.g. /dev/ttyUSB0")
        parser.add_argument("--baud", type=int, default=None)
        parser.add_argument("--hours", type=float, default=None, help="stop after H hours")
        return serve(parser.parse_args(argv))
    parser.add_argument("--hours", type=float, default=None)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--out", default="build/sim")
    return simulate(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
