"""One centrifugal pump with its motor and VFD: the datasheet curves, or one real pump's deviation.

Datasheet rules (reference figures, see station.py):
- head       H = H0 s^2 - c q^2                       (q per pump m3/h, s = speed / 1480 rpm)
- efficiency eta = 0.84 (2x - x^2), x = (q/s)/450; at reduced speed Sarbu-Borza
             eta' = 1 - (1 - eta)(1/s)^0.1 (the correction EPANET's energy routine applies)
- shaft      P = rho g Q H / eta', floored at the shut-off power the uncorrected parabola gives
             at q -> 0 (rho g H0 s^2 * 450 s / (2 * 0.84)): a dead-headed pump still burns power
- electric   P / (eta_motor(lambda) eta_vfd(lambda)), lambda = P / 110 kW, linear in the tables,
             held at the end values outside 0.1..1.0
- NPSHr      4.0 m s^2 max(0.6, x)^2

A real pump (PumpDeviation) is the datasheet pump with its flow axis scaled by flow_factor, its
head by head_factor and its efficiency by efficiency_factor, all about the best-efficiency point:
    H(q, s) = fH (H0 s^2 - c (q / fQ)^2),  BEP flow 450 fQ,  eta = f_eta 0.84 (2x - x^2)
so the BEP moves to (450 fQ, 60 fH) and the curve keeps its shape. ISO 9906:2012 grade 2B accepts
a pump whose measured H(Q) curve passes through the tolerance cross of the guarantee point
(QG, HG) = (450 m3/h, 60 m) -- flow +-8 % at HG or head +-5 % at QG -- and whose efficiency,
where that curve meets the straight line through the origin and (QG, HG), is at least 95 % of
the guaranteed 0.84 (Table 8: tQ 8 %, tH 5 %, t_eta 5 %; KSB's pump lexicon, "Total tolerance",
lists the same class 2 figures +-8 / +-5 / -5 %). draw_iso9906_2b draws fQ, fH uniformly within
+-8 % / +-5 % and f_eta within 0.95..1.0 and sends back (draws again) every pump that this
acceptance test would reject, e.g. fQ and fH both at +max, whose curve misses the cross.

Wear (0..0.3) is the fraction of the datasheet BEP head (60 m) lost at the pump's own BEP flow: an
internal hydraulic loss growing with the square of the flow (eroded impeller and casing, opened
wear-ring clearances, lumped):
    H_worn(q, s) = H(q, s) - w 60 m (q / (450 fQ))^2
so the shut-off head stays, the head at flow falls, and the loss obeys the affinity laws (it is
w 60 s^2 at the similar point q = 450 fQ s). The impeller does the same work on the water, so
the efficiency at the equivalent full-speed point falls by H_worn / H (the lost head is heat);
the Sarbu-Borza correction applies after that, as for every pump. A worn pump therefore gives
less head and less efficiency at flow, the same head at shut-off, and needs more speed for a duty.
Pure float maths: this sits in the plant step.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from .station import REFERENCE, SimInputError, StationParams

# ISO 9906:2012 grade 2B acceptance tolerances (Table 8): flow, head, efficiency (lower only).
ISO9906_2B_FLOW = 0.08
ISO9906_2B_HEAD = 0.05
ISO9906_2B_EFFICIENCY = 0.05

# What a scenario may set per pump (far outside 2B on purpose: a wrong or badly worn pump).
HEAD_FACTOR_RANGE = (0.8, 1.2)
FLOW_FACTOR_RANGE = (0.8, 1.2)
EFFICIENCY_FACTOR_RANGE = (0.7, 1.1)
WEAR_RANGE = (0.0, 0.3)


@dataclass(frozen=True)
class PumpDeviation:
    """How one real pump differs from the datasheet (1, 1, 1, 0 is the datasheet pump)."""

    head_factor: float = 1.0
    flow_factor: float = 1.0
    efficiency_factor: float = 1.0
    wear: float = 0.0

    def __post_init__(self) -> None:
        for name, (low, high) in (
            ("head_factor", HEAD_FACTOR_RANGE),
            ("flow_factor", FLOW_FACTOR_RANGE),
            ("efficiency_factor", EFFICIENCY_FACTOR_RANGE),
            ("wear", WEAR_RANGE),
        ):
            value = getattr(self, name)
            if not (
                isinstance(value, (int, float))
                and not isinstance(value, bool)
                and math.isfinite(value)
                and low <= value <= high
            ):
                raise SimInputError(f"pump {name} {value!r} is outside {low:g}..{high:g}")


DATASHEET = PumpDeviation()


def passes_iso9906_2b(deviation: PumpDeviation, params: StationParams = REFERENCE) -> bool:
    """Would this pump pass a grade 2B acceptance test against the datasheet (full speed)?"""
    pump = PumpModel(params, deviation)
    q_g = params.bep_flow_m3h
    h_g = params.shutoff_head_m - params.curve_coeff * q_g * q_g
    head_ok = abs(pump.head_m(q_g, 1.0) / h_g - 1.0) <= ISO9906_2B_HEAD
    flow_ok = abs(pump.flow_at_head_m3h(h_g, 1.0) / q_g - 1.0) <= ISO9906_2B_FLOW
    # where H0 - c q^2 meets H = (h_g / q_g) q
    k = h_g / q_g
    q = (-k + math.sqrt(k * k + 4.0 * pump.c * pump.h0)) / (2.0 * pump.c)
    eta_ok = pump.efficiency(q, 1.0) >= (1.0 - ISO9906_2B_EFFICIENCY) * params.bep_efficiency
    return (head_ok or flow_ok) and eta_ok


def draw_iso9906_2b(
    seed: int, count: int, params: StationParams = REFERENCE
) -> tuple[PumpDeviation, ...]:
    """`count` new pumps as a 2B acceptance test lets them through, reproducible from `seed`.

    Its own generator (a string seed is hashed the same way on every run and platform), so the
    draw neither depends on nor disturbs the demand's or the bus's random streams; pump i's draw
    does not depend on `count`.
    """
    rng = random.Random(f"iso9906_2b/{seed}")
    pumps: list[PumpDeviation] = []
    while len(pumps) < count:
        flow = 1.0 + rng.uniform(-ISO9906_2B_FLOW, ISO9906_2B_FLOW)
        head = 1.0 + rng.uniform(-ISO9906_2B_HEAD, ISO9906_2B_HEAD)
        efficiency = 1.0 - rng.uniform(0.0, ISO9906_2B_EFFICIENCY)
        pump = PumpDeviation(head, flow, efficiency, 0.0)
        if passes_iso9906_2b(pump, params):
            pumps.append(pump)
    return tuple(pumps)


def _interp(x: float, xs: tuple[float, ...], ys: tuple[float, ...]) -> float:
    if x <= xs[0]:
        return ys[0]
    for i in range(1, len(xs)):
        if x <= xs[i]:
            x0 = xs[i - 1]
            return ys[i - 1] + (ys[i] - ys[i - 1]) * (x - x0) / (xs[i] - x0)
    return ys[-1]


class PumpModel:
    """Curves of one pump: the datasheet's, or a real pump's with its deviation (module docstring).

    Methods take the flow through this pump (m3/h) and its speed ratio s. `h0`, `c`, `q_bep` and
    `eta_bep` are this pump's own (deviated, worn) figures; `c_clean` is its curve before wear.
    """

    __slots__ = (
        "params",
        "deviation",
        "h0",
        "c",
        "c_clean",
        "q_bep",
        "eta_bep",
        "rho_g",
        "rated_kw",
        "eta_floor",
        "_loads",
        "_motor",
        "_vfd",
        "npsh_bep",
    )

    def __init__(
        self, params: StationParams = REFERENCE, deviation: PumpDeviation = DATASHEET
    ) -> None:
        self.params = params
        self.deviation = deviation
        f_h, f_q = deviation.head_factor, deviation.flow_factor
        self.h0 = f_h * params.shutoff_head_m
        self.q_bep = f_q * params.bep_flow_m3h
        self.c_clean = f_h * params.curve_coeff / (f_q * f_q)
        bep_head = params.shutoff_head_m - params.curve_coeff * params.bep_flow_m3h**2
        self.c = self.c_clean + deviation.wear * bep_head / (self.q_bep * self.q_bep)
        self.eta_bep = deviation.efficiency_factor * params.bep_efficiency
        self.rho_g = params.rho_g
        self.rated_kw = params.motor_rated_kw
        self.eta_floor = params.efficiency_floor
        self._loads = params.load_points
        self._motor = params.motor_efficiency
        self._vfd = params.vfd_efficiency
        self.npsh_bep = params.npsh_bep_m

    # --- hydraulics --------------------------------------------------------------------------
    def head_m(self, q: float, s: float) -> float:
        return self.h0 * s * s - self.c * q * q

    def shutoff_head_m(self, s: float) -> float:
        return self.h0 * s * s

    def flow_at_head_m3h(self, head_m: float, s: float) -> float:
        """Forward flow at this header head; 0 when the check valve holds (head >= shut-off)."""
        dh = self.h0 * s * s - head_m
        return math.sqrt(dh / self.c) if dh > 0.0 else 0.0

    def speed_for_m(self, q: float, head_m: float) -> float:
        """Speed ratio at which the pump delivers q against head_m."""
        return math.sqrt((head_m + self.c * q * q) / self.h0)

    # --- efficiency and power ----------------------------------------------------------------
    def efficiency(self, q: float, s: float) -> float:
        """Hydraulic efficiency eta' at flow q and speed s (floored, see module docstring)."""
        if s <= 0.0:
            return 0.0
        x = q / s / self.q_bep
        eta = self.eta_bep * (2.0 * x - x * x)
        if self.c != self.c_clean:  # worn: the lost head is dissipated inside the pump
            clean = self.h0 * s * s - self.c_clean * q * q
            worn = self.h0 * s * s - self.c * q * q
            eta = eta * worn / clean if worn > 0.0 and clean > 0.0 else 0.0
        if s != 1.0:
            eta = 1.0 - (1.0 - eta) * (1.0 / s) ** 0.1
        return eta if eta > self.eta_floor else self.eta_floor

    def shaft_kw(self, q: float, s: float, head_m: float) -> float:
        if s <= 0.0:
            return 0.0
        hydraulic = self.rho_g * (q / 3600.0) * head_m / 1000.0
        shaft = hydraulic / self.efficiency(q, s) if hydraulic > 0.0 else 0.0
        shutoff = (
            self.rho_g * self.h0 * s * s * (self.q_bep * s / 3600.0) / (2.0 * self.eta_bep) / 1000.0
        )
        return shaft if shaft > shutoff else shutoff

    def drive_efficiency(self, shaft_kw: float) -> float:
        """Motor x VFD efficiency at this shaft load."""
        load = shaft_kw / self.rated_kw
        return _interp(load, self._loads, self._motor) * _interp(load, self._loads, self._vfd)

    def electrical_kw(self, q: float, s: float, head_m: float) -> float:
        shaft = self.shaft_kw(q, s, head_m)
        return shaft / self.drive_efficiency(shaft) if shaft > 0.0 else 0.0

    def npsh_required_m(self, q: float, s: float) -> float:
        if s <= 0.0:
            return 0.0
        x = q / s / self.q_bep
        r = x if x > 0.6 else 0.6
        return self.npsh_bep * s * s * r * r

    def in_allowed_range(self, q: float, s: float) -> bool:
        """The reference's allowed operating window (0.3..1.25 x BEP flow, s 0.5..1.0), about
        this pump's own BEP."""
        lo_s, hi_s = self.params.allowed_speed
        lo_x, hi_x = self.params.allowed_flow_ratio
        if not lo_s <= s <= hi_s:
            return False
        x = q / s / self.q_bep
        return lo_x <= x <= hi_x
