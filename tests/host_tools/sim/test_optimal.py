"""The offline energy baseline (best staging) against the reference's energy figures."""

import pytest

from host_tools.sim import (
    REFERENCE,
    SimInputError,
    best_staging,
    daily_energy_kwh,
    daily_flow_profile,
)


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
