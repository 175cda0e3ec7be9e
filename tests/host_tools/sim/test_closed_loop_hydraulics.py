"""Closed-loop runs of issue 7's hydraulic behaviours at high demand (the design day, ~770 m3/h: two
pumps near full load), defined in test_closed_loop.py's RUNS (so the safety invariants of
test_closed_loop_protections.py hold on them too):

- a running drive lost for 15 min (it goes to its 70 % safe speed, under the network's head: it
  runs dead-headed) never stops the station: no suction trip, no safe state, the standby takes
  over, the remote DP is served, and the lost drive is not left dead-headed once it is reached;
- after a trip at high load the standby starts at once (no start inhibit) and the survivor stays
  within its motor rating (10 s mean electrical power against its rated input);
- a cold start brings in the second pump as soon as the first runs out, not settle_s later, and
  no pump draws more than its rating meanwhile.
Bounds come from the scenario and the agent's config (ramps, slew, speeds), not from a run.
"""

from relaypump.snapshot import CMD_RUN
from relaypump.staging import REASON_FAILOVER, REASON_OVERLOAD
from test_closed_loop import AUX_PUMP, LAG_S, outcome

from host_tools.sim.run import SAMPLE_S, rated_input_kw
from protocol.uplink import EventCode as E

POWER_WINDOW_S = 10.0
POWER_LIMIT = 1.02  # x rated input, 10 s mean (issue 7's max_pump_power_vs_rated goal)
DEAD_FLOW_M3H = 1.0  # a running pump delivering less runs dead-headed


def mean_power_ratios(o, pump, start_s, end_s):
    """The pump's 10 s mean electrical power over its rated input, for each window ending in
    [start_s, end_s)."""
    rated = rated_input_kw(o.station)[pump]
    power = o.result.power[pump]
    n = round(POWER_WINDOW_S / SAMPLE_S)
    return [
        sum(power[i - n + 1 : i + 1]) / n / rated
        for i in range(max(n - 1, o.sample(start_s)), o.sample(end_s))
    ]


def seconds_low(o, start_s, end_s, metres):
    """Seconds the remote DP was more than `metres` below its setpoint."""
    kpa = metres * 2.0 * o.band_kpa  # band_kpa is 0.5 m
    return SAMPLE_S * sum(1 for e in o.dp_error(start_s, end_s) if e < -kpa)


def test_a_lost_running_drive_never_stops_the_station():
    o = outcome("design_comm_loss")
    fault, pump = o.fault, o.fault.pump - 1
    speed = o.config["speed"]
    assert o.config["pumps"][pump]["comm_loss_action"] == "safe_speed"
    lost_s, _, _ = o.first(E.DRIVE_COMM_LOST, subject=fault.pump)
    back_s, _, _ = o.first(E.DRIVE_COMM_RESTORED, subject=fault.pump)
    # the drive really runs on, at its safe speed under the head: dead-headed
    held = o.sample(fault.end_s - 1.0)
    assert o.result.running[pump][held] and abs(o.result.speeds[pump][held] - 70.0) < 0.5
    assert o.ticks(fault.end_s - 2.0, fault.end_s)[0].pump_flow[pump] < DEAD_FLOW_M3H
    # the agent assumes it running the whole time it is lost, and keeps probing it
    assert all(k.lost == 1 << pump for k in o.ticks(lost_s + 1.0, back_s))
    assert back_s - fault.end_s <= LAG_S
    # the standby replaces it at once; nothing trips, nothing stops
    start_s, _, reason = o.first(E.PUMP_STARTED, subject=AUX_PUMP + 1)
    assert start_s - lost_s <= 1.0 and reason == REASON_FAILOVER
    for code in (E.SUCTION_TRIP, E.SAFE_STATE_ENTERED, E.DISCHARGE_TRIP, E.PUMP_STOPPED):
        stopped = o.events(code, after_s=lost_s)
        assert all(code == E.PUMP_STOPPED and s == fault.pump for _, s, _ in stopped), (
            code,
            stopped,
        )
    for k in o.ticks(lost_s + 1.0, o.t[-1]):
        assert k.commands[1] == CMD_RUN and k.commands[AUX_PUMP] == CMD_RUN, k
    # the DP is served: out of band only while the standby comes up (its drive's ramp to min
    # speed, then the slew to the common speed), more than 2 m low for less than that
    standby = o.station.drives[AUX_PUMP].config
    common = o.result.speeds[1][o.sample(fault.at_s)]
    come_up_s = (
        speed["min_pct"] * standby.accel_s / 100.0
        + (common - speed["min_pct"]) / speed["slew_pct_per_s"]
    )
    # (+60 s: the lost drive's own reaction, comm timeout and ramp, overlaps; the PI settles)
    assert o.back_in_band_s(fault.at_s, fault.end_s) <= come_up_s + 60.0
    assert seconds_low(o, fault.at_s, o.t[-1], 2.0) <= come_up_s
    # reached again, the drive is stopped along its ramp: not left dead-headed
    ramp_s = o.result.speeds[pump][o.sample(back_s)] * o.station.drives[pump].config.decel_s / 100
    for k in o.ticks(back_s + LAG_S + ramp_s, o.t[-1]):
        assert k.pump_flow[pump] >= DEAD_FLOW_M3H or not o.result.running[pump][o.sample(k.t_s)]


def test_after_a_trip_at_high_load_the_standby_starts_at_once_and_the_survivor_stays_in_rating():
    o = outcome("design_trip")
    fault = o.fault
    trip_s, _, _ = o.first(E.PUMP_TRIPPED, subject=fault.pump)
    start_s, _, reason = o.first(E.PUMP_STARTED, subject=AUX_PUMP + 1)
    assert start_s - trip_s <= 1.0 and reason == REASON_FAILOVER  # no suction start inhibit
    assert not o.events(E.SAFE_STATE_ENTERED) and not o.events(E.SUCTION_TRIP)
    survivor = 1
    assert max(mean_power_ratios(o, survivor, trip_s, fault.end_s)) <= POWER_LIMIT
    assert not o.events(E.PUMP_TRIPPED, subject=survivor + 1)


def test_a_cold_start_brings_in_the_second_pump_when_the_first_runs_out():
    o = outcome("design_comm_loss")
    staging = o.config["staging"]
    first_s, first, _ = o.first(E.PUMP_STARTED, after_s=0.0)
    second = [e for e in o.events(E.PUMP_STARTED) if e[1] != first]
    second_s, _, reason = second[0]
    assert reason == REASON_OVERLOAD and second_s - first_s < staging["settle_s"]
    for p in range(len(o.station.drives)):
        assert max(mean_power_ratios(o, p, 0.0, o.fault.at_s)) <= POWER_LIMIT, p + 1
