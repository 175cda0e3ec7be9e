"""The firmware agent as the simulator's controller: the board's runtime on a board in virtual time.

What runs is what a board runs: relaypump/runtime.py (the loop: the 3.5-character gap, the control
tick, the watchdog, the state saves) loads the config file from the board's storage, builds the
agent and masters the bus. The board is vm_side/sim_board.SimBoard: its clock is the simulator's
virtual clock, its UART puts frames on the SimulatedBus at their virtual instants (``carry``), its
storage is a file system in memory (MemoryFiles), its watchdog raises when it is not fed in time.
``advance(bus, until_s)`` lets the loop run up to the end of the plant step; the loop jumps from
event to event (a response readable, a deadline, the gap, a cycle, a tick), so a day takes seconds.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

from relaypump.config import load_config_file
from relaypump.runtime import CONFIG_PATH, Runtime

from host_tools.sim.bus import SimulatedBus
from host_tools.sim.scenario import Scenario, ScenarioError
from host_tools.sim.vm_side.sim_board import SimBoard

REPO = Path(__file__).resolve().parents[2]


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


def config_file(config: dict) -> bytes:
    """The config as the board's file holds it."""
    return json.dumps(config).encode()


def carry(bus: SimulatedBus, frame, start_ms: int, start_sub: int) -> tuple[bytes, int] | None:
    """Put a board's frame on the bus at its first bit's instant: the response and the us at which
    its last byte has arrived, or None when no device answers."""
    bus.send(bytes(frame), (start_ms * 1000 + start_sub) / 1e6)
    done = bus.response_complete_at()
    if done is None:
        return None
    return bus.receive(done), math.ceil(done * 1e6 - 1e-3)


class MemoryFiles:
    """An os-like module and an open() over a dict of path -> bytes: a simulated board's flash."""

    def __init__(self, files: dict[str, bytes] | None = None) -> None:
        self.files = dict(files or {})

    def open(self, path: str, mode: str = "r"):
        if "w" in mode:
            return _WriteFile(self.files, path, "b" in mode)
        if path not in self.files:
            raise OSError(2, f"no such file: {path}")
        data = self.files[path]
        return io.BytesIO(data) if "b" in mode else io.StringIO(data.decode())

    def rename(self, old: str, new: str) -> None:
        if old not in self.files:
            raise OSError(2, f"no such file: {old}")
        self.files[new] = self.files.pop(old)

    def remove(self, path: str) -> None:
        if self.files.pop(path, None) is None:
            raise OSError(2, f"no such file: {path}")


class _WriteFile(io.BytesIO):
    def __init__(self, files: dict[str, bytes], path: str, binary: bool) -> None:
        super().__init__()
        self._files, self._path, self._binary = files, path, binary
        files[path] = b""

    def write(self, data) -> int:  # type: ignore[override]
        return super().write(data if self._binary else data.encode())

    def close(self) -> None:
        if not self.closed:
            self._files[self._path] = self.getvalue()
        super().close()


class AgentController:
    """The agent on a simulated board; ``agent``, ``runtime`` and ``board`` are the real ones."""

    def __init__(self, scenario: Scenario, config: dict | None = None) -> None:
        self.config = config if config is not None else load_agent_config(scenario)
        self.files = MemoryFiles({CONFIG_PATH: config_file(self.config)})
        self.bus: SimulatedBus | None = None
        self.board = SimBoard(self.files, self.files.open, self._wire)
        self.runtime = Runtime(self.board)
        if self.runtime.agent is None:
            raise ScenarioError(
                scenario.source, "agent_config", f"the agent refused it: {self.runtime.error}"
            )
        self.agent = self.runtime.agent

    @property
    def gap_s(self) -> float:
        return self.agent.fieldbus.gap_us / 1e6

    def setpoint_kpa(self) -> float:
        return self.agent.control.setpoint.value_kpa

    def advance(self, bus: SimulatedBus, until_s: float) -> None:
        self.bus = bus
        end = round(until_s * 1e6)
        if self.board.due(end // 1000, end % 1000):
            self.runtime.run_forever()

    def _wire(self, board: SimBoard, frame, start_ms: int, start_sub: int) -> None:
        assert self.bus is not None
        response = carry(self.bus, frame, start_ms, start_sub)
        if response is not None:
            data, at_us = response
            board.respond(data, 0, len(data), at_us // 1000, at_us % 1000)
