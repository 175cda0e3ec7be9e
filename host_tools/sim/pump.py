"""One centrifugal pump with its motor and VFD: the datasheet curves, or one real pump's deviation.

Datasheet rules (reference figures, see station.py):
- head       H = H0 s^2 - c q^2                       (q per pump m3/h, s = speed / 1480 rpm)
- efficiency eta = 0.84 (2x - x^2), x = (q/s)/450, and at reduced speed the Sarbu-Borza
             correction eta' = 1 - (1 - eta)(1/s)^0.1 (what EPANET's energy routine applies): the
             datasheet's statement about the allowed window x = 0.3..1.25 (station.py). Outside
             the window the parabola is no pump's efficiency: it reaches 0 at x = 2 while the head
             is still 30 m, so rho g Q H / eta would grow without bound there.
- shaft      from a power characteristic, affinity-scaled (P ~ s^3 at similar points, x fixed):
                 P(q, s) = s^3 P1(x) k(x_w, s_w)
             P1 is the full-speed power curve. In 0..1.25 it is the datasheet's
             rho g Q H / eta at s = 1, written P1 = rho g (450 m3/h) H(x) / (0.84 (2 - x)) so that
             it is finite at x = 0 (shut-off, 48.2 kW: 58 % of the 82.6 kW at BEP, against the
             30-60 % pump handbooks give for low specific speeds; nq = 24 here) and rises
             monotonically.
             Beyond x_e = 1.25 (the end of the curve the datasheet vouches for) Euler's equation
             governs: at a fixed speed the impeller's torque is linear in the flow (the outlet
             swirl falls linearly with the meridional velocity), so the absorbed power is a
             concave quadratic in the flow. P1 continues as that quadratic, value and slope
             continuous at x_e, its maximum at the pump's run-out x_ro = sqrt(H0 / c) / 450
             = 2.65 (zero head: all the impeller's work is lost inside the pump) -- the power
             rises and flattens toward run-out (datasheet pump: 99.8 kW at 1.25, 133 kW at 1.7,
             161 kW at run-out). Beyond run-out (negative head, Suter's energy-dissipation zone)
             the Euler power would fall and turn to turbine torque; P1 holds its run-out value,
             which never understates what the drive sees. k is the Sarbu-Borza factor
             eta(x_w) / eta'(x_w, s_w) of the pump's own full-speed efficiency, taken inside its
             range (x_w = x clamped to 0.3..1.25, s_w = s held at >= 0.5, where the correction
             would turn negative near shut-off). Inside the window this is exactly
             rho g Q H / eta' (EPANET's pump energy); everywhere it is finite, continuous and
             >= 0, and it rises with the flow (at reduced speed the window's Sarbu-Borza factor
             dips it by under 1 % just above x = 0.3, as EPANET's formula does).
- efficiency where needed, from the shaft power: eta = rho g Q H / P (0 at and beyond run-out).
- electric   P / (eta_motor(lambda) eta_vfd(lambda)), lambda = P / 110 kW, linear in the tables,
             held at the end values outside 0.1..1.0
- NPSHr      4.0 m s^2 max(0.6, x)^2
Sources: Euler's pump equation, losses and characteristics (Gulich, Centrifugal Pumps, ch. 3-4);
Suter's four-quadrant representation, P = beta alpha with beta = WB(theta)(alpha^2 + v^2), which
at positive speed is alpha^3 times a function of v / alpha: affinity scaling (Wylie & Streeter,
Fluid Transients in Systems, ch. 3; Thorley, Fluid Transients in Pipeline Systems); a pump
handbook's design example, shut-off power 44 % of the design-point power, "a typical result"
that rises with specific speed (civilengineeringhandbook.tk/centrifugal-pumps-3/10.html);
closed-valve torque 30-50 % of nominal (engineeringtoolbox.com, pumps-speed-torque); a power
characteristic scaled as P2 = r^3 P1(q2 / r), as the Modelica Buildings library's movers do
(lbl-srg/modelica-buildings#202).

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
w 60 s^2 at the similar point q = 450 fQ s). The impeller does the same work on the water: the
power curve P1 is the unworn pump's (its run-out too), the efficiency at the equivalent
full-speed point falls by H_worn / H (the lost head is heat), and the Sarbu-Borza factor is that
of the worn efficiency. A worn pump therefore gives less head and less efficiency at flow, the
same head at shut-off, and needs more speed (so more power) for a duty.
A deviated pump's P1 is the datasheet's scaled by fQ fH / f_eta, with x about its own BEP.
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
        "_loads",
        "_motor",
        "_vfd",
        "npsh_bep",
        "_x_lo",
        "_x_e",
        "_x_ro",
        "_s_lo",
        "_kw_per_m",
        "_p_e",
        "_slope_e",
        "_bend",
        "_p_ro",
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
        self._loads = params.load_points
        self._motor = params.motor_efficiency
        self._vfd = params.vfd_efficiency
        self.npsh_bep = params.npsh_bep_m
        # Power characteristic P1(x) at full speed (module docstring): the datasheet's up to x_e,
        # then Euler's quadratic with its maximum at run-out x_ro, then flat.
        self._x_lo, self._x_e = params.allowed_flow_ratio
        self._s_lo = params.allowed_speed[0]
        self._x_ro = math.sqrt(self.h0 / self.c_clean) / self.q_bep
        self._kw_per_m = self.rho_g * self.q_bep / 3.6e6 / self.eta_bep  # P1 = this * H / (2 - x)
        x_e = self._x_e
        cq2 = self.c_clean * self.q_bep * self.q_bep
        self._p_e = self._datasheet_kw(x_e)
        self._slope_e = (
            self._kw_per_m * (cq2 * x_e * x_e - 4.0 * cq2 * x_e + self.h0) / ((2.0 - x_e) ** 2)
        )
        self._bend = self._slope_e / (2.0 * (self._x_ro - x_e))
        self._p_ro = self._p_e + 0.5 * self._slope_e * (self._x_ro - x_e)

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

    # --- power and efficiency ----------------------------------------------------------------
    def _datasheet_kw(self, x: float) -> float:
        """rho g Q H / eta of the unworn pump at full speed, x = q / q_bep in 0..2 (exclusive)."""
        q = x * self.q_bep
        return self._kw_per_m * (self.h0 - self.c_clean * q * q) / (2.0 - x)

    def full_speed_kw(self, x: float) -> float:
        """P1(x): the shaft power at full speed and x = q / q_bep (the power characteristic)."""
        if x <= self._x_e:
            return self._datasheet_kw(x if x > 0.0 else 0.0)
        if x >= self._x_ro:
            return self._p_ro
        d = x - self._x_e
        return self._p_e + d * (self._slope_e - self._bend * d)

    def _full_speed_efficiency(self, x: float) -> float:
        """The datasheet's efficiency at full speed (with wear), for 0 < x < 2."""
        eta = self.eta_bep * x * (2.0 - x)
        if self.c != self.c_clean:  # worn: the lost head is dissipated inside the pump
            q = x * self.q_bep
            eta *= (self.h0 - self.c * q * q) / (self.h0 - self.c_clean * q * q)
        return eta

    def shaft_kw(self, q: float, s: float) -> float:
        """Shaft power (kW) at flow q and speed s: s^3 P1(q / s / q_bep) times the Sarbu-Borza
        factor of the nearest point of the datasheet's window (module docstring)."""
        if s <= 0.0:
            return 0.0
        x = q / s / self.q_bep
        power = s * s * s * self.full_speed_kw(x)
        if s == 1.0:
            return power
        x_w = self._x_lo if x < self._x_lo else (self._x_e if x > self._x_e else x)
        s_w = s if s > self._s_lo else self._s_lo
        eta = self._full_speed_efficiency(x_w)
        return power * eta / (1.0 - (1.0 - eta) * (1.0 / s_w) ** 0.1)

    def efficiency(self, q: float, s: float) -> float:
        """Hydraulic efficiency: water power over shaft power (0 at and beyond run-out)."""
        if s <= 0.0 or q <= 0.0:
            return 0.0
        water_kw = self.rho_g * (q / 3600.0) * self.head_m(q, s) / 1000.0
        return water_kw / self.shaft_kw(q, s) if water_kw > 0.0 else 0.0

    def drive_efficiency(self, shaft_kw: float) -> float:
        """Motor x VFD efficiency at this shaft load: each table linear between its load points,
        its end value beyond them (the tables share the load points: one search for both)."""
        load = shaft_kw / self.rated_kw
        xs, motor, vfd = self._loads, self._motor, self._vfd
        if load <= xs[0]:
            return motor[0] * vfd[0]
        for i in range(1, len(xs)):
            if load <= xs[i]:
                x0 = xs[i - 1]
                span = xs[i] - x0
                into = load - x0
                return (motor[i - 1] + (motor[i] - motor[i - 1]) * into / span) * (
                    vfd[i - 1] + (vfd[i] - vfd[i - 1]) * into / span
                )
        return motor[-1] * vfd[-1]

    def electrical_kw(self, q: float, s: float) -> float:
        shaft = self.shaft_kw(q, s)
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
