"""The simulator's controller is the board's runtime (relaypump/runtime.py) on a board in virtual
time (vm_side/sim_board.py): what a board ships is what `make sim` and the closed-loop tests run.

These tests look at the parts a board adds to the agent: the state saved to the board's flash,
the watchdog fed by every tick (and a board that is not fed resets), the config validated as on a
board, and the Modbus silence of 3.5 characters between frames on the simulated wire.
"""

import dataclasses
import os

import pytest
from relaypump import state as state_mod

from host_tools.sim import scenario as scenarios
from host_tools.sim.agent_controller import AgentController, load_agent_config
from host_tools.sim.hardware import SimulatedStation
from host_tools.sim.run import run
from host_tools.sim.scenario import ScenarioError
from host_tools.sim.vm_side.sim_board import SimBoard, WatchdogExpired

MINUTES = 25


@pytest.fixture(scope="module")
def ran():
    chosen = dataclasses.replace(scenarios.load(scenarios.DEFAULT_SCENARIO), hours=MINUTES / 60.0)
    station = SimulatedStation(chosen)
    wire = []  # (request start s, request end s, response complete s or None)
    bus = station.bus
    transact = bus.transact  # the board's every frame goes through here

    def watched(frame, now_s):
        answer = transact(frame, now_s)
        wire.append((now_s, bus.sent_s, None if answer is None else answer[1]))
        return answer

    bus.transact = watched
    controller = AgentController(chosen)
    ticks = []
    tick = controller.agent.tick

    def counted(now_ms):
        tick(now_ms)
        ticks.append(now_ms)

    controller.agent.tick = counted
    result = run(chosen, controller, station=station)
    return controller, ticks, wire, result


def test_every_tick_feeds_the_watchdog_and_nothing_else_does(ran):
    controller, ticks, _, _ = ran
    assert len(ticks) == MINUTES * 60 - 1  # at 1 s ... 1499 s
    assert controller.board.feeds == controller.runtime.feeds == len(ticks)
    assert [b - a for a, b in zip(ticks, ticks[1:], strict=False)] == [1000] * (len(ticks) - 1)


def test_the_state_goes_to_the_boards_flash_every_save_period(ran):
    controller, _, _, result = ran
    runtime = controller.runtime
    assert runtime.saves == 2 and runtime.save_errors == 0  # at 10 and 20 minutes
    files = controller.files
    assert {"/state.a", "/state.b"} <= set(files.files)
    saved, seq = state_mod.load(files, "/state", 3, files.open)
    assert seq == 2
    running_s = [sum(r) for r in result.running]  # seconds each drive ran (1 s samples)
    for pump in range(3):
        assert saved.run_s[pump] <= running_s[pump]
        assert saved.run_s[pump] >= min(running_s[pump], 20 * 60) - 5 * 60  # as of the last save
    assert saved.starts == list(result.kpis["starts"])


def test_frames_keep_three_and_a_half_characters_of_silence(ran):
    controller, _, wire, result = ran
    gap_s = controller.agent.fieldbus.gap_us / 1e6
    assert len(wire) == result.kpis["bus_requests"] > 30000
    shortest = min(
        start - (complete if complete is not None else end)
        for (_, end, complete), (start, _, _) in zip(wire, wire[1:], strict=False)
    )
    assert gap_s - 1e-6 <= shortest < gap_s + 0.001


def test_a_config_the_board_would_refuse_is_refused():
    chosen = scenarios.load(scenarios.DEFAULT_SCENARIO)
    config = load_agent_config(chosen)
    config["pid"]["period_ms"] = 5000  # the 8 s watchdog covers at most 4 s
    with pytest.raises(ScenarioError, match="pid.period_ms"):
        AgentController(chosen, config)


def test_a_board_whose_watchdog_is_not_fed_resets():
    board = SimBoard(os, open)
    board.due(60000, 0)
    assert board.wait_us(7_000_000)  # 7 s: within the 8 s timeout
    board.feed()
    assert board.wait_us(8_000_000)
    with pytest.raises(WatchdogExpired):
        board.wait_us(1000)
