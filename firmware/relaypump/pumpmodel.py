"""Pump curve and power model of the station's identical pumps (config "pump_model" + "speed").

Rules (station-reference.md; the simulator's plant uses the same figures):
- head        H = h0 s^2 - k q^2                 (q per pump m3/h, s = speed ratio, H in m)
- efficiency  eta = eta_bep (2x - x^2), x = (q/s)/q_bep; at s != 1 the Sarbu-Borza correction
              eta' = 1 - (1 - eta)(1/s)^0.1; floored at 0.05 (below it the correction is meaningless)
- shaft       P = rho g Q H / eta', at least the dead-head power rho g h0 s^2 (q_bep s)/(2 eta_bep)
- electrical  P / (eta_motor(lambda) eta_vfd(lambda)), lambda = P / rated_kw, linear in the
              tables below, held at the end values outside 0.1..1.0
- allowed     min_flow_ratio <= x <= max_flow_ratio and min_pct <= 100 s <= max_pct
Identical pumps share the flow equally at the optimum, so a count n at station flow Q and head H
runs each pump at q = Q/n and the speed the curve gives for (q, H).

Allocation: plain float maths on attributes; nothing but the float results themselves is built per
call (no lists, tuples or strings). Infeasible or meaningless inputs give -1.0, never an exception.
Floats are 16-byte heap objects on MicroPython, so station_kw (staging's count evaluation) builds
as few as it can without changing a single bit of any result: products of constants are taken
once (__init__, import), the window shrunk by a margin is kept for that margin, the flow ratio x
is shared by the window check and the efficiency, the motor and VFD tables share their segment,
and the dead-head power is computed only when the shaft power does not clear it at the next speed
of a grid above (_dead_kw is monotonic in s, rounding included: the same comparison result).
"""

G_M_S2 = 9.81
EFFICIENCY_FLOOR = 0.05
# Motor and VFD efficiency against load lambda = shaft / rated (reference tables, fluids.pump).
_LOADS = (0.1, 0.2, 0.3, 0.5, 1.0)
_MOTOR = (0.829, 0.917, 0.950, 0.958, 0.958)
_VFD = (0.826, 0.927, 0.948, 0.96, 0.97)
# Segment widths and rises of the tables (index i: from i - 1 to i), and the products held beyond
# the ends: the same numbers the linear interpolation computes, taken once.
_D_LOADS = tuple(_LOADS[i] - _LOADS[i - 1] if i else 1.0 for i in range(len(_LOADS)))
_D_MOTOR = tuple(_MOTOR[i] - _MOTOR[i - 1] if i else 0.0 for i in range(len(_MOTOR)))
_D_VFD = tuple(_VFD[i] - _VFD[i - 1] if i else 0.0 for i in range(len(_VFD)))
_DRIVE_LOW = _MOTOR[0] * _VFD[0]
_DRIVE_HIGH = _MOTOR[len(_MOTOR) - 1] * _VFD[len(_VFD) - 1]


def _drive_efficiency(load):
    """eta_motor(load) * eta_vfd(load), each linear in its table, held at the end values."""
    if load <= _LOADS[0]:
        return _DRIVE_LOW
    for i in range(1, len(_LOADS)):
        if load <= _LOADS[i]:
            d = load - _LOADS[i - 1]
            motor = _MOTOR[i - 1] + _D_MOTOR[i] * d / _D_LOADS[i]
            return motor * (_VFD[i - 1] + _D_VFD[i] * d / _D_LOADS[i])
    return _DRIVE_HIGH


class PumpModel:
    """Curves of one pump type; all methods take q per pump (m3/h), s as a ratio, H in m."""

    def __init__(self, config):
        pm = config["pump_model"]
        sp = config["speed"]
        self.h0 = float(pm["shutoff_head_m"])
        self.k = float(pm["curve_k"])
        self.q_bep = float(pm["bep_flow_m3h"])
        self.eta_bep = float(pm["bep_efficiency"])
        self.x_min = float(pm["min_flow_ratio"])
        self.x_max = float(pm["max_flow_ratio"])
        self.rated_kw = float(pm["rated_kw"])
        self.rho_g = float(pm["density_kg_m3"]) * G_M_S2  # N/m3 = Pa per m of head
        self.kpa_per_m = self.rho_g / 1000.0
        self.s_min = float(sp["min_pct"]) / 100.0
        self.s_max = float(sp["max_pct"]) / 100.0
        self._rho_g_h0 = self.rho_g * self.h0
        self._dead_div = 7.2e6 * self.eta_bep
        # the dead-head power at speeds 0.05 apart from s_max down to s_min (the window's speeds):
        # a bound for any speed below each
        grid = [self.s_max]
        s = self.s_max - 0.05
        while s >= self.s_min and len(grid) < 20:
            grid.append(s)
            s -= 0.05
        grid.reverse()
        self._grid_s = tuple(grid)
        self._grid_dead = tuple(self._dead_kw(g) for g in grid)
        # the window shrunk by the last nonzero margin asked for (staging always asks the same)
        self._margin = 0.0
        self._s_lo = self.s_min
        self._s_hi = self.s_max
        self._x_lo = self.x_min
        self._x_hi = self.x_max

    # --- hydraulics --------------------------------------------------------------------------
    def head_m(self, q, s):
        return self.h0 * s * s - self.k * q * q

    def speed_for(self, q, head_m):
        """Speed ratio at which one pump delivers q against head_m (-1.0 if head_m < 0)."""
        h = head_m + self.k * q * q
        if h <= 0.0:
            return -1.0
        return (h / self.h0) ** 0.5

    def cutoff_speed(self, head_m):
        """Speed below which a pump's check valve stays shut against head_m (delivers nothing)."""
        return (head_m / self.h0) ** 0.5 if head_m > 0.0 else 0.0

    # --- efficiency and power ----------------------------------------------------------------
    def efficiency(self, q, s):
        if s <= 0.0:
            return 0.0
        return self._efficiency(q / s / self.q_bep, s)

    def _efficiency(self, x, s):
        """Efficiency at flow ratio x = (q/s)/q_bep and speed s > 0."""
        eta = self.eta_bep * (2.0 * x - x * x)
        if s != 1.0:
            eta = 1.0 - (1.0 - eta) * (1.0 / s) ** 0.1
        return eta if eta > EFFICIENCY_FLOOR else EFFICIENCY_FLOOR

    def _dead_kw(self, s):
        return self._rho_g_h0 * s * s * self.q_bep * s / self._dead_div

    def shaft_kw(self, q, s, head_m):
        if s <= 0.0:
            return 0.0
        return self._shaft_kw(q, s, head_m, q / s / self.q_bep)

    def _shaft_kw(self, q, s, head_m, x):
        """shaft_kw at s > 0 with its flow ratio x given."""
        shaft = 0.0
        if q > 0.0 and head_m > 0.0:
            shaft = self.rho_g * q * head_m / (3.6e6 * self._efficiency(x, s))
            grid = self._grid_s
            for i in range(len(grid)):
                if s <= grid[i]:  # dead(s) <= dead(grid[i]): shaft clears it too
                    if shaft > self._grid_dead[i]:
                        return shaft
                    break
        dead = self._dead_kw(s)
        return shaft if shaft > dead else dead

    def electrical_kw(self, q, s, head_m):
        return self._electrical_kw(self.shaft_kw(q, s, head_m))

    def _electrical_kw(self, shaft):
        if shaft <= 0.0:
            return 0.0
        return shaft / _drive_efficiency(shaft / self.rated_kw)

    # --- staging helpers ---------------------------------------------------------------------
    def in_range(self, q, s, margin=0.0):
        """The allowed window, shrunk by `margin` (a fraction) on every side when margin > 0."""
        return self._window_x(q, s, margin) is not None

    def use_margin(self, margin):
        """Keep the window shrunk by margin > 0 (staging calls it once: its margin's window is then
        built at start-up, not on the first count evaluation)."""
        self._margin = margin
        self._s_lo = self.s_min * (1.0 + margin)
        self._s_hi = self.s_max * (1.0 - margin)
        self._x_lo = self.x_min * (1.0 + margin)
        self._x_hi = self.x_max * (1.0 - margin)

    def _window_x(self, q, s, margin):
        """The flow ratio x = (q/s)/q_bep when (q, s) lies inside the window shrunk by margin,
        else None."""
        if margin == 0.0:  # x * (1.0 + 0.0) is x: the plain window
            if s < self.s_min or s > self.s_max:
                return None
            x = q / s / self.q_bep
            return x if self.x_min <= x <= self.x_max else None
        if margin != self._margin:
            self.use_margin(margin)
        if s < self._s_lo or s > self._s_hi:
            return None
        x = q / s / self.q_bep
        return x if self._x_lo <= x <= self._x_hi else None

    def range_violation(self, q, s):
        """How far (relative) the point lies outside the allowed window; 0.0 inside it."""
        if s <= 0.0:
            return 1e9
        v = 0.0
        if s < self.s_min:
            v += (self.s_min - s) / self.s_min
        elif s > self.s_max:
            v += (s - self.s_max) / self.s_max
        x = q / s / self.q_bep
        if x < self.x_min:
            v += (self.x_min - x) / self.x_min
        elif x > self.x_max:
            v += (x - self.x_max) / self.x_max
        return v

    def station_kw(self, n, flow_m3h, head_m, margin=0.0):
        """Electrical kW of n pumps sharing flow_m3h equally against head_m; -1.0 if that point
        lies outside the allowed window (shrunk by margin) or n < 1."""
        if n < 1 or flow_m3h <= 0.0 or head_m <= 0.0:
            return -1.0
        q = flow_m3h / n
        s = self.speed_for(q, head_m)
        if s <= 0.0:
            return -1.0
        x = self._window_x(q, s, margin)
        if x is None:
            return -1.0
        kw = self._electrical_kw(self._shaft_kw(q, s, head_m, x))
        return kw if n == 1 else n * kw  # 1 * kw would be a new float of the same value

    def station_speed_pct(self, n, flow_m3h, head_m):
        """Common speed (%) n pumps need for flow_m3h against head_m (-1.0 if none)."""
        if n < 1 or head_m <= 0.0:
            return -1.0
        q = flow_m3h / n if flow_m3h > 0.0 else 0.0
        s = self.speed_for(q, head_m)
        return 100.0 * s if s > 0.0 else -1.0
