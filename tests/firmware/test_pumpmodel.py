"""pumpmodel: the reference pump's curves and the electrical power of n pumps (station-reference.md).

Reference figures checked: at 800 m3/h and 55 m two pumps take about 146 kW and three about
168 kW; along the reference system curve the cheapest count switches 1 -> 2 between 300 and
350 m3/h. The brute-force check finds each count's speed by bisection on the head curve (not the
closed form the model uses) and compares the cheapest count with the model's.
"""

from relaypump.pumpmodel import PumpModel
from support import ON_MICROPYTHON, bytes_allocated, station_config

MODEL = PumpModel(station_config())
VM_HEAP_KIB = 512  # the brute-force search builds many floats (the VM collects only between tests)


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


def brute_force_best(flow, head):
    best = 0
    best_kw = 0.0
    for n in (1, 2, 3):
        q = flow / n
        s = speed_by_bisection(q, head)
        if not (0.5 <= s <= 1.0 and 0.3 <= q / s / 450.0 <= 1.25):
            continue
        kw = n * MODEL.electrical_kw(q, s, head)
        if best == 0 or kw < best_kw:
            best, best_kw = n, kw
    return best, best_kw


def model_best(flow, head):
    best = 0
    best_kw = 0.0
    for n in (1, 2, 3):
        kw = MODEL.station_kw(n, flow, head)
        if kw > 0.0 and (best == 0 or kw < best_kw):
            best, best_kw = n, kw
    return best, best_kw


def test_cheapest_count_matches_brute_force_at_reference_points():
    points = [(800.0, 55.0), (840.0, system_head_m(840.0)), (600.0, system_head_m(600.0))]
    points += [(q, system_head_m(q)) for q in (240.0, 300.0, 330.0, 350.0, 450.0, 700.0)]
    points += [(500.0, 55.0), (300.0, 40.0), (900.0, 60.0)]
    for flow, head in points:
        n_ref, kw_ref = brute_force_best(flow, head)
        n, kw = model_best(flow, head)
        assert n == n_ref, (flow, head, n, n_ref)
        assert close(kw, kw_ref, 1e-3 * kw_ref + 1e-6), (flow, head, kw, kw_ref)


def test_one_to_two_switch_lies_between_300_and_350_m3h():
    switch = 0.0
    q = 280.0
    while q < 400.0:
        if model_best(q, system_head_m(q))[0] == 2:
            switch = q
            break
        q += 2.0
    assert 300.0 <= switch <= 350.0, switch


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
