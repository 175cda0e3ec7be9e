"""The weather-driven demand against the reference's ranges, its seasonal curve and its seeding;
the scenario's shaping: floor, night setback, morning boost, steps and ramps."""

import datetime as dt
import itertools

import pytest

from host_tools.sim import SimInputError, WeatherDemand, daily_flow_profile
from host_tools.sim.demand import (
    DailyWindow,
    DemandRamp,
    DemandShape,
    DemandStep,
    behaviour_multiplier,
    season_mean_temp_c,
    steady_lagged_temp_c,
)


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


# --- demand shaping: floor, setback, boost, steps, ramps -----------------------------------------


def shaped_pair(shape, mean_c=-6.0, floor=None, hours=48.0, step_s=60.0):
    """Unshaped and shaped demand of the same seeded day, one value per step."""
    kwargs = {"mean_temp_c": mean_c, "seed": 4, "floor_m3h": floor}
    plain = WeatherDemand(**kwargs)
    shaped = WeatherDemand(**kwargs, shape=shape)
    pairs = []
    for k in range(int(hours * 3600 / step_s)):
        pairs.append(((k + 1) * step_s, plain.step(step_s), shaped.step(step_s)))
    return pairs


def test_default_floor_is_030_design_and_a_lower_floor_reaches_low_flows():
    assert WeatherDemand().floor_m3h == pytest.approx(240.0)
    warm = daily_flow_profile(14.0)
    assert min(warm) == pytest.approx(240.0)  # a +14 degC day sits on the default floor
    low = WeatherDemand(mean_temp_c=14.0, anomaly_sigma_c=0.0, noise_sigma=0.0, floor_m3h=100.0)
    flows = [low.step(60.0) for _ in range(1440)]
    assert min(flows) < 200.0 and min(flows) >= 100.0
    for bad in (0.0, -5.0, 900.0, float("nan"), "100", True):
        with pytest.raises(SimInputError, match="floor"):
            WeatherDemand(floor_m3h=bad)


def test_night_setback_multiplies_inside_its_window_wrapping_midnight():
    setback = DailyWindow(start_s=22 * 3600.0, end_s=5 * 3600.0, factor=0.7, ramp_s=600.0)
    for t, plain, shaped in shaped_pair(DemandShape((setback,))):
        tod = t % 86400.0
        if tod <= 5 * 3600.0 or tod >= 22 * 3600.0 + 600.0:
            assert shaped == pytest.approx(plain * 0.7), t  # inside, ramp done (or run began in it)
        elif 5 * 3600.0 + 600.0 <= tod <= 22 * 3600.0:
            assert shaped == pytest.approx(plain), t
        else:
            assert plain * 0.7 < shaped < plain, t  # ramping
    # the ramps are linear: half way 5 min after start and after end
    assert setback.multiplier(22 * 3600.0 + 300.0) == pytest.approx(0.85)
    assert setback.multiplier(5 * 3600.0 + 300.0) == pytest.approx(0.85)
    assert setback.multiplier(86400.0 + 3 * 3600.0) == pytest.approx(0.7)  # every day


def test_morning_boost_and_setback_combine():
    setback = DailyWindow(0.0, 5 * 3600.0, 0.6, 0.0)
    boost = DailyWindow(5 * 3600.0, 8 * 3600.0, 1.25, 0.0)
    shape = DemandShape((setback, boost))
    assert shape.multiplier(4 * 3600.0) == pytest.approx(0.6)
    assert shape.multiplier(6 * 3600.0) == pytest.approx(1.25)
    assert shape.multiplier(9 * 3600.0) == pytest.approx(1.0)
    for t, plain, shaped in shaped_pair(shape, hours=24.0):
        hour = (t % 86400.0) / 3600.0
        if 5.0 < hour < 8.0:
            assert shaped == pytest.approx(plain * 1.25)
        elif 8.0 < hour < 24.0:
            assert shaped == pytest.approx(plain)


def test_steps_multiply_from_then_on_and_ramps_are_linear():
    step = DemandStep(at_s=3600.0, factor=0.8)
    ramp = DemandRamp(at_s=7200.0, duration_s=1800.0, factor=1.5)
    shape = DemandShape((step, ramp))
    assert shape.multiplier(3599.0) == 1.0
    assert shape.multiplier(3600.0) == pytest.approx(0.8)
    assert shape.multiplier(7200.0 + 900.0) == pytest.approx(0.8 * 1.25)
    assert shape.multiplier(7200.0 + 1800.0) == pytest.approx(0.8 * 1.5)
    assert shape.multiplier(50000.0) == pytest.approx(0.8 * 1.5)
    pairs = shaped_pair(shape, hours=4.0)
    ratios = [shaped / plain for t, plain, shaped in pairs if 7200.0 <= t <= 9000.0]
    assert all(b > a for a, b in itertools.pairwise(ratios))  # rising through the ramp
    assert all(shaped == pytest.approx(plain * 1.2) for t, plain, shaped in pairs if t >= 9000.0)


def test_shaped_demand_is_held_between_the_floor_and_twice_design():
    low = shaped_pair(DemandShape((DemandStep(0.0, 0.1),)), mean_c=3.0, floor=100.0, hours=6.0)
    assert all(shaped == pytest.approx(100.0) for _, _, shaped in low)
    high = shaped_pair(DemandShape((DemandStep(0.0, 3.0),)), mean_c=-10.0, hours=6.0)
    assert all(shaped == pytest.approx(1600.0) for _, _, shaped in high)


def test_without_shaping_the_weather_demand_is_unchanged():
    for _, plain, shaped in shaped_pair(DemandShape(()), hours=6.0):
        assert shaped == plain


def test_bad_shapes_are_refused():
    with pytest.raises(SimInputError, match="factor"):
        DemandShape((DemandStep(0.0, 0.0),))
    with pytest.raises(SimInputError, match="window, step or ramp"):
        DemandShape((0.5,))  # type: ignore[arg-type]
    with pytest.raises(SimInputError, match="DemandShape"):
        WeatherDemand(shape=[DemandStep(0.0, 0.5)])  # type: ignore[arg-type]
