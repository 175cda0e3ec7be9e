"""Weather-driven network demand (the reference's daily profile), for any day of the season.

Rules (reference, with the stated assumptions):
- daily mean outdoor temperature T_mean(date): a smooth seasonal curve (annual cosine, coldest on
  15 Jan) fitted so that the January mean is -6.0 degC and 1 Nov / 31 Mar are +3 degC (ASSUMED
  shape), plus a seeded day-to-day anomaly (AR(1), sigma 3 degC, r 0.7; ASSUMED). A fixed
  `mean_temp_c` replaces both (the design day is -10 degC, the January mean day -6.0 degC).
- T_o(h) = T_mean + 7.6 cos(2 pi (h - 15)/24); T_e = first-order lag of T_o, tau = 6 h, started at
  the periodic steady state of the first day (as if the previous day had the same mean).
- phi = (18 - T_e)/(18 - (-10)); Q_w = 800 clip(phi^0.5 b(h) (1 + noise), floor/800, 1.05); the
  floor is 0.30 x 800 = 240 m3/h unless a scenario sets `floor_m3h` (the lowest demanded flow).
- b(h) = 1 + 0.02 cos(2 pi (h - 6.5)/24) + 0.045 cos(4 pi (h - 7)/24): mean exactly 1, morning
  peak 1.065 at 07:00, afternoon low 0.951 at 13:30. Shape ASSUMED; fitted to the reference's
  resulting ranges (design day 741-840, January mean day 680-840, shoulder 512-702 m3/h).
- noise: seeded AR(1) on knots every 300 s of virtual time (linear in between), so a run does
  not depend on the step size. sigma 1 % by default (ASSUMED).
- shaping (DemandShape, from the scenario's [demand] table): Q = clip(Q_w F(t), floor, 2 x 800)
  with F(t) the product of
    night_setback, morning_boost: a daily window start..end ("HH:MM" of the day, may wrap past
      midnight) where F = factor, reached linearly over ramp_min after start and left linearly
      over ramp_min after end (the substations' valve actuators; default 2 min). A run that
      starts inside a window starts at its factor (the same schedule ran the day before).
    steps: from `at` (seconds from the start of the run) on, F = factor.
    ramps: from `at`, F goes linearly from 1 to factor over duration, then stays at factor.
  The weather model is untouched: shaping multiplies its result, so a run without shaping keys
  is the same run as before.
Virtual time only; random.Random(seed) only.
"""

from __future__ import annotations

import datetime as dt
import math
import random
from dataclasses import dataclass

from .station import SimInputError

_OMEGA = 2.0 * math.pi / 24.0  # rad per hour
LAG_TAU_H = 6.0
AMPLITUDE_C = 7.6
WARMEST_HOUR = 15.0
INDOOR_C = 18.0
DESIGN_OUTDOOR_C = -10.0
LOAD_EXPONENT = 0.5

# Seasonal curve: T = mean - amp cos(2 pi (day - 15 Jan) / 365.25). Solved from the January mean
# (-6.0, averaged over the month) and the season ends (+3.0 at 75 days from 15 Jan).
_JAN_AVG_COS = math.sin(math.pi * 31.0 / 365.25) / (math.pi * 31.0 / 365.25)
_END_COS = math.cos(2.0 * math.pi * 75.0 / 365.25)
SEASON_AMPLITUDE_C = (3.0 - -6.0) / (_JAN_AVG_COS - _END_COS)
SEASON_MEAN_C = -6.0 + SEASON_AMPLITUDE_C * _JAN_AVG_COS

NOISE_KNOT_S = 300.0


DAY_S = 86400.0
DEFAULT_WINDOW_RAMP_MIN = 2.0
MAX_DEMAND_RATIO = 2.0  # shaped demand never exceeds twice the design flow


@dataclass(frozen=True)
class DailyWindow:
    """A daily demand window (night setback, morning boost): seconds of the day, factor, ramp."""

    start_s: float
    end_s: float
    factor: float
    ramp_s: float = DEFAULT_WINDOW_RAMP_MIN * 60.0

    def multiplier(self, t_s: float) -> float:
        tod = t_s % DAY_S
        length = (self.end_s - self.start_s) % DAY_S
        since_start = (tod - self.start_s) % DAY_S
        ramp = self.ramp_s
        if since_start < length:
            weight = since_start / ramp if since_start < ramp else 1.0
        else:
            since_end = (tod - self.end_s) % DAY_S
            if ramp <= 0.0 or since_end >= ramp:
                return 1.0
            top = min(1.0, length / ramp)  # how far a short window got before it ended
            weight = top * (1.0 - since_end / ramp)
        return 1.0 + (self.factor - 1.0) * weight


@dataclass(frozen=True)
class DemandStep:
    """From at_s on (seconds from the start of the run) the demand is multiplied by factor."""

    at_s: float
    factor: float

    def multiplier(self, t_s: float) -> float:
        return self.factor if t_s >= self.at_s else 1.0


@dataclass(frozen=True)
class DemandRamp:
    """From at_s the multiplier goes linearly from 1 to factor over duration_s, then stays."""

    at_s: float
    duration_s: float
    factor: float

    def multiplier(self, t_s: float) -> float:
        if t_s <= self.at_s:
            return 1.0
        done = (t_s - self.at_s) / self.duration_s if self.duration_s > 0.0 else 1.0
        return 1.0 + (self.factor - 1.0) * (done if done < 1.0 else 1.0)


class DemandShape:
    """The product of every window, step and ramp at a time of the run (1.0 when there is none)."""

    __slots__ = ("parts",)

    def __init__(self, parts: tuple[DailyWindow | DemandStep | DemandRamp, ...] = ()) -> None:
        for part in parts:
            if not isinstance(part, (DailyWindow, DemandStep, DemandRamp)):
                raise SimInputError(f"demand shape part {part!r} is not a window, step or ramp")
            if not 0.0 < part.factor <= 5.0:
                raise SimInputError(f"demand factor {part.factor!r} is outside (0, 5]")
        self.parts = tuple(parts)

    def multiplier(self, t_s: float) -> float:
        f = 1.0
        for part in self.parts:
            f *= part.multiplier(t_s)
        return f


def behaviour_multiplier(hour: float) -> float:
    """b(h): the consumers' daily habit on top of the weather (mean 1)."""
    return (
        1.0 + 0.02 * math.cos(_OMEGA * (hour - 6.5)) + 0.045 * math.cos(2.0 * _OMEGA * (hour - 7.0))
    )


def in_heating_season(day: dt.date) -> bool:
    return day.month in (11, 12, 1, 2, 3)


def season_mean_temp_c(day: dt.date) -> float:
    """Climatological daily mean outdoor temperature (no anomaly)."""
    mid_jan = dt.date(day.year if day.month < 7 else day.year + 1, 1, 15)
    days = (day - mid_jan).days
    return SEASON_MEAN_C - SEASON_AMPLITUDE_C * math.cos(2.0 * math.pi * days / 365.25)


def outdoor_temp_c(mean_c: float, hour: float) -> float:
    return mean_c + AMPLITUDE_C * math.cos(_OMEGA * (hour - WARMEST_HOUR))


def steady_lagged_temp_c(mean_c: float, hour: float) -> float:
    """T_e on a day whose previous days had the same mean (periodic steady state of the lag)."""
    wt = _OMEGA * LAG_TAU_H
    amp = AMPLITUDE_C / math.sqrt(1.0 + wt * wt)
    return mean_c + amp * math.cos(_OMEGA * (hour - WARMEST_HOUR) - math.atan(wt))


def load_ratio(lagged_temp_c: float) -> float:
    phi = (INDOOR_C - lagged_temp_c) / (INDOOR_C - DESIGN_OUTDOOR_C)
    return phi if phi > 0.0 else 0.0


class WeatherDemand:
    """Network flow demand over virtual time, starting at 00:00 of `start`.

    `mean_temp_c` fixes the daily mean (reference days); otherwise the seasonal curve plus a
    seeded anomaly per day. Call step(dt_s); read flow_m3h, outdoor_c, lagged_c.
    """

    __slots__ = (
        "start",
        "design_flow_m3h",
        "min_ratio",
        "max_ratio",
        "floor_m3h",
        "shape",
        "t_s",
        "outdoor_c",
        "lagged_c",
        "flow_m3h",
        "_fixed_mean",
        "_rng",
        "_anomaly_sigma",
        "_noise_sigma",
        "_day_index",
        "_day_mean",
        "_anomaly",
        "_knot_t",
        "_knot_a",
        "_knot_b",
        "_lag_dt",
        "_lag_k",
    )

    def __init__(
        self,
        start: dt.date = dt.date(2025, 1, 15),
        *,
        seed: int = 0,
        mean_temp_c: float | None = None,
        anomaly_sigma_c: float = 3.0,
        noise_sigma: float = 0.01,
        design_flow_m3h: float = 800.0,
        floor_m3h: float | None = None,
        max_ratio: float = 1.05,
        shape: DemandShape | None = None,
    ) -> None:
        if not isinstance(start, dt.date):
            raise SimInputError(f"start must be a date, not {type(start).__name__}")
        if not in_heating_season(start):
            raise SimInputError(f"{start.isoformat()} is outside the heating season (1 Nov-31 Mar)")
        if mean_temp_c is not None and not -40.0 <= mean_temp_c <= 18.0:
            raise SimInputError(f"mean_temp_c {mean_temp_c!r} is outside -40..18 degC")
        if anomaly_sigma_c < 0.0 or noise_sigma < 0.0 or noise_sigma > 0.2:
            raise SimInputError("noise sigmas must be >= 0 (flow noise <= 0.2)")
        floor = 0.30 * design_flow_m3h if floor_m3h is None else floor_m3h
        if not (
            isinstance(floor, (int, float))
            and not isinstance(floor, bool)
            and 0.0 < floor <= max_ratio * design_flow_m3h
        ):
            raise SimInputError(
                f"demand floor {floor!r} m3/h is outside (0, {max_ratio * design_flow_m3h:g}]"
            )
        if shape is not None and not isinstance(shape, DemandShape):
            raise SimInputError(f"shape must be a DemandShape, not {type(shape).__name__}")
        self.start = start
        self.design_flow_m3h = design_flow_m3h
        self.floor_m3h = floor
        self.min_ratio = floor / design_flow_m3h
        self.max_ratio = max_ratio
        self.shape = shape if shape is not None and shape.parts else None
        self._fixed_mean = mean_temp_c
        self._rng = random.Random(seed)
        self._anomaly_sigma = anomaly_sigma_c
        self._noise_sigma = noise_sigma
        self._anomaly = self._rng.gauss(0.0, anomaly_sigma_c) if anomaly_sigma_c else 0.0
        self._day_index = 0
        self._day_mean = self._mean_for_day(0)
        self._knot_t = 0.0
        self._knot_a = self._rng.gauss(0.0, noise_sigma) if noise_sigma else 0.0
        self._knot_b = self._next_knot(self._knot_a)
        self._lag_dt = -1.0
        self._lag_k = 0.0
        self.t_s = 0.0
        self.outdoor_c = outdoor_temp_c(self._day_mean, 0.0)
        self.lagged_c = steady_lagged_temp_c(self._day_mean, 0.0)
        self.flow_m3h = self._flow(0.0)

    # --- internals ---------------------------------------------------------------------------
    def _mean_for_day(self, index: int) -> float:
        if self._fixed_mean is not None:
            return self._fixed_mean
        day = self.start + dt.timedelta(days=index)
        return season_mean_temp_c(day) + self._anomaly

    def _next_knot(self, previous: float) -> float:
        if not self._noise_sigma:
            return 0.0
        r = 0.9  # knot-to-knot correlation (5 min): slow wandering, not white noise
        return r * previous + self._rng.gauss(0.0, self._noise_sigma * math.sqrt(1.0 - r * r))

    def _noise(self, t_s: float) -> float:
        while t_s >= self._knot_t + NOISE_KNOT_S:
            self._knot_t += NOISE_KNOT_S
            self._knot_a = self._knot_b
            self._knot_b = self._next_knot(self._knot_a)
        f = (t_s - self._knot_t) / NOISE_KNOT_S
        return self._knot_a + (self._knot_b - self._knot_a) * f

    def _flow(self, t_s: float) -> float:
        hour = (t_s / 3600.0) % 24.0
        ratio = math.sqrt(load_ratio(self.lagged_c)) * behaviour_multiplier(hour)
        if self._noise_sigma:
            ratio *= 1.0 + self._noise(t_s)
        if ratio < self.min_ratio:
            ratio = self.min_ratio
        elif ratio > self.max_ratio:
            ratio = self.max_ratio
        if self.shape is None:
            return self.design_flow_m3h * ratio
        ratio *= self.shape.multiplier(t_s)
        if ratio < self.min_ratio:
            ratio = self.min_ratio
        elif ratio > MAX_DEMAND_RATIO:
            ratio = MAX_DEMAND_RATIO
        return self.design_flow_m3h * ratio

    # --- public ------------------------------------------------------------------------------
    @property
    def day_mean_c(self) -> float:
        return self._day_mean

    @property
    def date(self) -> dt.date:
        return self.start + dt.timedelta(days=self._day_index)

    def step(self, dt_s: float) -> float:
        """Advance by dt_s seconds of virtual time; returns the new demand (m3/h)."""
        t = self.t_s + dt_s
        day = int(t // 86400.0)
        while day > self._day_index:
            self._day_index += 1
            if self._anomaly_sigma:
                r = 0.7
                self._anomaly = r * self._anomaly + self._rng.gauss(
                    0.0, self._anomaly_sigma * math.sqrt(1.0 - r * r)
                )
            self._day_mean = self._mean_for_day(self._day_index)
        if dt_s != self._lag_dt:
            self._lag_dt = dt_s
            self._lag_k = 1.0 - math.exp(-dt_s / (LAG_TAU_H * 3600.0))
        # Exact lag for T_o held at its mid-step value.
        mid_hour = ((self.t_s + 0.5 * dt_s) / 3600.0) % 24.0
        t_o_mid = outdoor_temp_c(self._day_mean, mid_hour)
        self.lagged_c += (t_o_mid - self.lagged_c) * self._lag_k
        self.t_s = t
        self.outdoor_c = outdoor_temp_c(self._day_mean, (t / 3600.0) % 24.0)
        self.flow_m3h = self._flow(t)
        return self.flow_m3h


def daily_flow_profile(mean_temp_c: float, step_s: float = 60.0) -> list[float]:
    """Noise-free demand over one day with a fixed mean temperature, one value per step."""
    demand = WeatherDemand(mean_temp_c=mean_temp_c, anomaly_sigma_c=0.0, noise_sigma=0.0)
    flows = [demand.flow_m3h]
    for _ in range(int(round(86400.0 / step_s)) - 1):
        flows.append(demand.step(step_s))
    return flows
