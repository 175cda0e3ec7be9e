"""Trace replay speed: the agent driven by a recorded day (host_tools/sim/trace_replay.py).

The day is the shipped fault day (jia_faults.toml), recorded first as pumpsim run --record-trace
records it (every channel of the I/O module, once a second: 86,400 rows), then read back and
replayed into the same scenario with the firmware agent in control: every channel from the
trace, the decisions logged. Only the replay is timed (reading the CSV apart).
trace_replay_realtime_factor: simulated seconds per wall second of the replay;
trace_replay_realtime_factor_cpu: per CPU second of this process (time.process_time), which other
work on a busy machine does not lower; trace_read_s: reading the day's CSV; trace_replay_decisions:
the decisions logged (starts, stops, trips, resets, events).
"""

import tempfile
import time
from pathlib import Path

from host_tools.sim import scenario, trace
from host_tools.sim.agent_controller import AgentController
from host_tools.sim.run import run as simulate
from host_tools.sim.trace_replay import recording, replay

DAY = scenario.SCENARIOS / "jia_faults.toml"


def run(report) -> None:
    chosen = scenario.load(DAY)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "trace.csv"
        controller, station, writer = recording(chosen, AgentController(chosen), path)
        simulate(chosen, controller, hours=24.0, station=station)
        writer.close()
        start = time.perf_counter()
        day = trace.read(path, trace.sensor_names())
        report("trace_read_s", time.perf_counter() - start, "s")
    start = time.perf_counter()
    cpu = time.process_time()
    done = replay(chosen, day, hours=24.0)
    cpu = time.process_time() - cpu
    wall = time.perf_counter() - start
    report("trace_replay_realtime_factor", 86400.0 / wall, "x")
    report("trace_replay_realtime_factor_cpu", 86400.0 / cpu, "x (per CPU second)")
    decisions = sum(1 for r in done.records if r["kind"] != "speeds")
    report("trace_replay_decisions", decisions, "")
