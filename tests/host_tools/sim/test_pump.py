"""Pump, motor/VFD and parallel-pump hydraulics against the reference figures and pump laws; real
pumps: the ISO 9906 grade 2B draw against the acceptance test, deviations and wear."""

import math

import pytest

from host_tools.sim import REFERENCE, PumpModel, SimInputError, best_staging
from host_tools.sim.hydraulics import StationSolution, solve_station
from host_tools.sim.optimal import pump_point
from host_tools.sim.pump import PumpDeviation, draw_iso9906_2b, passes_iso9906_2b
from host_tools.sim.water import saturation_pressure_kpa_abs, suction_limit_kpa_abs

PUMP = PumpModel()
H0, C, KBP = REFERENCE.shutoff_head_m, REFERENCE.curve_coeff, REFERENCE.bypass_coeff
Q_BEP = REFERENCE.bep_flow_m3h


def solve(flow, speeds):
    n = len(speeds)
    return solve_station(flow, list(speeds), [H0] * n, [C] * n, KBP, StationSolution(n))


def test_curve_passes_through_bep_and_shutoff():
    assert PUMP.head_m(0.0, 1.0) == pytest.approx(70.0)
    assert PUMP.head_m(450.0, 1.0) == pytest.approx(60.0, abs=0.01)
    assert PUMP.efficiency(450.0, 1.0) == pytest.approx(0.84)
    assert PUMP.efficiency(300.0, 1.0) < PUMP.efficiency(450.0, 1.0) > PUMP.efficiency(600.0, 1.0)


@pytest.mark.parametrize("s", [0.5, 0.7, 0.9])
def test_affinity_laws_at_similar_points(s):
    q1 = 400.0
    h1 = PUMP.head_m(q1, 1.0)
    q2 = q1 * s
    assert PUMP.head_m(q2, s) == pytest.approx(h1 * s * s)  # H ~ s^2
    # Hydraulic power ~ s^3 exactly; shaft power differs only by the Sarbu-Borza correction.
    hyd1 = q1 * h1
    hyd2 = q2 * PUMP.head_m(q2, s)
    assert hyd2 == pytest.approx(hyd1 * s**3)
    p1 = PUMP.shaft_kw(q1, 1.0)
    p2 = PUMP.shaft_kw(q2, s)
    eta1, eta2 = PUMP.efficiency(q1, 1.0), PUMP.efficiency(q2, s)
    assert eta2 == pytest.approx(1.0 - (1.0 - eta1) * (1.0 / s) ** 0.1)
    assert p2 == pytest.approx(p1 * s**3 * eta1 / eta2)
    assert p2 / p1 == pytest.approx(s**3, rel=0.03)


def test_two_equal_pumps_double_the_flow_at_the_same_head():
    head = 50.0
    one = PUMP.flow_at_head_m3h(head, 0.95)
    sol = solve(2.0 * one, (0.95, 0.95, 0.0))
    assert sol.head_m == pytest.approx(head)
    assert sol.pump_flow_m3h == pytest.approx([one, one, 0.0])
    assert sol.bypass_flow_m3h == 0.0


def test_slower_pump_delivers_nothing_above_its_shutoff_head():
    # At 0.8 the shut-off head is 44.8 m; a full-speed pump alone at 500 m3/h makes 57.7 m.
    sol = solve(500.0, (1.0, 0.8, 0.0))
    assert sol.head_m == pytest.approx(PUMP.head_m(500.0, 1.0))
    assert sol.pump_flow_m3h[1] == 0.0
    # At a higher flow the header head falls below 44.8 m and the slow pump joins in.
    sol = solve(1000.0, (1.0, 0.8, 0.0))
    assert sol.head_m < PUMP.shutoff_head_m(0.8)
    q1, q2 = sol.pump_flow_m3h[0], sol.pump_flow_m3h[1]
    assert q1 + q2 == pytest.approx(1000.0)
    assert PUMP.head_m(q1, 1.0) == pytest.approx(sol.head_m)
    assert PUMP.head_m(q2, 0.8) == pytest.approx(sol.head_m)


def test_bypass_carries_the_flow_when_the_pumps_cannot():
    sol = solve(800.0, (0.0, 0.0, 0.0))
    assert sol.bypass_flow_m3h == pytest.approx(800.0)
    assert sol.head_m == pytest.approx(-KBP * 800.0**2)
    # A slow pump and the bypass share the flow at a slightly negative station head.
    sol = solve(1500.0, (0.3, 0.0, 0.0))
    assert sol.head_m < 0.0
    assert sol.pump_flow_m3h[0] + sol.bypass_flow_m3h == pytest.approx(1500.0)
    assert sol.pump_flow_m3h[0] > 0.0


def test_station_head_derivative_matches_finite_difference():
    for speeds, q in (((0.9, 0.9, 0.0), 700.0), ((1.0, 0.85, 0.6), 900.0), ((0.2, 0.0, 0.0), 900)):
        dq = 1e-3
        h_plus = solve(q + dq, speeds).head_m
        h_minus = solve(q - dq, speeds).head_m
        assert solve(q, speeds).dhead_dflow == pytest.approx(
            (h_plus - h_minus) / (2 * dq), rel=1e-4
        )


def test_reference_electrical_power_at_design_flow():
    head = REFERENCE.system_head_m(800.0)
    assert head == pytest.approx(55.0, abs=0.01)
    assert pump_point(800.0, head, 2).electrical_kw == pytest.approx(146.0, rel=0.02)
    assert pump_point(800.0, head, 3).electrical_kw == pytest.approx(168.0, rel=0.02)
    best = best_staging(800.0, head)
    assert best.pumps == 2


def test_motor_and_vfd_tables_are_interpolated_linearly():
    # load 0.4: motor halfway 0.950..0.958, VFD halfway 0.948..0.96
    assert PUMP.drive_efficiency(44.0) == pytest.approx(0.954 * 0.954)
    assert PUMP.drive_efficiency(110.0) == pytest.approx(0.958 * 0.97)
    assert PUMP.drive_efficiency(1.0) == pytest.approx(0.829 * 0.826)  # held below load 0.1


def test_deadheaded_pump_still_draws_power():
    kw = PUMP.electrical_kw(0.0, 1.0)
    assert 30.0 < kw < 0.7 * PUMP.electrical_kw(450.0, 1.0)
    assert math.isfinite(PUMP.electrical_kw(5.0, 0.5))


RUN_OUT_X = math.sqrt(H0 / C) / Q_BEP  # zero head at full speed: 2.65 x BEP flow
X_END = REFERENCE.allowed_flow_ratio[1]  # the end of the datasheet's window, 1.25


def test_full_speed_power_is_the_datasheet_in_its_window():
    for x in (0.3, 0.5, 0.8, 1.0, 1.1, X_END):
        q = x * Q_BEP
        eta = 0.84 * (2.0 * x - x * x)
        water_kw = REFERENCE.rho_g * q / 3600.0 * PUMP.head_m(q, 1.0) / 1000.0
        assert PUMP.shaft_kw(q, 1.0) == pytest.approx(water_kw / eta, rel=1e-12)
        assert PUMP.full_speed_kw(x) == PUMP.shaft_kw(q, 1.0)
    # shut-off: the datasheet's limit, 58 % of the BEP power (handbooks: 30-60 % at low nq)
    bep_kw = PUMP.shaft_kw(Q_BEP, 1.0)
    assert PUMP.shaft_kw(0.0, 1.0) == pytest.approx(REFERENCE.rho_g * 70.0 * 0.125 / 1.68 / 1e3)
    assert 0.3 * bep_kw < PUMP.shaft_kw(0.0, 1.0) < 0.6 * bep_kw


def test_beyond_the_window_power_rises_and_flattens_toward_run_out_and_stays_bounded():
    p1 = PUMP.full_speed_kw
    d = 1e-6
    # value and slope continue at the window's end
    assert p1(X_END + d) == pytest.approx(p1(X_END), abs=1e-3)
    left = (p1(X_END) - p1(X_END - d)) / d
    right = (p1(X_END + d) - p1(X_END)) / d
    assert right == pytest.approx(left, rel=1e-3)
    # concave beyond (Euler: power quadratic in flow), flat at run-out, held beyond it
    xs = [X_END + k * (RUN_OUT_X - X_END) / 50 for k in range(51)]
    steps = [p1(b) - p1(a) for a, b in zip(xs, xs[1:], strict=False)]
    assert all(b < a for a, b in zip(steps, steps[1:], strict=False)) and steps[-1] > 0.0
    assert (p1(RUN_OUT_X) - p1(RUN_OUT_X - d)) / d == pytest.approx(0.0, abs=1e-3)
    peak = p1(RUN_OUT_X)
    assert p1(RUN_OUT_X + 0.5) == p1(10.0) == peak
    # monotone over everything a pump can be pushed to, and nowhere near the old parabola's
    # 238 kW at 800 m3/h (efficiency 0 at 2 x BEP, floored at 0.05)
    grid = [k * 0.01 for k in range(600)]
    assert all(p1(b) >= p1(a) for a, b in zip(grid, grid[1:], strict=False))
    assert peak < 2.0 * PUMP.shaft_kw(Q_BEP, 1.0)
    assert PUMP.shaft_kw(800.0, 1.0) < 140.0


@pytest.mark.parametrize("s", [0.1, 0.44, 0.6, 0.8, 0.95, 1.2])
def test_shaft_power_at_any_speed_is_affinity_scaled_and_bounded_beyond_the_curve(s):
    # never more than the run-out power at this speed, however far the column pushes the pump
    run_out_q = RUN_OUT_X * Q_BEP * s
    at_run_out = PUMP.shaft_kw(run_out_q, s)
    flows = [k * run_out_q / 100 for k in range(301)]
    powers = [PUMP.shaft_kw(q, s) for q in flows]
    assert max(powers) == pytest.approx(at_run_out)
    assert all(b >= a * (1.0 - 0.01) for a, b in zip(powers, powers[1:], strict=False))
    # s^3 of the full-speed curve beyond the window (the speed factor of the window's end)
    ratio = PUMP.shaft_kw(2.0 * Q_BEP * s, s) / PUMP.full_speed_kw(2.0)
    assert ratio == pytest.approx(PUMP.shaft_kw(X_END * Q_BEP * s, s) / PUMP.full_speed_kw(X_END))
    assert ratio == pytest.approx(s**3, rel=0.03)


def test_a_pump_driven_past_its_curve_after_a_trip_draws_little_at_low_speed():
    # the survivor the old parabola had at 120 kW electrical: 44 % speed, 412 m3/h, 5 m
    assert PUMP.electrical_kw(412.0, 0.442) < 20.0
    rated_input = REFERENCE.motor_rated_kw / PUMP.drive_efficiency(REFERENCE.motor_rated_kw)
    # what full speed past 1.5 x BEP costs: over the motor's rating, as on a real pump
    assert PUMP.electrical_kw(766.0, 1.0) > 1.1 * rated_input


def test_efficiency_is_water_power_over_shaft_power_and_zero_past_run_out():
    for s in (0.5, 0.8, 1.0):
        for x in (0.1, 0.5, 1.0, 1.5, 2.0, 2.5):
            q = x * Q_BEP * s
            water_kw = REFERENCE.rho_g * q / 3600.0 * PUMP.head_m(q, s) / 1000.0
            assert PUMP.efficiency(q, s) == pytest.approx(water_kw / PUMP.shaft_kw(q, s))
            assert 0.0 < PUMP.efficiency(q, s) <= 0.84
        assert PUMP.efficiency(RUN_OUT_X * Q_BEP * s * 1.01, s) == 0.0
        assert PUMP.efficiency(0.0, s) == 0.0


def test_npsh_required_scaling():
    assert PUMP.npsh_required_m(450.0, 1.0) == pytest.approx(4.0)
    assert PUMP.npsh_required_m(100.0, 1.0) == pytest.approx(4.0 * 0.36)  # floor x = 0.6
    assert PUMP.npsh_required_m(360.0, 0.8) == pytest.approx(4.0 * 0.64)


def test_saturation_pressure_matches_iapws_reference_values():
    for temp, bar in ((110.0, 1.434), (120.0, 1.987), (130.0, 2.703)):
        assert saturation_pressure_kpa_abs(temp) == pytest.approx(bar * 100.0, abs=0.2)


def test_suction_limit_is_about_1_6_bar_gauge_at_120c():
    npshr = PUMP.npsh_required_m(400.0, 0.948)
    p_sat = saturation_pressure_kpa_abs(120.0)
    limit_abs = suction_limit_kpa_abs(p_sat, npshr, REFERENCE.kpa_per_m)
    assert limit_abs == pytest.approx(249.0, abs=1.0)  # reference: about 2.49 bar(a)
    assert limit_abs - REFERENCE.atm_kpa_abs == pytest.approx(160.0, abs=3.0)
    # A large NPSHr makes the NPSH term govern instead of the 50 kPa.
    assert suction_limit_kpa_abs(p_sat, 8.0, REFERENCE.kpa_per_m) == pytest.approx(
        p_sat + REFERENCE.kpa_per_m * 10.4
    )


# --- real pumps: deviations, the 2B draw, wear ---------------------------------------------------

Q_G = REFERENCE.bep_flow_m3h
H_G = PUMP.head_m(Q_G, 1.0)  # the guarantee point of the datasheet, 60 m


def crosses_tolerance_cross(pump):
    """ISO 9906: the H(Q) curve meets the +-8 % flow bar at H_G or the +-5 % head bar at Q_G
    (checked on a fine grid of the curve, not with the model's own inverse)."""
    for k in range(2001):
        q = Q_G * (0.9 + 0.2 * k / 2000)
        h = pump.head_m(q, 1.0)
        on_flow_bar = abs(h - H_G) <= 0.0005 * H_G and abs(q / Q_G - 1.0) <= 0.08
        on_head_bar = abs(q - Q_G) <= 0.05 and abs(h / H_G - 1.0) <= 0.05
        if on_flow_bar or on_head_bar:
            return True
    return abs(pump.head_m(Q_G, 1.0) / H_G - 1.0) <= 0.05


def efficiency_on_the_guarantee_line(pump):
    """Efficiency where the curve meets the straight line through the origin and (Q_G, H_G)."""
    lo, hi = 0.0, 2.0 * Q_G
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        if pump.head_m(mid, 1.0) > H_G * mid / Q_G:
            lo = mid
        else:
            hi = mid
    return pump.efficiency(lo, 1.0)


@pytest.mark.parametrize("seed", range(1, 41))
def test_the_2b_draw_passes_the_acceptance_test_and_deviates(seed):
    pumps = draw_iso9906_2b(seed, 3)
    assert draw_iso9906_2b(seed, 3) == pumps  # reproducible from the seed
    assert draw_iso9906_2b(seed, 2) == pumps[:2]  # pump i does not depend on the count
    for d in pumps:
        assert abs(d.flow_factor - 1.0) <= 0.08 and abs(d.head_factor - 1.0) <= 0.05
        assert 0.95 <= d.efficiency_factor <= 1.0 and d.wear == 0.0
        pump = PumpModel(REFERENCE, d)
        assert crosses_tolerance_cross(pump), d
        assert efficiency_on_the_guarantee_line(pump) >= 0.95 * 0.84, d
    assert len({d.head_factor for d in pumps}) == 3  # each pump its own curve


def test_the_draw_spreads_over_the_tolerance_and_depends_on_the_seed():
    drawn = [d for seed in range(200) for d in draw_iso9906_2b(seed, 3)]
    flows = [d.flow_factor for d in drawn]
    heads = [d.head_factor for d in drawn]
    assert min(flows) < 0.93 and max(flows) > 1.07
    assert min(heads) < 0.955 and max(heads) > 1.045
    assert min(d.efficiency_factor for d in drawn) < 0.955
    assert draw_iso9906_2b(1, 3) != draw_iso9906_2b(2, 3)


def test_a_pump_that_misses_the_cross_or_its_efficiency_is_refused():
    assert passes_iso9906_2b(PumpDeviation())
    assert not passes_iso9906_2b(PumpDeviation(1.05, 1.08, 1.0))  # curve above and right
    assert not crosses_tolerance_cross(PumpModel(REFERENCE, PumpDeviation(1.05, 1.08, 1.0)))
    assert not passes_iso9906_2b(PumpDeviation(1.0, 1.0, 0.94))
    assert not passes_iso9906_2b(PumpDeviation(0.9, 1.0, 1.0))


def test_deviation_moves_the_bep_and_keeps_the_curve_shape():
    d = PumpDeviation(head_factor=1.04, flow_factor=0.95, efficiency_factor=0.97)
    pump = PumpModel(REFERENCE, d)
    assert pump.shutoff_head_m(1.0) == pytest.approx(70.0 * 1.04)
    assert pump.head_m(450.0 * 0.95, 1.0) == pytest.approx(H_G * 1.04)
    assert pump.efficiency(450.0 * 0.95, 1.0) == pytest.approx(0.84 * 0.97)
    x = 0.7  # a similar point of the datasheet curve, scaled
    assert pump.head_m(450.0 * 0.95 * x, 1.0) == pytest.approx(1.04 * PUMP.head_m(450.0 * x, 1.0))
    # its power curve is the datasheet's scaled by fQ fH / f_eta, past the window too
    for x in (0.0, 0.5, 1.0, 1.6, 2.2, 3.0):
        assert pump.full_speed_kw(x) == pytest.approx(0.95 * 1.04 / 0.97 * PUMP.full_speed_kw(x))
    # the affinity laws still hold for the real pump
    assert pump.head_m(300.0 * 0.8, 0.8) == pytest.approx(pump.head_m(300.0, 1.0) * 0.64)
    assert pump.speed_for_m(300.0, pump.head_m(300.0, 0.9)) == pytest.approx(0.9)


def test_wear_loses_head_at_flow_growing_with_flow_and_keeps_the_shutoff_head():
    new = PumpModel(REFERENCE, PumpDeviation())
    worn = PumpModel(REFERENCE, PumpDeviation(wear=0.2))
    assert worn.shutoff_head_m(1.0) == new.shutoff_head_m(1.0)
    assert worn.head_m(0.0, 0.8) == new.head_m(0.0, 0.8)
    loss_bep = new.head_m(450.0, 1.0) - worn.head_m(450.0, 1.0)
    assert loss_bep == pytest.approx(0.2 * H_G)  # wear: the fraction of the BEP head lost there
    losses = [new.head_m(q, 1.0) - worn.head_m(q, 1.0) for q in (100.0, 300.0, 450.0, 600.0)]
    assert losses == sorted(losses) and losses[0] > 0.0
    assert losses[3] / losses[2] == pytest.approx((600.0 / 450.0) ** 2)
    # similar point at reduced speed: the loss scales with s^2
    assert new.head_m(360.0, 0.8) - worn.head_m(360.0, 0.8) == pytest.approx(0.2 * H_G * 0.64)
    # less efficient at flow: the impeller does the same work, the lost head becomes heat
    for q in (200.0, 450.0, 550.0):
        ratio = worn.head_m(q, 1.0) / new.head_m(q, 1.0)
        assert worn.efficiency(q, 1.0) == pytest.approx(new.efficiency(q, 1.0) * ratio)
        assert worn.shaft_kw(q, 1.0) == pytest.approx(new.shaft_kw(q, 1.0))
    # the impeller does the same work at any flow, past the window and past run-out too
    for q in (100.0, 700.0, 1000.0, 1400.0):
        assert worn.shaft_kw(q, 1.0) == pytest.approx(new.shaft_kw(q, 1.0))
    # the same duty needs more speed and more power from a worn pump
    duty_q, duty_h = 400.0, 50.0
    assert worn.speed_for_m(duty_q, duty_h) > new.speed_for_m(duty_q, duty_h)
    s_new, s_worn = new.speed_for_m(duty_q, duty_h), worn.speed_for_m(duty_q, duty_h)
    assert worn.electrical_kw(duty_q, s_worn) > 1.1 * new.electrical_kw(duty_q, s_new)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"head_factor": 0.79},
        {"flow_factor": 1.21},
        {"efficiency_factor": 1.11},
        {"wear": 0.31},
        {"wear": -0.01},
        {"head_factor": float("nan")},
        {"flow_factor": True},
    ],
)
def test_deviations_outside_their_range_are_refused(kwargs):
    with pytest.raises(SimInputError, match=next(iter(kwargs))):
        PumpDeviation(**kwargs)


def test_parallel_pumps_with_their_own_curves_share_one_head():
    models = [PumpModel(REFERENCE, d) for d in draw_iso9906_2b(1, 3)]
    models[2] = PumpModel(REFERENCE, PumpDeviation(wear=0.25))
    h0 = [m.h0 for m in models]
    c = [m.c for m in models]
    sol = solve_station(900.0, [0.95, 0.95, 0.95], h0, c, KBP, StationSolution(3))
    assert sum(sol.pump_flow_m3h) == pytest.approx(900.0)
    for m, q in zip(models, sol.pump_flow_m3h, strict=True):
        assert m.head_m(q, 0.95) == pytest.approx(sol.head_m)
    flows = sol.pump_flow_m3h
    assert flows[2] < min(flows[:2])  # the worn pump carries least at the common head
    # the derivative is still the finite difference
    dq = 1e-3
    up = solve_station(900.0 + dq, [0.95] * 3, h0, c, KBP, StationSolution(3)).head_m
    down = solve_station(900.0 - dq, [0.95] * 3, h0, c, KBP, StationSolution(3)).head_m
    assert sol.dhead_dflow == pytest.approx((up - down) / (2 * dq), rel=1e-4)
