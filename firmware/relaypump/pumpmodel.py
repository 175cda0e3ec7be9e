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
"""

G_M_S2 = 9.81
EFFICIENCY_FLOOR = 0.05
# Motor and VFD efficiency against load lambda = shaft / rated (reference tables, fluids.pump).
_LOADS = (0.1, 0.2, 0.3, 0.5, 1.0)
_MOTOR = (0.829, 0.917, 0.950, 0.958, 0.958)
_VFD = (0.826, 0.927, 0.948, 0.96, 0.97)


def _interp(x, xs, ys):
    if x <= xs[0]:
        return ys[0]
    for i in range(1, len(xs)):
        if x <= xs[i]:
            x0 = xs[i - 1]
            return ys[i - 1] + (ys[i] - ys[i - 1]) * (x - x0) / (xs[i] - x0)
    return ys[len(ys) - 1]


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
        x = q / s / self.q_bep
        eta = self.eta_bep * (2.0 * x - x * x)
        if s != 1.0:
            eta = 1.0 - (1.0 - eta) * (1.0 / s) ** 0.1
        return eta if eta > EFFICIENCY_FLOOR else EFFICIENCY_FLOOR

    def shaft_kw(self, q, s, head_m):
        if s <= 0.0:
            return 0.0
        shaft = 0.0
        if q > 0.0 and head_m > 0.0:
            shaft = self.rho_g * q * head_m / (3.6e6 * self.efficiency(q, s))
        dead = self.rho_g * self.h0 * s * s * self.q_bep * s / (7.2e6 * self.eta_bep)
        return shaft if shaft > dead else dead

    def electrical_kw(self, q, s, head_m):
        shaft = self.shaft_kw(q, s, head_m)
        if shaft <= 0.0:
            return 0.0
        load = shaft / self.rated_kw
        return shaft / (_interp(load, _LOADS, _MOTOR) * _interp(load, _LOADS, _VFD))

    # --- staging helpers ---------------------------------------------------------------------
    def in_range(self, q, s, margin=0.0):
        """The allowed window, shrunk by `margin` (a fraction) on every side when margin > 0."""
        if s < self.s_min * (1.0 + margin) or s > self.s_max * (1.0 - margin):
            return False
        x = q / s / self.q_bep
        return self.x_min * (1.0 + margin) <= x <= self.x_max * (1.0 - margin)

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
        if s <= 0.0 or not self.in_range(q, s, margin):
            return -1.0
        return n * self.electrical_kw(q, s, head_m)

    def station_speed_pct(self, n, flow_m3h, head_m):
        """Common speed (%) n pumps need for flow_m3h against head_m (-1.0 if none)."""
        if n < 1 or head_m <= 0.0:
            return -1.0
        q = flow_m3h / n if flow_m3h > 0.0 else 0.0
        s = self.speed_for(q, head_m)
        return 100.0 * s if s > 0.0 else -1.0
