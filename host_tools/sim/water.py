"""Saturation pressure of water and the suction pressure limit of the reference.

- p_sat(T): IAPWS-IF97 region 4 saturation-pressure equation (valid 0.01..373.946 degC).
- suction limit (kPa abs) = max(p_sat + 50 kPa, p_sat + rho g max(1.3 NPSHr, NPSHr + 1 m)).
"""

from __future__ import annotations

import math

from .station import SimInputError

# IAPWS-IF97 region 4 coefficients n1..n10.
_N = (
    0.11670521452767e4,
    -0.72421316703206e6,
    -0.17073846940092e2,
    0.12020824702470e5,
    -0.32325550322333e7,
    0.14915108613530e2,
    -0.48232657361591e4,
    0.40511340542057e6,
    -0.23855557567849,
    0.65017534844798e3,
)


def saturation_pressure_kpa_abs(temp_c: float) -> float:
    """Vapour pressure of water at temp_c (kPa absolute)."""
    if not 0.01 <= temp_c <= 373.946:
        raise SimInputError(f"temperature {temp_c!r} degC is outside 0.01..373.946 degC")
    t = temp_c + 273.15
    n = _N
    theta = t + n[8] / (t - n[9])
    a = theta * theta + n[0] * theta + n[1]
    b = n[2] * theta * theta + n[3] * theta + n[4]
    c = n[5] * theta * theta + n[6] * theta + n[7]
    p_mpa = (2.0 * c / (-b + math.sqrt(b * b - 4.0 * a * c))) ** 4
    return p_mpa * 1000.0


def suction_limit_kpa_abs(p_sat_kpa_abs: float, npsh_required_m: float, kpa_per_m: float) -> float:
    """Lowest allowed suction pressure (kPa abs) for this vapour pressure and NPSH required."""
    npsh_margin_m = max(1.3 * npsh_required_m, npsh_required_m + 1.0)
    return p_sat_kpa_abs + max(50.0, kpa_per_m * npsh_margin_m)
