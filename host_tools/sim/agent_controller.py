"""The firmware agent as the simulator's controller: the board's runtime on a board in virtual time.

What runs is what a board runs: relaypump/runtime.py (the loop: the 3.5-character gap, the control
tick, the watchdog, the state saves) loads the config file from the board's storage, builds the
agent and masters the bus. The board is vm_side/sim_board.SimBoard: its clock is the simulator's
virtual clock, its UART puts frames on the SimulatedBus at their virtual instants (``carry``), its
storage is a file system in memory (MemoryFiles), its watchdog raises when it is not fed in time.
``advance(bus, until_s)`` lets the loop run up to the end of the plant step; the loop jumps from
event to event (a response readable, a deadline, the gap, a cycle, a tick), so a day takes seconds.

The uplink (optional: a config with an "mqtt" section, and the station's key file among ``files``):
``network`` links the agent's MQTT session to a real broker (``broker_link``: netio.Link, real
sockets), ``wall_epoch_s`` gives its wall clock the simulation's time (VirtualWallTime: Unix time
``wall_epoch_s`` at virtual 0). Time maps like this: the plant and the agent run in virtual time;
the runtime steps the uplink at virtual instants (non-blocking sockets: whatever the broker has
answered by then is read), and between two ``advance`` calls ``settle`` gives the broker real
time at a frozen virtual instant (the uplink stepped until nothing waits for the broker, or a
real-time limit). A broker therefore answers within one ``advance`` chunk of virtual time.
A reboot: a new AgentController on the same ``files`` (the outbox and the state are there).
"""

from __future__ import annotations

import io
import json
import math
import time
from collections.abc import Callable
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
    answer = bus.transact(bytes(frame), (start_ms * 1000 + start_sub) / 1e6)
    if answer is None:
        return None
    return answer[0], math.ceil(answer[1] * 1e6 - 1e-3)


class MemoryFiles:
    """An os-like module and an open() over a dict of path -> bytes: a simulated board's flash."""

    def __init__(self, files: dict[str, bytes] | None = None) -> None:
        self.files = dict(files or {})

    def open(self, path: str, mode: str = "r"):
        if "w" in mode:
            return _WriteFile(self.files, path, "b" in mode)
        if path not in self.files:
            raise OSError(2, f"no such file: {path}")
        if "+" in mode:
            return _WriteFile(self.files, path, "b" in mode, keep=True)
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
    """ "w" (emptied at once) or "r+" (the file as it is, written in place): kept at close."""

    def __init__(self, files: dict[str, bytes], path: str, binary: bool, keep: bool = False):
        super().__init__(files[path] if keep else b"")
        self._files, self._path, self._binary = files, path, binary
        if not keep:
            files[path] = b""

    def write(self, data) -> int:  # type: ignore[override]
        return super().write(data if self._binary else data.encode())

    def close(self) -> None:
        if not self.closed:
            self._files[self._path] = self.getvalue()
        super().close()


def broker_link(session, cfg: dict):
    """The uplink's link to the broker of the config's mqtt section: real, non-blocking sockets."""
    from relaypump import netio

    ca = cfg["ca_file"] if cfg["tls"] else None
    return netio.Link(session, cfg["host"], cfg["port"], ca, cfg["server_hostname"])


class VirtualWallTime:
    """The agent's time source in the simulator: Unix time epoch_s at virtual 0 (the board's ms),
    given to the wall clock whenever it asks (wallclock.due)."""

    def __init__(self, board: SimBoard, clock, epoch_s: float) -> None:
        self.board, self.clock, self.epoch_ms = board, clock, round(epoch_s * 1000)

    def step(self, now_ms: int) -> None:
        if self.clock.due(now_ms):
            wall = self.epoch_ms + self.board.ms
            self.clock.set_time(wall // 1000, now_ms, wall % 1000)


class AgentController:
    """The agent on a simulated board; ``agent``, ``runtime`` and ``board`` are the real ones."""

    def __init__(
        self,
        scenario: Scenario,
        config: dict | None = None,
        files: MemoryFiles | None = None,
        network: Callable | None = None,
        wall_epoch_s: float | None = None,
    ) -> None:
        self.config = config if config is not None else load_agent_config(scenario)
        self.files = files if files is not None else MemoryFiles()
        self.files.files.setdefault(CONFIG_PATH, config_file(self.config))
        self.bus: SimulatedBus | None = None
        self.board = SimBoard(self.files, self.files.open, self._wire)
        self.board.network = network
        if wall_epoch_s is not None:
            board = self.board
            board.time_source = lambda clock: VirtualWallTime(board, clock, wall_epoch_s)
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

    def settle(self, timeout_s: float = 1.0) -> None:
        """Real time for the broker at the present virtual instant (module docstring): the uplink
        stepped until it is connected with nothing in flight, or waits out a reconnect backoff,
        or timeout_s (real) has passed."""
        up = self.runtime.uplink
        if up is None or up.link is None:
            return
        session = up.session
        now = self.board.ticks_ms()
        deadline = time.monotonic() + timeout_s
        while True:
            up.step(now)
            if (session.connected and not session.in_flight) or not session.want_link:
                return
            if time.monotonic() > deadline:
                return
            up.link.wait(2)

    def _wire(self, board: SimBoard, frame, start_ms: int, start_sub: int) -> None:
        assert self.bus is not None
        # carry(), inline: every frame
        answer = self.bus.transact(bytes(frame), (start_ms * 1000 + start_sub) / 1e6)
        if answer is not None:
            data = answer[0]
            at_us = math.ceil(answer[1] * 1e6 - 1e-3)
            board.respond(data, 0, len(data), at_us // 1000, at_us % 1000)
