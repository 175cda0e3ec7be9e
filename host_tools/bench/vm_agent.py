"""The whole agent inside the MicroPython VM, in lockstep with the simulated station.

The default scenario's first simulated hour with the board's runtime and agent in the VM
(host_tools/sim/vm_controller.py) at an MCU-like heap (HEAP_KIB), the firmware loaded from .mpy files as a board's
filesystem would hold it. Run twice: once plain for the real-time factor, once with the VM
measuring gc.mem_alloc() around the agent's work of every call.

Figures:
- ``vm_heap_peak``: live heap with everything imported and the agent built (after a collection),
  plus the largest transient of one call (KiB). In this VM the code itself (bytecode loaded from
  .mpy) is on the heap; on a board with frozen modules it would be in flash.
- ``vm_heap_agent_data``: the part of it that is the agent's objects: the validated config dict,
  the agent and its runtime, and the largest transient (KiB), i.e. without the runner, the shim
  and the code.
- ``vm_heap_code``: the runtime's and the agent's modules as loaded from .mpy (KiB).
- ``vm_alloc_per_tick`` / ``vm_alloc_per_tick_max``: bytes agent.tick() allocates, mean and most.
- ``vm_alloc_per_tick_faults`` / ``vm_alloc_per_tick_faults_max``: the same on the fault day
  (every fault of jia_faults.toml, each cut to at most FAULT_MAX_S, one after the other with
  FAULT_GAP_S between them, on the default station: about 1.5 simulated hours). Budget: 1 KiB.
- ``vm_alloc_per_period`` / ``vm_alloc_per_period_max``: everything the loop allocates from one
  tick to the next (runtime, agent and board: the tick plus two poll cycles of the fieldbus),
  mean and most.
- ``vm_realtime_factor``: simulated seconds / wall seconds of the plain hour (plant, bus and VM
  together; Node start and setup excluded). ``vm_realtime_factor_cpu``: the same per CPU second of
  this process and the VM's (Node, from /proc), which other work on a busy machine does not lower.
"""

from __future__ import annotations

import statistics
import time

HOURS = 1.0
FAULT_MAX_S = 480.0
FAULT_GAP_S = 240.0
HEAP_KIB = 160  # 128 KiB no longer holds the agent (its modules grew in issue 7) with its runtime


def fault_day():
    """The default station with every fault of jia_faults.toml in turn (see the docstring) and
    the hours it takes."""
    import dataclasses

    from host_tools.sim import scenario as scenarios

    base = scenarios.load(scenarios.DEFAULT_SCENARIO)
    faults = []
    at = FAULT_GAP_S
    for f in scenarios.load(scenarios.SCENARIOS / "jia_faults.toml").faults:
        duration = min(f.duration_s, FAULT_MAX_S)
        faults.append(dataclasses.replace(f, at_s=at, duration_s=duration))
        at += duration + FAULT_GAP_S
    return dataclasses.replace(base, faults=tuple(faults)), at / 3600.0


def _run(measure: bool, faults: bool = False):
    from host_tools.sim import scenario as scenarios
    from host_tools.sim.run import run
    from host_tools.sim.vm_controller import VMController

    chosen, hours = scenarios.load(scenarios.DEFAULT_SCENARIO), HOURS
    if faults:
        chosen, hours = fault_day()
    with VMController(chosen, heap_kib=HEAP_KIB, measure=measure) as controller:
        started = time.perf_counter()
        cpu = _cpu_s()
        run(chosen, controller, hours=hours)
        wall = time.perf_counter() - started
        cpu = _cpu_s() - cpu
        controller.live_heap()
        return controller, wall, cpu


def _cpu_s() -> float:
    """CPU seconds of this process and its children (the VM's Node); NaN without /proc."""
    from host_tools.bench.pollcycle import children_cpu_s

    try:
        return time.process_time() + children_cpu_s()
    except OSError:
        return float("nan")


def run(report) -> None:
    try:
        plain, wall, cpu = _run(measure=False)
    except Exception as e:  # the VM needs Node: report the absence, not a crash
        print(f"vm_agent: skipped ({e})")
        return
    measured, _, _ = _run(measure=True)
    faulted, _, _ = _run(measure=True, faults=True)
    fig = measured.figures
    stages = fig.stages
    # code: the runtime (with state, storage) and the agent's modules; data: the config dict
    # while it lives, then what the agent and the runtime keep, plus the largest transient
    runtime_code = stages["import runtime"] - stages["shim"]
    code = runtime_code + stages["agent modules imported"] - stages["config loaded"]
    config = stages["config loaded"] - stages["import runtime"]
    objects = stages["agent built"] - stages["agent modules imported"]
    report("vm_heap_peak", fig.heap_peak / 1024, f"KiB (of a {HEAP_KIB} KiB heap, code included)")
    report("vm_heap_agent_data", (config + objects + fig.call_used_max) / 1024, "KiB")
    report("vm_heap_code", code / 1024, "KiB (.mpy)")
    report("vm_alloc_per_tick", statistics.mean(fig.tick_used), "bytes (mean)")
    report("vm_alloc_per_tick_max", max(fig.tick_used), "bytes")
    ticks = faulted.figures.tick_used
    report("vm_alloc_per_tick_faults", statistics.mean(ticks), "bytes (mean, fault day)")
    report("vm_alloc_per_tick_faults_max", max(ticks), "bytes (fault day; budget 1024)")
    report("vm_alloc_per_period", statistics.mean(fig.period_used), "bytes per tick period (mean)")
    report("vm_alloc_per_period_max", max(fig.period_used), "bytes per tick period")
    report(
        "vm_realtime_factor",
        HOURS * 3600.0 / wall,
        f"x ({HOURS:g} h simulated in {wall:.1f} s, {plain.figures.calls} VM calls)",
    )
    report("vm_realtime_factor_cpu", HOURS * 3600.0 / cpu, "x (per CPU second)")
