"""Closed-loop runs of the protections the fault schedule cannot reach on the reference config
(a lost suction or flow sensor, a deep suction dip, discharge above its maximum), and the
safety invariants of DESIGN.md (rule 6) held over every closed-loop run of test_closed_loop.py
(which defines the runs and the recorder; each run is simulated once per session and shared):

- every RUN command's speed reference lies in speed.min_pct..max_pct and under the protection cap;
  no drive is ever told to coast or quick-stop (stops go through the drives' ramps);
- references move no faster than speed.slew_pct_per_s, and so does the actual speed of a drive the
  agent commands to run, inside its operating range (>= the drive's minimum speed, pulses on, as
  run.max_slew measures it; a ramp stop or a lost drive's own action is not a commanded speed);
- every drive with its pulses on moves no faster than the slew limit, on its own ramps too (a
  stop, a start from standstill, a lost drive's way to its safe speed): the agent wrote them;
- a station stop is staggered: one drive at a time ramps down on a stop command;
- no pump starts more than staging.max_starts_per_hour times within any hour;
- outside the fault windows (+10 min) suction stays above its vaporization + NPSH limit.
"""

import itertools

import pytest
from relaypump.snapshot import CMD_COAST, CMD_QUICK_STOP, CMD_RUN, CMD_STOP, DRIVE_TRIPPED
from test_closed_loop import (
    LAG_S,
    RUNS,
    SCHEDULE,
    all_stopped_at,
    assert_restarts_in_band,
    assert_soft_stop,
    max_ramping_together,
    outcome,
    setting,
    staggered_stop_s,
)

from host_tools.sim import scenario as scenarios
from host_tools.sim.kpis import NotComputed
from host_tools.sim.run import SAMPLE_S
from protocol.uplink import EventCode as E

SLEW_TOLERANCE_PCT_S = 0.02  # the drives' reference resolution (g120: 100 % = 16384)
COMMAND_WINDOW_S = 3  # ticks before a sample whose command the drive may still be following


def _runs():
    return list(RUNS)


def test_every_fault_kind_and_transmitter_mode_has_a_closed_loop_run():
    """Every fault kind of the schedule, and every transmitter fault mode (scenario
    SENSOR_MODES: loop currents, stuck, drift, offset, intermittent), has a closed-loop run here,
    in test_closed_loop_sensors.py or in test_closed_loop_hydraulics.py (RUNS)."""
    from test_closed_loop_sensors import SENSOR_RUNS  # (it imports this module)

    faults = [f for faults, *_ in RUNS.values() for f in faults]
    faults += [f for _, sensor_faults, _ in SENSOR_RUNS.values() for f in sensor_faults]
    kinds = {f.kind for f in scenarios.load(SCHEDULE).faults}
    assert kinds <= {f.kind for f in faults}
    modes = {f.mode for f in faults if f.kind in ("sensor_fault", "sensor_wire_break")}
    assert set(scenarios.SENSOR_MODES) <= modes, set(scenarios.SENSOR_MODES) - modes


@pytest.mark.parametrize("name", _runs())
def test_commands_stay_in_the_speed_envelope(name):
    o = outcome(name)
    speed = o.config["speed"]
    for k in o.rec.log:
        for pump, (command, ref) in enumerate(zip(k.commands, k.refs, strict=True)):
            if command == CMD_RUN:
                assert speed["min_pct"] <= ref <= min(speed["max_pct"], k.cap_pct) + 1e-9, k
            assert command not in (CMD_COAST, CMD_QUICK_STOP) or k.states[pump] == DRIVE_TRIPPED
    # what the drives hold: the last RUN reference written (at most one poll cycle old)
    last = o.rec.log[-1]
    for drive, command, ref in zip(o.station.drives, last.commands, last.refs, strict=True):
        if command == CMD_RUN:
            assert abs(drive.reference_pct - ref) <= speed["slew_pct_per_s"] + 0.01


@pytest.mark.parametrize("name", _runs())
def test_speed_references_move_at_most_at_the_slew_limit(name):
    o = outcome(name)
    slew = o.config["speed"]["slew_pct_per_s"]
    log = o.rec.log
    for a, b in itertools.pairwise(log):
        for pump in range(len(b.refs)):
            if a.commands[pump] == CMD_RUN and b.commands[pump] == CMD_RUN:
                assert abs(b.refs[pump] - a.refs[pump]) <= slew * (b.t_s - a.t_s) + 1e-6, (a, b)


@pytest.mark.parametrize("name", _runs())
def test_commanded_drive_speeds_move_at_most_at_the_slew_limit(name):
    o = outcome(name)
    limit = o.config["speed"]["slew_pct_per_s"] + SLEW_TOLERANCE_PCT_S
    by_tick = {round(k.t_s): k for k in o.rec.log}
    worst = (0.0, None)
    for pump, (drive, speeds, running) in enumerate(
        zip(o.station.drives, o.result.speeds, o.result.running, strict=True)
    ):
        floor = drive.config.min_speed_pct - 0.01
        for i in range(1, len(speeds)):
            ticks = [by_tick.get(round(o.t[i]) - d) for d in range(1, COMMAND_WINDOW_S + 1)]
            if not all(k and k.commands[pump] == CMD_RUN and k.online[pump] for k in ticks):
                continue
            if running[i] and running[i - 1] and min(speeds[i], speeds[i - 1]) >= floor:
                slew = abs(speeds[i] - speeds[i - 1]) / SAMPLE_S
                worst = max(worst, (slew, (pump + 1, o.t[i])), key=lambda w: w[0])
    assert worst[0] <= limit, f"{name}: {worst[0]:.3f} %/s at (pump, t) {worst[1]}"


@pytest.mark.parametrize("name", _runs())
def test_every_turning_drive_moves_at_most_at_the_slew_limit_on_its_own_ramps_too(name):
    """Stops, starts from standstill and a lost drive's way to its safe speed follow the drive's
    own ramps: the agent wrote them no faster than the slew limit (only a coast, pulses off, is
    left out)."""
    o = outcome(name)
    slew = o.config["speed"]["slew_pct_per_s"]
    for drive in o.station.drives:
        assert 100.0 / drive.config.decel_s <= slew and 100.0 / drive.config.accel_s <= slew
    for pump, (speeds, running) in enumerate(zip(o.result.speeds, o.result.running, strict=True)):
        for i in range(1, len(speeds)):
            if running[i] and running[i - 1]:
                step = abs(speeds[i] - speeds[i - 1]) / SAMPLE_S
                assert step <= slew + SLEW_TOLERANCE_PCT_S, (name, pump + 1, o.t[i], step)


@pytest.mark.parametrize("name", _runs())
def test_a_station_stop_ramps_one_drive_down_at_a_time(name):
    o = outcome(name)
    entered = [t for t, _, _ in o.events(E.SAFE_STATE_ENTERED)]
    left = [t for t, _, _ in o.events(E.SAFE_STATE_LEFT)]
    for start_s in entered:
        end_s = min((t for t in left if t > start_s), default=o.t[-1])
        assert max_ramping_together(o, start_s, end_s) <= 1, (name, start_s)


@pytest.mark.parametrize("name", _runs())
def test_no_pump_starts_more_often_than_allowed_per_hour(name):
    o = outcome(name)
    allowed = o.config["staging"]["max_starts_per_hour"]
    t = o.t
    for pump, running in enumerate(o.result.running):
        # rounded: the virtual clock accumulates 0.2 s steps (1e-9 s drift per hour)
        starts = [
            round(t[i], 3) for i in range(1, len(running)) if running[i] and not running[i - 1]
        ]
        for i, start in enumerate(starts):
            within = [s for s in starts[: i + 1] if start - s < 3600.0]
            assert len(within) <= allowed, (name, pump + 1, within)


@pytest.mark.parametrize("name", _runs())
def test_suction_stays_above_its_limit_outside_the_fault_windows(name):
    o = outcome(name)
    margin = o.result.kpis["min_suction_margin_outside_faults_kpa"]
    if isinstance(margin, NotComputed):  # a fault window (+10 min) over the whole run
        assert any(f.at_s <= o.t[0] and f.end_s + 600.0 >= o.t[-1] for f in RUNS[name][0])
        return
    assert margin > 0.0


# --- what the schedule cannot reach on the reference config -------------------------------------


def test_suction_sensor_lost_stops_every_pump_by_ramp_until_it_is_good_again():
    o = outcome("suction_break")  # both pressures lost: no substitute, the stop remains
    fault = o.fault
    assert o.config["io"]["channels"]["suction_kpa"]["fallback"] == "model"
    fault_s, _, channel = o.first(E.SENSOR_FAULT)
    assert fault_s - fault.at_s <= LAG_S and channel == 1
    # blind for sensor_stop_delay_s (no starts, the cap towards the safe speed), then the stop
    safe_s, _, reason = o.first(E.SAFE_STATE_ENTERED)
    assert abs(safe_s - fault_s - setting(o, "sensor_stop_delay_s")) <= 1.0
    assert reason == E.SENSOR_FAULT
    safe_pct = o.config["speed"]["safe_pct"]
    assert all(k.cap_pct < o.config["speed"]["max_pct"] for k in o.ticks(fault_s + 1.0, safe_s))
    assert o.ticks(safe_s - 1.0, safe_s)[0].cap_pct >= safe_pct
    left_s, _, _ = o.first(E.SAFE_STATE_LEFT)
    assert abs(left_s - fault.end_s - setting(o, "restart_delay_s")) <= LAG_S
    assert_soft_stop(o, safe_s, left_s)
    stopped_s = all_stopped_at(o, safe_s)
    assert stopped_s <= safe_s + staggered_stop_s(o, safe_s)
    assert all(not any(r[o.sample(stopped_s) : o.sample(left_s)]) for r in o.result.running)
    assert_restarts_in_band(o, left_s)


@pytest.mark.parametrize("name", ["source_stop", "deep_suction_dip", "suction_break"])
def test_a_staggered_station_stop_keeps_the_surge_below_a_stop_all_at_once(name):
    """The same run with every pump told to stop at once (as before) against the staggered stop:
    one pump ramps at a time, and the surge estimate over the stop is no higher; at the stop's
    end (the last drive's speed reaching 0, where the pumps' flow passes to the bypass) it is
    lower: one pump gives up its flow there instead of all of them within one reflection time."""
    reflection_s = outcome(name).station.plant.params.reflection_time_s
    peaks = []
    for staggered in (False, True):
        o = outcome(name, staggered)
        safe_s, _, _ = o.first(E.SAFE_STATE_ENTERED)
        stopped_s = all_stopped_at(o, safe_s)
        surge = o.result.samples["surge_kpa"]
        window = surge[o.sample(safe_s) : o.sample(stopped_s + reflection_s) + 1]
        end = surge[o.sample(stopped_s - 2 * reflection_s) : o.sample(stopped_s + reflection_s) + 1]
        peaks.append((max(window), max(end), max_ramping_together(o, safe_s, stopped_s)))
    (at_once, at_once_end, together), (stagger, stagger_end, one) = peaks
    assert together > 1 and one == 1, peaks  # the comparison is between what it says
    assert stagger <= at_once and stagger_end < at_once_end, peaks


def test_flow_sensor_lost_holds_and_pauses_the_dry_run_timer():
    o = outcome("flow_break")  # fallback "hold": nothing stops, no dry-run trip on a blind flow
    fault = o.fault
    fault_s, _, channel = o.first(E.SENSOR_FAULT)  # after io.hold_s of the last good value
    assert fault_s - fault.at_s <= o.config["io"]["hold_s"] + LAG_S and channel == 5
    assert o.first(E.SENSOR_RESTORED)[0] - fault.end_s <= LAG_S
    assert not o.events(E.DRY_RUN) and not o.events(E.SAFE_STATE_ENTERED)
    assert {k.commands for k in o.ticks(fault.at_s - 60.0)} == {(CMD_RUN, CMD_RUN, CMD_STOP)}
    assert max(abs(e) for e in o.dp_error(fault.at_s, o.t[-1])) <= o.band_kpa


def test_deep_suction_dip_trips_the_station_and_restarts_after_the_dip():
    o = outcome("deep_suction_dip")
    fault = o.fault
    trip_s, _, _ = o.first(E.SUCTION_TRIP)
    safe_s, _, reason = o.first(E.SAFE_STATE_ENTERED)
    assert safe_s == trip_s and reason == E.SUCTION_TRIP
    left_s, _, _ = o.first(E.SAFE_STATE_LEFT)
    assert_soft_stop(o, trip_s, left_s)
    # below the limit with a pump turning: at most the stop delay, the sensing lag and the ramps
    margin = o.result.samples["suction_margin_kpa"]
    turning = [
        any(r[i] and s[i] > 0.5 for r, s in zip(o.result.running, o.result.speeds, strict=True))
        for i in range(len(o.t))
    ]
    below_s = SAMPLE_S * sum(1 for i in range(len(o.t)) if margin[i] < 0.0 and turning[i])
    bound = setting(o, "suction_stop_delay_s") + LAG_S + staggered_stop_s(o, trip_s)
    assert 0.0 < below_s <= bound
    # one trip: no lockout; the pumps run again once suction is back above the slow-down band
    assert not o.events(E.STATION_LOCKOUT)
    assert left_s - fault.end_s <= setting(o, "restart_delay_s") + 2 * LAG_S + 30.0
    assert_restarts_in_band(o, left_s)


def test_discharge_above_its_max_trips_the_station_and_it_restarts_below_the_band():
    o = outcome("discharge_trip")
    dmax = setting(o, "discharge_max_kpa")
    high_s, _, _ = o.first(E.DISCHARGE_HIGH, after_s=0.0)
    trip_s, _, value = o.first(E.DISCHARGE_TRIP, after_s=0.0)
    assert high_s < trip_s and value >= dmax * 10  # kPa x10
    safe_s, _, reason = o.first(E.SAFE_STATE_ENTERED, after_s=0.0)
    assert safe_s == trip_s and reason == E.DISCHARGE_TRIP
    left_s, _, _ = o.first(E.SAFE_STATE_LEFT, after_s=0.0)
    assert left_s - trip_s >= setting(o, "restart_delay_s")
    assert_soft_stop(o, trip_s, left_s)
    assert all_stopped_at(o, trip_s) <= trip_s + staggered_stop_s(o, trip_s)
    below = o.series("discharge_kpa", left_s - setting(o, "restart_delay_s"), left_s)
    assert max(below) <= dmax - setting(o, "discharge_slowdown_kpa")


def test_discharge_in_the_slowdown_band_caps_the_speed_without_a_trip():
    o = outcome("discharge_slowdown")
    dmax = setting(o, "discharge_max_kpa")
    assert o.first(E.DISCHARGE_HIGH, after_s=0.0)
    assert not o.events(E.DISCHARGE_TRIP) and not o.events(E.SAFE_STATE_ENTERED)
    last = o.ticks(o.t[-1] - 300.0)
    assert all(k.cap_pct < o.config["speed"]["max_pct"] - 10.0 for k in last)
    assert all(k.commands == (CMD_RUN, CMD_RUN, CMD_STOP) for k in last)
    assert max(o.series("discharge_kpa", o.t[-1] - 300.0, o.t[-1])) < dmax
