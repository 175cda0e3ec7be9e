"""The offline energy baseline (best staging) against the reference's energy figures."""

import math

import pytest

from host_tools.sim import (
    REFERENCE,
    SimInputError,
    best_staging,
    daily_energy_kwh,
    daily_flow_profile,
)
from host_tools.sim.optimal import LowerBound, bound_energy_kwh, required_head_m
from host_tools.sim.pump import PumpDeviation, PumpModel


@pytest.fixture(scope="module")
def january_day():
    return daily_flow_profile(-6.0, step_s=60.0)


@pytest.mark.parametrize(
    ("strategy", "reference_kwh"),
    [("remote_dp", 2923.0), ("constant_head", 3298.0), ("throttled", 3833.0)],
)
def test_january_mean_day_energy(january_day, strategy, reference_kwh):
    assert daily_energy_kwh(january_day, 60.0, strategy) == pytest.approx(reference_kwh, rel=0.01)


def test_staging_switches_from_one_to_two_pumps_near_330():
    counts = {q: best_staging(q, REFERENCE.system_head_m(q)).pumps for q in range(240, 860, 10)}
    switch = min(q for q, n in counts.items() if n == 2)
    assert 300 <= switch <= 350
    assert all(n == 1 for q, n in counts.items() if q < switch)
    assert all(n == 2 for q, n in counts.items() if q >= switch)  # 2 beat 3 up to 840 m3/h


def test_best_staging_picks_the_cheapest_allowed_point():
    point = best_staging(600.0, 40.0)
    assert 0.5 <= point.speed_ratio <= 1.0
    assert point.flow_per_pump_m3h * point.pumps == pytest.approx(600.0)


def test_infeasible_or_bad_requests_are_refused():
    with pytest.raises(SimInputError):
        best_staging(800.0, 80.0)  # above shut-off head at full speed
    with pytest.raises(SimInputError):
        best_staging(-1.0, 20.0)
    with pytest.raises(SimInputError):
        daily_energy_kwh([500.0], 60.0, "magic")


# --- the true lower bound (optimal.LowerBound) ---------------------------------------------------

DEVIATED = (
    PumpDeviation(head_factor=1.04, flow_factor=0.95, efficiency_factor=0.97),
    PumpDeviation(head_factor=0.97, flow_factor=1.06, efficiency_factor=0.99, wear=0.1),
    PumpDeviation(head_factor=1.0, flow_factor=1.0, efficiency_factor=0.95),
)


def _pumps(deviations=DEVIATED):
    return [PumpModel(REFERENCE, d) for d in deviations]


def _split_power(pumps, flows, head):
    """Electrical kW of the pumps carrying these flows against this head (None: infeasible)."""
    total = 0.0
    for pump, q in zip(pumps, flows, strict=True):
        if q <= 0:
            continue
        s = pump.speed_for_m(q, head)
        if s > 1.0:
            return None
        total += pump.electrical_kw(q, s)
    return total


@pytest.mark.parametrize("head", [18.0, 30.0, 45.0, 58.0])
def test_bound_is_below_every_feasible_split_on_a_small_grid(head):
    pumps = _pumps()
    bound = LowerBound(pumps)
    step = 20
    for total in range(step, 1400, 60):
        best = None
        for q1 in range(0, total + 1, step):
            for q2 in range(0, total - q1 + 1, step):
                power = _split_power(pumps, (q1, q2, total - q1 - q2), head)
                if power is not None:
                    assert bound.direct_kw(total, head) <= power + 1e-9
                    best = power if best is None else min(best, power)
        if best is None:
            assert math.isinf(bound.direct_kw(total, head))  # no split can deliver it
        else:
            # the bound's finer grid finds at least as good a split, and not absurdly better
            assert 0.9 * best <= bound.direct_kw(total, head) <= best + 1e-9


def test_interpolated_bound_agrees_with_a_fine_direct_search():
    pumps = _pumps(DEVIATED[:2])
    bound = LowerBound(pumps)
    for total, head in ((333.3, 21.37), (517.9, 29.04), (701.1, 44.44), (905.5, 52.21)):
        splits = [k * 0.5 for k in range(int(total / 0.5) + 1)] + [total]  # + pump 2 off
        best = min(
            p for q1 in splits if (p := _split_power(pumps, (q1, total - q1), head)) is not None
        )
        assert bound.power_kw(total, head) == pytest.approx(best, rel=1e-3)


def test_equal_identical_pumps_match_the_old_optimum_where_its_window_does_not_bind():
    bound = LowerBound([PumpModel(REFERENCE)] * 3)
    for flow in range(475, 860, 25):
        head = REFERENCE.system_head_m(flow)
        old = best_staging(flow, head).electrical_kw
        assert bound.power_kw(flow, head) == pytest.approx(old, rel=5e-4)


def test_without_the_window_one_pump_carries_what_the_old_optimum_gave_two():
    """350-400 m3/h: one pump beyond 1.25 x BEP is cheaper than two slow ones (the window binds)."""
    bound = LowerBound([PumpModel(REFERENCE)] * 3)
    for flow in (350.0, 400.0):
        head = REFERENCE.system_head_m(flow)
        assert bound.power_kw(flow, head) < 0.95 * best_staging(flow, head).electrical_kw
        single = PumpModel(REFERENCE)
        one = single.electrical_kw(flow, single.speed_for_m(flow, head))
        assert bound.power_kw(flow, head) == pytest.approx(one, rel=1e-3)


def test_bound_edges_nothing_to_pump_and_impossible_duty():
    bound = LowerBound(_pumps())
    assert bound.power_kw(0.0, 30.0) == 0.0
    assert bound.power_kw(500.0, -3.0) == 0.0  # the upstream assist alone carries it
    assert math.isinf(bound.power_kw(3000.0, 60.0))
    energy = bound_energy_kwh(
        bound, [500.0, 3000.0], [111.0, 111.0], [80.0, 400.0], REFERENCE, 3600.0
    )
    assert energy.infeasible == 1 and energy.samples == 2
    head = required_head_m(111.0, 500.0, REFERENCE)
    assert energy.kwh == pytest.approx(bound.power_kw(500.0, head) + 400.0)
    with pytest.raises(SimInputError):
        LowerBound([])
    with pytest.raises(SimInputError):
        bound.direct_kw(501.0, 30.0)  # off the grid
