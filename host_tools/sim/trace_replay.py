"""Trace replay: the firmware agent on the simulated station, its inputs from a sensor trace.

``replay(...)`` runs a scenario (plant, drives, bus, fault schedule) with the agent in control
(agent_controller.py: the firmware's own runtime) while a sensor trace (trace.py) drives the I/O
module's channels it has readings for. What the agent decides is written to a decisions log.

Decisions log (JSONL, format 1): one JSON object per line, keys in a fixed order, times ``t`` in
virtual seconds from the trace's first row (0.1 s resolution), so two logs compare with diff(1)
and with trace_diff.py:
    {"kind": "header", "format": 1, "firmware": DIR, "firmware_git": "abc1234"|null,
     "firmware_sha": first 12 hex of the SHA-256 of relaypump/*.py, "config": FILE,
     "trace": FILE, "trace_start_utc": ISO|null, "scenario": NAME, "seed": N,
     "channels": [...], "between": "hold", "max_hold_s": 60, "hours": H}
    {"t": T, "kind": "start", "pump": P}         the agent set the drive running (RUN)
    {"t": T, "kind": "stop", "pump": P, "by": "agent"|"trip"}
                                                  the drive left RUN: told to stop, or tripped
    {"t": T, "kind": "trip", "pump": P, "fault": F}   the drive tripped (its own protection)
    {"t": T, "kind": "reset", "pump": P}          a tripped drive was reset (the agent's edge)
    {"t": T, "kind": "event", "code": NAME, "severity": S, "subject": N, "value": V}
                                                  every event the agent pushed to its event ring,
                                                  named by the firmware's own codes.py
    {"t": T, "kind": "speeds", "ref": [%|null per pump], "setpoint_kpa": X}
                                                  every minute: each running drive's speed
                                                  reference (0.1 %), null when it is not running
    {"kind": "summary", "hours": H, "energy_kwh": ..., "dp_in_band_pct": ..., ... "counts": {...}}
                                                  the run's KPIs (host_tools/sim/run.py; from the
                                                  simulated plant) and the count of each kind
Drive decisions are observed at the drives (what reached them over the bus), events at the
agent's event ring; both are sampled once per plant step, so a time is at most one step late.
The KPIs are the simulated plant's: energy and the pumps follow the agent's decisions; where the
trace drives remote_dp_kpa the plant's DP is not what the agent regulated on.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

from host_tools.sim import trace as trace_mod
from host_tools.sim.agent_controller import AgentController
from host_tools.sim.drives.base import RUN
from host_tools.sim.hardware import SimulatedStation
from host_tools.sim.run import RunResult, run
from host_tools.sim.scenario import Scenario

FORMAT = 1
SPEED_EVERY_S = 60.0
SUMMARY_KPIS = (
    "hours",
    "energy_kwh",
    "dp_in_band_pct",
    "dp_in_band_outside_faults_pct",
    "unserved_min",
    "min_suction_margin_kpa",
    "starts",
    "station_starts",
    "station_stops",
    "spurious_station_stops",
    "max_starts_per_hour",
    "max_power_vs_rated",
)


def firmware_identity(package: Path) -> tuple[str | None, str]:
    """(git commit of the package's checkout or None, short SHA-256 of its .py files)."""
    digest = hashlib.sha256()
    for path in sorted(package.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    try:
        git = subprocess.run(
            ["git", "-C", str(package), "describe", "--always", "--dirty", "--abbrev=7"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        commit = git.stdout.strip() or None if git.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        commit = None
    return commit, digest.hexdigest()[:12]


def event_names() -> tuple[dict[int, str], dict[int, str]]:
    """Event and severity names of the firmware that runs (its own codes.py)."""
    from relaypump import codes

    table = vars(codes)
    events = {v: k[6:] for k, v in table.items() if k.startswith("EVENT_") and isinstance(v, int)}
    severities = {
        v: k[9:].lower()
        for k, v in table.items()
        if k.startswith("SEVERITY_") and isinstance(v, int)
    }
    return events, severities


class DirectAgentController:
    """The agent of a firmware older than runtime.py's board interface (before a49b304), driven
    as the simulator drove it then (50ddaf2's agent_controller.py): the agent's requests on the
    bus, its responses fed back, the 3.5-character silence, the control tick every
    pid.period_ms, jumping from event to event. Needs relaypump.agent.Agent (next_request,
    receive, tick), its fieldbus (poll, IDLE, gap_us, next_cycle_ms) and control.setpoint."""

    POLL_S = 0.002  # how often a waiting runtime looks at the wire when nothing arrives
    MASK = 0x3FFFFFFF

    def __init__(self, scenario: Scenario) -> None:
        from relaypump.agent import Agent
        from relaypump.fieldbus import IDLE

        from host_tools.sim.agent_controller import load_agent_config

        self.IDLE = IDLE
        self.config = load_agent_config(scenario)
        self.agent = Agent(self.config)
        self.runtime = None
        self.board = self  # DecisionRecorder reads board.ms
        self.period_s = self.agent.period_ms / 1000.0
        self.gap_s = self.agent.fieldbus.gap_us / 1e6
        self.t_s = 0.0
        self.next_tick_s = self.period_s
        self.waiting = False
        self.send_at_s = 0.0

    @property
    def ms(self) -> int:
        return int(self.t_s * 1000.0)

    def setpoint_kpa(self) -> float:
        return self.agent.control.setpoint.value_kpa

    def _ticks(self, t: float) -> int:
        return int(t * 1000.0) & self.MASK

    def advance(self, bus, until_s: float) -> None:
        agent, fieldbus, t = self.agent, self.agent.fieldbus, self.t_s
        while True:
            if self.waiting:
                arrival = bus.response_complete_at()
                wake = arrival if arrival is not None else t + self.POLL_S
            else:
                wake = max(t, self.send_at_s)
            wake = min(wake, self.next_tick_s)
            if wake >= until_s:
                break
            t = self.t_s = wake
            if t >= self.next_tick_s:
                agent.tick(self._ticks(t))
                self.next_tick_s += self.period_s
            if self.waiting:
                data = bus.receive(t)
                if data:
                    agent.receive(data)
                if fieldbus.poll(self._ticks(t)) == self.IDLE:
                    self.waiting = False
                    self.send_at_s = t + self.gap_s
                continue
            if t >= self.send_at_s:
                frame = agent.next_request(self._ticks(t))
                if frame is None:  # the bus rests until its next cycle (or the next tick)
                    due_ms = (fieldbus.next_cycle_ms() - self._ticks(t)) & self.MASK
                    self.send_at_s = min(self.next_tick_s, t + max(due_ms, 1) / 1000.0)
                else:
                    t = bus.send(bytes(frame), t)
                    self.waiting = True
        self.t_s = t


def agent_controller(scenario: Scenario):
    """The firmware's own runtime when it has the board interface (wait_us), else the agent
    driven directly (DirectAgentController)."""
    import relaypump.runtime as runtime

    if "wait_us" in Path(runtime.__file__).read_text():
        return AgentController(scenario)
    return DirectAgentController(scenario)


class DecisionRecorder:
    """A controller around the agent's: before every plant step it applies the trace to the I/O
    module, writes a trace row when recording, and notes what the agent decided."""

    def __init__(
        self,
        inner: AgentController,
        station: SimulatedStation,
        inputs: trace_mod.TraceInputs | None = None,
        writer: trace_mod.TraceWriter | None = None,
    ) -> None:
        self.inner = inner
        self.station = station
        self.inputs = inputs
        self.writer = writer
        self.records: list[dict[str, Any]] = []
        n = len(station.drives)
        self._running = [False] * n
        self._tripped = [False] * n
        self._next_speeds = 0.0
        self._next_row = 0.0
        self._ring = None
        self._events, self._severities = event_names()

    def setpoint_kpa(self) -> float:
        return self.inner.setpoint_kpa()

    def advance(self, bus, until_s: float) -> None:
        station = self.station
        t = station.t_s
        if self.inputs is not None:
            self.inputs.apply(station.io, t)
        if self.writer is not None and t >= self._next_row - 1e-6:
            self.writer.row(station.io, round(t, 3))
            self._next_row += 1.0
        self._watch_ring()
        self._drives(round(t, 1))
        if t >= self._next_speeds - 1e-6:
            self._speeds(round(t, 1))
            self._next_speeds += SPEED_EVERY_S
        self.inner.advance(bus, until_s)

    def _drives(self, t: float) -> None:
        records = self.records
        for i, drive in enumerate(self.station.drives):
            running = drive.motion == RUN
            tripped = drive.tripped
            if tripped and not self._tripped[i]:
                records.append({"t": t, "kind": "trip", "pump": i + 1, "fault": drive.trip_kind})
            if running and not self._running[i]:
                records.append({"t": t, "kind": "start", "pump": i + 1})
            elif self._running[i] and not running:
                by = "trip" if tripped else "agent"
                records.append({"t": t, "kind": "stop", "pump": i + 1, "by": by})
            if self._tripped[i] and not tripped:
                records.append({"t": t, "kind": "reset", "pump": i + 1})
            self._running[i] = running
            self._tripped[i] = tripped

    def _speeds(self, t: float) -> None:
        ref = [round(d.reference_pct, 1) if d.motion == RUN else None for d in self.station.drives]
        setpoint = round(self.inner.setpoint_kpa(), 1)
        self.records.append({"t": t, "kind": "speeds", "ref": ref, "setpoint_kpa": setpoint})

    def _watch_ring(self) -> None:
        """Every event the agent pushes, as it pushes it (the runtime may rebuild the agent)."""
        agent = getattr(self.inner.runtime, "agent", None) or self.inner.agent
        ring = agent.events
        if ring is self._ring:
            return
        self._ring = ring
        push = ring.push
        board = self.inner.board
        records, names, severities = self.records, self._events, self._severities

        def recorded(code, severity, subject, value, at_ms):
            records.append(
                {
                    "t": round(board.ms / 1000.0, 1),
                    "kind": "event",
                    "code": names.get(code, str(code)),
                    "severity": severities.get(severity, severity),
                    "subject": subject,
                    "value": value,
                }
            )
            return push(code, severity, subject, value, at_ms)

        ring.push = recorded


@dataclasses.dataclass
class Replay:
    result: RunResult
    records: list[dict[str, Any]]
    header: dict[str, Any]
    summary: dict[str, Any]


def replay(
    scenario: Scenario,
    trace: trace_mod.Trace,
    *,
    channels: list[str] | None = None,
    between: str = "hold",
    max_hold_s: float = trace_mod.DEFAULT_MAX_HOLD_S,
    hours: float | None = None,
    config_path: Path | None = None,
    progress=None,
) -> Replay:
    """The scenario with the agent in control and the trace on the I/O module."""
    from relaypump import __file__ as package_init

    if config_path is not None:
        scenario = dataclasses.replace(scenario, agent_config=str(config_path))
    station = SimulatedStation(scenario)
    inputs = trace_mod.TraceInputs(trace, station.io, channels, between, max_hold_s)
    recorder = DecisionRecorder(agent_controller(scenario), station, inputs)
    hours = trace.span_s / 3600.0 if hours is None else hours
    result = run(scenario, recorder, hours=hours, progress=progress, station=station)
    package = Path(package_init).resolve().parent
    git, sha = firmware_identity(package)
    header = {
        "kind": "header",
        "format": FORMAT,
        "firmware": str(package.parent),
        "firmware_git": git,
        "firmware_sha": sha,
        "config": str(scenario.agent_config),
        "trace": trace.source,
        "trace_start_utc": trace.start_utc.isoformat() if trace.start_utc else None,
        "scenario": scenario.name,
        "seed": scenario.seed,
        "channels": inputs.channels,
        "between": between,
        "max_hold_s": max_hold_s,
        "hours": round(hours, 6),
    }
    counts: dict[str, int] = {}
    for r in recorder.records:
        key = r["kind"] if r["kind"] != "event" else f"event {r['code']}"
        if r["kind"] != "speeds":
            counts[key] = counts.get(key, 0) + 1
    summary = {"kind": "summary"}
    summary.update({k: _plain(result.kpis.get(k)) for k in SUMMARY_KPIS})
    summary["counts"] = dict(sorted(counts.items()))
    return Replay(result, recorder.records, header, summary)


def _plain(value: Any) -> Any:
    """A KPI as JSON has it: numbers rounded for a stable text, n/a figures as their text."""
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, (int, str)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return str(value)


def write_decisions(path: Path, replay_: Replay) -> None:
    with Path(path).open("w", encoding="utf-8") as f:
        for record in (replay_.header, *replay_.records, replay_.summary):
            f.write(json.dumps(record, separators=(", ", ": ")) + "\n")


def recording(scenario: Scenario, controller: AgentController, path: Path):
    """(controller, station, writer) for a run that records its I/O module's inputs as a trace."""
    station = SimulatedStation(scenario)
    try:
        writer = trace_mod.TraceWriter(path, station.io)
    except OSError as exc:  # a folder of that name, a read-only file: refused as pumpsim refuses
        from host_tools.sim.cli import Refused

        raise Refused(f"{path}: cannot write the trace ({exc.strerror})") from exc
    return DecisionRecorder(controller, station, writer=writer), station, writer
