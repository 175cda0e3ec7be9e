"""Closed-loop run of the warm shaped day (scenarios/jia_warm_shaped.toml: +14 °C, night setback,
morning boost, demand floor 50 m3/h, pumps off their datasheet by the ISO 9906 2B spread), where
the agent's staging decides between one and two pumps, with the safety invariants of
test_closed_loop_protections.py on it.

The run: the day's first 13 h, unchanged: one pump through the night (over-delivering below
~205-230 m3/h until ~01:20), the second pump at the morning boost (05:01), one again as the demand
falls towards noon (12:20).

What is physics, not the agent: below ~205-230 m3/h one pump at its 50 % minimum speed gives more
head than the network needs, so the remote DP lies above its band (over the whole day 44 % of the
time; DP in band 55.9 % of 24 h, unserved 0.9 min). The test checks that every sample above the
band is one where the agent is already at its lowest (one pump, reference at min_pct) or getting
there at the slew limit, and that the DP is in band whenever it is not.
"""

import dataclasses
import functools

import test_closed_loop_protections as invariants
from relaypump.snapshot import CMD_RUN
from relaypump.staging import REASON_DEMAND
from test_closed_loop import LAG_S, Outcome, Recorder

from host_tools.sim import scenario as scenarios
from host_tools.sim.agent_controller import load_agent_config
from host_tools.sim.hardware import SimulatedStation
from host_tools.sim.run import SAMPLE_S, run
from protocol.uplink import EventCode as E

WARM_SHAPED = scenarios.SCENARIOS / "jia_warm_shaped.toml"
HOURS = 13.0
UNSERVED_GOAL_MIN = 5.0  # issue 7: fault_campaign_unserved_min per day

INVARIANTS = (
    invariants.test_commands_stay_in_the_speed_envelope,
    invariants.test_speed_references_move_at_most_at_the_slew_limit,
    invariants.test_commanded_drive_speeds_move_at_most_at_the_slew_limit,
    invariants.test_every_turning_drive_moves_at_most_at_the_slew_limit_on_its_own_ramps_too,
    invariants.test_a_station_stop_ramps_one_drive_down_at_a_time,
    invariants.test_no_pump_starts_more_often_than_allowed_per_hour,
)


@functools.cache
def outcome() -> Outcome:
    base = scenarios.load(WARM_SHAPED)
    chosen = dataclasses.replace(base, hours=HOURS)
    config = load_agent_config(chosen)
    station = SimulatedStation(chosen)
    rec = Recorder(chosen, config, station)
    result = run(chosen, rec, station=station)
    return Outcome("warm_shaped", None, config, station, rec, result)


def test_the_warm_shaped_day_keeps_the_safety_invariants(monkeypatch):
    o = outcome()
    monkeypatch.setattr(invariants, "outcome", lambda _: o)
    for check in INVARIANTS:
        check(o.name)
    assert o.result.kpis["min_suction_margin_kpa"] > 0.0


def test_staging_goes_from_one_pump_to_two_at_the_boost_and_back_as_the_demand_falls():
    o = outcome()
    boost = o.station.scenario.morning_boost
    started = o.events(E.PUMP_STARTED)
    stopped = o.events(E.PUMP_STOPPED)
    # one pump through the night, a second one once the boost has raised the demand, one again
    # as it falls after the boost: each decision once, by demand
    assert len(started) == 2 and len(stopped) == 1, (started, stopped)
    assert started[0][0] < 60.0
    assert boost.start_s < started[1][0] < boost.end_s and started[1][2] == REASON_DEMAND
    assert boost.end_s < stopped[0][0] and stopped[0][2] == REASON_DEMAND
    counts = [sum(1 for c in k.commands if c == CMD_RUN) for k in o.rec.log]
    assert max(counts) == 2 and counts[-1] == 1


def test_nothing_trips_locks_out_or_doubts_a_transmitter():
    o = outcome()
    for code in (
        E.SAFE_STATE_ENTERED,
        E.DRY_RUN,
        E.PUMP_LOCKOUT,
        E.STATION_LOCKOUT,
        E.SUCTION_TRIP,
        E.SENSOR_FAULT,
        E.SENSOR_SUSPECT,
        E.PUMP_TRIPPED,
    ):
        assert not o.events(code), (E(code).name, o.events(code))


def test_the_dp_is_in_band_unless_one_pump_at_min_speed_already_over_delivers():
    o = outcome()
    speed = o.config["speed"]
    errors = o.dp_error(0.0, o.t[-1])
    by_tick = {round(k.t_s): k for k in o.rec.log}

    def at_its_lowest(t):
        """One pump runs, at min_pct or slewing down to it, within the sensing lag of t."""
        for d in range(1, round(LAG_S) + 2):
            k, before = by_tick.get(round(t) - d), by_tick.get(round(t) - d - 1)
            if k is None or before is None or k.commands.count(CMD_RUN) != 1:
                continue
            ref = max(k.refs)
            if ref <= speed["min_pct"] + 1e-6:
                return True
            if max(before.refs) - ref >= speed["slew_pct_per_s"] - 1e-6:
                return True
        return False

    settled = o.sample(600.0)  # from standstill
    over = [i for i in range(settled, len(errors)) if errors[i] > o.band_kpa]
    assert over, "the run reaches no over-delivery: it does not test what it says"
    for i in over:
        assert at_its_lowest(o.t[i]), (o.t[i], errors[i], by_tick.get(round(o.t[i]) - 1))
    regulated = [e for i, e in enumerate(errors) if i >= settled and e <= o.band_kpa]
    in_band = sum(1 for e in regulated if e >= -o.band_kpa) / len(regulated)
    assert in_band >= 0.98, in_band
    unserved_min = SAMPLE_S * sum(1 for e in errors if e < -4.0 * o.band_kpa) / 60.0
    assert unserved_min <= UNSERVED_GOAL_MIN * HOURS / 24.0, unserved_min
