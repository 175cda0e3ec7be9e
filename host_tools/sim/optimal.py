"""Offline energy baseline: the best pump count and speed for a flow and a required head.

Identical pumps share the flow equally at the optimum; for each count n the speed follows from the
pump curve, the point must lie in the reference's allowed window (0.3..1.25 x BEP flow at
equivalent full speed, s 0.5..1.0), and the cheapest electrical power wins. With the reference
system curve this switches 1 -> 2 pumps near 330 m3/h (the one-pump window ends there).

Strategies for a day's flows (all electrical, kWh):
- remote_dp:    remote-point DP control (head from the system curve) + optimal staging
- constant_head: a fixed station head (55 m) + optimal staging
- throttled:    2 pumps at full speed, the excess head throttled in a valve
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

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
    kw = pumps * model.electrical_kw(q, s, head_m)
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
    return pumps * model.electrical_kw(q, 1.0, model.head_m(q, 1.0))


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
