"""Plausibility: frozen transmitters, the remote DP against its estimate, the flow against the pump
model; the suspect channel's fallback and events; and what protection does with a suspect flow
(the dry run) and with repeated discharge trips (a lockout). Runs on CPython and in the VM."""

import json

from relaypump import codes
from relaypump.config import load_config
from relaypump.events import EventRing
from relaypump.plausibility import (
    CHECK_FROZEN,
    CHECK_INTERMITTENT,
    CHECK_MODEL,
    Plausibility,
    isqrt,
)
from relaypump.protection import Protection
from relaypump.sensors import Sensors
from relaypump.snapshot import BAD, DRIVE_RUNNING, GOOD, SUBSTITUTE, Snapshot
from relaypump.state import StationState
from support import ON_MICROPYTHON, bytes_allocated, station_json

VM_HEAP_KIB = 1024  # each simulated second makes a few floats the VM keeps till the end

SHIPPED = station_json()
SUCTION, DISCHARGE, REMOTE, TEMP, FLOW = 0, 1, 2, 3, 4
H0_KPA = 70.0 * 943.0 * 9.80665 / 1000.0  # shutoff head of the shipped pump model
K_KPA = 4.938e-5 * 943.0 * 9.80665 / 1000.0  # its curve, kPa per (m3/h)^2
LOSS_KPA = 6.72e-5 * 943.0 * 9.80665 / 1000.0  # the network, kPa per (m3/h)^2


class FakeProfile:
    full_scale = 16384


class FakeFieldbus:
    """The two things plausibility reads of the fieldbus: raw actual speeds and their scale."""

    def __init__(self, n):
        self.actual_raw = [0] * n
        self.profiles = [FakeProfile() for _ in range(n)]


def config(**io):
    doc = json.loads(SHIPPED)
    for key in io:
        doc["io"][key] = io[key]
    return load_config(doc)


class Plant:
    """The agent's measurement side on a consistent plant: n pumps at speed s deliver q each
    against the head the pump model gives; the network takes it with the DP its curve leaves."""

    def __init__(self, cfg=None):
        self.cfg = cfg or config()
        self.snap = Snapshot(3)
        self.snap.io_online = True
        self.sensors = Sensors(self.cfg["io"], self.snap)
        self.fb = FakeFieldbus(3)
        self.events = EventRing(32)
        self.p = Plausibility(self.cfg, self.sensors, self.snap, self.fb, self.events)
        self.now = 0
        self.ua = [0] * 5
        self._base = [0] * 5
        self._key = None
        self.frozen = {}  # channel -> its stuck current
        self.flow_factor = 1.0  # what the flow transmitter reads of the true flow
        self.dp_offset = 0.0
        self.suction_offset = 0.0  # what the suction transmitter reads off the true suction
        self.discharge_offset = 0.0
        self.wiggle = 0
        self.set(2, 85.0)

    def set(self, n, speed_pct, flow_per_pump=None):
        s = speed_pct / 100.0
        if flow_per_pump is None:  # the operating point where the network and the pumps meet
            flow_per_pump = ((H0_KPA * s * s - 111.0) / (K_KPA + LOSS_KPA * n * n)) ** 0.5
        q = n * flow_per_pump
        head = H0_KPA * s * s - K_KPA * flow_per_pump**2
        self.values = [250.0, 250.0 + head, head - LOSS_KPA * q * q, 120.0, q]
        for i in range(3):
            pump = self.snap.pumps[i]
            pump.online = True
            pump.state = DRIVE_RUNNING if i < n else 0
            self.fb.actual_raw[i] = int(speed_pct * 163.84 + 0.5) if i < n else 0

    def _currents(self):
        key = (
            self.flow_factor,
            self.dp_offset,
            self.suction_offset,
            self.discharge_offset,
            self.values[SUCTION],
            self.values[DISCHARGE],
            self.values[FLOW],
        )
        if key != self._key:  # floats only when the plant changed (the VM keeps its garbage)
            self._key = key
            highs = (1000.0, 1600.0, 400.0, 150.0, 1200.0)
            for i in range(5):
                v = self.values[i]
                if i == FLOW:
                    v *= self.flow_factor
                if i == REMOTE:
                    v += self.dp_offset
                if i == SUCTION:
                    v += self.suction_offset
                if i == DISCHARGE:
                    v += self.discharge_offset
                self._base[i] = int(4000 + 16000 * v / highs[i] + 0.5)
        self.wiggle = 3 - self.wiggle  # a live transmitter's noise
        for i in range(5):
            self.ua[i] = self.frozen.get(i, self._base[i] + self.wiggle)
        return self.ua

    def tick(self, seconds=1):
        for _ in range(seconds):
            self.now += 1000
            self.sensors.sample_analog(self.now - 500, self._currents())
            self.sensors.sample_inputs(self.now - 500, 0b01)
            self.p.update(self.now)
            self.sensors.update(self.now)

    def drain(self):
        out = []
        while self.events.count:
            e = self.events.pop()
            out.append((e[0], e[2], e[3], e[4] // 1000))
        return out


def test_a_consistent_plant_is_plausible_for_hours_of_moving_speeds():
    plant = Plant()
    for k in range(80):  # 40 min: speed wandering 80..90 %, one and two pumps
        plant.set(1 + k // 40, 80.0 + (k % 20) * 0.5)
        plant.tick(30)
    assert plant.drain() == []
    assert not any(plant.sensors.suspect)
    assert abs(plant.p.dp_residual_x10) < 20 and abs(plant.p.head_residual_x10) < 20


def test_a_frozen_remote_dp_is_suspect_within_frozen_s_of_the_plant_moving():
    plant = Plant()
    plant.tick(60)
    plant.frozen[REMOTE] = plant.ua[REMOTE]  # frozen at a plausible value
    plant.tick(100)  # the plant does not move: nothing to judge by
    assert plant.drain() == []
    moved_at = plant.now // 1000 + 1
    plant.set(2, 86.0)  # the plant moves (1 % on each pump), the transmitter does not follow
    plant.tick(60)
    frozen_s = int(plant.cfg["io"]["channels"]["remote_dp_kpa"]["frozen_s"])
    events = plant.drain()
    assert events[0][:3] == (codes.EVENT_SENSOR_SUSPECT, CHECK_FROZEN, 3), events
    assert events[0][3] - moved_at <= frozen_s + 1
    assert plant.snap.remote_dp_kpa.quality == SUBSTITUTE  # control goes to the discharge
    del plant.frozen[REMOTE]  # the transmitter lives again
    plant.tick(2)
    assert plant.drain()[0][:3] == (codes.EVENT_SENSOR_PLAUSIBLE, CHECK_FROZEN, 3)
    assert plant.snap.remote_dp_kpa.quality == GOOD


def test_a_frozen_flow_is_suspect_while_one_pump_holds_a_flat_load():
    # the PI trims the one pump's speed by a few 0.01 % up and down: no net move of the plant,
    # but a live flow transmitter would follow (and shows its noise); the frozen one does not
    plant = Plant()
    plant.set(1, 65.0, flow_per_pump=350.0)
    plant.tick(60)
    plant.frozen[FLOW] = plant.ua[FLOW]
    start = plant.now // 1000
    for k in range(60):  # (the other transmitters follow by less than move_ua)
        plant.set(1, 65.0 + (0.03 if k % 2 else 0.0), flow_per_pump=350.0)
        plant.tick(3)
    frozen_s = int(plant.cfg["io"]["channels"]["flow_m3h"]["frozen_s"])
    events = plant.drain()
    assert events and events[0][:3] == (codes.EVENT_SENSOR_SUSPECT, CHECK_FROZEN, 5), events
    assert events[0][3] - start <= frozen_s + 60


def test_the_flow_check_judges_inside_the_allowed_window_only():
    # one pump beyond 1.25 x BEP (up to its run-out limit, where staging may run it alone):
    # the datasheet curve is no tolerance-grade reference there, a reading 30 % low passes
    plant = Plant()
    checks = plant.cfg["io"]["plausibility"]
    plant.set(1, 70.0, flow_per_pump=1.3 * 450.0 * 0.7)
    plant.tick(30)
    plant.flow_factor = 0.7
    plant.tick(checks["check_s"] + 30)
    assert plant.drain() == [] and not plant.sensors.suspect[FLOW]
    # inside the window the same check holds the transmitter to the curve
    plant.set(1, 70.0, flow_per_pump=300.0)
    plant.flow_factor = 0.3
    plant.tick(checks["check_s"] + 30)
    assert plant.drain()[0][:3] == (codes.EVENT_SENSOR_SUSPECT, CHECK_MODEL, 5)


def test_a_remote_dp_off_its_estimate_is_suspect_after_dp_check_s():
    plant = Plant()
    plant.tick(60)
    plant.dp_offset = 150.0  # a drifted transmitter, still alive
    checks = plant.cfg["io"]["plausibility"]
    plant.tick(checks["dp_check_s"] - 2)
    assert plant.drain() == []
    plant.tick(6)  # + the filter bringing the reading there
    assert plant.drain()[0][:3] == (codes.EVENT_SENSOR_SUSPECT, CHECK_MODEL, 3)
    plant.dp_offset = 5.0  # within the tolerance: cleared after clear_s
    plant.tick(checks["clear_s"] + 6)
    assert plant.drain()[0][:3] == (codes.EVENT_SENSOR_PLAUSIBLE, CHECK_MODEL, 3)
    assert not plant.sensors.suspect[REMOTE]


def test_a_flow_reading_zero_while_the_pumps_deliver_is_suspect_before_the_dry_run_acts():
    plant = Plant()
    plant.set(1, 75.0, flow_per_pump=330.0)  # below run-out (1.25 x BEP x speed)
    plant.tick(30)
    plant.flow_factor = 0.0  # alive (its noise), but it reads no flow
    checks = plant.cfg["io"]["plausibility"]
    plant.tick(checks["check_s"] + 5)  # + the rate limit and filter bringing the reading down
    assert plant.drain()[0][:3] == (codes.EVENT_SENSOR_SUSPECT, CHECK_MODEL, 5)
    assert checks["check_s"] < plant.cfg["protection"]["dry_run_delay_s"]
    assert plant.snap.flow_m3h.quality == SUBSTITUTE  # its fallback: the pumps' model flow
    assert abs(plant.snap.flow_m3h.value - plant.values[FLOW]) <= 0.02 * plant.values[FLOW]


def test_a_lost_or_suspect_flow_is_replaced_by_the_pumps_flow_from_their_curves():
    plant = Plant()
    plant.set(2, 85.0)
    plant.tick(30)
    true_flow = plant.values[FLOW]
    plant.frozen[FLOW] = 0  # wire break: NE43 failure, the "model" fallback at once
    plant.tick(2)
    assert plant.snap.flow_m3h.quality == SUBSTITUTE
    assert abs(plant.snap.flow_m3h.value - true_flow) <= 0.02 * true_flow
    plant.set(1, 90.0, flow_per_pump=420.0)  # it follows the pumps (inside their window)
    plant.tick(15)  # the head's filter
    assert abs(plant.snap.flow_m3h.value - plant.values[FLOW]) <= 0.02 * plant.values[FLOW]
    del plant.frozen[FLOW]  # repaired: its own reading again
    plant.tick(2)
    assert plant.snap.flow_m3h.quality == GOOD


class Calibrated:
    """What plausibility reads of the agent's pump model: its calibrated head factor."""

    head_factor = 0.95


def test_a_lost_discharge_runs_on_suction_plus_the_pumps_head():
    plant = Plant()
    plant.tick(30)
    plant.frozen[DISCHARGE] = 0  # wire break: NE43 failure, the "model" fallback at once
    plant.tick(2)
    m = plant.snap.discharge_kpa
    assert m.quality == SUBSTITUTE
    assert abs(m.value - plant.values[DISCHARGE]) <= 3.0, (m.value, plant.values[DISCHARGE])
    # it follows the pumps: one pump at 90 % with its own flow, then two at unequal speeds
    plant.set(1, 90.0, flow_per_pump=420.0)
    plant.tick(15)  # the flow's filter
    assert abs(m.value - plant.values[DISCHARGE]) <= 3.0, (m.value, plant.values[DISCHARGE])
    plant.set(2, 85.0)
    plant.fb.actual_raw[1] = int(80.0 * 163.84 + 0.5)  # the second pump at 80 %: it gives less
    q1 = ((H0_KPA * 0.85**2 - (plant.values[DISCHARGE] - 250.0)) / K_KPA) ** 0.5
    q2 = ((H0_KPA * 0.80**2 - (plant.values[DISCHARGE] - 250.0)) / K_KPA) ** 0.5
    plant.values[FLOW] = q1 + q2  # the head where both pumps' flows meet the station's
    plant.tick(15)
    assert abs(m.value - plant.values[DISCHARGE]) <= 3.0, (m.value, plant.values[DISCHARGE])
    # the calibrated model: a pump 5 % below its datasheet head
    plant.set(2, 85.0)
    plant.values[DISCHARGE] = 250.0 + (plant.values[DISCHARGE] - 250.0) * 0.95
    plant.p.head_model = Calibrated()
    plant.tick(15)
    assert abs(m.value - plant.values[DISCHARGE]) <= 3.0, (m.value, plant.values[DISCHARGE])
    # no pump running: no head to add, no substitute (protection: safe speed, no starts)
    plant.set(0, 0.0, flow_per_pump=0.0)
    plant.tick(2)
    assert m.quality == BAD
    del plant.frozen[DISCHARGE]  # repaired: its own reading again
    plant.set(2, 85.0)
    plant.tick(2)
    assert m.quality == GOOD


def test_a_lost_suction_runs_on_discharge_minus_the_pumps_head_and_both_lost_are_bad():
    plant = Plant()
    plant.tick(30)
    plant.frozen[SUCTION] = 21500  # short circuit: NE43 failure high
    plant.tick(2)
    m = plant.snap.suction_kpa
    assert m.quality == SUBSTITUTE and abs(m.value - 250.0) <= 3.0, m.value
    plant.values[SUCTION] = 180.0  # a real dip on the suction side: the discharge follows it
    plant.values[DISCHARGE] -= 70.0
    plant.tick(15)
    assert abs(m.value - 180.0) <= 3.0, m.value
    plant.frozen[FLOW] = 0  # and the flow too: the head is unknown, no substitute
    plant.tick(2)
    assert m.quality == BAD
    del plant.frozen[FLOW]
    plant.tick(2)
    assert m.quality == SUBSTITUTE
    plant.frozen[DISCHARGE] = 0  # both pressures lost: neither has a substitute
    plant.tick(2)
    assert m.quality == BAD and plant.snap.discharge_kpa.quality == BAD


def test_the_pressure_substitutes_allocate_nothing():
    plant = Plant()
    plant.tick(30)
    plant.frozen[DISCHARGE] = 0
    plant.tick(2)
    assert plant.snap.discharge_kpa.quality == SUBSTITUTE

    def update():
        for _ in range(10):
            plant.now += 1000
            plant.p.update(plant.now)

    assert bytes_allocated(update) <= (0 if ON_MICROPYTHON else 2000)


def test_a_dead_headed_or_dry_pump_is_not_a_lying_flow_transmitter():
    for speed, flow, head_share in ((75.0, 0.0, 1.0), (75.0, 0.0, 0.05)):
        plant = Plant()
        plant.set(1, speed, flow_per_pump=0.0)
        if head_share < 1.0:  # running dry: no head either
            plant.values[DISCHARGE] = plant.values[SUCTION] + head_share * H0_KPA * 0.5625
        plant.tick(120)
        assert not plant.sensors.suspect[FLOW], (speed, flow, head_share)


def test_a_pump_some_percent_off_its_datasheet_is_tolerated():
    plant = Plant()
    plant.tick(60)  # agreeing first: the suction's reference is set
    for factor in (0.95, 1.05):
        plant.set(2, 85.0)
        head = plant.values[DISCHARGE] - 250.0
        plant.values[DISCHARGE] = 250.0 + head * factor
        plant.values[REMOTE] += head * (factor - 1.0)  # the network sees the pumps' head
        plant.tick(300)
    assert plant.drain() == [] and not any(plant.sensors.suspect)


def test_update_allocates_nothing():
    plant = Plant()
    plant.tick(30)

    def update():
        for _ in range(10):
            plant.now += 1000
            plant.p.update(plant.now)

    assert bytes_allocated(update) <= (0 if ON_MICROPYTHON else 2000)


def reference_head(p, speeds, flow):
    """The largest head (0.1 kPa) below the highest shut-off at which pumps at speeds (0.01 %)
    pass flow (0.1 m3/h), 0 if none: a plain bisection over the model's flows summed."""
    shutoffs = [p._h0_x10 * s // 10000 * s // 10000 for s in speeds]

    def passes(head):
        total = 0
        for s, shutoff in zip(speeds, shutoffs):
            lift = shutoff - head
            if lift > 0:
                n = lift * p._q_mul
                q = int(n**0.5)
                while q * q > n:
                    q -= 1
                while (q + 1) * (q + 1) <= n:
                    q += 1
                total += min(q, p._q_max * s // 10000)  # run-out
        return total >= flow

    lo, hi = 0, max(shutoffs)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if passes(mid):
            lo = mid
        else:
            hi = mid
    return lo


def test_the_pumps_head_is_the_largest_that_passes_the_flow_at_any_speeds():
    # the closed form for pumps at one speed, checked and corrected where they differ (by 0.01 %
    # or by half), run out, stand still or cannot pass the flow at all: the bisection's integer
    plant = Plant()
    cases = (
        (8500,),
        (5000,),
        (10000,),
        (8500, 8500),
        (8500, 8499),
        (8500, 8000),
        (10000, 5000),
        (9000, 9000, 9000),
        (9000, 8999, 8998),
        (10000, 7000, 0),
    )
    for speeds in cases:
        for i in range(3):
            pump = plant.snap.pumps[i]
            pump.state = DRIVE_RUNNING if i < len(speeds) else 0
            plant.fb.actual_raw[i] = speeds[i] * 16384 // 10000 + 1 if i < len(speeds) else 0
        plant.tick()  # the tick's speeds read
        actual = [plant.fb.actual_raw[i] * 10000 // 16384 for i in range(len(speeds))]
        # the last flow of the case before first: the tick's answer is kept for that tick only
        for flow in [19791] + list(range(0, 20000, 733)) + [733]:
            head = plant.p._head_at(flow)
            assert head == reference_head(plant.p, actual, flow), (actual, flow, head)
    for i in range(3):
        plant.snap.pumps[i].state = 0
    plant.tick()
    assert plant.p._head_at(733) == -1  # none runs (733: the last flow asked before)


def drifting(plant, attr, kpa_per_min, minutes):
    """A transmitter's offset moving kpa_per_min each minute; the events raised meanwhile."""
    seen = []
    for _ in range(minutes):
        setattr(plant, attr, getattr(plant, attr) + kpa_per_min)
        plant.tick(60)
        seen += plant.drain()
    return seen


def test_a_suction_drifting_low_is_blamed_on_the_suction_not_the_flow():
    # the reading falls 1 kPa a minute, the true suction stays: the measured head rises against
    # both the pump model and the network (remote DP + loss), which agree with each other
    plant = Plant()
    plant.tick(120)
    checks = plant.cfg["io"]["plausibility"]
    seen = drifting(plant, "suction_offset", -1.0, 60)
    assert seen and seen[0][:3] == (codes.EVENT_SENSOR_SUSPECT, CHECK_MODEL, 1), seen
    assert len(seen) == 1 and not plant.sensors.suspect[FLOW] and not plant.sensors.suspect[REMOTE]
    # within a bounded time: half of either tolerance (the smaller opinion decides), + dp_check_s
    half_kpa = 0.5 * max(
        checks["dp_tolerance_kpa"]
        + checks["dp_tolerance_ratio"] * LOSS_KPA * plant.values[FLOW] ** 2,
        checks["head_tolerance_ratio"] * H0_KPA * 0.85**2 + checks["head_tolerance_kpa"],
    )
    assert seen[0][3] - 120 <= half_kpa * 60 + checks["dp_check_s"] + 60, (seen, half_kpa)
    # on its substitute: discharge - the pumps' head, near the true suction
    m = plant.snap.suction_kpa
    assert m.quality == SUBSTITUTE and abs(m.value - 250.0) <= 5.0, m.value
    plant.suction_offset = 0.0  # repaired: it agrees again and is cleared after clear_s
    plant.tick(checks["clear_s"] + 10)
    assert [e[:3] for e in plant.drain()] == [(codes.EVENT_SENSOR_PLAUSIBLE, CHECK_MODEL, 1)]
    assert plant.snap.suction_kpa.quality == GOOD


def test_judging_a_lying_pressure_allocates_nothing():
    plant = Plant()
    plant.p.head_model = Model()  # the calibration hold too
    plant.tick(120)
    plant.suction_offset = -60.0  # the three-way verdict, the flow's fit, the blame: every tick
    plant.tick(30)
    assert plant.p._bad[SUCTION] >= 0

    def update():
        for _ in range(10):
            plant.now += 1000
            plant.p.update(plant.now)

    assert bytes_allocated(update) <= (0 if ON_MICROPYTHON else 2000)


def test_a_discharge_reading_high_is_blamed_on_the_discharge():
    plant = Plant()
    plant.tick(120)
    seen = drifting(plant, "discharge_offset", 1.0, 60)
    assert seen and seen[0][:3] == (codes.EVENT_SENSOR_SUSPECT, CHECK_MODEL, 2), seen
    assert not plant.sensors.suspect[SUCTION] and not plant.sensors.suspect[FLOW]
    m = plant.snap.discharge_kpa
    assert m.quality == SUBSTITUTE and abs(m.value - plant.values[DISCHARGE]) <= 5.0


def test_a_flow_off_while_the_pressures_agree_with_the_network_is_blamed_on_the_flow():
    plant = Plant()
    plant.tick(120)
    plant.flow_factor = 0.6  # the head agrees with the network; the pump model does not
    checks = plant.cfg["io"]["plausibility"]
    plant.tick(checks["check_s"] + 10)
    seen = plant.drain()
    assert seen and seen[0][:3] == (codes.EVENT_SENSOR_SUSPECT, CHECK_MODEL, 5), seen
    assert not plant.sensors.suspect[SUCTION] and not plant.sensors.suspect[DISCHARGE]


class Model:
    """The agent's pump model as plausibility sees it: its head factor and the calibration hold."""

    head_factor = 1.0
    fit_hold = False


def test_the_calibration_is_held_while_the_pressures_disagree():
    plant = Plant()
    model = Model()
    plant.p.head_model = model
    plant.tick(120)
    assert not model.fit_hold
    checks = plant.cfg["io"]["plausibility"]
    loss = LOSS_KPA * plant.values[FLOW] ** 2
    tolerance = checks["dp_tolerance_kpa"] + checks["dp_tolerance_ratio"] * loss
    plant.suction_offset = -0.6 * tolerance  # off against the network, not yet suspect
    plant.tick(20)
    assert model.fit_hold and not any(plant.sensors.suspect)
    plant.suction_offset = 0.0
    plant.tick(20)
    assert not model.fit_hold
    plant.frozen[REMOTE] = 0  # no third opinion: the pressures cannot be told right
    plant.tick(5)
    assert model.fit_hold


def test_the_flow_is_judged_with_pumps_at_unequal_speeds_and_cleared_when_it_agrees():
    plant = Plant()
    plant.set(2, 85.0)
    plant.fb.actual_raw[1] = int(80.0 * 163.84 + 0.5)  # the second pump at 80 %: it gives less
    head = plant.values[DISCHARGE] - 250.0
    q1 = ((H0_KPA * 0.85**2 - head) / K_KPA) ** 0.5
    q2 = ((H0_KPA * 0.80**2 - head) / K_KPA) ** 0.5
    plant.values[FLOW] = q1 + q2
    plant.values[REMOTE] = head - LOSS_KPA * (q1 + q2) ** 2
    plant.tick(120)
    assert plant.drain() == [] and abs(plant.p.head_residual_x10) < 30
    checks = plant.cfg["io"]["plausibility"]
    plant.flow_factor = 0.5
    plant.tick(checks["check_s"] + 10)
    assert plant.drain()[0][:3] == (codes.EVENT_SENSOR_SUSPECT, CHECK_MODEL, 5)
    plant.flow_factor = 1.0  # re-judged on its own reading: cleared after clear_s
    plant.tick(checks["clear_s"] + 10)
    assert plant.drain()[0][:3] == (codes.EVENT_SENSOR_PLAUSIBLE, CHECK_MODEL, 5)
    assert plant.snap.flow_m3h.quality == GOOD


def test_no_model_check_runs_while_a_running_pumps_drive_is_unreachable():
    plant = Plant()
    plant.set(2, 85.0)
    plant.tick(60)
    checks = plant.cfg["io"]["plausibility"]
    lost = plant.snap.pumps[1]
    lost.online = False  # its link is lost; it runs on and its flow is in the meter
    lost.state = 0
    plant.tick(checks["dp_check_s"] + 60)
    assert plant.drain() == [] and not any(plant.sensors.suspect)
    # a drive that was stopped when lost is no such pump: the one still running is judged
    plant.set(1, 85.0, flow_per_pump=300.0)
    plant.tick(1)  # its link back: stopped
    plant.snap.pumps[1].online = False
    plant.flow_factor = 0.4
    plant.tick(checks["check_s"] + 10)
    assert plant.drain()[0][:3] == (codes.EVENT_SENSOR_SUSPECT, CHECK_MODEL, 5)


def test_a_loose_contact_is_latched_suspect_with_one_event_each_way():
    plant = Plant()
    plant.tick(60)
    checks = plant.cfg["io"]["plausibility"]
    bursts = 0
    for _ in range(20):  # 6 s open of every 20 s, 400 s
        plant.frozen[REMOTE] = 0
        plant.tick(6)
        del plant.frozen[REMOTE]
        plant.tick(14)
        bursts += 1
        assert plant.snap.remote_dp_kpa.quality == (
            SUBSTITUTE if bursts >= checks["latch_faults"] else GOOD
        )
    seen = plant.drain()
    assert [e[:3] for e in seen] == [(codes.EVENT_SENSOR_SUSPECT, CHECK_INTERMITTENT, 3)], seen
    plant.tick(checks["latch_clear_s"] - 30)  # good, not yet long enough
    assert plant.drain() == [] and plant.snap.remote_dp_kpa.quality == SUBSTITUTE
    plant.tick(30)
    assert [e[:3] for e in plant.drain()] == [(codes.EVENT_SENSOR_PLAUSIBLE, CHECK_INTERMITTENT, 3)]
    assert plant.snap.remote_dp_kpa.quality == GOOD


def test_a_loose_contact_on_a_channel_without_a_substitute_is_not_latched():
    # "hold" (or "stop"): latched, the glitches would become a lasting BAD, a blind or stopped
    # station; each burst stays a short fault the protection's delays ride out
    doc = json.loads(SHIPPED)
    doc["io"]["channels"]["remote_dp_kpa"]["fallback"] = "hold"
    plant = Plant(load_config(doc))
    plant.tick(60)
    for _ in range(10):
        plant.frozen[REMOTE] = 0
        plant.tick(6)
        del plant.frozen[REMOTE]
        plant.tick(14)
        assert plant.snap.remote_dp_kpa.quality == GOOD
    assert plant.drain() == [] and not plant.sensors.suspect[REMOTE]


def test_single_faults_far_apart_are_never_latched():
    plant = Plant()
    plant.tick(60)
    checks = plant.cfg["io"]["plausibility"]
    gap = checks["latch_window_s"] // (checks["latch_faults"] - 1) + 10
    for _ in range(2 * checks["latch_faults"]):
        plant.frozen[REMOTE] = 0
        plant.tick(6)
        del plant.frozen[REMOTE]
        plant.tick(gap)
    assert plant.drain() == [] and not plant.sensors.suspect[REMOTE]


# --- what protection does with it ------------------------------------------------------------


def test_the_dry_run_never_acts_on_a_substitute_flow():
    cfg = config()
    events = EventRing(32)
    prot = Protection(cfg, events, StationState(3))
    snap = Snapshot(3)
    for m, v in ((snap.suction_kpa, 250.0), (snap.discharge_kpa, 700.0), (snap.flow_m3h, 0.0)):
        m.value = v
        m.quality = GOOD
    snap.supply_temp_c.value = 120.0
    snap.supply_temp_c.quality = GOOD
    snap.source_running.value = 1.0
    snap.source_running.quality = GOOD
    snap.remote_dp_kpa.quality = GOOD
    pump = snap.pumps[0]
    pump.online = True
    pump.state = DRIVE_RUNNING
    pump.speed_pct = 80.0
    snap.flow_m3h.quality = SUBSTITUTE  # e.g. a suspect transmitter with a number fallback
    now = 0
    for _ in range(300):
        now += 1000
        prot.evaluate(snap, now)
    assert prot.pump_locked == [False, False, False]
    snap.flow_m3h.quality = GOOD  # a measured 0: the dry run counts
    for _ in range(cfg["protection"]["dry_run_delay_s"] + 1):
        now += 1000
        prot.evaluate(snap, now)
    assert prot.pump_locked[0]


def test_repeated_discharge_trips_lock_the_station_out():
    cfg = config()
    p = cfg["protection"]
    events = EventRing(64)
    state = StationState(3)
    prot = Protection(cfg, events, state)
    snap = Snapshot(3)
    for m, v in (
        (snap.suction_kpa, 250.0),
        (snap.flow_m3h, 500.0),
        (snap.supply_temp_c, 120.0),
        (snap.source_running, 1.0),
        (snap.remote_dp_kpa, 111.0),
        (snap.discharge_kpa, 700.0),
    ):
        m.value = v
        m.quality = GOOD
    pump = snap.pumps[0]
    pump.online = True
    pump.state = DRIVE_RUNNING
    pump.speed_pct = 90.0
    now = 0
    trips = []
    for _ in range(p["discharge_lockout_trips"]):
        snap.discharge_kpa.value = p["discharge_max_kpa"] + 10.0  # over the max: trips
        for _ in range(p["discharge_stop_delay_s"] + 1):
            now += 1000
            prot.evaluate(snap, now)
        trips.append(prot.stop_reason)
        snap.discharge_kpa.value = 700.0  # back below the band: restarts after the delay
        for _ in range(p["restart_delay_s"] + 1):
            now += 1000
            prot.evaluate(snap, now)
    seen = []
    while events.count:
        seen.append(events.pop()[0])
    assert seen.count(codes.EVENT_DISCHARGE_TRIP) == p["discharge_lockout_trips"]
    assert codes.EVENT_STATION_LOCKOUT in seen
    assert trips[:-1] == [codes.EVENT_DISCHARGE_TRIP] * (len(trips) - 1)
    assert prot.stop_all and prot.stop_reason == codes.EVENT_STATION_LOCKOUT and prot.locked_out
    assert state.station_lockout
    # it resets itself after lockout_reset_s below the band (discharge_auto_reset)
    for _ in range(p["lockout_reset_s"] // 10 + 1):
        now += 10000
        prot.evaluate(snap, now)
    for _ in range(p["restart_delay_s"] + 1):
        now += 1000
        prot.evaluate(snap, now)
    assert not prot.stop_all and not prot.locked_out and not state.station_lockout


def test_isqrt_is_the_floor_of_the_root_without_allocating():
    # squares and their neighbours over the range the model checks use (n < 2**30), and 0 / < 0
    cases = [0, -7, 1, 2, 3]
    for r in (2, 3, 15, 16, 17, 255, 256, 4095, 4096, 8741, 11259, 32767):
        cases.extend((r * r - 1, r * r, r * r + 1))
    cases.extend((21899, 57309683, 126773311, (1 << 30) - 1))
    for n in cases:
        r = isqrt(n)
        if n <= 0:
            assert r == 0, n
        else:
            assert r * r <= n < (r + 1) * (r + 1), (n, r)
    if ON_MICROPYTHON:  # (CPython's ints above 256 are objects)
        assert bytes_allocated(lambda: isqrt((1 << 30) - 1)) == 0
