"""KPI computations (host_tools/sim/kpis.py) on synthetic 1 s sample arrays, and the no-nan rule."""

import math
import re

import pytest

from host_tools.sim import kpis
from host_tools.sim.kpis import NotComputed, Window

BAND = 4.6  # kPa, about 0.5 m
LOW = 18.5  # kPa, about 2 m


def seconds(n):
    return [float(i + 1) for i in range(n)]


def test_band_share_counts_every_sample_unless_told_to_skip():
    t = seconds(10)
    sp = [111.0] * 10
    dp = [111.0] * 6 + [100.0] * 4  # 4 samples out of band
    assert kpis.dp_in_band_pct(t, dp, sp, BAND) == pytest.approx(60.0)
    skip = [Window(7.0, 10.0, "crc_noise")]
    assert kpis.dp_in_band_pct(t, dp, sp, BAND, skip) == pytest.approx(100.0)


def test_band_edges_count_as_in_band():
    t = seconds(2)
    assert kpis.dp_in_band_pct(t, [111.0 + BAND, 111.0 - BAND], [111.0] * 2, BAND) == 100.0


def test_no_sample_left_gives_a_reason_not_nan():
    t = seconds(5)
    share = kpis.dp_in_band_pct(
        t, [111.0] * 5, [111.0] * 5, BAND, [Window(0.0, 99.0)], "sample outside fault windows"
    )
    assert isinstance(share, NotComputed)
    assert kpis.fmt(share, "%") == "n/a (no sample outside fault windows)"
    assert isinstance(kpis.dp_in_band_pct([], [], [], BAND), NotComputed)


def test_fmt_never_prints_nan_or_inf():
    for value in (float("nan"), float("inf"), -float("inf")):
        text = kpis.fmt(value, "%")
        assert "nan" not in text and "inf" not in text and text.startswith("n/a")
    assert kpis.fmt(97.254, "%") == "97.25 %"


def test_unserved_minutes_are_samples_more_than_2_m_low():
    t = seconds(180)
    sp = [111.0] * 180
    dp = [111.0] * 60 + [111.0 - LOW - 0.1] * 90 + [111.0 - LOW + 0.1] * 30
    assert kpis.unserved_min(t, dp, sp, LOW, 1.0) == pytest.approx(1.5)
    assert kpis.unserved_min(t, dp, sp, LOW, 1.0, [Window(61.0, 120.0)]) == pytest.approx(0.5)


def test_station_starts_and_stops_are_transitions_of_any_pump_running():
    p1 = [0, 1, 1, 1, 0, 0, 0, 1, 1, 0]
    p2 = [0, 0, 1, 1, 1, 0, 0, 0, 1, 1]
    starts, stops = kpis.station_transitions([p1, p2])
    assert starts == [1, 7]  # a second pump joining is no station start
    assert stops == [5]  # P1 stopping while P2 runs is no station stop
    assert kpis.station_transitions([[1, 1, 0]]) == ([], [2])  # running from the first sample
    assert kpis.station_transitions([]) == ([], [])


def test_recovery_is_zero_when_the_dp_never_left_the_band():
    t = seconds(300)
    assert kpis.recovery_s(t, [111.0] * 300, [111.0] * 300, BAND, 100.0, 300.0) == 0.0


def test_recovery_waits_for_the_dp_to_stay_in_band_for_60_s():
    t = seconds(600)
    sp = [111.0] * 600
    dp = [111.0] * 600
    for i in range(120, 180):  # the fault at t=100 s pulls DP low from 121 to 180 s
        dp[i] = 90.0
    dp[200] = 90.0  # a single blip at 201 s: the 60 s hold restarts after it
    recovery = kpis.recovery_s(t, dp, sp, BAND, 100.0, 500.0)
    assert recovery == pytest.approx(202.0 - 100.0)


def test_recovery_not_reached_by_the_end_of_the_run_says_so():
    t = seconds(200)
    dp = [111.0] * 150 + [90.0] * 20 + [111.0] * 30  # back in band, but only for 30 s
    recovery = kpis.recovery_s(t, dp, [111.0] * 200, BAND, 100.0, 200.0)
    assert isinstance(recovery, NotComputed) and "end of the run" in recovery.reason


def test_each_fault_is_charged_with_excursions_until_the_next_fault_starts():
    t = seconds(3000)
    sp = [111.0] * 3000
    dp = [111.0] * 3000
    for i in range(1500, 1560):  # out of band after the second fault only
        dp[i] = 80.0
    faults = [Window(1000.0, 1100.0, "suction_dip"), Window(1400.0, 1450.0, "pump_trip", 1)]
    first, second = kpis.fault_recoveries(t, dp, sp, BAND, faults)
    assert first == 0.0
    assert second == pytest.approx(1561.0 - 1400.0)


def test_power_is_a_sliding_10_s_mean_over_the_rating():
    t = seconds(60)
    p1 = [100.0] * 60
    p2 = [100.0] * 60
    for i in range(30, 35):  # 5 s at 200 kW: the worst 10 s mean is 150 kW
        p2[i] = 200.0
    ratio, pump, at = kpis.max_mean_power_ratio(t, [p1, p2], [120.0, 100.0])
    assert ratio == pytest.approx(1.5)
    assert pump == 2 and 35.0 <= at <= 40.0
    short = kpis.max_mean_power_ratio(t[:3], [[50.0, 60.0, 70.0]], [100.0])[0]
    assert short == pytest.approx(0.6)  # a run shorter than a window: its whole mean
    assert isinstance(kpis.max_mean_power_ratio(t, [p1], [0.0])[0], NotComputed)


def test_a_stop_without_a_cause_is_spurious_and_each_cause_is_recognised():
    t = seconds(400)
    running = [[1] * 200 + [0] * 200, [0] * 400]  # P1 stops at sample 200 (t = 201 s)
    margin = [30.0] * 400
    idx = 200

    def cause(faults, margin=margin, trips=(False, False)):
        return kpis.stop_cause(t, idx, running, margin, faults, trips)

    assert cause([]) == ""
    assert cause([Window(150.0, 300.0, "source_pumps_stop")]) == "source pumps stopped"
    assert cause([Window(100.0, 150.0, "source_pumps_stop")]) == ""  # ended before the stop
    dipped = margin[:]
    dipped[170] = -1.0  # 30 s before the stop
    assert cause([], dipped) == "suction below its limit"
    dipped[170], dipped[100] = 30.0, -1.0  # 100 s before: too long ago
    assert cause([], dipped) == ""
    assert cause([Window(198.0, 1e9, "pump_trip", 1)]) == "drive tripped"
    assert cause([Window(100.0, 1e9, "pump_trip", 1)]) == ""  # the trip was long before
    assert cause([Window(198.0, 1e9, "pump_trip", 2)]) == ""  # another pump's trip
    loss = [Window(150.0, 300.0, "drive_comm_loss", 1)]
    assert cause(loss) == ""  # the drive holds its speed on comm loss: the stop was commanded
    assert cause(loss, trips=(True, False)) == "drive tripped"


def test_every_kpi_of_an_empty_or_faultless_run_is_finite_or_explained():
    for value in (
        kpis.dp_in_band_pct([], [], [], BAND),
        kpis.unserved_min([], [], [], LOW, 1.0),
        kpis.max_mean_power_ratio([], [[]], [100.0])[0],
        kpis.recovery_s([], [], [], BAND, 0.0, 10.0),
    ):
        assert isinstance(value, NotComputed) or math.isfinite(value)


def test_the_kpi_table_of_a_run_that_is_all_fault_says_why_instead_of_nan():
    """A short run inside one fault window: nothing lies outside the faults."""
    import dataclasses

    from host_tools.sim import report, scenario
    from host_tools.sim.agent_controller import AgentController
    from host_tools.sim.run import run

    base = scenario.load(scenario.DEFAULT_SCENARIO)
    noise = scenario.FaultSpec(kind="crc_noise", at_s=0.0, duration_s=None, probability=0.02)
    chosen = dataclasses.replace(base, hours=0.05, faults=(noise,))
    result = run(chosen, AgentController(chosen))
    table = report.kpi_table(result)
    assert "nan" not in table and " inf" not in table
    assert "n/a (no sample outside fault windows)" in table
    assert isinstance(result.kpis["dp_in_band_outside_faults_pct"], NotComputed)
    assert math.isfinite(result.kpis["dp_in_band_pct"])
    assert "recovery: crc_noise at 0:00:00" in table


def test_samples_the_field_makes_impossible_are_left_out_only_where_the_mask_says():
    t = seconds(10)
    sp = [111.0] * 10
    dp = [111.0] * 4 + [125.0] * 3 + [80.0] * 3  # 3 over, 3 far low
    over = [False] * 4 + [True] * 3 + [False] * 3
    assert kpis.dp_in_band_pct(t, dp, sp, BAND) == pytest.approx(40.0)
    assert kpis.dp_in_band_pct(t, dp, sp, BAND, left_out=over) == pytest.approx(400.0 / 7.0)
    unservable = [False] * 7 + [True] * 3
    assert kpis.unserved_min(t, dp, sp, LOW, 60.0) == pytest.approx(3.0)
    assert kpis.unserved_min(t, dp, sp, LOW, 60.0, left_out=unservable) == 0.0
    assert kpis.unserved_min(t, dp, sp, LOW, 60.0, left_out=over) == pytest.approx(3.0)
    everything = [True] * 10
    assert isinstance(kpis.dp_in_band_pct(t, dp, sp, BAND, left_out=everything), NotComputed)


def test_an_agent_that_over_delivers_where_the_band_is_reachable_is_still_charged():
    """The agent holds 140 kPa on a January day while the figure judges it against 111 kPa: the
    field could hold 111 kPa all along, so nothing is left out and the band share collapses."""
    import dataclasses

    from host_tools.sim import feasible, report, scenario
    from host_tools.sim.agent_controller import AgentController, load_agent_config
    from host_tools.sim.run import run

    class Overdelivering(AgentController):
        def setpoint_kpa(self):
            return 111.0

    base = scenario.load(scenario.SCENARIOS / "jia_january.toml")
    chosen = dataclasses.replace(base, hours=0.25, faults=())
    config = load_agent_config(chosen)
    config["setpoint"]["dp_kpa"] = 140.0
    result = run(chosen, Overdelivering(chosen, config))
    k = result.kpis
    assert set(result.samples["reach"]) == {feasible.REACHABLE}
    assert k["band_unreachable_min"] == 0.0 and k["unservable_min"] == 0.0
    assert k["dp_in_band_reachable_pct"] == k["dp_in_band_pct"] < 10.0
    assert max(result.samples["remote_dp_kpa"]) > 130.0  # it did over-deliver
    table = report.kpi_table(result)
    assert re.search(r"band unreachable \(field, steady state\) +0\.0 min \(over", table)


def test_the_plot_shades_the_runs_of_samples_the_field_cannot_serve():
    from array import array

    from host_tools.sim import report, scenario
    from host_tools.sim.run import RunResult

    result = RunResult(scenario.load(scenario.DEFAULT_SCENARIO))
    result.samples = {
        "t_s": array("d", seconds(8)),
        "reach": array("d", [0, 1, 1, 0, 2, 3, 0, 1]),
    }
    assert report._unreachable_spans(result) == [(2.0, 4.0), (5.0, 7.0), (8.0, 8.0)]
