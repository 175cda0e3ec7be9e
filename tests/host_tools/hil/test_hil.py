"""The hardware-in-the-loop bench: a board's agent controls the simulated station over RS-485 in
real time, judged on the invariants and KPIs of the in-process closed loop (test_closed_loop*.py,
host_tools/sim/run.py) and compared with the in-process run of the same scenario.

    make bench-hil PORT=/dev/ttyUSB0          # a real board (flashed with make flash) on a bench
    pytest tests/host_tools/hil --bench-port /dev/ttyUSB0
    pytest tests/host_tools/hil               # the virtual board over a socat pty pair (CI)

The run (RUN_S of real time, the shoulder day from standstill): start-up with CRC noise on the
wire while the first pump runs up, steady regulation on two pumps, then a running drive cut off
from the bus for a while (its own comm-loss action, the standby started by the agent). Judged from
the wire side, since a board's insides cannot be seen:
- every reference written while a drive is told to run lies in speed.min_pct..max_pct, no drive
  is ever quick-stopped or left to coast while turning (untripped);
- references move by at most speed.slew_pct_per_s per second, and so do actual speeds inside the
  drives' operating range (run.max_slew);
- no pump starts more than staging.max_starts_per_hour times within an hour;
- suction stays above its limit; no station stop;
- the KPIs are those of the in-process run within what real-time jitter explains; both sets print.
The board must never leave the bus silent as long as a drive's comm-loss timeout, and the virtual
board must run the whole time without a reset (watchdog, fatal error).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import hil_run
import pytest
from ptys import SocatPair

from host_tools.deploy.virtual_board import VirtualBoard
from host_tools.sim import scenario as scenarios
from host_tools.sim.agent_controller import REPO, load_agent_config
from host_tools.sim.scenario import FaultSpec

RUN_S = 240.0
SCENARIO = scenarios.SCENARIOS / "jia_shoulder.toml"
FAULTS = (
    FaultSpec("crc_noise", 30.0, 60.0, probability=0.05),
    FaultSpec("drive_comm_loss", 180.0, 25.0, pump=2),
)
CUT_PUMP = 1  # 0-based index of the drive cut off
# Between the virtual board and the station lie two pty hops, socat and the host's scheduler (on a
# loaded CI machine a process may wait tens of ms for a core); station.json's 10 ms margin is for a
# board's own loop. A response later than the deadline is retried, and its late original can then
# be taken for the answer to a later request of the same shape (RTU has no transaction id).
VIRTUAL_MARGIN_MS = 50
TRACES = REPO / "build" / "hil"
# The HIL bench judges control over the wire; whether the agent fits a board's heap is judged by
# tests/host_tools/deploy and the bench's vm_heap figures, so the virtual board gets room here.
HEAP_KIB = 512
REFERENCE_RESOLUTION_PCT = 0.02  # the drives' reference steps (g120: 100 % = 16384)
WINDOW_SAMPLES = 60  # reference moves are judged over every window up to a minute


def chosen_scenario():
    base = scenarios.load(SCENARIO)
    return dataclasses.replace(base, faults=FAULTS, hours=RUN_S / 3600.0)


def virtual_bench_scenario(chosen, folder):
    """The scenario with the agent's config as the virtual board runs it: bus.timeout_margin_ms
    raised to VIRTUAL_MARGIN_MS (see there); the in-process run takes the same config."""
    config = json.loads((REPO / chosen.agent_config).read_text())
    config["bus"]["timeout_margin_ms"] = max(config["bus"]["timeout_margin_ms"], VIRTUAL_MARGIN_MS)
    path = folder / "station.json"
    path.write_text(json.dumps(config, indent=1))
    return dataclasses.replace(chosen, agent_config=str(path))


@pytest.fixture(scope="module")
def runs(request, tmp_path_factory):
    """(bench run, in-process run) of the same scenario; both KPI sets are printed, the traces
    written to TRACES."""
    chosen = chosen_scenario()
    port = request.config.getoption("--bench-port")
    if port:
        reference = hil_run.in_process(chosen, RUN_S)
        bench = hil_run.served(chosen, port, RUN_S, f"board on {port}")
    else:
        tmp = tmp_path_factory.mktemp("hil")
        chosen = virtual_bench_scenario(chosen, tmp)
        reference = hil_run.in_process(chosen, RUN_S)
        flash = hil_run.flash_virtual_board(tmp, Path(chosen.agent_config))
        board = VirtualBoard(
            flash, bus_link=tmp / "board-bus", heap_kib=HEAP_KIB, console_log=tmp / "console.log"
        )
        try:
            with SocatPair(tmp, to=board.bus_path) as (station_end, _):
                bench = hil_run.served(chosen, station_end, RUN_S, "virtual board", board)
        finally:
            board.close()
    TRACES.mkdir(parents=True, exist_ok=True)
    for outcome, name in ((bench, "bench.csv"), (reference, "in_process.csv")):
        hil_run.write_csv(outcome, TRACES / name)
    summary = f"HIL: {chosen.name}, {RUN_S:.0f} s of real time; traces in {TRACES}\n"
    summary += hil_run.kpi_rows(bench, reference)
    (TRACES / "kpis.txt").write_text(summary + "\n")  # tests/conftest.py prints it at the end
    return bench, reference


@pytest.fixture(scope="module")
def config():
    return load_agent_config(chosen_scenario())


def test_the_board_controlled_the_station_all_the_run(runs):
    bench, _ = runs
    if bench.board is not None:
        console = bench.board.console_text()
        assert bench.board.resets == ["power-on"], console  # no watchdog, no fatal error
        assert hil_run.STARTED in console and "Traceback" not in console, console
    assert bench.server.requests > 0 and bench.server.responses > 0
    # the board never left the bus silent long enough for a drive's comm-loss timer to run out
    timeout_s = min(spec.comm_timeout_s for spec in bench.station.scenario.drives)
    assert bench.server.longest_gap_s < timeout_s
    # running at the end: the station regulates on the remote DP
    assert any(running[-1] for running in bench.result.running)
    assert bench.kpis["spurious_station_stops"] == 0 and bench.kpis["station_stops"] == 0


def test_commands_stay_in_the_speed_envelope(runs, config):
    bench, _ = runs
    speed = config["speed"]
    low = speed["min_pct"] - REFERENCE_RESOLUTION_PCT
    high = speed["max_pct"] + REFERENCE_RESOLUTION_PCT
    wire = bench.wire
    for pump, drive in enumerate(bench.station.drives):
        for i, t in enumerate(bench.result.samples["t_s"]):
            if wire.commanded[pump][i] and not wire.cut_off[pump][i]:
                assert low <= wire.references[pump][i] <= high, (pump + 1, t)
        assert drive.motion != "quick_stop"
        # a drive that turns untripped has its pulses on: stops go through the ramp, no coast
        speeds, running = bench.result.speeds[pump], bench.result.running[pump]
        for i in range(len(speeds)):
            if speeds[i] > 0.5:
                assert running[i], (pump + 1, bench.result.samples["t_s"][i], "coasting")


def test_references_and_speeds_move_at_most_at_the_slew_limit(runs, config):
    """The agent moves a reference at most slew_pct_per_s; on the wire a write may land up to three
    poll cycles late (a corrupted or unanswered write is sent again in the next cycle, a cut-off
    drive's timeouts stretch a cycle), so a reference may carry that much more in one go."""
    bench, _ = runs
    slew = config["speed"]["slew_pct_per_s"]
    late_s = 3 * config["bus"]["cycle_ms"] / 1000.0
    wire, t = bench.wire, bench.result.samples["t_s"]
    for pump in range(len(bench.station.drives)):
        refs, told, cut = wire.references[pump], wire.commanded[pump], wire.cut_off[pump]
        steady = [told[i] and not cut[i] for i in range(len(refs))]
        for i in (i for i in range(len(refs)) if steady[i]):
            for j in range(i + 1, min(len(refs), i + WINDOW_SAMPLES)):
                if not steady[j]:
                    break
                allowed = slew * (t[j] - t[i] + late_s) + REFERENCE_RESOLUTION_PCT
                assert abs(refs[j] - refs[i]) <= allowed, (pump + 1, t[i], t[j])
    assert bench.kpis["max_slew_pct_s"] <= slew + REFERENCE_RESOLUTION_PCT


def test_no_pump_starts_more_often_than_allowed_per_hour(runs, config):
    bench, _ = runs
    assert bench.kpis["max_starts_per_hour"] <= config["staging"]["max_starts_per_hour"]


def test_suction_stays_above_its_limit(runs):
    bench, _ = runs
    assert bench.kpis["min_suction_margin_kpa"] > 0.0


def test_the_faults_reached_the_wire_and_the_agent_answered_them(runs):
    bench, reference = runs
    assert bench.kpis["bus_corrupted_frames"] > 0  # CRC noise on the served bytes
    cut = FAULTS[1]
    t = bench.result.samples["t_s"]
    inside = [i for i, s in enumerate(t) if cut.at_s + 15.0 <= s < cut.end_s]
    # the drive's own comm-loss action ran out its timer: it kept turning (safe speed), cut off
    assert all(bench.wire.cut_off[CUT_PUMP][i] for i in inside)
    assert all(bench.result.running[CUT_PUMP][i] for i in inside)
    # the agent started the standby for it, as in-process
    standby = 2
    assert bench.kpis["starts"][standby] == reference.kpis["starts"][standby] >= 1
    assert any(bench.result.running[standby][i] for i in inside)


BAND_KPA = 0.5 * 9.80665 * 0.98  # ±0.5 m of hot water (the KPIs' band, rounded down)


def reached_band_s(outcome) -> float:
    s = outcome.result.samples
    for t, dp, sp in zip(s["t_s"], s["remote_dp_kpa"], s["setpoint_kpa"], strict=True):
        if abs(dp - sp) <= BAND_KPA:
            return t
    raise AssertionError(f"{outcome.name}: the remote DP never reached the band")


def in_band_since_pct(outcome, since_s: float) -> float:
    s = outcome.result.samples
    rows = [(dp, sp) for t, dp, sp in zip(s["t_s"], s["remote_dp_kpa"], s["setpoint_kpa"],
                                          strict=True) if t >= since_s]  # fmt: skip
    return 100.0 * sum(abs(dp - sp) <= BAND_KPA for dp, sp in rows) / max(1, len(rows))


def test_kpis_match_the_in_process_closed_loop(runs):
    bench, reference = runs
    b, r = bench.kpis, reference.kpis
    assert b["starts"] == r["starts"]
    assert b["station_starts"] == r["station_starts"]
    # DP in band over 4 min from standstill is mostly the start-up: each % is 2.4 s of when the
    # board's staging decisions fell on the wall clock (under CI load the whole-run figures
    # differed by 6-13 points, the board always the better). So: when the DP first reached the
    # band, then that the board holds it from there no worse than in-process (10 points).
    reached_b, reached_r = reached_band_s(bench), reached_band_s(reference)
    assert abs(reached_b - reached_r) <= 30.0, (reached_b, reached_r)
    since = max(reached_b, reached_r)
    assert in_band_since_pct(bench, since) >= in_band_since_pct(reference, since) - 10.0
    assert abs(b["unserved_min"] - r["unserved_min"]) <= 0.5
    assert abs(b["energy_kwh"] - r["energy_kwh"]) <= 0.05 * r["energy_kwh"]
    assert abs(b["min_suction_margin_kpa"] - r["min_suction_margin_kpa"]) <= 10.0
    # the board polls at the in-process rate: its cycle holds on the wall clock
    assert b["bus_requests"] >= 0.8 * r["bus_requests"]
