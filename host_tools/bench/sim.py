"""Simulator speed: plant + bus + devices over 24 h of the default scenario (`make sim`'s day).

The bus carries the agent's real poll cycle: the agent runs the station for ten simulated minutes,
its requests of one cycle are recorded, and a replay master then sends exactly those frames every
bus.cycle_ms for the day (the devices decode, act and answer them; the master reads every byte).
So the figure is the simulator's own cost with the real traffic, without the agent's CPU time
(the agent's closed-loop figure is closed_loop_realtime_factor).
sim_realtime_factor: simulated seconds per wall second; sim_realtime_factor_cpu: per CPU second of
this process (time.process_time), which other work on a busy machine does not lower.
"""

import time

from host_tools.sim import scenario
from host_tools.sim.agent_controller import AgentController
from host_tools.sim.bus import SimulatedBus
from host_tools.sim.hardware import SimulatedStation
from host_tools.sim.run import run as simulate


class ReplayMaster:
    def __init__(self, frames: list[bytes], cycle_s: float, gap_s: float, setpoint_kpa: float):
        self.frames = frames
        self.cycle_s = cycle_s
        self.gap_s = gap_s
        self._setpoint = setpoint_kpa
        self.next_cycle_s = 0.0
        self.t_s = 0.0

    def setpoint_kpa(self) -> float:
        return self._setpoint

    def advance(self, bus: SimulatedBus, until_s: float) -> None:
        while self.next_cycle_s < until_s:
            t = max(self.t_s, self.next_cycle_s)
            for frame in self.frames:
                t = bus.send(frame, t)
                done = bus.response_complete_at()
                if done is not None:
                    bus.receive(done)
                    t = done
                t += self.gap_s
            self.t_s = t
            self.next_cycle_s += self.cycle_s


def recorded_cycle(chosen: scenario.Scenario) -> tuple[list[bytes], AgentController]:
    controller = AgentController(chosen)
    station = SimulatedStation(chosen)
    simulate(chosen, controller, hours=10 / 60, station=station)
    frames: list[bytes] = []
    original = station.bus.send

    def record(frame: bytes, now_s: float) -> float:
        frames.append(bytes(frame))
        return original(frame, now_s)

    station.bus.send = record  # type: ignore[method-assign]
    simulate(chosen, controller, hours=2.0 / 3600.0, station=station)  # two more poll cycles
    per_cycle = len(controller.agent.fieldbus.plan_kinds)
    return frames[-per_cycle:], controller


def run_day() -> tuple[float, float]:
    chosen = scenario.load(scenario.DEFAULT_SCENARIO)
    frames, controller = recorded_cycle(chosen)
    config = controller.config
    master = ReplayMaster(
        frames,
        config["bus"]["cycle_ms"] / 1000.0,
        controller.gap_s,
        controller.setpoint_kpa(),
    )
    start = time.perf_counter()
    cpu = time.process_time()
    simulate(chosen, master, hours=24.0)
    return time.perf_counter() - start, time.process_time() - cpu


def run(report) -> None:
    seconds, cpu = run_day()
    report("sim_realtime_factor", 86400.0 / seconds, "x")
    report("sim_realtime_factor_cpu", 86400.0 / cpu, "x (per CPU second)")
    report("sim_day_seconds", seconds, "s")
