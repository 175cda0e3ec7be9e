"""The weather-driven demand against the reference's ranges, its seasonal curve and its seeding."""

import datetime as dt

import pytest

from host_tools.sim import SimInputError, WeatherDemand, daily_flow_profile
from host_tools.sim.demand import behaviour_multiplier, season_mean_temp_c, steady_lagged_temp_c


@pytest.mark.parametrize(
    ("mean_c", "low", "high"),
    [(-10.0, 741.0, 840.0), (-6.0, 680.0, 840.0), (3.0, 512.0, 702.0)],
    ids=["design day", "January mean day", "shoulder"],
)
def test_daily_flow_range_matches_reference(mean_c, low, high):
    flows = daily_flow_profile(mean_c, step_s=60.0)
    assert len(flows) == 1440
    assert min(flows) == pytest.approx(low, abs=5.0)
    assert max(flows) == pytest.approx(high, abs=5.0)


def test_behaviour_multiplier_shape():
    values = [behaviour_multiplier(h / 10.0) for h in range(240)]
    assert sum(values) / len(values) == pytest.approx(1.0, abs=1e-9)
    peak = max(values)
    assert peak == pytest.approx(1.06, abs=0.01)
    assert values.index(peak) / 10.0 == pytest.approx(7.0, abs=0.25)
    afternoon = min(values)
    assert afternoon == pytest.approx(0.96, abs=0.012)
    assert 12.0 <= values.index(afternoon) / 10.0 <= 16.0


def test_lag_starts_at_the_periodic_steady_state():
    # One day stepped from the steady state must come back to it (no start-up transient).
    demand = WeatherDemand(mean_temp_c=-6.0, anomaly_sigma_c=0.0, noise_sigma=0.0)
    start = demand.lagged_c
    assert start == pytest.approx(steady_lagged_temp_c(-6.0, 0.0))
    for _ in range(24 * 60):
        demand.step(60.0)
    assert demand.lagged_c == pytest.approx(start, abs=0.01)


def test_seasonal_curve():
    jan = [season_mean_temp_c(dt.date(2025, 1, d)) for d in range(1, 32)]
    assert sum(jan) / 31 == pytest.approx(-6.0, abs=0.05)
    assert season_mean_temp_c(dt.date(2024, 11, 1)) == pytest.approx(3.0, abs=0.2)
    assert season_mean_temp_c(dt.date(2025, 3, 31)) == pytest.approx(3.0, abs=0.2)
    assert min(jan) == pytest.approx(season_mean_temp_c(dt.date(2025, 1, 15)), abs=0.01)


def run_days(seed, step_s, days=2.0, start=dt.date(2025, 2, 10)):
    demand = WeatherDemand(start, seed=seed)
    out = []
    for _ in range(int(days * 86400 / step_s)):
        out.append(demand.step(step_s))
    return out, demand


def test_seeded_noise_is_deterministic_and_seed_dependent():
    a, _ = run_days(7, 60.0)
    b, _ = run_days(7, 60.0)
    c, _ = run_days(8, 60.0)
    assert a == b
    assert a != c


def test_noise_does_not_depend_on_the_step_size():
    coarse, _ = run_days(3, 60.0, days=1.0)
    fine, _ = run_days(3, 0.5, days=1.0)
    assert fine[119::120] == pytest.approx(coarse, rel=2e-4)


def test_multi_day_run_changes_day_and_mean():
    flows, demand = run_days(1, 60.0, days=3.0)
    assert demand.date == dt.date(2025, 2, 13)
    assert all(240.0 <= q <= 840.0 for q in flows)


def test_bad_inputs_are_refused():
    with pytest.raises(SimInputError):
        WeatherDemand(dt.date(2025, 7, 1))
    with pytest.raises(SimInputError):
        WeatherDemand(mean_temp_c=40.0)
    with pytest.raises(SimInputError):
        WeatherDemand(noise_sigma=-0.1)
    with pytest.raises(SimInputError):
        WeatherDemand("2025-01-01")  # type: ignore[arg-type]
