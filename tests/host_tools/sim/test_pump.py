"""Pump, motor/VFD and parallel-pump hydraulics against the reference figures and pump laws."""

import math

import pytest

from host_tools.sim import REFERENCE, PumpModel, best_staging
from host_tools.sim.hydraulics import StationSolution, solve_station
from host_tools.sim.optimal import pump_point
from host_tools.sim.water import saturation_pressure_kpa_abs, suction_limit_kpa_abs

PUMP = PumpModel()
H0, C, KBP = REFERENCE.shutoff_head_m, REFERENCE.curve_coeff, REFERENCE.bypass_coeff


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
    p1 = PUMP.shaft_kw(q1, 1.0, h1)
    p2 = PUMP.shaft_kw(q2, s, PUMP.head_m(q2, s))
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
    kw = PUMP.electrical_kw(0.0, 1.0, 70.0)
    assert 30.0 < kw < 0.7 * PUMP.electrical_kw(450.0, 1.0, 60.0)
    assert math.isfinite(PUMP.electrical_kw(5.0, 0.5, 17.0))


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
