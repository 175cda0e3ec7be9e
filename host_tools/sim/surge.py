"""Pressure-surge estimate for a rigid water column.

A rigid column cannot carry pressure waves, so the surge is estimated from the change of the
velocity the pumps deliver at the station over the last wave reflection time T = 2L/a:
  surge = rho a |v(t) - v(t - T)|
For a change faster than T that is Joukowsky's rho a dv; for a ramp of length t_r > T it gives
rho a dv T / t_r = 2 rho L dv / t_r (Michaud). It is an indicator of the surge a change causes; a
real downsurge at the discharge is also capped by the check-valved bypass (discharge cannot fall
far below suction), which this estimate does not model.
"""

from __future__ import annotations

from collections import deque


class SurgeEstimator:
    __slots__ = ("_window_s", "_rho_a_kpa", "_samples", "surge_kpa", "peak_kpa")

    def __init__(self, rho_kg_m3: float, wave_speed_m_s: float, reflection_time_s: float) -> None:
        self._window_s = reflection_time_s
        self._rho_a_kpa = rho_kg_m3 * wave_speed_m_s / 1000.0
        self._samples: deque[tuple[float, float]] = deque()
        self.surge_kpa = 0.0
        self.peak_kpa = 0.0

    def update(self, t_s: float, velocity_m_s: float) -> float:
        samples = self._samples
        samples.append((t_s, velocity_m_s))
        edge = t_s - self._window_s
        # Keep one sample at or before the window edge so v(t - T) can be interpolated.
        while len(samples) >= 2 and samples[1][0] <= edge:
            samples.popleft()
        t0, v0 = samples[0]
        if t0 < edge:
            t1, v1 = samples[1]
            v0 = v0 + (v1 - v0) * (edge - t0) / (t1 - t0)
        dv = velocity_m_s - v0
        surge = self._rho_a_kpa * (dv if dv >= 0.0 else -dv)
        self.surge_kpa = surge
        if surge > self.peak_kpa:
            self.peak_kpa = surge
        return surge

    def reset_peak(self) -> None:
        self.peak_kpa = 0.0
