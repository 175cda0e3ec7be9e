"""What the field makes possible: can any pump set hold the remote DP in band at this instant?

Judged by the field's own model only (the plant's per-pump curves with their deviations, its
network, suction side and true suction limit, the drives' own speed limits), never the agent's.

Rules (steady state of the present conditions; transients are not judged here):
- Conditions: the demand's Kv of this instant, the source pumps' present state (r = 1 running,
  0 stopped) and the upstream pressure it settles to, minus a suction dip in force, the supply
  temperature's vapour pressure.
- Pumps the field can run: those whose drive has no fault cause present (a tripped drive whose
  cause has cleared can be reset, so it counts; a comm-lost drive that did not trip counts, at any
  speed: that flatters the field, never the figure). Each at any speed within its drive's
  min_speed_pct..max_speed_pct (the current limit is ignored: it can only lower the top).
- A pump set S (any subset of those, the empty one too) holds the network flow Q at steady state
  iff F_min(Q) <= Q <= F_max(Q), where F(Q) is what S passes at the station head the network needs
  for Q, H(Q) = k_tot Q^2 - r H_assist (plant.py), every pump of S at its lowest (F_min) or
  highest (F_max) speed, plus the check-valved bypass when H(Q) < 0. Q - F(Q) rises with Q, so S
  reaches some flow in [Q1, Q2] iff F_min(Q2) <= Q2 and F_max(Q1) >= Q1 (closed form, no solve).
- Suction: at the lowest flow of S in [Q1, Q2] (where the suction is best: it falls with the
  flow, and the pumps' NPSHr rises with flow and speed) the pumps of S share the flow on a common
  speed (each clamped to its drive's range); the true suction there must be at or above the true
  limit with the largest NPSHr of S (plant.py's rules; with no pump turning, NPSHr 0). Where the
  NPSHr sets the limit (above 4.2 m: a pump past its BEP flow near full speed) the best split gives
  each pump a flow in proportion to its own BEP flow; the common speed is within a few % of that for
  pumps inside ISO 9906 2B, so such a sample may be judged unreachable slightly early. Below that the
  limit is the vapour pressure + 50 kPa whatever the split.
- The remote DP is rho g Q^2 / Kv^2, so a DP range is a flow range.
Per sample one code (a sample's setpoint sp, the band b = 0.5 m, unserved 2 m):
  REACHABLE   some set holds the DP within sp +- b;
  OVER        none does, but some set reaches sp - b or more: every set that reaches the band's
              low edge over-delivers (e.g. the weakest pump at its drive's minimum speed at a low
              demand, and no pump gives no DP);
  UNDER       the best the field allows lies below sp - b but not below sp - 2 m;
  UNSERVABLE  the best the field allows lies more than 2 m below sp (e.g. a source-pump stop,
              whose upstream pressure lies below the suction limit at any flow).
Reach holds a code for HOLD_S of virtual time (re-judged at once when a drive's availability or
the source state changes): cheap enough to run beside the plant (a judgement is ~0.1 ms).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import combinations

from .plant import Plant
from .water import suction_limit_kpa_abs

REACHABLE = 0
OVER = 1
UNDER = 2
UNSERVABLE = 3
NAMES = ("reachable", "over-delivers", "under-delivers", "unservable")

HOLD_S = 10.0
SPEED_ITERATIONS = 30


class Field:
    """The field's steady-state options at one instant (build with from_plant, then ask)."""

    def __init__(
        self,
        plant: Plant,
        available: Sequence[bool],
        speed_ranges: Sequence[tuple[float, float]],
    ) -> None:
        p = plant.params
        self.plant = plant
        self.kpa_m = p.kpa_per_m
        self.kv = plant.kv
        r = 1.0 if plant.source_running else 0.0
        self.k_tot = 1.0 / (self.kv * self.kv) + p.system_coeff + (1.0 - r) * p.source_stopped_coeff
        self.assist_m = r * plant.upstream_assist_m
        self.k_bp = p.bypass_coeff
        upstream = p.upstream_stopped_kpa + r * (p.upstream_run_kpa - p.upstream_stopped_kpa)
        self.upstream_kpa = upstream - plant.suction_dip_kpa
        k_up = p.upstream_loss_kpa_at_design / p.design_flow_m3h**2
        self.k_loss_kpa = k_up + (1.0 - r) * p.source_stopped_coeff * self.kpa_m
        self.atm = p.atm_kpa_abs
        self.p_sat = plant.saturation_kpa_abs
        self.vapour_g = self.p_sat - self.atm
        self.pumps = plant.pumps
        self.ranges = list(speed_ranges)
        usable = [i for i in range(plant.pump_count) if available[i]]
        # the sets to try: one pump, two, ..., then none (the usual answers come first)
        self.sets: list[tuple[int, ...]] = [
            s for n in range(1, len(usable) + 1) for s in combinations(usable, n)
        ] + [()]

    # --- the network side ----------------------------------------------------------------------
    def flow_for_dp(self, dp_kpa: float) -> float:
        return self.kv * math.sqrt(max(0.0, dp_kpa) / self.kpa_m)

    def head_m(self, q: float) -> float:
        return self.k_tot * q * q - self.assist_m

    def suction_kpa(self, q: float) -> float:
        s = self.upstream_kpa - self.k_loss_kpa * q * q
        return s if s > self.vapour_g else self.vapour_g

    # --- one set -------------------------------------------------------------------------------
    def passes(self, pumps: tuple[int, ...], speeds: Sequence[float], head: float) -> float:
        """Flow the set passes at this station head, each pump at its speed, plus the bypass."""
        total = math.sqrt(-head / self.k_bp) if head < 0.0 else 0.0
        for i, s in zip(pumps, speeds, strict=True):
            total += self.pumps[i].flow_at_head_m3h(head, s)
        return total

    def _speeds(self, pumps: tuple[int, ...], u: float) -> list[float]:
        return [min(max(u, self.ranges[i][0]), self.ranges[i][1]) for i in pumps]

    def reaches(self, pumps: tuple[int, ...], q1: float, q2: float) -> bool:
        """Does this set hold some flow in [q1, q2] (q2 may be inf) with the suction in limit?"""
        low = self._speeds(pumps, 0.0)
        high = self._speeds(pumps, math.inf)
        if self.passes(pumps, high, self.head_m(q1)) < q1:
            return False  # even flat out it cannot carry q1
        if math.isfinite(q2) and self.passes(pumps, low, self.head_m(q2)) > q2:
            return False  # even at its lowest speeds it carries more than q2
        q = q1
        if self.passes(pumps, low, self.head_m(q1)) > q1:  # its lowest flow lies above q1
            q = self._lowest_flow(pumps, low, q1, q2)
        return self.suction_margin_kpa(pumps, q) >= 0.0

    def _lowest_flow(self, pumps: tuple[int, ...], low: list[float], q1: float, q2: float) -> float:
        """The set's steady flow at its lowest speeds, known to lie in (q1, q2]."""
        hi = q2
        if not math.isfinite(hi):
            hi = 2.0 * q1 + 100.0
            while self.passes(pumps, low, self.head_m(hi)) > hi:
                hi *= 2.0
        lo = q1
        while hi - lo > 1e-3 * (1.0 + hi):
            mid = 0.5 * (lo + hi)
            if self.passes(pumps, low, self.head_m(mid)) > mid:
                lo = mid
            else:
                hi = mid
        return hi

    def suction_margin_kpa(self, pumps: tuple[int, ...], q: float) -> float:
        """True suction minus its true limit with the set carrying q, the flow shared on a
        common speed (each pump clamped to its drive's range)."""
        head = self.head_m(q)
        npsh = 0.0
        if pumps:
            lo = min(self.ranges[i][0] for i in pumps)
            hi = max(self.ranges[i][1] for i in pumps)
            for _ in range(SPEED_ITERATIONS):
                mid = 0.5 * (lo + hi)
                if self.passes(pumps, self._speeds(pumps, mid), head) < q:
                    lo = mid
                else:
                    hi = mid
            for i, s in zip(pumps, self._speeds(pumps, hi), strict=True):
                model = self.pumps[i]
                npsh = max(npsh, model.npsh_required_m(model.flow_at_head_m3h(head, s), s))
        limit = suction_limit_kpa_abs(self.p_sat, npsh, self.kpa_m) - self.atm
        return self.suction_kpa(q) - limit

    # --- the field -----------------------------------------------------------------------------
    def any_reaches(self, q1: float, q2: float) -> bool:
        return any(self.reaches(s, q1, q2) for s in self.sets)

    def judge(self, setpoint_kpa: float, band_kpa: float, low_kpa: float) -> int:
        """REACHABLE, OVER, UNDER or UNSERVABLE (module docstring)."""
        q1 = self.flow_for_dp(setpoint_kpa - band_kpa)
        if self.any_reaches(q1, self.flow_for_dp(setpoint_kpa + band_kpa)):
            return REACHABLE
        if self.any_reaches(q1, math.inf):
            return OVER
        if self.any_reaches(self.flow_for_dp(setpoint_kpa - low_kpa), math.inf):
            return UNDER
        return UNSERVABLE


def field_of(plant: Plant, drives: Sequence) -> Field:
    """The field as the simulated station's drives leave it now (module docstring)."""
    available = [not d.conditions for d in drives]
    ranges = [(d.config.min_speed_pct / 100.0, d.config.max_speed_pct / 100.0) for d in drives]
    return Field(plant, available, ranges)


class Reach:
    """Judges a station every HOLD_S of virtual time, and at once when a drive's availability or
    the source state changes; holds the code in between."""

    def __init__(self, hold_s: float = HOLD_S) -> None:
        self.hold_s = hold_s
        self._next_s = -math.inf
        self._key: tuple = ()
        self.code = REACHABLE

    def judge(
        self, plant: Plant, drives: Sequence, setpoint_kpa: float, band_kpa: float, low_kpa: float
    ) -> int:
        key = (plant.source_running, plant.suction_dip_kpa, *(not d.conditions for d in drives))
        if plant.t_s >= self._next_s or key != self._key:
            self._key = key
            self._next_s = plant.t_s + self.hold_s
            self.code = field_of(plant, drives).judge(setpoint_kpa, band_kpa, low_kpa)
        return self.code
