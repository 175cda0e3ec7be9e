"""control + setpoint + pid: setpoint modes, envelope and ramp; PI limits, anti-windup, bumpless
transfer, slew and minimum speed; per-pump start/stop ramps; a small closed loop.

The closed-loop checks use a first-order-plus-dead-time stand-in for the plant (remote DP
~ speed^2, water-column time constant 7.4 s linearised at the design point, 2 s of measurement
delay); the simulator's closed loop is the lead's.
"""

from relaypump import control as ctl
from relaypump.codes import (
    ACK_MALFORMED,
    ACK_OK,
    ACK_OUT_OF_ENVELOPE,
    MODE_DISCHARGE,
    MODE_MANUAL_SPEED,
    MODE_REMOTE_DP,
)
from relaypump.pid import Pid
from relaypump.pumpmodel import rated_input_kw
from relaypump.setpoint import Setpoint
from relaypump.snapshot import (
    BAD,
    CMD_RUN,
    CMD_STOP,
    DRIVE_READY,
    DRIVE_RUNNING,
    DRIVE_TRIPPED,
    GOOD,
    HELD,
    Snapshot,
)
from support import ON_MICROPYTHON, bytes_allocated, station_config

VM_HEAP_KIB = 1024  # closed-loop runs build floats; the VM collects only between tests


# The tuning these tests hold the controller to (recommended for station.json "pid"; the shipped
# first guess was kp 0.15, ti 20 s).
TUNED_PID = {"kp": 0.4, "ti_s": 10.0, "td_s": 0.0}


def tuned_config():
    cfg = station_config()
    cfg["pid"].update(TUNED_PID)
    return cfg


def config(**sections):
    cfg = tuned_config()
    for name, values in sections.items():
        cfg[name].update(values)
    return cfg


def measure(m, value, quality=GOOD):
    m.value = value
    m.quality = quality


def plant_snapshot(dp=111.0, flow=800.0, suction=220.0, discharge=730.0):
    snap = Snapshot(3)
    measure(snap.remote_dp_kpa, dp)
    measure(snap.flow_m3h, flow)
    measure(snap.suction_kpa, suction)
    measure(snap.discharge_kpa, discharge)
    measure(snap.outdoor_temp_c, -6.0)
    for st in snap.pumps:
        st.online = True
        st.state = DRIVE_READY
    return snap


def follow(snap, controller):
    """Drives that do what they are told at once (actual speed = reference)."""
    for i in range(3):
        st = snap.pumps[i]
        cmd = snap.commands[i]
        if st.state == DRIVE_TRIPPED or not st.online:
            st.speed_pct = 0.0
            continue
        if cmd.command == CMD_RUN:
            st.state = DRIVE_RUNNING
            st.speed_pct = cmd.speed_pct
        else:
            st.state = DRIVE_READY
            st.speed_pct = 0.0


def running_controller(cfg=None, pumps=0b011, common=90.0):
    """A controller with `pumps` joined at `common` % (drives following), at tick 0."""
    c = ctl.Controller(cfg or tuned_config())
    snap = plant_snapshot()
    for i in range(3):
        if pumps & (1 << i):
            snap.pumps[i].state = DRIVE_RUNNING
            snap.pumps[i].speed_pct = common
    c.resume(snap)
    return c, snap


class Lcg:
    """Deterministic pseudo-random numbers (same sequence on CPython and MicroPython)."""

    def __init__(self, seed):
        self.x = seed

    def next(self):
        self.x = (self.x * 1103515245 + 12345) & 0x3FFFFFFF
        return self.x / 0x3FFFFFFF


# --- setpoint ------------------------------------------------------------------------------------
def test_fixed_setpoint_is_taken_at_start():
    sp = Setpoint(station_config())
    snap = plant_snapshot()
    assert sp.update(0, snap.flow_m3h, snap.outdoor_temp_c) == 111.0


def test_flow_and_outdoor_curves_are_piecewise_linear_and_flat_beyond_ends():
    cfg = config(setpoint={"mode": "flow"})
    snap = plant_snapshot(flow=550.0)
    sp = Setpoint(cfg)
    assert abs(sp.update(0, snap.flow_m3h, snap.outdoor_temp_c) - 95.5) < 1e-9
    sp = Setpoint(cfg)
    measure(snap.flow_m3h, 100.0)
    assert sp.update(0, snap.flow_m3h, snap.outdoor_temp_c) == 80.0
    sp = Setpoint(config(setpoint={"mode": "outdoor"}))
    measure(snap.outdoor_temp_c, 0.0)
    assert abs(sp.update(0, snap.flow_m3h, snap.outdoor_temp_c) - 90.5) < 1e-9
    sp = Setpoint(config(setpoint={"mode": "outdoor"}))
    measure(snap.outdoor_temp_c, -25.0)
    assert sp.update(0, snap.flow_m3h, snap.outdoor_temp_c) == 111.0


def test_curve_target_is_clamped_to_the_envelope():
    cfg = config(setpoint={"mode": "flow", "flow_curve": [[0.0, 10.0], [1000.0, 500.0]]})
    snap = plant_snapshot(flow=0.0)
    assert Setpoint(cfg).update(0, snap.flow_m3h, snap.outdoor_temp_c) == 60.0
    measure(snap.flow_m3h, 1000.0)
    assert Setpoint(cfg).update(0, snap.flow_m3h, snap.outdoor_temp_c) == 200.0


def test_bad_curve_input_holds_the_last_target():
    sp = Setpoint(config(setpoint={"mode": "flow"}))
    snap = plant_snapshot(flow=800.0)
    assert sp.update(0, snap.flow_m3h, snap.outdoor_temp_c) == 111.0
    measure(snap.flow_m3h, 300.0, BAD)
    assert sp.update(1000, snap.flow_m3h, snap.outdoor_temp_c) == 111.0
    assert sp.target_kpa == 111.0


def test_remote_setpoint_is_clamped_acked_and_ramped():
    sp = Setpoint(station_config())
    snap = plant_snapshot()
    sp.update(0, snap.flow_m3h, snap.outdoor_temp_c)
    assert sp.set_remote(120.0) == ACK_OK
    assert sp.set_remote(500.0) == ACK_OUT_OF_ENVELOPE
    assert sp.fixed_kpa == 200.0  # the clamped value is applied
    assert sp.set_remote(float("nan")) == ACK_MALFORMED
    assert sp.set_remote("x") == ACK_MALFORMED
    assert sp.fixed_kpa == 200.0
    # ramp 0.5 kPa/s: 10 s later 5 kPa further, never more
    last = 111.0
    for k in range(1, 11):
        v = sp.update(k * 1000, snap.flow_m3h, snap.outdoor_temp_c)
        assert abs(v - last - 0.5) < 1e-9
        last = v
    assert abs(last - 116.0) < 1e-9
    assert sp.set_remote(10.0) == ACK_OUT_OF_ENVELOPE
    assert sp.fixed_kpa == 60.0


def test_remote_setpoint_switches_a_curve_mode_to_fixed():
    sp = Setpoint(config(setpoint={"mode": "outdoor"}))
    assert sp.set_remote(100.0) == ACK_OK
    assert sp.mode == 0
    assert sp.set_mode("flow")
    assert not sp.set_mode("nonsense")


def test_missing_curves_are_tolerated_and_cannot_be_selected():
    cfg = tuned_config()
    del cfg["setpoint"]["flow_curve"]
    del cfg["setpoint"]["outdoor_curve"]
    sp = Setpoint(cfg)
    assert not sp.set_mode("flow")
    assert not sp.set_mode("outdoor")
    assert sp.set_mode("fixed")


def test_discharge_equivalent_follows_the_system_curve():
    sp = Setpoint(station_config())
    snap = plant_snapshot(flow=800.0, suction=220.0)
    sp.update(0, snap.flow_m3h, snap.outdoor_temp_c)
    # 111 kPa + 943 * 9.81 * 6.72e-5 * 800^2 / 1000 = 111 + 397.9 kPa above suction
    expected = 220.0 + 111.0 + 943.0 * 9.81 * 6.72e-5 * 640000.0 / 1000.0
    assert abs(sp.discharge_kpa(snap.suction_kpa, snap.flow_m3h) - expected) < 1e-6
    measure(snap.flow_m3h, 800.0, BAD)
    assert sp.discharge_kpa(snap.suction_kpa, snap.flow_m3h) == 560.0


def test_ramp_survives_tick_wrap():
    sp = Setpoint(station_config())
    snap = plant_snapshot()
    start = 0x3FFFFFFF - 500
    sp.update(start, snap.flow_m3h, snap.outdoor_temp_c)
    sp.set_remote(150.0)
    v = sp.update((start + 2000) & 0x3FFFFFFF, snap.flow_m3h, snap.outdoor_temp_c)
    assert abs(v - 112.0) < 1e-9


# --- PID -----------------------------------------------------------------------------------------
def test_pid_anti_windup_leaves_saturation_at_once():
    pid = Pid(0.4, 10.0)
    pid.track(90.0)
    for _ in range(600):  # a long positive error, output pinned at 100
        assert pid.step(1.0, 50.0, 0.0, 50.0, 100.0) == 100.0
    # the error turns: the output must leave 100 on the first step
    u = pid.step(1.0, -5.0, 0.0, 50.0, 100.0)
    assert u < 100.0
    assert abs(u - (100.0 - 0.4 * 55.0 - 0.4 * 5.0 / 10.0)) < 1e-9


def test_pid_integrates_to_zero_error_and_track_is_bumpless():
    pid = Pid(0.4, 10.0)
    pid.track(70.0, 3.0)
    assert abs(pid.step(0.0, 3.0, 0.0, 0.0, 100.0) - 70.0) < 1e-12  # no jump with the same error
    assert pid.step(1.0, 1.0, 0.0, 0.0, 100.0) > pid.step(0.0, 0.0, 0.0, 0.0, 100.0) - 1.0


def test_pid_derivative_acts_on_the_measurement_only():
    pid = Pid(0.4, 0.0, 4.0)
    pid.track(60.0, 0.0)
    pid.step(1.0, 0.0, 100.0, 0.0, 100.0)
    u_sp_step = pid.step(1.0, 10.0, 100.0, 0.0, 100.0)  # setpoint step: measurement still
    assert abs(u_sp_step - (60.0 + 4.0)) < 1e-9
    u = pid.step(1.0, 10.0, 110.0, 0.0, 100.0)  # measurement rises: derivative pulls down
    assert u < u_sp_step


# --- controller: limits -------------------------------------------------------------------------
def test_common_speed_never_slews_faster_than_the_limit():
    c, snap = running_controller()
    rnd = Lcg(7)
    slew = c.slew_pct_per_s
    last = c.common_pct
    now = 0
    refs = [snap.commands[i].speed_pct for i in range(3)]
    for k in range(400):
        dt = 200 + int(rnd.next() * 1800)
        now += dt
        if k % 25 == 0:
            c.setpoint.set_remote(40.0 + rnd.next() * 200.0)
        measure(snap.remote_dp_kpa, rnd.next() * 300.0)
        mask = 0b011 if (k // 60) % 2 == 0 else 0b110
        common = c.regulate(now, snap)
        c.drive(now, snap, mask)
        follow(snap, c)
        assert abs(common - last) <= slew * dt / 1000.0 + 1e-9
        assert c.min_pct <= common <= c.max_pct
        for i in range(3):
            r = snap.commands[i].speed_pct
            if r > 0.0 and refs[i] > 0.0:  # a running reference moves at the slew at most
                assert abs(r - refs[i]) <= slew * dt / 1000.0 + 1e-9, (k, i, r, refs[i])
            refs[i] = r
        last = common


def test_minimum_speed_holds_when_the_dp_is_far_too_high():
    c, snap = running_controller(common=60.0)
    measure(snap.remote_dp_kpa, 400.0)
    for k in range(1, 200):
        c.regulate(k * 1000, snap)
        c.drive(k * 1000, snap, 0b011)
        follow(snap, c)
    assert c.common_pct == c.min_pct
    assert snap.commands[0].speed_pct == c.min_pct
    assert snap.commands[0].command == CMD_RUN


def test_protection_cap_is_reached_along_the_slew():
    c, snap = running_controller(common=95.0)
    measure(snap.remote_dp_kpa, 50.0)  # the PI wants more
    c.regulate(0, snap)
    u = c.regulate(1000, snap, 80.0)
    assert abs(u - 94.0) < 1e-9  # 1 %/s down towards the cap, not a jump
    for k in range(2, 40):
        u = c.regulate(k * 1000, snap, 80.0)
    assert u == 80.0


def test_anti_windup_saturated_output_recovers_quickly():
    c, snap = running_controller(common=99.0)
    measure(snap.remote_dp_kpa, 60.0)  # far below setpoint for 10 minutes: pinned at max
    now = 0
    for _ in range(600):
        now += 1000
        c.regulate(now, snap)
        c.drive(now, snap, 0b011)
    assert c.common_pct == 100.0
    measure(snap.remote_dp_kpa, 125.0)  # now above setpoint: must come down at once
    now += 1000
    assert c.regulate(now, snap) == 99.0  # the full slew on the first step: no windup to unwind
    for _ in range(4):
        now += 1000
        c.regulate(now, snap)
    # then at least the integral rate kp e / ti = 0.56 %/s (the P part went into the first step)
    assert c.common_pct <= 99.0 - 4 * 0.4 * 14.0 / 10.0 + 1e-6, c.common_pct


def test_lagging_drive_is_not_outrun():
    c, snap = running_controller(common=60.0)
    measure(snap.remote_dp_kpa, 50.0)
    for k in range(1, 30):
        c.regulate(k * 1000, snap)
        c.drive(k * 1000, snap, 0b011)  # the drives report 60 % throughout
    assert c.common_pct <= 60.0 + c.follow_band_pct + 1e-9


# --- controller: measured variable and bumpless transfer ----------------------------------------
def unlimited_slew():
    return config(speed={"slew_pct_per_s": 1000.0})


def test_remote_to_discharge_transfer_is_bumpless_and_back():
    c, snap = running_controller(unlimited_slew(), common=90.0)
    measure(snap.remote_dp_kpa, 105.0)
    c.regulate(0, snap)
    u0 = c.regulate(1000, snap)
    assert c.telemetry_mode() == MODE_REMOTE_DP
    measure(snap.remote_dp_kpa, 0.0, BAD)
    measure(snap.discharge_kpa, 500.0)  # far below its equivalent: a big new error
    u1 = c.regulate(1000, snap)  # same instant: only the transfer can move it
    assert c.telemetry_mode() == MODE_DISCHARGE
    assert abs(u1 - u0) < 1e-9, (u0, u1)
    u2 = c.regulate(2000, snap)
    assert u2 > u1  # then the PI acts on the discharge error
    measure(snap.remote_dp_kpa, 130.0, HELD)
    u3 = c.regulate(2000, snap)
    assert c.telemetry_mode() == MODE_REMOTE_DP
    assert abs(u3 - u2) < 1e-9


def test_discharge_error_is_scaled_to_the_dp_loop_gain():
    c, snap = running_controller(unlimited_slew(), common=80.0)
    measure(snap.remote_dp_kpa, 0.0, BAD)
    c.regulate(0, snap)
    sp = c.sp_kpa
    measure(snap.discharge_kpa, sp - 10.0)
    c.regulate(0, snap)  # transfer
    u = c.regulate(1000, snap)
    head = sp - 220.0
    scaled = 10.0 * 111.0 / head
    # the transfer is bumpless (no P kick); the integral then runs on the scaled error
    assert abs(u - 80.0 - 0.4 * scaled / 10.0) < 1e-6, u
    measure(snap.discharge_kpa, sp - 20.0)
    u2 = c.regulate(2000, snap)  # P on 10 kPa more error + the integral of the doubled error
    assert abs(u2 - u - 0.4 * scaled - 0.4 * 2.0 * scaled / 10.0) < 1e-6, (u, u2)


def test_no_measurement_holds_the_speed():
    c, snap = running_controller(common=77.0)
    measure(snap.remote_dp_kpa, 0.0, BAD)
    measure(snap.discharge_kpa, 0.0, BAD)
    for k in range(10):
        assert c.regulate(k * 1000, snap) == 77.0
    assert c.source == ctl.SOURCE_HOLD


def test_manual_mode_slews_and_returns_bumplessly():
    c, snap = running_controller(common=80.0)
    measure(snap.remote_dp_kpa, 111.0)
    c.regulate(0, snap)
    c.set_manual(70.0)
    assert c.telemetry_mode() == MODE_MANUAL_SPEED
    for k in range(1, 6):
        u = c.regulate(k * 1000, snap)
    assert abs(u - 75.0) < 1e-9
    c.set_manual(10.0)
    assert c.manual_pct == c.min_pct  # the envelope holds for manual too
    c.set_manual(75.0)
    c.set_auto()
    measure(snap.remote_dp_kpa, 100.0)
    u1 = c.regulate(5000, snap)  # same instant: no jump on the way back
    assert abs(u1 - 75.0) < 1e-9


# --- controller: per-pump start, stop, trip, exercise --------------------------------------------
def test_started_pump_climbs_from_min_at_the_slew_and_joins():
    c, snap = running_controller(pumps=0b001, common=70.0)
    measure(snap.remote_dp_kpa, 111.0)
    c.regulate(0, snap)
    c.drive(0, snap, 0b011)
    assert snap.commands[1].command == CMD_RUN
    assert snap.commands[1].speed_pct == c.min_pct
    assert c.phase[1] == ctl.PHASE_JOINING
    follow(snap, c)
    k = 0
    while c.phase[1] != ctl.PHASE_JOINED and k < 100:
        k += 1
        c.regulate(k * 1000, snap)
        c.drive(k * 1000, snap, 0b011)
        follow(snap, c)
    assert c.phase[1] == ctl.PHASE_JOINED
    assert 10 <= k <= 30, k  # ~20 % at 1 %/s, the common speed moving meanwhile
    assert snap.commands[1].speed_pct == snap.commands[0].speed_pct


def test_joining_pump_waits_for_its_drive():
    c, snap = running_controller(pumps=0b001, common=80.0)
    c.regulate(0, snap)
    c.drive(0, snap, 0b011)
    for k in range(1, 20):  # the drive reports 10 %: still ramping to min speed on its own
        snap.pumps[1].state = DRIVE_RUNNING
        snap.pumps[1].speed_pct = 10.0
        c.regulate(k * 1000, snap)
        c.drive(k * 1000, snap, 0b011)
    assert snap.commands[1].speed_pct == c.min_pct


def test_stopped_pump_ramps_to_min_then_gets_stop():
    c, snap = running_controller(pumps=0b011, common=70.0)
    c.regulate(0, snap)
    c.drive(0, snap, 0b001)
    assert c.phase[1] == ctl.PHASE_LEAVING
    assert snap.commands[1].command == CMD_RUN
    k = 0
    while snap.commands[1].command == CMD_RUN and k < 100:
        k += 1
        c.regulate(k * 1000, snap)
        c.drive(k * 1000, snap, 0b001)
        follow(snap, c)
    assert 19 <= k <= 21, k  # 70 -> 50 % at 1 %/s
    assert snap.commands[1].speed_pct == 0.0
    assert c.phase[1] == ctl.PHASE_IDLE


def test_a_pump_held_by_a_staggered_stop_keeps_its_reference_under_the_cap():
    c, snap = running_controller(pumps=0b011, common=80.0)
    c.regulate(0, snap)
    c.drive(0, snap, 0b011)
    # the station stops: staging wants none; protection holds pump 2 while pump 1 ramps down
    for k in range(1, 11):
        c.regulate(k * 1000, snap)
        c.drive(k * 1000, snap, 0, 0, 0b010)
        follow(snap, c)
        assert snap.commands[1].command == CMD_RUN and snap.commands[1].speed_pct == 80.0
    assert c.phase[1] == ctl.PHASE_LEAVING
    assert snap.commands[0].speed_pct < 80.0 - 9.0  # pump 1 leaves along the slew
    # a falling protection cap takes the held pump down with it (the cap moves at the slew)
    c.regulate(11000, snap, 75.0)
    c.drive(11000, snap, 0, 0, 0b010)
    assert snap.commands[1].speed_pct == 75.0
    # its turn: released, it leaves along the slew from where it was
    c.regulate(12000, snap, 75.0)
    c.drive(12000, snap, 0, 0, 0)
    assert snap.commands[1].command == CMD_RUN and snap.commands[1].speed_pct == 74.0


def test_a_staggered_stop_called_off_rejoins_the_held_pumps_without_a_step():
    c, snap = running_controller(pumps=0b111, common=80.0)
    c.regulate(0, snap)
    c.drive(0, snap, 0b111)
    for k in range(1, 6):  # pump 1 leaves, pumps 2 and 3 are held
        c.regulate(k * 1000, snap)
        c.drive(k * 1000, snap, 0, 0, 0b110)
        follow(snap, c)
    c.ref_pct[2] = 72.0  # (one of them had been slower)
    c.regulate(6000, snap, 79.0)  # a falling cap (protection moves it at the slew)
    c.drive(6000, snap, 0, 0, 0b110)
    follow(snap, c)
    c.rejoin(0b110)
    assert c.phase[1] == ctl.PHASE_JOINED and c.phase[2] == ctl.PHASE_JOINING
    assert c.common_pct == 79.0
    measure(snap.remote_dp_kpa, 111.0)
    before = list(cmd.speed_pct for cmd in snap.commands)
    c.regulate(7000, snap)
    c.drive(7000, snap, 0b110)
    for i in (1, 2):
        assert snap.commands[i].command == CMD_RUN
        assert abs(snap.commands[i].speed_pct - before[i]) <= 1.0 + 1e-9, (i, before)


def test_tripped_pump_stops_at_once_and_the_others_speed_up():
    c, snap = running_controller(pumps=0b011, common=80.0)
    measure(snap.remote_dp_kpa, 111.0)
    c.regulate(0, snap)
    c.drive(0, snap, 0b011)
    snap.pumps[0].state = DRIVE_TRIPPED
    c.drive(0, snap, 0b011)
    assert snap.commands[0].command == CMD_STOP
    assert snap.commands[0].speed_pct == 0.0
    assert c.joined == 1
    # the feedforward raises the survivor at the slew even though the DP has not moved yet
    for k in range(1, 6):
        c.regulate(k * 1000, snap)
        c.drive(k * 1000, snap, 0b011)
        follow(snap, c)
    assert abs(c.common_pct - 85.0) < 1e-6, c.common_pct
    snap.pumps[2].online = False
    c.drive(6000, snap, 0b110)
    assert snap.commands[2].command == CMD_STOP


def test_a_busy_tick_defers_the_feedforward_by_one_tick_and_loses_nothing():
    # the agent calls drive() busy while staging evaluates a count (one float-heavy step a tick)
    ref, ref_snap = running_controller(pumps=0b011, common=80.0)
    late, late_snap = running_controller(pumps=0b011, common=80.0)
    for c, snap in ((ref, ref_snap), (late, late_snap)):
        c.regulate(0, snap)
        c.drive(0, snap, 0b011)
        snap.pumps[0].state = DRIVE_TRIPPED
    ref.drive(1000, ref_snap, 0b011)
    late.drive(1000, late_snap, 0b011, busy=True)
    assert ref.fed_forward and not late.fed_forward
    assert ref._ff_pending > 1.0 and late._ff_pending == 0.0
    assert late_snap.commands[0].command == CMD_STOP and late.joined == 1  # commands on time
    ref.drive(2000, ref_snap, 0b011)
    late.drive(2000, late_snap, 0b011)
    assert late.fed_forward and not ref.fed_forward
    assert late._ff_pending == ref._ff_pending


def test_exercised_pump_runs_at_min_speed():
    c, snap = running_controller(pumps=0b011, common=90.0)
    c.regulate(0, snap)
    c.drive(0, snap, 0b011, 0b100)
    assert snap.commands[2].command == CMD_RUN
    assert snap.commands[2].speed_pct == c.min_pct
    c.drive(1000, snap, 0b011, 0)
    assert snap.commands[2].command == CMD_STOP


def test_first_pump_starts_from_min_speed():
    c = ctl.Controller(tuned_config())
    snap = plant_snapshot(dp=0.0, flow=0.0)
    u = c.regulate(0, snap)
    c.drive(0, snap, 0b100)
    assert u == c.min_pct
    assert snap.commands[2].command == CMD_RUN
    assert snap.commands[2].speed_pct == c.min_pct
    assert snap.commands[0].command == CMD_STOP


# --- closed loop on a stand-in plant --------------------------------------------------------------
def closed_loop(gain_factor, seconds, dp_step_at=-1):
    """2 pumps; DP_ss = g s^2 (g so that 95 % gives 111 kPa at the design point), first-order
    water column (7.4 s) and 2 s of measurement delay. Returns the abs errors after settling."""
    c, snap = running_controller(pumps=0b011, common=90.0)
    g = gain_factor * 111.0 / 0.9025
    a = 0.1266  # 1 - exp(-1 s / 7.4 s)
    dp = g * 0.81
    delay = [dp, dp]
    worst_late = 0.0
    for k in range(seconds):
        if k == dp_step_at:
            c.setpoint.set_remote(100.0)
        measure(snap.remote_dp_kpa, delay[0])
        s = c.regulate(k * 1000, snap) / 100.0
        c.drive(k * 1000, snap, 0b011)
        follow(snap, c)
        dp += a * (g * s * s - dp)
        delay[0] = delay[1]
        delay[1] = dp
        if k > seconds - 60:
            err = abs(dp - c.setpoint.value_kpa)
            if err > worst_late:
                worst_late = err
    return worst_late, c


def test_closed_loop_settles_within_the_band():
    worst, c = closed_loop(1.0, 240)
    assert worst < 0.5, worst  # well inside +-4.6 kPa (0.5 m)


def test_closed_loop_is_robust_to_a_higher_plant_gain():
    # low speed / discharge fallback: ~1.6x the design-point gain; must still settle
    worst, c = closed_loop(1.6, 300)
    assert worst < 1.0, worst


def test_closed_loop_follows_a_setpoint_change_without_overshoot_beyond_band():
    worst, c = closed_loop(1.0, 400, dp_step_at=100)
    assert worst < 0.5, worst
    assert abs(c.setpoint.value_kpa - 100.0) < 1e-9


# --- allocation ----------------------------------------------------------------------------------
def test_allocation_per_control_tick_is_small():
    c, snap = running_controller(pumps=0b011, common=90.0)
    measure(snap.remote_dp_kpa, 105.0)
    box = [0]

    def tick():
        box[0] += 1000
        c.regulate(box[0], snap)
        c.drive(box[0], snap, 0b011)

    tick()
    used = bytes_allocated(tick)
    # floats only (16 B each in the VM); CPython's tracemalloc peak is a looser bound
    assert used <= (256 if ON_MICROPYTHON else 2000), used


# --- motor rating --------------------------------------------------------------------------------
def test_a_pump_over_its_rating_caps_the_speed_along_the_slew_and_releases_it():
    c, snap = running_controller(common=90.0)
    measure(snap.remote_dp_kpa, 80.0)  # the PI wants more
    c.regulate(0, snap)
    c.drive(0, snap, 0b011)
    assert not c.overloaded
    rated = rated_input_kw(station_config()["pump_model"]["rated_kw"])  # what the drive reports
    load = [1.3 * rated]  # pump 2 at 90 %, 30 % over; the plant: P ~ s^3

    def tick(k):
        snap.pumps[1].power_kw = load[0] * (snap.pumps[1].speed_pct / 90.0) ** 3
        u = c.regulate(k * 1000, snap)
        c.drive(k * 1000, snap, 0b011)
        follow(snap, c)
        return u

    u = tick(1)
    assert c.overloaded and abs(c.load_cap_pct - 90.0 * (0.97 / 1.3) ** (1.0 / 3.0)) < 1e-6
    assert abs(u - 89.0) < 1e-9  # down at the slew limit, not a jump
    for k in range(2, 30):
        u = tick(k)
    drawn = snap.pumps[1].power_kw / rated
    assert not c.overloaded and 0.95 < drawn <= 0.99 and abs(u - c.load_cap_pct) < 1e-9
    # the load falls (the standby joined): under LOAD_OK x rated the cap rises at the slew
    held = c.load_cap_pct
    load[0] = 0.6 * rated
    tick(30)
    assert abs(c.load_cap_pct - held - 1.0) < 1e-9
    for k in range(31, 60):
        tick(k)
    assert c.load_cap_pct == c.max_pct


def test_the_rating_compares_the_reported_input_with_the_rated_input_not_the_shaft_rating():
    """rated_kw is the motor's shaft output (110 kW); the drive reports the electrical input,
    118.4 kW at that output (motor 0.958, VFD 0.97): a pump drawing 115 kW is within rating."""
    c, snap = running_controller(common=90.0)
    shaft = station_config()["pump_model"]["rated_kw"]
    assert abs(rated_input_kw(shaft) - shaft / (0.958 * 0.97)) < 1e-9
    c.regulate(0, snap)
    snap.pumps[1].power_kw = 1.045 * shaft  # above LOAD_OVER x 110 kW, under 0.99 x 118.4 kW
    c.regulate(1000, snap)
    assert not c.overloaded and c.load_cap_pct == c.max_pct
    snap.pumps[1].power_kw = 1.0 * rated_input_kw(shaft)
    c.regulate(2000, snap)
    assert c.overloaded and c.load_cap_pct < c.max_pct


def test_the_rating_of_each_pump_comes_from_its_entry():
    cfg = tuned_config()
    cfg["pumps"][1]["rated_kw"] = 200.0
    c, snap = running_controller(cfg)
    c.regulate(0, snap)
    snap.pumps[1].power_kw = 150.0  # over the model's 110 kW, under this pump's 200 kW
    c.regulate(1000, snap)
    assert not c.overloaded and c.load_cap_pct == c.max_pct
    snap.pumps[0].power_kw = 150.0
    c.regulate(2000, snap)
    assert c.overloaded and c.load_cap_pct < c.max_pct


def test_the_rating_check_allocates_nothing_under_the_rating():
    c, snap = running_controller(common=90.0)
    rated = station_config()["pump_model"]["rated_kw"]
    snap.pumps[0].power_kw = 0.8 * rated
    snap.pumps[1].power_kw = 0.8 * rated
    c.regulate(0, snap)
    c.regulate(1000, snap)
    holder = [1000]

    def ten_checks():
        for _ in range(10):
            holder[0] += 1000
            c._load_cap(snap, c._step)

    per_tick = bytes_allocated(ten_checks) // 10
    assert not c.overloaded and c.load_cap_pct == c.max_pct
    if ON_MICROPYTHON:
        assert per_tick == 0, per_tick
    else:
        assert per_tick < 2000, per_tick
