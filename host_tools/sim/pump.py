"""One centrifugal pump with its motor and VFD, as in the reference station.

Rules (reference figures, see station.py):
- head       H = H0 s^2 - c q^2                       (q per pump m3/h, s = speed / 1480 rpm)
- efficiency eta = 0.84 (2x - x^2), x = (q/s)/450; at reduced speed Sarbu-Borza
             eta' = 1 - (1 - eta)(1/s)^0.1 (the correction EPANET's energy routine applies)
- shaft      P = rho g Q H / eta', floored at the shut-off power the uncorrected parabola gives
             at q -> 0 (rho g H0 s^2 * 450 s / (2 * 0.84)): a dead-headed pump still burns power
- electric   P / (eta_motor(lambda) eta_vfd(lambda)), lambda = P / 110 kW, linear in the tables,
             held at the end values outside 0.1..1.0
- NPSHr      4.0 m s^2 max(0.6, x)^2
Pure float maths: this sits in the plant step.
"""

from __future__ import annotations

import math

from .station import REFERENCE, StationParams


def _interp(x: float, xs: tuple[float, ...], ys: tuple[float, ...]) -> float:
    if x <= xs[0]:
        return ys[0]
    for i in range(1, len(xs)):
        if x <= xs[i]:
            x0 = xs[i - 1]
            return ys[i - 1] + (ys[i] - ys[i - 1]) * (x - x0) / (xs[i] - x0)
    return ys[-1]


class PumpModel:
    """Curves of one pump type. Methods take the flow per pump (m3/h) and the speed ratio s."""

    __slots__ = (
        "params",
        "h0",
        "c",
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

    def __init__(self, params: StationParams = REFERENCE) -> None:
        self.params = params
        self.h0 = params.shutoff_head_m
        self.c = params.curve_coeff
        self.q_bep = params.bep_flow_m3h
        self.eta_bep = params.bep_efficiency
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
        """The reference's allowed operating window (0.3..1.25 x BEP flow, s 0.5..1.0)."""
        lo_s, hi_s = self.params.allowed_speed
        lo_x, hi_x = self.params.allowed_flow_ratio
        if not lo_s <= s <= hi_s:
            return False
        x = q / s / self.q_bep
        return lo_x <= x <= hi_x
