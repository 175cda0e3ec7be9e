"""One hardware-in-the-loop run: the simulated station answers on a serial port in real time (the
`pumpsim serve` loop, host_tools/sim/serial_port.py, in-process) and a board's agent controls it.

The board is a real one behind the host's RS-485 adapter (``--bench-port``), or the virtual board
of CI (host_tools/deploy/virtual_board.py: the agent's runtime in the MicroPython VM, its RS-485
UART on a pty) linked to the station by a socat pty pair, so framing, timeouts and inter-frame
gaps are those of a wire, on the wall clock.

What is recorded comes from the wire side only (a board's insides cannot be seen): every second
the plant sample of the in-process runs (host_tools/sim/run.py, so both KPI sets come from the
same code), and each drive's state as the board left it: the reference last written, whether it
is told to run, whether its comm-loss timer has run out.
"""

from __future__ import annotations

import dataclasses
import select
import shutil
from array import array
from pathlib import Path

from host_tools.deploy import bundle
from host_tools.deploy.virtual_board import VirtualBoard
from host_tools.sim import run as run_mod
from host_tools.sim.agent_controller import AgentController, load_agent_config
from host_tools.sim.drives.base import RUN
from host_tools.sim.hardware import SimulatedStation
from host_tools.sim.scenario import Scenario
from host_tools.sim.serial_port import SerialServer, open_port, run_real_time

STARTED = "runtime: agent of station 1 running"
FIRST_REQUEST_S = 60.0


@dataclasses.dataclass
class WireTrace:
    """Per sample and drive: the reference the board last wrote (%), told to run, cut off."""

    references: list[array]
    commanded: list[array]
    cut_off: list[array]


@dataclasses.dataclass
class Outcome:
    name: str  # "virtual board", "board on /dev/ttyUSB0", "in-process"
    result: run_mod.RunResult
    station: SimulatedStation
    wire: WireTrace | None = None
    server: SerialServer | None = None
    board: VirtualBoard | None = None

    @property
    def kpis(self) -> dict:
        return self.result.kpis


class FixedSetpoint:
    """The remote DP the agent holds, for the in-band KPI: a board's setpoint cannot be read off the
    wire, so the bench needs a config whose setpoint mode is "fixed" (the reference station's)."""

    def __init__(self, config: dict) -> None:
        setpoint = config["setpoint"]
        assert setpoint["mode"] == "fixed", "the HIL bench judges a fixed setpoint"
        self.value_kpa = float(setpoint["dp_kpa"])

    def setpoint_kpa(self) -> float:
        return self.value_kpa


def in_process(chosen: Scenario, seconds: float) -> Outcome:
    """The same scenario in the in-process closed loop (virtual time)."""
    station = SimulatedStation(chosen)
    result = run_mod.run(chosen, AgentController(chosen), hours=seconds / 3600.0, station=station)
    return Outcome("in-process", result, station)


def flash_virtual_board(folder: Path, station_json: Path) -> Path:
    """A virtual board's flash as `make flash` leaves it: the bundle, main.py, /station.json."""
    built = bundle.build("virtual", out_root=folder / "bundles")
    flash = folder / "flash"
    shutil.copytree(built, flash)
    shutil.copyfile(station_json, flash / "station.json")
    return flash


def served(
    chosen: Scenario, device: str, seconds: float, name: str, board: VirtualBoard | None = None
) -> Outcome:
    """Serve the station on `device` for `seconds` of real time, recording as run.run does; a
    virtual board given is powered on once the station answers (a board on a bench is already)."""
    station = SimulatedStation(chosen)
    setpoint = FixedSetpoint(load_agent_config(chosen))
    result = run_mod.RunResult(chosen)
    result.samples = {column: array("d") for column in run_mod.COLUMNS}
    drives = station.drives
    result.speeds, result.running, result.power, result.limited = (
        [array(kind) for _ in drives] for kind in "dbdb"
    )
    wire = WireTrace(*([array(kind) for _ in drives] for kind in "dbb"))
    sample = run_mod._sampler(result, station, setpoint)  # the in-process runs' own recorder
    per_sample = max(1, round(run_mod.SAMPLE_S / chosen.step_s))
    steps = [0]
    min_margin = [float("inf")]

    def on_step() -> None:
        min_margin[0] = min(min_margin[0], station.plant.suction_margin_kpa)
        steps[0] += 1
        if steps[0] % per_sample:
            return
        sample()
        for i, drive in enumerate(drives):
            wire.references[i].append(drive.reference_pct)
            wire.commanded[i].append(drive.motion == RUN)
            wire.cut_off[i].append(drive.comm_lost)

    port = open_port(device, chosen.baud)
    server = SerialServer(port, station.bus, chosen.baud)
    try:
        if board is not None:
            board.start()
        # the plant's clock starts with the board's first request (a virtual board boots first)
        if not select.select([port.fileno()], [], [], FIRST_REQUEST_S)[0]:
            raise AssertionError(f"no request from the board on {device} in {FIRST_REQUEST_S} s")
        run_real_time(station, server, seconds, on_step)
    finally:
        port.close()
    result.kpis = run_mod.kpis(result, station, min_margin[0])
    return Outcome(name, result, station, wire, server, board)


def kpi_rows(*outcomes: Outcome) -> str:
    """The KPIs of each run side by side, as `name: value unit` lines per run."""
    keys = (
        ("energy_kwh", "kWh"),
        ("dp_in_band_pct", "%"),
        ("unserved_min", "min"),
        ("min_suction_margin_kpa", "kPa"),
        ("max_slew_pct_s", "%/s"),
        ("max_starts_per_hour", ""),
        ("starts", ""),
        ("station_starts", ""),
        ("station_stops", ""),
        ("spurious_station_stops", ""),
        ("max_power_vs_rated", ""),
        ("bus_requests", ""),
        ("bus_corrupted_frames", ""),
    )
    width = max(len(o.name) for o in outcomes)
    lines = [
        f"hil longest_bus_silence [{o.name:<{width}}]: {o.server.longest_gap_s:.3f} s"
        for o in outcomes
        if o.server is not None
    ]
    for key, unit in keys:
        for o in outcomes:
            value = o.kpis[key]
            text = f"{value:.3f}" if isinstance(value, float) else str(value)
            lines.append(f"hil {key} [{o.name:<{width}}]: {text} {unit}".rstrip())
    return "\n".join(lines)


def write_csv(outcome: Outcome, path: Path) -> None:
    """The run's samples and wire-side drive states, one row per second."""
    samples = outcome.result.samples
    pumps = range(len(outcome.station.drives))
    columns = list(samples)
    columns += [f"{name}_{p + 1}" for p in pumps for name in ("speed_pct", "running")]
    if outcome.wire is not None:
        columns += [f"{name}_{p + 1}" for p in pumps for name in ("ref_pct", "told_run", "cut_off")]
    rows = [",".join(columns)]
    for i in range(len(samples["t_s"])):
        row = [f"{samples[c][i]:.3f}" for c in samples]
        for p in pumps:
            row += [f"{outcome.result.speeds[p][i]:.2f}", str(outcome.result.running[p][i])]
        if outcome.wire is not None:
            wire = outcome.wire
            for p in pumps:
                row += [f"{wire.references[p][i]:.2f}", str(wire.commanded[p][i])]
                row.append(str(wire.cut_off[p][i]))
        rows.append(",".join(row))
    path.write_text("\n".join(rows) + "\n")
