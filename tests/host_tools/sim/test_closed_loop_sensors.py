"""Closed-loop runs of the agent's measurement side: bus noise all day, a frozen remote-DP
transmitter, a flow transmitter stuck at 0 (sensors.py holds, plausibility.py, the dry run).

Each run is simulated once per session and must also pass every safety invariant of the
closed-loop tests (test_closed_loop_protections.py: speed envelope, slew of references and of the
drives, starts per hour, suction above its limit outside the fault windows), run on it here.

Bounds come from the agent's config and the scenario: io.plausibility.frozen_s, the sensing lag
(LAG_S), the dry-run delay; the DP band is the KPI's ±0.5 m.
"""

import dataclasses
import functools

import pytest
import test_closed_loop_protections as invariants
from relaypump.control import SOURCE_DISCHARGE, SOURCE_REMOTE
from relaypump.plausibility import CHECK_INTERMITTENT, CHECK_MODEL
from relaypump.protection import CH_DISCHARGE, CH_FLOW, CH_REMOTE_DP, CH_SUCTION
from relaypump.snapshot import CMD_RUN
from test_closed_loop import LAG_S, SCHEDULE, Outcome, Recorder

from host_tools.sim import scenario as scenarios
from host_tools.sim.agent_controller import load_agent_config
from host_tools.sim.hardware import SimulatedStation
from host_tools.sim.run import run
from host_tools.sim.scenario import FaultSpec
from protocol.uplink import EventCode as E

SETTLED_S = 600.0  # from standstill to two pumps in band, with margin
WARM_C = 14.0
FROZEN_AT_S = 1800.0
FAULT_S = 900.0  # the other transmitter faults: settled, two pumps in band
RECOVER_S = 300.0  # from a remote DP found implausible to the true DP back in band (no issue goal)

# name -> (mean outdoor temperature, faults, hours)
SENSOR_RUNS = {
    # 10 % of frames corrupted all day on a warm day (the cliff lay between 5 and 10 %)
    "crc_noise_warm": (WARM_C, (FaultSpec("crc_noise", 0.0, None, probability=0.10),), 4.0),
    # the remote DP transmitter freezes at its present reading (the I/O module's stuck mode)
    "remote_dp_frozen": (
        -6.0,
        (FaultSpec("sensor_fault", FROZEN_AT_S, 1200.0, sensor="remote_dp_kpa", mode="stuck"),),
        1.0,
    ),
    # the flow transmitter stuck at its 0 m3/h reading from the start: the pumps are healthy
    "flow_stuck_at_zero": (
        -6.0,
        (FaultSpec("sensor_fault", 0.5, None, sensor="flow_m3h", mode="stuck"),),
        0.5,
    ),
    # the flow transmitter freezes mid-run at what it reads then
    "flow_frozen": (
        WARM_C,
        (FaultSpec("sensor_fault", FROZEN_AT_S, 1200.0, sensor="flow_m3h", mode="stuck"),),
        1.0,
    ),
    # the remote DP off by a fixed amount beyond the plausibility tolerance (~80 kPa at 700 m3/h:
    # 30 kPa + 0.15 x the network loss; reads 10 m high: the loop under-delivers until it is
    # found), drifting (+24 m/h: its error crosses the tolerance ~20 min into the fault), and a
    # loose terminal (its loop open 6 s of every 30 s: an NE43 failure each time, bumpless)
    "remote_dp_offset": (
        -6.0,
        (
            FaultSpec(
                "sensor_fault", FAULT_S, 900.0, sensor="remote_dp_kpa", mode="offset", offset=100.0
            ),
        ),
        0.75,
    ),
    "remote_dp_drift": (
        -6.0,
        (
            FaultSpec(
                "sensor_fault",
                FAULT_S,
                1800.0,
                sensor="remote_dp_kpa",
                mode="drift",
                rate_per_h=240.0,
            ),
        ),
        0.85,
    ),
    "remote_dp_intermittent": (
        -6.0,
        (
            FaultSpec(
                "sensor_fault",
                FAULT_S,
                900.0,
                sensor="remote_dp_kpa",
                mode="intermittent",
                period_s=30.0,
                duty=0.2,
            ),
        ),
        0.75,
    ),
    # a suction transmitter drifting low, a discharge transmitter drifting high (90 kPa an hour:
    # 45 kPa off after 30 min), the true pressures healthy (review_frozen_dp_drift's fault, 3x
    # faster): the pump model and the network agree against the measured head
    "suction_drift_low": (
        -8.0,
        (
            FaultSpec(
                "sensor_fault",
                FAULT_S,
                1800.0,
                sensor="suction_kpa",
                mode="drift",
                rate_per_h=-90.0,
            ),
        ),
        0.9,
    ),
    "discharge_drift_high": (
        -8.0,
        (
            FaultSpec(
                "sensor_fault",
                FAULT_S,
                1800.0,
                sensor="discharge_kpa",
                mode="drift",
                rate_per_h=90.0,
            ),
        ),
        0.9,
    ),
    # loop currents a transmitter's own diagnostics drive (NAMUR NE43) or a shorted loop: BAD
    # after io.hold_s, each channel's fallback
    "remote_dp_fail_low": (
        -6.0,
        (FaultSpec("sensor_fault", FAULT_S, 600.0, sensor="remote_dp_kpa", mode="fail_low"),),
        0.6,
    ),
    "remote_dp_short": (
        -6.0,
        (FaultSpec("sensor_fault", FAULT_S, 600.0, sensor="remote_dp_kpa", mode="short"),),
        0.6,
    ),
    "flow_fail_high": (
        -6.0,
        (FaultSpec("sensor_fault", FAULT_S, 600.0, sensor="flow_m3h", mode="fail_high"),),
        0.6,
    ),
    # nothing wrong, a cold and a warm day: plausibility must stay silent
    "healthy_cold": (-10.0, (), 2.0),
    "healthy_warm": (WARM_C, (), 2.0),
}

INVARIANTS = (
    invariants.test_commands_stay_in_the_speed_envelope,
    invariants.test_speed_references_move_at_most_at_the_slew_limit,
    invariants.test_commanded_drive_speeds_move_at_most_at_the_slew_limit,
    invariants.test_no_pump_starts_more_often_than_allowed_per_hour,
)


@functools.cache
def outcome(name: str) -> Outcome:
    temp_c, faults, hours = SENSOR_RUNS[name]
    base = scenarios.load(SCHEDULE)
    chosen = dataclasses.replace(
        base, faults=faults, hours=hours, mean_temp_c=temp_c, name=base.name + " / " + name
    )
    config = load_agent_config(chosen)
    station = SimulatedStation(chosen)
    rec = Recorder(chosen, config)
    result = run(chosen, rec, station=station)
    return Outcome(name, faults[0] if faults else None, config, station, rec, result)


def in_band_share(o, start_s, end_s):
    errors = o.dp_error(start_s, end_s)
    return sum(1 for e in errors if abs(e) <= o.band_kpa) / len(errors)


def assert_no_station_stop(o, after_s=0.0):
    assert not o.events(E.SAFE_STATE_ENTERED, after_s=after_s), o.name
    assert all(k.stop_reason == 0 for k in o.ticks(after_s)), o.name
    running = o.result.running
    for i in range(o.sample(SETTLED_S), len(o.t)):
        assert any(r[i] for r in running), (o.name, o.t[i], "no pump running")


@pytest.mark.parametrize("name", list(SENSOR_RUNS))
def test_every_sensor_run_keeps_the_safety_invariants(name, monkeypatch):
    o = outcome(name)
    monkeypatch.setattr(invariants, "outcome", lambda _: o)
    for check in INVARIANTS:
        check(name)
    # stricter than the suction invariant there: no fault of these runs excuses a dip
    assert o.result.kpis["min_suction_margin_kpa"] > 0.0


def test_bus_noise_all_day_never_stops_the_station():
    o = outcome("crc_noise_warm")
    assert o.station.bus.corrupted_frames > 0.1 * o.station.bus.requests  # the noise was there
    assert_no_station_stop(o)
    assert not o.events(E.SENSOR_FAULT) and not o.events(E.SENSOR_SUSPECT)
    share = in_band_share(o, SETTLED_S, o.t[-1])
    assert share >= 0.98, share
    # every tick the loop ran on the remote DP (held through the missed samples)
    assert all(k.source == SOURCE_REMOTE for k in o.ticks(SETTLED_S))


def detect_s(o, channel):
    """Seconds from the fault's start to the first SENSOR_SUSPECT of the channel."""
    t, _, _ = o.first(E.SENSOR_SUSPECT, after_s=o.fault.at_s)
    assert [v for _, _, v in o.events(E.SENSOR_SUSPECT)][:1] == [channel], o.events(
        E.SENSOR_SUSPECT
    )
    return t - o.fault.at_s


def test_a_frozen_remote_dp_is_flagged_and_the_loop_runs_on_the_discharge():
    o = outcome("remote_dp_frozen")
    fault = o.fault
    found_s = detect_s(o, CH_REMOTE_DP)
    assert found_s <= 120.0, found_s  # the goal (stuck_sensor_detect_s)
    assert found_s <= o.config["io"]["channels"]["remote_dp_kpa"]["frozen_s"] + 60.0 + LAG_S
    switched = [k for k in o.ticks(fault.at_s + found_s + LAG_S, fault.end_s)]
    assert switched and all(k.source == SOURCE_DISCHARGE for k in switched)
    assert_no_station_stop(o)
    # the true DP stays served on the discharge pressure: never 2 m low, in band most of the time
    errors = o.dp_error(fault.at_s + found_s + 60.0, fault.end_s)
    assert min(errors) > -4.0 * o.band_kpa, min(errors)  # 2 m
    assert in_band_share(o, fault.at_s + found_s + 120.0, fault.end_s) >= 0.9
    # live again: plausible, back on the remote DP
    back_s, _, _ = o.first(E.SENSOR_PLAUSIBLE, after_s=fault.end_s)
    assert back_s - fault.end_s <= LAG_S
    assert all(k.source == SOURCE_REMOTE for k in o.ticks(back_s + LAG_S))


def test_a_flow_transmitter_stuck_at_zero_locks_out_no_healthy_pump():
    o = outcome("flow_stuck_at_zero")
    found_s = detect_s(o, CH_FLOW)
    started = next(k.t_s for k in o.rec.log if CMD_RUN in k.commands)
    assert found_s - started < o.config["protection"]["dry_run_delay_s"], found_s
    assert not o.events(E.DRY_RUN) and not o.events(E.PUMP_LOCKOUT)
    assert not any(any(k.locked) for k in o.rec.log)
    assert_no_station_stop(o)
    assert in_band_share(o, SETTLED_S, o.t[-1]) >= 0.95


def test_a_flow_transmitter_frozen_mid_run_is_flagged_within_the_bound():
    o = outcome("flow_frozen")
    found_s = detect_s(o, CH_FLOW)
    assert found_s <= 120.0, found_s
    assert_no_station_stop(o)
    assert not o.events(E.DRY_RUN)
    assert in_band_share(o, SETTLED_S, o.t[-1]) >= 0.95
    assert o.first(E.SENSOR_PLAUSIBLE, after_s=o.fault.end_s)[0] - o.fault.end_s <= LAG_S


@pytest.mark.parametrize("name", ["healthy_cold", "healthy_warm"])
def test_healthy_days_raise_no_suspect(name):
    o = outcome(name)  # transmitter noise and lag, pumps off their datasheet curves (ISO 2B)
    assert not o.events(E.SENSOR_SUSPECT) and not o.events(E.SENSOR_FAULT)
    assert_no_station_stop(o)
    assert in_band_share(o, SETTLED_S, o.t[-1]) >= 0.98


def assert_served_after(o, start_s, end_s, share=0.9):
    """From start_s to end_s the true remote DP is never 2 m low and in band for share of it."""
    errors = o.dp_error(start_s, end_s)
    assert min(errors) > -4.0 * o.band_kpa, (o.name, min(errors))
    assert in_band_share(o, start_s, end_s) >= share, (o.name, in_band_share(o, start_s, end_s))


@pytest.mark.parametrize("name", ["remote_dp_offset", "remote_dp_drift"])
def test_a_remote_dp_off_its_estimate_is_flagged_and_the_loop_runs_on_the_discharge(name):
    """An offset or a drift beyond the plausibility tolerance (dp_tolerance_kpa + ratio x the
    network loss) is flagged once it has disagreed for dp_check_s; the loop then runs on the
    discharge pressure and serves the true DP; live again, back on the remote DP."""
    o = outcome(name)
    fault = o.fault
    checks = o.config["io"]["plausibility"]
    found_s = detect_s(o, CH_REMOTE_DP)
    # the tolerance at the largest flow of the fault (the network loss the check allows for)
    loss_m = (
        o.config["setpoint"]["network_loss_m_per_m3h2"]
        * max(o.series("flow_m3h", fault.at_s, fault.end_s)) ** 2
    )
    kpa_per_m = 2.0 * o.band_kpa  # band_kpa is 0.5 m
    tolerance_kpa = checks["dp_tolerance_kpa"] + checks["dp_tolerance_ratio"] * loss_m * kpa_per_m
    assert fault.offset > tolerance_kpa or fault.rate_per_h > 0.0  # what the run is about
    rate_kpa_s = fault.rate_per_h / 3600.0 if fault.mode == "drift" else float("inf")
    crossing_s = tolerance_kpa / rate_kpa_s  # 0 for an offset: beyond it at once
    # judged in a steady state only: the loop's answer to the false reading (the speeds moving at
    # most from max to min at the slew limit) comes first
    speed = o.config["speed"]
    reaction_s = (speed["max_pct"] - speed["min_pct"]) / speed["slew_pct_per_s"]
    bound_s = crossing_s + reaction_s + checks["dp_check_s"] + checks["settle_s"] + 2 * LAG_S
    assert found_s <= bound_s, (found_s, bound_s)
    switched = o.ticks(fault.at_s + found_s + LAG_S, fault.end_s)
    assert switched and all(k.source == SOURCE_DISCHARGE for k in switched)
    assert_no_station_stop(o)
    # the discharge loop brings the true DP back from up to the tolerance low (observed 200-220
    # s: its PI, not the slew, sets the pace) and holds it in band
    back_s = o.back_in_band_s(fault.at_s + found_s, fault.end_s)
    assert back_s <= RECOVER_S, back_s
    assert_served_after(o, fault.at_s + found_s + back_s, fault.end_s, 0.98)
    # live again: plausible after clear_s of agreement judged in a steady state (the judging
    # pauses whenever the discharge loop moves the speeds past 0.3 %/s: observed 54-61 s)
    back_s, _, _ = o.first(E.SENSOR_PLAUSIBLE, after_s=fault.end_s)
    assert checks["clear_s"] <= back_s - fault.end_s <= 120.0
    assert all(k.source == SOURCE_REMOTE for k in o.ticks(back_s + LAG_S))


@pytest.mark.parametrize(
    ("name", "channel"), [("suction_drift_low", CH_SUCTION), ("discharge_drift_high", CH_DISCHARGE)]
)
def test_a_drifting_pressure_transmitter_is_blamed_and_replaced_not_the_flow(name, channel):
    """The measured head (discharge - suction) drifts away from both other opinions - the pump
    model at the measured speeds and flow, and the remote DP + the network's loss - which agree
    with each other: the drifting pressure (not the flow, not the remote DP) is SUSPECT once its
    error passes half of the model's tolerance and of the fixed DP tolerance (judged at full
    speed: the bound) and has held for dp_check_s; it runs on its substitute (the other pressure
    -/+ the modelled head): no SUCTION_LOW, no pump stopped, the calibration does not learn the
    drift, the DP served; once the reading is true again it is cleared."""
    o = outcome(name)
    fault = o.fault
    checks = o.config["io"]["plausibility"]
    model = o.config["pump_model"]
    kpa_per_m = model["density_kg_m3"] * 9.80665 / 1000.0
    half_kpa = 0.5 * max(
        checks["head_tolerance_ratio"] * model["shutoff_head_m"] * kpa_per_m
        + checks["head_tolerance_kpa"],
        checks["dp_tolerance_kpa"],
    )
    bound_s = half_kpa / (abs(fault.rate_per_h) / 3600.0) + checks["dp_check_s"] + 60.0
    suspect = o.events(E.SENSOR_SUSPECT, after_s=fault.at_s)
    assert suspect and suspect[0][1:] == (CHECK_MODEL, channel), suspect
    assert suspect[0][0] - fault.at_s <= bound_s, (suspect, bound_s)
    assert len(suspect) == 1, suspect
    assert not o.events(E.SUCTION_LOW, after_s=fault.at_s)
    assert not o.events(E.PUMP_STOPPED, after_s=fault.at_s)
    # the calibration learns the simulated pumps' own head (+2..3 % here: reported at 2 %), not
    # the drift (45 kPa at its end, ~7 % of the head): no report beyond the next 2 % step
    learnt = [v for _, _, v in o.events(E.PUMP_HEAD_DEVIATION, after_s=fault.at_s)]
    assert all(abs(v) < 40 for v in learnt), learnt
    assert all(abs(f - 1.0) < 0.035 for f in o.rec.agent.calibration.head_factor)
    assert o.events(E.SENSOR_FAULT, after_s=fault.at_s)[0][1:] == (1, channel)  # substitute
    plausible = o.events(E.SENSOR_PLAUSIBLE, after_s=fault.end_s)
    assert plausible and plausible[0][1:] == (CHECK_MODEL, channel), plausible
    assert plausible[0][0] - fault.end_s <= checks["clear_s"] + 120.0
    assert_no_station_stop(o)
    assert_served_after(o, fault.at_s, o.t[-1], 0.98)


def test_a_loose_remote_dp_terminal_is_latched_on_the_discharge_with_one_event_each_way():
    """Its loop opens (0 uA) for 6 s of every 30 s: each opening is an NE43 failure (SENSOR_FAULT
    / SENSOR_RESTORED) until io.plausibility.latch_faults of them fall within latch_window_s; then
    plausibility.py latches it SUSPECT (one SENSOR_SUSPECT, subject 3 = intermittent) and the
    loop stays on the discharge - no event pair per burst, no switching back and forth - until the
    channel has read without a failure for latch_clear_s (one SENSOR_PLAUSIBLE and one
    SENSOR_RESTORED). The switches are bumpless: the true DP stays in band, nothing stops."""
    o = outcome("remote_dp_intermittent")
    fault = o.fault
    checks = o.config["io"]["plausibility"]
    n = checks["latch_faults"]
    faults = o.events(E.SENSOR_FAULT, after_s=fault.at_s)
    restored = o.events(E.SENSOR_RESTORED, after_s=fault.at_s)
    assert len(faults) == n and len(restored) == n, (faults, restored)
    assert {v for _, _, v in faults + restored} == {CH_REMOTE_DP}
    suspect = o.events(E.SENSOR_SUSPECT, after_s=fault.at_s)
    plausible = o.events(E.SENSOR_PLAUSIBLE, after_s=fault.at_s)
    assert [x[1:] for x in suspect] == [(CHECK_INTERMITTENT, CH_REMOTE_DP)], suspect
    assert [x[1:] for x in plausible] == [(CHECK_INTERMITTENT, CH_REMOTE_DP)], plausible
    latched_s, back_s = suspect[0][0], plausible[0][0]
    assert latched_s - fault.at_s <= n * fault.period_s + LAG_S  # at the n-th burst
    assert latched_s - fault.at_s <= checks["latch_window_s"]
    # latch_clear_s of good readings after the last failure (in the fault's last period)
    assert -fault.period_s <= back_s - fault.end_s - checks["latch_clear_s"] <= LAG_S
    assert restored[-1][0] - back_s <= LAG_S
    assert all(k.source == SOURCE_DISCHARGE for k in o.ticks(latched_s + 1.0, back_s))
    assert all(k.source == SOURCE_REMOTE for k in o.ticks(restored[-1][0] + 1.0))
    assert_no_station_stop(o)
    assert_served_after(o, fault.at_s, o.t[-1], 0.98)


@pytest.mark.parametrize(
    "name, channel", [("remote_dp_fail_low", 3), ("remote_dp_short", 3), ("flow_fail_high", 5)]
)
def test_a_transmitter_driven_to_a_fault_current_gets_its_fallback(name, channel):
    """A NAMUR fail current or a shorted loop is BAD after io.hold_s of the last good value:
    SENSOR_FAULT, the channel's fallback (remote DP -> the discharge loop; flow -> the model's
    substitute: no dry run, no lockout), nothing stops, the true DP served; restored after."""
    o = outcome(name)
    fault = o.fault
    fault_s, _, value = o.first(E.SENSOR_FAULT)
    assert value == channel and fault_s - fault.at_s <= o.config["io"]["hold_s"] + LAG_S
    if channel == 3:
        assert all(k.source == SOURCE_DISCHARGE for k in o.ticks(fault_s + 1.0, fault.end_s))
    assert not o.events(E.DRY_RUN) and not o.events(E.PUMP_LOCKOUT)
    assert not any(any(k.locked) for k in o.rec.log)
    assert_no_station_stop(o)
    assert_served_after(o, fault.at_s, o.t[-1], 0.95)
    assert o.first(E.SENSOR_RESTORED, after_s=fault.end_s)[0] - fault.end_s <= LAG_S
