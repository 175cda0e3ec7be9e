"""pumpmodel: the reference pump's curves and the electrical power of n pumps (station-reference.md).

Reference figures checked: at 800 m3/h and 55 m two pumps take about 146 kW and three about
168 kW; along the reference system curve the cheapest count switches 1 -> 2 between 300 and
350 m3/h inside the allowed window (0.3..1.25 x BEP), and where the lone pump reaches its run-out
limit (runout_flow_ratio, shipped 1.4) when it may run beyond the window. The brute-force check finds each count's speed by bisection on the head curve (not the
closed form the model uses) and compares the cheapest count with the model's.
"""

from relaypump.pumpmodel import PumpModel
from support import ON_MICROPYTHON, bytes_allocated, station_config

MODEL = PumpModel(station_config())


def _window_only():
    cfg = station_config()
    cfg["pump_model"]["runout_flow_ratio"] = cfg["pump_model"]["max_flow_ratio"]
    return PumpModel(cfg)


WINDOW = _window_only()  # the reference's allowed window, no pump beyond it
# The brute-force search and the calibration runs build many floats (the VM collects only between
# tests).
VM_HEAP_KIB = 4096


def system_head_m(q):
    return 12.0 + 6.72e-5 * q * q


def close(a, b, tol):
    return abs(a - b) <= tol


def test_curve_and_speed_round_trip():
    m = MODEL
    assert close(m.head_m(450.0, 1.0), 70.0 - 4.938e-5 * 450.0**2, 1e-9)
    for q, h in ((100.0, 20.0), (400.0, 55.0), (560.0, 30.0)):
        s = m.speed_for(q, h)
        assert close(m.head_m(q, s), h, 1e-9)
    assert m.speed_for(0.0, -1.0) == -1.0  # no speed makes a negative head
    assert close(m.cutoff_speed(17.5), 0.5, 1e-12)  # 70 * 0.5^2 = 17.5 m
    assert m.cutoff_speed(0.0) == 0.0


def test_efficiency_at_bep_and_speed_correction():
    m = MODEL
    assert close(m.efficiency(450.0, 1.0), 0.84, 1e-12)
    # at half speed, BEP flow scales with speed; Sarbu-Borza lowers eta
    eta = m.efficiency(225.0, 0.5)
    assert close(eta, 1.0 - 0.16 * 2.0**0.1, 1e-12)
    assert m.efficiency(1.0, 0.5) == 0.05  # floored near shut-off
    assert m.efficiency(100.0, 0.0) == 0.0


def test_reference_power_at_design_point():
    m = MODEL
    assert m.station_kw(1, 800.0, 55.0) == -1.0  # one pump cannot: outside its window
    two = m.station_kw(2, 800.0, 55.0)
    three = m.station_kw(3, 800.0, 55.0)
    assert close(two, 146.0, 2.0), two
    assert close(three, 168.0, 2.0), three
    assert two < three


def test_motor_and_vfd_tables_hold_their_end_values():
    m = MODEL
    # at 110 kW shaft (load 1.0): eta_motor 0.958, eta_vfd 0.97 -> electrical = shaft / 0.92926
    q, s = 450.0, 1.0
    shaft = m.shaft_kw(q, s, m.head_m(q, s))
    elec = m.electrical_kw(q, s, m.head_m(q, s))
    load = shaft / 110.0
    assert 0.5 < load < 1.0
    assert elec > shaft
    # a dead-headed pump still draws its shut-off power
    assert m.shaft_kw(0.0, 1.0, 70.0) > 0.0
    assert m.electrical_kw(100.0, 0.0, 10.0) == 0.0


def speed_by_bisection(q, head):
    lo, hi = 0.0, 2.0
    for _ in range(45):
        mid = 0.5 * (lo + hi)
        if MODEL.head_m(q, mid) < head:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def brute_force_best(flow, head, runout=1.25):
    best = 0
    best_kw = 0.0
    for n in (1, 2, 3):
        q = flow / n
        s = speed_by_bisection(q, head)
        if not (0.5 <= s <= 1.0 and 0.3 <= q / s / 450.0 <= (runout if n == 1 else 1.25)):
            continue
        kw = n * MODEL.electrical_kw(q, s, head)
        if best == 0 or kw < best_kw:
            best, best_kw = n, kw
    return best, best_kw


def model_best(flow, head, model=MODEL):
    best = 0
    best_kw = 0.0
    for n in (1, 2, 3):
        kw = model.station_kw(n, flow, head)
        if kw > 0.0 and (best == 0 or kw < best_kw):
            best, best_kw = n, kw
    return best, best_kw


def test_cheapest_count_matches_brute_force_at_reference_points():
    points = [(800.0, 55.0), (840.0, system_head_m(840.0)), (600.0, system_head_m(600.0))]
    points += [(q, system_head_m(q)) for q in (240.0, 300.0, 330.0, 350.0, 450.0, 700.0)]
    points += [(500.0, 55.0), (300.0, 40.0), (900.0, 60.0)]
    points += [(q, system_head_m(q)) for q in (380.0, 420.0, 440.0)]
    for model, runout in ((WINDOW, 1.25), (MODEL, MODEL.x_runout)):
        for flow, head in points:
            n_ref, kw_ref = brute_force_best(flow, head, runout)
            n, kw = model_best(flow, head, model)
            assert n == n_ref, (flow, head, n, n_ref)
            assert close(kw, kw_ref, 1e-3 * kw_ref + 1e-6), (flow, head, kw, kw_ref)


def _switch(model):
    q = 280.0
    while q < 500.0:
        if model_best(q, system_head_m(q), model)[0] == 2:
            return q
        q += 2.0
    return 0.0


def test_one_to_two_switch_lies_between_300_and_350_m3h_inside_the_window():
    assert 300.0 <= _switch(WINDOW) <= 350.0, _switch(WINDOW)


def test_one_pump_alone_runs_up_to_its_run_out_limit_where_that_is_cheaper():
    # beyond the window's 1.25 x BEP, one pump is cheaper than two up to its run-out limit
    # (the true lower bound's finding, host_tools/sim/optimal.py): the switch moves there
    assert MODEL.x_runout == 1.4
    switch = _switch(MODEL)
    q = switch - 2.0
    s = MODEL.speed_for(q, system_head_m(q))
    assert 420.0 <= switch <= 450.0 and 1.3 < q / s / 450.0 <= 1.4, switch
    for q in (360.0, 400.0, 430.0):
        one = MODEL.station_kw(1, q, system_head_m(q))
        two = MODEL.station_kw(2, q, system_head_m(q))
        assert 0.0 < one < two, (q, one, two)
        assert WINDOW.station_kw(1, q, system_head_m(q)) == -1.0  # outside the window
    # only a pump alone: two pumps beyond the window stay outside
    assert MODEL.station_kw(2, 1200.0, 30.0) == -1.0


def test_allowed_window_and_margin():
    m = MODEL
    assert m.in_range(450.0, 1.0)
    assert not m.in_range(450.0, 1.01)  # above max speed
    assert not m.in_range(450.0, 0.49)  # below min speed
    assert not m.in_range(100.0, 1.0)  # x = 0.22 < 0.3
    assert m.in_range(560.0, 1.0)  # x = 1.244
    assert not m.in_range(560.0, 1.0, 0.03)  # inside, but not with a 3 % margin
    assert m.range_violation(450.0, 1.0) == 0.0
    assert m.range_violation(900.0, 1.0) > m.range_violation(600.0, 1.0) > 0.0
    assert m.station_kw(0, 800.0, 55.0) == -1.0
    assert m.station_kw(2, 0.0, 55.0) == -1.0


def test_station_speed_pct():
    m = MODEL
    s2 = m.station_speed_pct(2, 800.0, 55.0)
    assert close(m.head_m(400.0, s2 / 100.0), 55.0, 1e-9)
    assert m.station_speed_pct(3, 800.0, 55.0) < s2
    assert m.station_speed_pct(0, 800.0, 55.0) == -1.0


def test_power_evaluation_allocates_only_floats():
    m = MODEL

    def work():
        for n in (1, 2, 3):
            m.station_kw(n, 800.0, 55.0)

    used = bytes_allocated(work)
    # three evaluations build some dozens of 16-byte floats in the VM and nothing else
    assert used <= (2000 if ON_MICROPYTHON else 4000), used


# --- online calibration -----------------------------------------------------------------------
# A synthetic plant written here, apart from the model: three real pumps with their own head and
# efficiency factors on the reference system curve, its own motor/VFD tables and solver.
TRUE_HEAD = (0.95, 1.04, 0.90)  # ISO 9906 2B spread, and a worn third pump
TRUE_EFF = (0.93, 0.98, 0.86)
PLANT = {"head": TRUE_HEAD, "eff": TRUE_EFF}  # the pumps the plant has now
RHO_G = 943.0 * 9.81
KPA_PER_M = RHO_G / 1000.0
_PLANT_LOADS = (0.1, 0.2, 0.3, 0.5, 1.0)
_PLANT_MOTOR = (0.829, 0.917, 0.950, 0.958, 0.958)
_PLANT_VFD = (0.826, 0.927, 0.948, 0.96, 0.97)


def _table(xs, ys, x):
    if x <= xs[0]:
        return ys[0]
    for k in range(1, len(xs)):
        if x <= xs[k]:
            return ys[k - 1] + (ys[k] - ys[k - 1]) * (x - xs[k - 1]) / (xs[k] - xs[k - 1])
    return ys[-1]


def plant_flows(running, s):
    """Per-pump flows and the head where the running pumps at speed s meet the system curve."""

    def flows_at(head):
        out = []
        for j in running:
            inside = 70.0 * s * s - head / PLANT["head"][j]
            out.append((inside / 4.938e-5) ** 0.5 if inside > 0.0 else 0.0)
        return out

    lo, hi = 0.0, 80.0
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        q = sum(flows_at(mid))
        if 12.0 + 6.72e-5 * q * q > mid:
            lo = mid
        else:
            hi = mid
    return flows_at(lo), lo


def plant_power_kw(j, q, s, head):
    x = q / s / 450.0
    eta = PLANT["eff"][j] * 0.84 * (2.0 * x - x * x)
    eta = 1.0 - (1.0 - eta) * (1.0 / s) ** 0.1
    shaft = RHO_G * q * head / 3.6e6 / eta
    load = shaft / 110.0
    return shaft / (
        _table(_PLANT_LOADS, _PLANT_MOTOR, load) * _table(_PLANT_LOADS, _PLANT_VFD, load)
    )


def plant_snapshot(snap, running, s):
    from relaypump.snapshot import DRIVE_READY, DRIVE_RUNNING, GOOD

    flows, head = plant_flows(running, s)
    for j in range(3):
        p = snap.pumps[j]
        p.online = True
        p.state = DRIVE_RUNNING if j in running else DRIVE_READY
        p.speed_pct = 100.0 * s if j in running else 0.0
        p.power_kw = plant_power_kw(j, flows[running.index(j)], s, head) if j in running else 0.0
    snap.flow_m3h.value = sum(flows)
    snap.suction_kpa.value = 250.0
    snap.discharge_kpa.value = 250.0 + head * KPA_PER_M
    for m in (snap.flow_m3h, snap.suction_kpa, snap.discharge_kpa, snap.bypass_open):
        m.quality = GOOD
    snap.bypass_open.value = 0.0


def calibrated(schedule, events=None):
    import gc

    from relaypump.pumpmodel import Calibration
    from relaypump.snapshot import Snapshot

    model = PumpModel(station_config())
    cal = Calibration(model, 3, events)
    snap = Snapshot(3)
    now = 0
    for running, speeds, ticks in schedule:
        for k in range(ticks):
            if k % 300 == 0:  # the operating point moves a little every 5 minutes
                plant_snapshot(snap, running, speeds[(k // 300) % len(speeds)])
                gc.collect()
            cal.update(now, snap, KPA_PER_M)
            now += 1000
    return model, cal


ALONE = (0.56, 0.58, 0.60)  # one pump at 240..330 m3/h: x 0.95..1.2
TOGETHER = (0.74, 0.77, 0.80)  # two or three at 500..800 m3/h


def test_calibration_converges_to_each_real_pump():
    from relaypump.events import EventRing

    events = EventRing(32)
    ticks = 3200
    schedule = [((0,), ALONE, ticks), ((1,), ALONE, ticks), ((2,), ALONE, ticks)]
    model, cal = calibrated(schedule, events)
    for j in range(3):
        assert close(cal.head_factor[j], TRUE_HEAD[j], 0.005), (j, cal.head_factor)
        assert close(cal.efficiency_factor[j], TRUE_EFF[j], 0.01), (j, cal.efficiency_factor)
    # The model: the mean of the pumps (staging assumes identical pumps).
    assert close(model.head_factor, sum(TRUE_HEAD) / 3, 0.01)
    assert close(model.efficiency_factor, sum(TRUE_EFF) / 3, 0.02)
    # Every pump reported its deviation; the worn one as a warning, in 0.1 % units.
    seen = {}
    while events.count:
        code, severity, subject, value, _ = events.pop()
        seen[(code, subject)] = (severity, value)
    from relaypump import codes

    worn = seen[(codes.EVENT_PUMP_HEAD_DEVIATION, 3)]
    assert worn[0] == codes.SEVERITY_WARNING and -110 <= worn[1] <= -80
    assert (codes.EVENT_PUMP_EFFICIENCY_DEVIATION, 1) in seen
    assert (codes.EVENT_PUMP_HEAD_DEVIATION, 2) in seen


def test_calibration_keeps_pump_differences_while_pumps_share_the_flow():
    if ON_MICROPYTHON:
        return  # the long run is the CPython item's; the VM runs the one above
    schedule = [((0,), ALONE, 3000), ((1,), ALONE, 3000), ((2,), ALONE, 3000)]
    schedule += [((0, 1), TOGETHER, 3000), ((0, 1, 2), TOGETHER, 3000), ((1, 2), TOGETHER, 3000)]
    model, cal = calibrated(schedule)
    for j in range(3):
        assert close(cal.head_factor[j], TRUE_HEAD[j], 0.01), (j, cal.head_factor)
        assert close(cal.efficiency_factor[j], TRUE_EFF[j], 0.02), (j, cal.efficiency_factor)


def test_alike_pumps_are_calibrated_while_they_share_the_flow():
    if ON_MICROPYTHON:
        return  # a long run: the CPython item's
    PLANT["head"], PLANT["eff"] = (0.955, 0.96, 0.95), (0.92, 0.93, 0.92)
    try:
        schedule = [((0, 1), TOGETHER, 4000), ((0, 1, 2), TOGETHER, 4000)]
        model, cal = calibrated(schedule)
    finally:
        PLANT["head"], PLANT["eff"] = TRUE_HEAD, TRUE_EFF
    for j in range(3):  # never alone: each pump near the group's mean
        assert close(cal.head_factor[j], 0.955, 0.012), (j, cal.head_factor)
        assert close(cal.efficiency_factor[j], 0.923, 0.025), (j, cal.efficiency_factor)
    assert close(model.head_factor, 0.955, 0.01) and close(model.efficiency_factor, 0.923, 0.02)


def test_calibration_stays_in_bounds_under_garbage():
    import random

    from relaypump.pumpmodel import (
        EFFICIENCY_FACTOR_MAX,
        EFFICIENCY_FACTOR_MIN,
        HEAD_FACTOR_MAX,
        HEAD_FACTOR_MIN,
        Calibration,
    )
    from relaypump.snapshot import DRIVE_RUNNING, GOOD, Snapshot

    rng = random.Random(7) if hasattr(random, "Random") else None
    rand = rng.random if rng is not None else random.random
    junk = (float("nan"), float("inf"), -float("inf"), 0.0, -1.0, 1e30, -1e30)

    def value(scale):
        r = rand()
        if r < 0.3:
            return junk[int(rand() * len(junk))]
        return scale * (rand() * 2.0 - 0.2)

    model = PumpModel(station_config())
    cal = Calibration(model, 3)
    snap = Snapshot(3)
    for m in (snap.flow_m3h, snap.suction_kpa, snap.discharge_kpa):
        m.quality = GOOD
    for t in range(3000):
        for p in snap.pumps:
            p.online = True
            p.state = DRIVE_RUNNING
            p.speed_pct = 70.0 if rand() < 0.5 else value(100.0)
            p.power_kw = value(120.0)
        snap.flow_m3h.value = value(900.0)
        snap.suction_kpa.value = value(400.0)
        snap.discharge_kpa.value = value(1000.0)
        cal.update(t * 1000, snap, KPA_PER_M)
    for j in range(3):
        assert HEAD_FACTOR_MIN <= cal.head_factor[j] <= HEAD_FACTOR_MAX
        assert EFFICIENCY_FACTOR_MIN <= cal.efficiency_factor[j] <= EFFICIENCY_FACTOR_MAX
    assert HEAD_FACTOR_MIN <= model.head_factor <= HEAD_FACTOR_MAX
    assert EFFICIENCY_FACTOR_MIN <= model.efficiency_factor <= EFFICIENCY_FACTOR_MAX
    assert model.station_kw(2, 800.0, 55.0) > 0.0


def test_calibration_tick_allocates_a_few_floats():
    from relaypump.pumpmodel import CALIBRATION_PERIOD_TICKS, Calibration
    from relaypump.snapshot import Snapshot

    model = PumpModel(station_config())
    cal = Calibration(model, 3)
    snap = Snapshot(3)
    PLANT["head"], PLANT["eff"] = (0.955, 0.96, 0.95), (0.92, 0.93, 0.92)  # alike: every step
    try:
        plant_snapshot(snap, (0, 1), 0.77)
    finally:
        PLANT["head"], PLANT["eff"] = TRUE_HEAD, TRUE_EFF
    now = [0]

    def tick():
        cal.update(now[0], snap, KPA_PER_M)
        now[0] += 1000

    for _ in range(5 * CALIBRATION_PERIOD_TICKS):  # steady: every tick does its share
        tick()
    used = [bytes_allocated(tick) for _ in range(CALIBRATION_PERIOD_TICKS)]
    assert cal.head_samples[0] > 0 and cal.efficiency_samples[1] > 0
    # on until the model is rebuilt with the fitted factors (its own tick, after the means')
    while model.head_factor == 1.0 and len(used) < 40 * CALIBRATION_PERIOD_TICKS:
        used.append(bytes_allocated(tick))
    assert model.head_factor != 1.0
    worst = max(used)
    assert worst <= (288 if ON_MICROPYTHON else 4000), used  # 18 floats


def test_calibration_learns_nothing_while_plausibility_holds_it():
    # plausibility.py sets fit_hold while the pressures, flow and remote DP disagree: a drifting
    # transmitter's reading must not become the pumps' curve
    from relaypump.pumpmodel import CALIBRATION_PERIOD_TICKS, Calibration
    from relaypump.snapshot import Snapshot

    model = PumpModel(station_config())
    cal = Calibration(model, 3)
    snap = Snapshot(3)
    plant_snapshot(snap, (2,), 0.58)  # the worn pump alone: a head factor to learn
    model.fit_hold = True
    for k in range(10 * CALIBRATION_PERIOD_TICKS):
        cal.update(k * 1000, snap, KPA_PER_M)
    assert cal.head_samples == [0, 0, 0] and cal.head_factor == [1.0, 1.0, 1.0]
    assert cal.efficiency_samples == [0, 0, 0]
    model.fit_hold = False  # the readings agree again
    for k in range(10 * CALIBRATION_PERIOD_TICKS, 20 * CALIBRATION_PERIOD_TICKS):
        cal.update(k * 1000, snap, KPA_PER_M)
    assert cal.head_samples[2] > 0 and cal.head_factor[2] < 1.0


def test_unlike_pumps_sharing_the_flow_give_no_efficiency_from_an_equal_share():
    # the worn third pump and the strong second one, never seen alone, at one speed: the worn
    # one passes less flow and draws less power; an equal share of the meter's flow would make
    # it look efficient and the strong one poor (opposite signs, 10 % and more)
    if ON_MICROPYTHON:
        return  # a long run: the CPython item's
    schedule = [((1, 2), TOGETHER, 4000)]
    model, cal = calibrated(schedule)
    assert cal.efficiency_samples == [0, 0, 0], cal.efficiency_samples
    assert cal.efficiency_factor == [1.0, 1.0, 1.0]
    # seen alone, each pump's own efficiency is fitted (and reported) as it is
    model, cal = calibrated(schedule + [((1,), ALONE, 3200), ((2,), ALONE, 3200)])
    for j in (1, 2):
        assert close(cal.efficiency_factor[j], TRUE_EFF[j], 0.01), (j, cal.efficiency_factor)


def test_calibrate_scales_the_curves_and_comes_back_exactly():
    m = PumpModel(station_config())
    before = (m.head_m(400.0, 0.8), m.station_kw(2, 800.0, 55.0), m.station_kw(1, 150.0, 30.0))
    used = bytes_allocated(lambda: m.calibrate(0.95, 0.9))
    assert used <= (320 if ON_MICROPYTHON else 4000), used  # 17 floats, nothing else
    assert close(m.head_m(400.0, 0.8), 0.95 * before[0], 1e-9)
    assert m.speed_for(400.0, 0.95 * before[0]) == 0.8 or close(
        m.speed_for(400.0, 0.95 * before[0]), 0.8, 1e-9
    )
    assert m.station_kw(2, 800.0, 55.0) > before[1] * 1.05  # less efficient, more speed
    m.calibrate(1.0, 1.0)
    after = (m.head_m(400.0, 0.8), m.station_kw(2, 800.0, 55.0), m.station_kw(1, 150.0, 30.0))
    assert after == before
