"""Offline energy baseline: the best pump count and speed for a flow and a required head.

Identical pumps share the flow equally at the optimum; for each count n the speed follows from the
pump curve, the point must lie in the reference's allowed window (0.3..1.25 x BEP flow at
equivalent full speed, s 0.5..1.0), and the cheapest electrical power wins. With the reference
system curve this switches 1 -> 2 pumps near 330 m3/h (the one-pump window ends there).

Strategies for a day's flows (all electrical, kWh):
- remote_dp:    remote-point DP control (head from the system curve) + optimal staging
- constant_head: a fixed station head (55 m) + optimal staging
- throttled:    2 pumps at full speed, the excess head throttled in a valve

LowerBound (below) is the true lower bound the agent's energy is judged against: the plant's own
pumps (each its curve), any count, any split, no window, at the DP the plant actually delivered.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from .pump import PumpModel
from .station import REFERENCE, SimInputError, StationParams


@dataclass(frozen=True)
class OperatingPoint:
    pumps: int
    speed_ratio: float
    flow_per_pump_m3h: float
    head_m: float
    electrical_kw: float


def pump_point(
    flow_m3h: float, head_m: float, pumps: int, params: StationParams = REFERENCE
) -> OperatingPoint | None:
    """n pumps sharing flow_m3h against head_m, or None when outside the allowed window."""
    model = PumpModel(params)
    q = flow_m3h / pumps
    s = model.speed_for_m(q, head_m)
    if not model.in_allowed_range(q, s):
        return None
    kw = pumps * model.electrical_kw(q, s)
    return OperatingPoint(pumps, s, q, head_m, kw)


def best_staging(
    flow_m3h: float, head_m: float, params: StationParams = REFERENCE
) -> OperatingPoint:
    """Cheapest (count, speed) for this flow and head. Raises SimInputError if none fits."""
    if not (math.isfinite(flow_m3h) and flow_m3h > 0.0 and math.isfinite(head_m) and head_m > 0):
        raise SimInputError(f"flow {flow_m3h!r} m3/h and head {head_m!r} m must be > 0")
    best: OperatingPoint | None = None
    for n in range(1, params.pump_count + 1):
        point = pump_point(flow_m3h, head_m, n, params)
        if point is not None and (best is None or point.electrical_kw < best.electrical_kw):
            best = point
    if best is None:
        raise SimInputError(f"no pump count can deliver {flow_m3h} m3/h at {head_m} m")
    return best


def remote_dp_power_kw(flow_m3h: float, params: StationParams = REFERENCE) -> float:
    return best_staging(flow_m3h, params.system_head_m(flow_m3h), params).electrical_kw


def constant_head_power_kw(
    flow_m3h: float, head_m: float = 55.0, params: StationParams = REFERENCE
) -> float:
    return best_staging(flow_m3h, head_m, params).electrical_kw


def throttled_power_kw(flow_m3h: float, pumps: int = 2, params: StationParams = REFERENCE) -> float:
    """Pumps at full speed; the valve burns the head the network does not need."""
    model = PumpModel(params)
    q = flow_m3h / pumps
    return pumps * model.electrical_kw(q, 1.0)


STRATEGIES = {
    "remote_dp": remote_dp_power_kw,
    "constant_head": constant_head_power_kw,
    "throttled": throttled_power_kw,
}


def daily_energy_kwh(
    flows_m3h: Iterable[float], step_s: float, strategy: str = "remote_dp"
) -> float:
    """Energy of a flow series (one value per step_s, held over the step) under a strategy."""
    try:
        power = STRATEGIES[strategy]
    except KeyError:
        raise SimInputError(f"unknown strategy {strategy!r}; known: {sorted(STRATEGIES)}") from None
    return sum(power(q) for q in flows_m3h) * step_s / 3600.0


# --- the true lower bound ---------------------------------------------------------------------
#
# What no controller can beat on these pumps: for a flow Q against a station head H, the cheapest
# electrical power over every pump count 0..N and every split of Q between the pumps (unequal
# allowed), each pump anywhere on its own curve up to its drive's maximum speed: no flow window,
# no minimum speed, no start-up, no ramp. A pump carrying no flow is off and draws nothing.
#
# Computed on grids, per head level: each pump's power at flows 0, dq, 2 dq, ... (speed from its
# curve for that flow and head), combined pump by pump (min-plus convolution: the best split of
# every total on the grid). A run's samples read the table linearly in flow and in head (levels
# dh apart). Between grid points the bound is the interpolation of exact grid minima; tests check
# it against direct searches (the discretisation costs well under 0.1 %).

GRID_FLOW_M3H = 2.0
GRID_HEAD_M = 0.05


class LowerBound:
    """Least electrical power (kW) for (flow, head) on these pumps; see the notes above."""

    def __init__(
        self,
        pumps: Sequence[PumpModel],
        max_speed: Sequence[float] | None = None,
        dq: float = GRID_FLOW_M3H,
        dh: float = GRID_HEAD_M,
    ) -> None:
        if not pumps:
            raise SimInputError("a lower bound needs at least one pump")
        self.pumps = tuple(pumps)
        self.max_speed = tuple(max_speed) if max_speed is not None else (1.0,) * len(pumps)
        if len(self.max_speed) != len(self.pumps) or not all(s > 0 for s in self.max_speed):
            raise SimInputError("max_speed: one speed ratio > 0 per pump")
        self.dq = dq
        self.dh = dh
        self._levels: dict[int, np.ndarray] = {}

    def pump_powers(self, head_m: float) -> list[np.ndarray]:
        """Per pump: electrical kW at flows 0, dq, ... up to what it gives at full speed."""
        tables = []
        for pump, s_max in zip(self.pumps, self.max_speed, strict=True):
            q_max = pump.flow_at_head_m3h(head_m, s_max)
            count = int(q_max / self.dq + 1e-9) + 1
            table = np.empty(count)
            table[0] = 0.0  # no flow from this pump: it is off
            for j in range(1, count):
                q = j * self.dq
                table[j] = pump.electrical_kw(q, pump.speed_for_m(q, head_m))
            tables.append(table)
        return tables

    def level(self, k: int) -> np.ndarray:
        """Least total kW for total flows 0, dq, 2 dq, ... at head k * dh (inf where impossible)."""
        table = self._levels.get(k)
        if table is None:
            tables = self.pump_powers(k * self.dh)
            table = tables[0]
            for other in tables[1:]:
                table = _min_plus(table, other)
            self._levels[k] = table
        return table

    def power_kw(self, flow_m3h: float, head_m: float) -> float:
        """The bound at one point, interpolated; inf when these pumps cannot deliver it."""
        if flow_m3h <= 0.0 or head_m <= 0.0:
            return 0.0
        x = head_m / self.dh
        k = int(x)
        low = _interp_flow(self.level(k), flow_m3h / self.dq)
        high = _interp_flow(self.level(k + 1), flow_m3h / self.dq)
        if math.isinf(high):  # beyond the upper level's reach: the lower head's value bounds it
            return low
        return low + (high - low) * (x - k)

    def direct_kw(self, flow_m3h: float, head_m: float) -> float:
        """The bound without interpolation: flow and head must lie on the grid (for tests)."""
        k = round(head_m / self.dh)
        j = round(flow_m3h / self.dq)
        if abs(k * self.dh - head_m) > 1e-9 or abs(j * self.dq - flow_m3h) > 1e-9:
            raise SimInputError(f"({flow_m3h}, {head_m}) is not on the grid")
        table = self.level(k)
        return float(table[j]) if j < len(table) else math.inf


def _min_plus(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """c[k] = min over j of a[k - j] + b[j]: the cheapest split of each total between two sets."""
    out = np.full(len(a) + len(b) - 1, np.inf)
    for j, cost in enumerate(b):
        np.minimum(out[j : j + len(a)], a + cost, out=out[j : j + len(a)])
    return out


def _interp_flow(table: np.ndarray, x: float) -> float:
    j = int(x)
    if j + 1 >= len(table):
        return float(table[j]) if j < len(table) and x == j else math.inf
    return float(table[j] + (table[j + 1] - table[j]) * (x - j))


def required_head_m(remote_dp_kpa: float, flow_m3h: float, params: StationParams) -> float:
    """Station head for this flow at this remote DP: the DP plus the network's loss, less any
    upstream assist (source pumps running)."""
    return (
        remote_dp_kpa / params.kpa_per_m
        + params.system_coeff * flow_m3h * flow_m3h
        - params.upstream_assist_m
    )


@dataclass(frozen=True)
class BoundEnergy:
    kwh: float  # the bound over the samples (a sample it cannot cover counts its actual power)
    samples: int
    infeasible: int  # samples whose (flow, head) the pumps cannot deliver in steady state


def bound_energy_kwh(
    bound: LowerBound,
    flows_m3h: Sequence[float],
    remote_dp_kpa: Sequence[float],
    actual_kw: Sequence[float],
    params: StationParams,
    sample_s: float,
) -> BoundEnergy:
    """The lower bound's energy over a run's samples, each held for sample_s, at the flow the
    plant carried and the remote DP it actually had. A sample no steady point covers (a transient
    beyond full speed) is charged what the plant drew, and counted."""
    total = 0.0
    infeasible = 0
    for q, dp, kw in zip(flows_m3h, remote_dp_kpa, actual_kw, strict=True):
        p = bound.power_kw(q, required_head_m(dp, q, params))
        if math.isinf(p):
            infeasible += 1
            p = kw
        total += p
    return BoundEnergy(total * sample_s / 3600.0, len(flows_m3h), infeasible)
