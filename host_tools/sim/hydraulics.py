"""Station head of N parallel check-valved pumps plus a check-valved bypass, for a given flow.

The pumps share the suction and discharge headers, so they see one station head H (discharge minus
suction, m). For a network flow Q >= 0 the station head is the H at which
    Q = sum_i sqrt(max(0, H0_i s_i^2 - H) / c_i) + sqrt(max(0, -H) / k_bypass)
each pump with its own curve (H0_i, c_i), i.e. a pump whose shut-off head H0_i s_i^2 is below H
delivers nothing (its check valve holds) and the bypass opens only when the discharge falls below
the suction. At a negative station head a turning pump runs past its run-out on the same curve
(negative head: a resistance the column drives flow through) in parallel with the bypass; a
stopped pump (s = 0) passes nothing. Q(H) is monotone, so the solve is a safeguarded Newton
iteration (closed form when the running pumps are alike: one shut-off head H0_i s_i^2 and one
c_i, and the bypass is shut). Pure floats: this runs up to twice per plant step.
"""

from __future__ import annotations

import math


class StationSolution:
    """Result holder reused every step (no allocation in the step)."""

    __slots__ = ("head_m", "pump_flow_m3h", "bypass_flow_m3h", "dhead_dflow")

    def __init__(self, pump_count: int) -> None:
        self.head_m = 0.0
        self.pump_flow_m3h = [0.0] * pump_count
        self.bypass_flow_m3h = 0.0
        self.dhead_dflow = 0.0  # dH/dQ, m per m3/h (<= 0)


def solve_station(
    flow_m3h: float,
    speeds: list[float],
    shutoff_m: list[float],
    curve_coeff: list[float],
    bypass_coeff: float,
    out: StationSolution,
    guess_m: float = 0.0,
) -> StationSolution:
    pump_q = out.pump_flow_m3h
    n = len(speeds)
    h_max = 0.0
    h_common = -1.0
    c_common = 0.0
    uniform = True
    active = 0
    turning = []  # (index, shut-off head, curve) of each turning pump: a stopped one passes nothing
    for i in range(n):
        s = speeds[i]
        if s > 0.0:
            active += 1
            h = shutoff_m[i] * s * s
            turning.append((i, h, curve_coeff[i]))
            if h > h_max:
                h_max = h
            if h_common < 0.0:
                h_common = h
                c_common = curve_coeff[i]
            elif h != h_common or curve_coeff[i] != c_common:
                uniform = False
    if flow_m3h <= 0.0:
        for i in range(n):
            pump_q[i] = 0.0
        out.head_m = h_max
        out.bypass_flow_m3h = 0.0
        out.dhead_dflow = 0.0
        return out
    q = flow_m3h
    if uniform and active:
        per = q / active
        head = h_max - c_common * per * per
        if head >= 0.0:
            for i in range(n):
                pump_q[i] = per if speeds[i] > 0.0 else 0.0
            out.head_m = head
            out.bypass_flow_m3h = 0.0
            out.dhead_dflow = -2.0 * c_common * per / active
            return out
    # General case: safeguarded Newton on H over [lo, hi] with Q(lo) >= q >= Q(hi).
    lo = -bypass_coeff * q * q
    hi = h_max if h_max > 0.0 else 0.0
    head = guess_m if lo < guess_m < hi else 0.5 * (lo + hi)
    dq_dh = -1.0
    sqrt = math.sqrt
    for _ in range(60):
        total = 0.0
        dq_dh = 0.0
        for _i, h, ci in turning:
            dh = h - head
            if dh > 0.0:
                qi = sqrt(dh / ci)
                total += qi
                dq_dh -= 0.5 / (ci * qi)
        if head < 0.0:
            qb = sqrt(-head / bypass_coeff)
            total += qb
            dq_dh -= 0.5 / (bypass_coeff * qb)
        err = total - q
        if err > 0.0:
            lo = head
        else:
            hi = head
        if -1e-9 * q < err < 1e-9 * q or hi - lo < 1e-12:
            break
        step_to = head - err / dq_dh if dq_dh < 0.0 else 0.5 * (lo + hi)
        head = step_to if lo < step_to < hi else 0.5 * (lo + hi)
    bypass = 0.0
    for i in range(n):
        pump_q[i] = 0.0
    for i, h, ci in turning:
        dh = h - head
        pump_q[i] = sqrt(dh / ci) if dh > 0.0 else 0.0
    if head < 0.0:
        bypass = sqrt(-head / bypass_coeff)
    out.head_m = head
    out.bypass_flow_m3h = bypass
    out.dhead_dflow = 1.0 / dq_dh if dq_dh < 0.0 else 0.0
    return out
