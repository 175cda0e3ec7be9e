"""The firmware agent as the simulator's controller: an in-process runtime on the virtual clock.

This is what firmware/main.py does on a board, with the simulated bus in place of the UART and
virtual time in place of ticks_ms: hand the agent's requests to the wire, feed back what arrives,
leave the 3.5-character silence between frames, and run the control tick every pid.period_ms.
It jumps from event to event (a response complete, a deadline, a tick), so a day takes seconds.
"""

from __future__ import annotations

from pathlib import Path

from relaypump.agent import Agent
from relaypump.config import load_config_file
from relaypump.fieldbus import IDLE

from host_tools.sim.bus import SimulatedBus
from host_tools.sim.scenario import Scenario, ScenarioError

REPO = Path(__file__).resolve().parents[2]
TICKS_MASK = 0x3FFFFFFF
POLL_S = 0.002  # how often a waiting runtime looks at the wire when nothing is arriving


def ticks_ms(t_s: float) -> int:
    return int(t_s * 1000.0) & TICKS_MASK


def load_agent_config(scenario: Scenario) -> dict:
    """The agent's config for this scenario, checked against the scenario's bus."""
    path = Path(scenario.agent_config)
    if not path.is_absolute():
        path = REPO / path
    config = load_config_file(str(path))
    drives = [(d.unit, d.profile) for d in scenario.drives]
    pumps = [(p["unit"], p["profile"]) for p in config["pumps"]]
    if drives != pumps or config["io"]["unit"] != scenario.io_unit:
        raise ScenarioError(
            scenario.source,
            "drives",
            f"the agent config {path.name} has pumps {pumps} and I/O unit {config['io']['unit']}, "
            f"the scenario {drives} and {scenario.io_unit}",
        )
    config["bus"]["baud"] = scenario.baud
    return config


class AgentController:
    def __init__(self, scenario: Scenario, config: dict | None = None) -> None:
        self.config = config if config is not None else load_agent_config(scenario)
        self.agent = Agent(self.config)
        self.period_s = self.agent.period_ms / 1000.0
        self.gap_s = self.agent.fieldbus.gap_us / 1e6
        self.t_s = 0.0
        self.next_tick_s = self.period_s
        self.waiting = False
        self.send_at_s = 0.0
        self.ticks = 0

    def setpoint_kpa(self) -> float:
        return self.agent.control.setpoint.value_kpa

    def advance(self, bus: SimulatedBus, until_s: float) -> None:
        agent = self.agent
        fieldbus = agent.fieldbus
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
            if t >= self.next_tick_s:
                agent.tick(ticks_ms(t))
                self.ticks += 1
                self.next_tick_s += self.period_s
            if self.waiting:
                data = bus.receive(t)
                if data:
                    agent.receive(data)
                if fieldbus.poll(ticks_ms(t)) == IDLE:
                    self.waiting = False
                    self.send_at_s = t + self.gap_s
                continue
            if t >= self.send_at_s:
                frame = agent.next_request(ticks_ms(t))
                if frame is None:  # the bus rests until its next cycle (or the next tick)
                    due_ms = (fieldbus.next_cycle_ms() - ticks_ms(t)) & TICKS_MASK
                    self.send_at_s = min(self.next_tick_s, t + max(due_ms, 1) / 1000.0)
                else:
                    t = bus.send(bytes(frame), t)
                    self.waiting = True
        self.t_s = t
