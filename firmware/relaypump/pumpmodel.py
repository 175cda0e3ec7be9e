"""Pump curve and power model of the station's identical pumps (config "pump_model" + "speed").

Rules (station-reference.md; the simulator's plant uses the same figures):
- head        H = h0 s^2 - k q^2                 (q per pump m3/h, s = speed ratio, H in m)
- efficiency  eta = eta_bep (2x - x^2), x = (q/s)/q_bep; at s != 1 the Sarbu-Borza correction
              eta' = 1 - (1 - eta)(1/s)^0.1; floored at 0.05 (below it the correction is meaningless)
- shaft       P = rho g Q H / eta', at least the dead-head power rho g h0 s^2 (q_bep s)/(2 eta_bep)
- electrical  P / (eta_motor(lambda) eta_vfd(lambda)), lambda = P / rated_kw, linear in the
              tables below, held at the end values outside 0.1..1.0
- allowed     min_flow_ratio <= x <= max_flow_ratio and min_pct <= 100 s <= max_pct; a pump
              running alone (n = 1 in the station_* helpers) up to runout_flow_ratio, the end of
              its datasheet curve: beyond the preferred window, but one pump there is often
              cheaper than two in it (350..440 m3/h on the reference pumps, ~10 %)
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

Calibration (``PumpModel.calibrate``, fitted by ``Calibration``): the real pumps are not the
datasheet (ISO 9906 grade 2B: head +-5 %, efficiency down to -5 %; wear lowers both). A head
factor fh scales the whole curve (H = fh (h0 s^2 - k q^2)) and an efficiency factor fe the pump's
efficiency before the speed correction (eta = fe eta_bep (2x - x^2)). ``Calibration`` fits both per
pump from what the station measures, slowly and within bounds, and gives the model the mean of the
pumps fitted so far (staging assumes identical pumps; the mean is what an equal split sees).
"""

from micropython import const

from .codes import (
    EVENT_PUMP_EFFICIENCY_DEVIATION,
    EVENT_PUMP_HEAD_DEVIATION,
    SEVERITY_NOTICE,
    SEVERITY_WARNING,
)
from .snapshot import DRIVE_RUNNING

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


def rated_input_kw(rated_kw):
    """Electrical input (kW) of a pump's VFD and motor while the motor gives its rated shaft power
    rated_kw (the nameplate's output): rated_kw over eta_motor eta_vfd at full load (110 kW ->
    118.4 kW). The drives' reported power is what the model calls electrical: compare it with
    this, never with rated_kw itself (a shaft power)."""
    return rated_kw / _DRIVE_HIGH


class PumpModel:
    """Curves of one pump type; all methods take q per pump (m3/h), s as a ratio, H in m."""

    def __init__(self, config):
        pm = config["pump_model"]
        sp = config["speed"]
        self.datasheet_h0 = self.h0 = float(pm["shutoff_head_m"])
        self.datasheet_k = self.k = float(pm["curve_k"])
        self.q_bep = float(pm["bep_flow_m3h"])
        self.datasheet_eta_bep = self.eta_bep = float(pm["bep_efficiency"])
        self.head_factor = 1.0  # calibration applied (1.0: the datasheet)
        self.efficiency_factor = 1.0
        self.fit_hold = False  # plausibility.py: the readings disagree, no calibration from them
        self.x_min = float(pm["min_flow_ratio"])
        self.x_max = float(pm["max_flow_ratio"])
        self.x_runout = float(pm.get("runout_flow_ratio", self.x_max))
        self.rated_kw = float(pm["rated_kw"])
        self.rho_g = float(pm["density_kg_m3"]) * G_M_S2  # N/m3 = Pa per m of head
        self.kpa_per_m = self.rho_g / 1000.0
        self.s_min = float(sp["min_pct"]) / 100.0
        self.s_max = float(sp["max_pct"]) / 100.0
        # the dead-head power at speeds 0.05 apart from s_max down to s_min (the window's speeds):
        # a bound for any speed below each
        grid = [self.s_max]
        s = self.s_max - 0.05
        while s >= self.s_min and len(grid) < 20:
            grid.append(s)
            s -= 0.05
        grid.reverse()
        self._grid_s = tuple(grid)
        self._grid_cubes = tuple(g * g * g for g in grid)  # as _dead_kw takes them
        self._grid_dead = [0.0] * len(grid)  # filled in place by _derive
        self._derive()
        # the window shrunk by the last nonzero margin asked for (staging always asks the same)
        self._margin = 0.0
        self._s_lo = self.s_min
        self._s_hi = self.s_max
        self._x_lo = self.x_min
        self._x_hi = self.x_max
        self._x_run_hi = self.x_runout

    def _derive(self):
        """The constants taken from h0 and eta_bep (a calibration rebuilds them: 12 floats)."""
        # dead-head shaft kW = rho g h0 s^2 (q_bep s) / (3.6e6 * 2 eta_bep) = scale * s^3
        self._dead_scale = self.rho_g * self.h0 * self.q_bep / (7.2e6 * self.eta_bep)
        scale = self._dead_scale
        cubes = self._grid_cubes
        dead = self._grid_dead
        for k in range(len(cubes)):
            dead[k] = scale * cubes[k]

    def calibrate(self, head_factor, efficiency_factor):
        """Use the datasheet curves scaled by these factors (see the module's rules)."""
        self.head_factor = head_factor
        self.efficiency_factor = efficiency_factor
        self.h0 = self.datasheet_h0 * head_factor
        self.k = self.datasheet_k * head_factor
        self.eta_bep = self.datasheet_eta_bep * efficiency_factor
        self._derive()

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
        return self._dead_scale * (s * s * s)

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
        self._x_run_hi = self.x_runout * (1.0 - margin)

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
        shaft = self.station_shaft_kw(n, flow_m3h, head_m, margin)
        return self.station_kw_of(n, shaft) if shaft > 0.0 else shaft

    def station_shaft_kw(self, n, flow_m3h, head_m, margin=0.0):
        """station_kw in two halves (each about half its floats, for staging's spread count
        evaluation): this one gives each pump's shaft kW (> 0) or -1.0 as station_kw would,
        station_kw_of(n, shaft) the electrical kW of the n pumps."""
        if n < 1 or flow_m3h <= 0.0 or head_m <= 0.0:
            return -1.0
        q = flow_m3h / n
        s = self.speed_for(q, head_m)
        if s <= 0.0:
            return -1.0
        x = self._window_x(q, s, margin)
        if x is None:
            if n != 1:
                return -1.0
            x = self._alone_x(q, s, margin)
            if x is None:
                return -1.0
        return self._shaft_kw(q, s, head_m, x)

    def _alone_x(self, q, s, margin):
        """x of a pump running alone beyond the window's top, up to its run-out limit (shrunk
        by margin), inside the speed window; else None."""
        if self.x_runout <= self.x_max:
            return None
        if margin != 0.0 and margin != self._margin:
            self.use_margin(margin)
        if margin == 0.0:
            if s < self.s_min or s > self.s_max:
                return None
            x = q / s / self.q_bep
            return x if self.x_max < x <= self.x_runout else None
        if s < self._s_lo or s > self._s_hi:
            return None
        x = q / s / self.q_bep
        return x if self._x_hi < x <= self._x_run_hi else None

    def station_kw_of(self, n, shaft_kw):
        kw = self._electrical_kw(shaft_kw)
        return kw if n == 1 else n * kw  # 1 * kw would be a new float of the same value

    def station_speed_pct(self, n, flow_m3h, head_m):
        """Common speed (%) n pumps need for flow_m3h against head_m (-1.0 if none)."""
        if n < 1 or head_m <= 0.0:
            return -1.0
        q = flow_m3h / n if flow_m3h > 0.0 else 0.0
        s = self.speed_for(q, head_m)
        return 100.0 * s if s > 0.0 else -1.0


# Shaft load from the electrical input load p = input / rated: the tables are in shaft load l, so
# on table segment i (l0 = _LOADS[i - 1], motor m0 + a u, VFD v0 + b u, u = l - l0) the load solves
# l = p (m0 + a u)(v0 + b u), i.e. p a b u^2 + (p (m0 b + v0 a) - 1) u + p m0 v0 - l0 = 0, whose
# root in the segment is u = 2 C / (-B + sqrt(B^2 - 4 A C)) (B < 0; A = 0 on a flat segment).
# Per segment: the input load at its top, then (l0, 2 a b, m0 b + v0 a, 2 m0 v0, 2 l0), taken once
# (the doubled ones give 2 C and 4 A C = 2 a b p 2 C with one product less at run time).
_INPUT_TOP = tuple(_LOADS[i] / (_MOTOR[i] * _VFD[i]) for i in range(len(_LOADS)))
_SEGMENTS = tuple(
    (
        _LOADS[i - 1],
        2.0 * _D_MOTOR[i] * _D_VFD[i] / (_D_LOADS[i] * _D_LOADS[i]),
        (_MOTOR[i - 1] * _D_VFD[i] + _VFD[i - 1] * _D_MOTOR[i]) / _D_LOADS[i],
        2.0 * _MOTOR[i - 1] * _VFD[i - 1],
        2.0 * _LOADS[i - 1],
    )
    if i
    else (0.0, 0.0, 0.0, 0.0, 0.0)  # below the first load: not a segment (held at _DRIVE_LOW)
    for i in range(len(_LOADS))
)


def _shaft_load(p):
    """Shaft load (shaft / rated) of a drive taking p = input / rated: the exact inverse of
    shaft -> shaft / _drive_efficiency(shaft / rated)."""
    if p <= _INPUT_TOP[0]:
        return p * _DRIVE_LOW
    for i in range(1, len(_LOADS)):
        if p <= _INPUT_TOP[i]:
            l0, ab2, c1, c0_2, l0_2 = _SEGMENTS[i]
            b = p * c1 - 1.0
            c2 = p * c0_2 - l0_2
            return l0 + c2 / ((b * b - p * ab2 * c2) ** 0.5 - b)
    return p * _DRIVE_HIGH


# Calibration bounds and pace. A pump outside these bounds is not one the model can stand for: the
# factor stops at the bound (and its event says so).
HEAD_FACTOR_MIN = 0.85
HEAD_FACTOR_MAX = 1.10
EFFICIENCY_FACTOR_MIN = 0.80
EFFICIENCY_FACTOR_MAX = 1.05
CALIBRATION_PERIOD_TICKS = 15  # each pump is looked at once every this many ticks
_GAIN = 1.0 / 48.0  # first-order filter per observation: time constant ~48 observations
_MAX_STEP = 0.004  # most a factor moves per observation (garbage moves it little)
_STEADY_OBSERVATIONS = const(3)  # speed within _STEADY_PCT this many looks (30-45 s at 1 s)
_STEADY_PCT = 0.5
_EQUAL_SPEED_PCT = 0.5  # pumps sharing the flow: speeds this close count as equal
_EQUAL_HEAD = 0.02  # fitted head factors this close: pumps at one speed split the flow equally
_EQUAL_POWER = 1.03  # drive powers within 3 %: pumps at one speed share the flow equally
_MIN_SAMPLES = const(6)  # a pump's factors join the model's mean after this many accepted looks
_APPLY_STEP = 0.002  # the model is rebuilt when its mean factor moved this much
_REPORT_STEP = 0.02  # an event when a pump's factor moved this far from the last one reported
_WARN_DEVIATION = 0.05  # ... a warning from 5 % off the datasheet on
# What one tick does for a pump (phase = 4 pump + step); after the last pump's, the model's update.
# (const: private names folded into the code, none in the module's dict in RAM)
_POINT = const(0)
_HEAD = const(1)
_SHAFT = const(2)
_EFFICIENCY = const(3)
_STEPS = const(4)
# The steady point of a pump's period: group, s, q, head, x, 2x - x^2, s^0.1, shaft kW.
_GROUP = const(0)
_S = const(1)
_Q = const(2)
_HEAD_M = const(3)
_X = const(4)
_PARABOLA = const(5)
_S_POW = const(6)
_SHAFT_KW = const(7)


def _bounded(value, step, lo, hi):
    """value + step with the step limited to +-_MAX_STEP and the result to lo..hi."""
    if step > _MAX_STEP:
        step = _MAX_STEP
    elif step < -_MAX_STEP:
        step = -_MAX_STEP
    value += step
    if value < lo:
        return lo
    if value > hi:
        return hi
    return value


class Calibration:
    """Online fit of each pump's head and efficiency factors (the model's rules) from the station's
    measurements, and the model kept at the mean of the fitted pumps.

    Rules:
    - No observation while ``model.fit_hold`` (plausibility.py: the pressures, flow and remote DP
      disagree, or no remote DP to tell): a drifting transmitter is not the pumps' curve.
    - Observations are taken only in steady state: every measurement GOOD, the bypass closed,
      every drive online, the pump running with its speed within 0.5 % over three looks
      (CALIBRATION_PERIOD_TICKS apart), at 50 % speed or more and a flow ratio x of 0.4..1.3.
    - Head, measured as (discharge - suction) / (rho g): a pump running alone gives its own
      factor H / (h0 s^2 - k q^2) at q = station flow. Pumps running together at equal speeds
      (within 0.5 %) whose head factors fitted alone lie within 2 % of each other (then they split
      the flow equally; pumps that differ more split it so unequally near shut-off that the group
      says little) give the factor of the group at q = flow / n; a pump seen alone 6 times or more
      is then moved by the group's error against the mean of the running pumps (the differences
      seen alone are kept), one never seen alone towards the group's factor.
    - Efficiency, from the pump's own drive power (electrical -> shaft by the motor and VFD
      tables, inverted exactly): eta = rho g q H / shaft, the speed correction undone, over
      eta_bep (2x - x^2); a pump alone, or a group as above whose drives also draw their power
      within 3 % of each other (pumps that differ split the flow unequally: an equal share
      credits the weak pump with the strong one's flow; such a group gives no efficiency).
    - An observation outside 0.7..1.25 (head) or 0.6..1.2 (efficiency) is refused as garbage;
      one accepted moves the factor by 1/48 of its error, at most 0.004, and the factor stays
      inside HEAD_FACTOR_MIN..MAX / EFFICIENCY_FACTOR_MIN..MAX. NaN and inf fail every check.
    - ``head_factor[i]`` / ``efficiency_factor[i]`` (public, 1.0 = datasheet) and an event
      (PUMP_HEAD_DEVIATION / PUMP_EFFICIENCY_DEVIATION, subject pump number, value the deviation
      in 0.1 %) each time a factor moved 2 % from the value last reported: NOTICE, WARNING from
      5 % off on.
    - The model gets the mean factors of the pumps with at least 6 accepted observations each
      (rebuilt when the mean moved by 0.2 %).
    Per tick, one step of one pump (its steady point; its head; its shaft power; its efficiency)
    or of the model's update (the mean factors; the model rebuilt with them): in the VM at most
    18 floats (288 B); none on a busy tick, whose step waits for the next one.
    """

    def __init__(self, model, pump_count, events=None):
        self.model = model
        self.events = events
        n = pump_count
        self.pump_count = n
        self.head_factor = [1.0] * n
        self.efficiency_factor = [1.0] * n
        self.head_samples = [0] * n
        self.efficiency_samples = [0] * n
        self.alone_samples = [0] * n  # head observations of the pump running alone
        self._reported_head = [1.0] * n
        self._reported_efficiency = [1.0] * n
        self._last_speed = [0.0] * n
        self._steady = bytearray(n)
        self._point = [[0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0] for _ in range(n)]
        self._phase = 0
        self._period = CALIBRATION_PERIOD_TICKS
        if self._period < _STEPS * n + 2:
            self._period = _STEPS * n + 2
        self._new_head = 0.0  # the model's mean factors when they moved (0.0: not to rebuild)
        self._new_efficiency = 0.0
        self._rated_kw = model.rated_kw
        self._q_bep = model.q_bep
        self._power_lo = 0.05 * model.rated_kw  # drive power a pump's efficiency is read from
        self._power_hi = 2.0 * model.rated_kw
        self._kw_per_m4 = model.rho_g / 3.6e6  # hydraulic kW per (m3/h * m)
        self._eta_bep = model.datasheet_eta_bep

    def update(self, now_ms, snap, kpa_per_m, busy=False):
        """One tick's share of the work (call every control tick); busy: this tick already
        allocates elsewhere (staging evaluates a count), the share waits for the next one."""
        if busy:
            return
        phase = self._phase
        self._phase = phase + 1 if phase + 1 < self._period else 0
        i = phase // _STEPS
        if i >= self.pump_count:
            if phase == _STEPS * self.pump_count:
                self._means()
            elif self._new_head > 0.0:  # the next tick: the model rebuilt (its own 18 floats)
                self.model.calibrate(self._new_head, self._new_efficiency)
                self._new_head = 0.0
            return
        step = phase - i * _STEPS
        point = self._point[i]
        if step == _POINT:
            point[_GROUP] = 0
            self._look(i, point, snap, kpa_per_m)
        elif not point[_GROUP] or self._group(i, snap) != point[_GROUP]:
            return  # no steady point this period, or the pumps changed since
        elif step == _HEAD:
            self._head(i, point, snap, now_ms)
        elif step == _SHAFT:
            self._shaft(i, point, snap)
        elif point[_SHAFT_KW] > 0.0:
            self._efficiency(i, point, now_ms)
            point[_SHAFT_KW] = 0.0

    def _look(self, i, point, snap, kpa_per_m):
        """The pump's steady point, if it has one (group stays 0 when not)."""
        p = snap.pumps[i]
        if not (p.online and p.state == DRIVE_RUNNING):
            self._steady[i] = 0
            return
        speed = p.speed_pct
        last = self._last_speed[i]
        self._last_speed[i] = speed
        if -_STEADY_PCT < speed - last < _STEADY_PCT:
            if self._steady[i] < 255:
                self._steady[i] += 1
        else:
            self._steady[i] = 0
        if self._steady[i] < _STEADY_OBSERVATIONS:
            return
        group = self._group(i, snap)
        if group < 1:
            return
        flow = snap.flow_m3h
        dis = snap.discharge_kpa
        suc = snap.suction_kpa
        if flow.quality or dis.quality or suc.quality or snap.bypass_open.value > 0.5:
            return  # GOOD is 0: anything held, substituted or bad is no observation
        if self.model.fit_hold:
            return  # the pressures, flow and remote DP disagree: which one is right is unknown
        s = speed / 100.0
        q = flow.value / group if group > 1 else flow.value
        head = (dis.value - suc.value) / kpa_per_m
        if not (s >= 0.5 and head > 0.0):
            return
        x = q / s / self._q_bep
        if not 0.4 <= x <= 1.3:
            return
        point[_GROUP] = group
        point[_S] = s
        point[_Q] = q
        point[_HEAD_M] = head
        point[_X] = x
        point[_PARABOLA] = x * (2.0 - x)
        point[_S_POW] = s**0.1
        point[_SHAFT_KW] = 0.0

    def _group(self, i, snap):
        """Pumps running with pump i at its speed (0: not separable)."""
        pumps = snap.pumps
        speed = pumps[i].speed_pct
        count = 0
        for j in range(self.pump_count):
            pj = pumps[j]
            if not pj.online:
                return 0  # a lost drive may be running: its share is unknown
            if pj.state != DRIVE_RUNNING:
                continue
            if j != i and not -_EQUAL_SPEED_PCT < pj.speed_pct - speed < _EQUAL_SPEED_PCT:
                return 0
            count += 1
        return count

    def _alike(self, snap):
        """The running pumps' head factors fitted alone lie within _EQUAL_HEAD of each other (a
        pump never seen alone is taken as the group): at one speed they split the flow (nearly)
        equally."""
        pumps = snap.pumps
        factors = self.head_factor
        lo = hi = 0.0
        for j in range(self.pump_count):
            if pumps[j].state == DRIVE_RUNNING and self.alone_samples[j] >= _MIN_SAMPLES:
                f = factors[j]
                if hi == 0.0:
                    lo = hi = f
                elif f < lo:
                    lo = f
                elif f > hi:
                    hi = f
        return hi - lo < _EQUAL_HEAD

    def _equal_power(self, snap):
        """The running pumps draw their drives' power within _EQUAL_POWER of each other: at one
        speed, pumps that differ (a worn one passes less flow and draws less) split the flow
        unequally, and an equal share would credit the weak pump with the strong one's flow
        (opposite efficiency errors on the two, 10 % and more)."""
        pumps = snap.pumps
        lo = hi = pumps[0].power_kw  # (placeholders: the first running pump sets both)
        seen = False
        for j in range(self.pump_count):
            if pumps[j].state == DRIVE_RUNNING:
                w = pumps[j].power_kw
                if not seen:
                    lo = hi = w
                    seen = True
                elif w < lo:
                    lo = w
                elif w > hi:
                    hi = w
        return seen and hi <= lo * _EQUAL_POWER

    def _head(self, i, point, snap, now_ms):
        model = self.model
        s = point[_S]
        q = point[_Q]
        s2 = model.datasheet_h0 * s * s
        curve = s2 - model.datasheet_k * q * q
        if not curve > 0.2 * s2:
            return
        seen = point[_HEAD_M] / curve
        if not 0.7 <= seen <= 1.25:
            return
        factors = self.head_factor
        group = point[_GROUP]
        if group == 1:
            error = seen - factors[i]
            self.alone_samples[i] += 1
        elif not self._alike(snap):
            return
        elif self.alone_samples[i] < _MIN_SAMPLES:  # never seen alone: taken as the group
            error = seen - factors[i]
        else:  # the group's error against the running pumps' mean
            total = 0.0
            pumps = snap.pumps
            for j in range(self.pump_count):
                if pumps[j].state == DRIVE_RUNNING:
                    total += factors[j]
            error = seen - total / group
        factors[i] = _bounded(factors[i], error * _GAIN, HEAD_FACTOR_MIN, HEAD_FACTOR_MAX)
        self.head_samples[i] += 1
        self._report(i, factors, self._reported_head, EVENT_PUMP_HEAD_DEVIATION, now_ms)

    def _shaft(self, i, point, snap):
        """The pump's shaft power from its drive's input power (0.0: none to judge by)."""
        power_kw = snap.pumps[i].power_kw
        if not self._power_lo < power_kw < self._power_hi:
            return
        if point[_GROUP] > 1 and not (self._alike(snap) and self._equal_power(snap)):
            return  # the flow's split is unknown: no pump's efficiency from an equal share
        rated = self._rated_kw
        point[_SHAFT_KW] = _shaft_load(power_kw / rated) * rated

    def _efficiency(self, i, point, now_ms):
        eta = self._kw_per_m4 * point[_Q] * point[_HEAD_M] / point[_SHAFT_KW]
        if point[_S] < 1.0:  # undo the speed correction: eta = 1 - (1 - eta_1)(1/s)^0.1
            eta = 1.0 - (1.0 - eta) * point[_S_POW]
        seen = eta / (self._eta_bep * point[_PARABOLA])
        if not 0.6 <= seen <= 1.2:
            return
        factors = self.efficiency_factor
        factors[i] = _bounded(
            factors[i], (seen - factors[i]) * _GAIN, EFFICIENCY_FACTOR_MIN, EFFICIENCY_FACTOR_MAX
        )
        self.efficiency_samples[i] += 1
        self._report(i, factors, self._reported_efficiency, EVENT_PUMP_EFFICIENCY_DEVIATION, now_ms)

    def _report(self, i, factors, reported, code, now_ms):
        f = factors[i]
        if -_REPORT_STEP < f - reported[i] < _REPORT_STEP:
            return
        reported[i] = f
        if self.events is not None:
            off = f - 1.0
            severity = SEVERITY_NOTICE
            if not -_WARN_DEVIATION < off < _WARN_DEVIATION:
                severity = SEVERITY_WARNING
            value = int(off * 1000.0 + (0.5 if off > 0 else -0.5))
            self.events.push(code, severity, i + 1, value, now_ms)

    def _means(self):
        """The mean factors of the pumps fitted long enough, kept for the model when they
        moved."""
        head = 0.0
        eff = 0.0
        nh = 0
        ne = 0
        for i in range(self.pump_count):
            if self.head_samples[i] >= _MIN_SAMPLES:
                head += self.head_factor[i]
                nh += 1
            if self.efficiency_samples[i] >= _MIN_SAMPLES:
                eff += self.efficiency_factor[i]
                ne += 1
        if not nh and not ne:
            return
        model = self.model
        head = head / nh if nh else model.head_factor
        eff = eff / ne if ne else model.efficiency_factor
        if (
            -_APPLY_STEP < head - model.head_factor < _APPLY_STEP
            and -_APPLY_STEP < eff - model.efficiency_factor < _APPLY_STEP
        ):
            return
        self._new_head = head
        self._new_efficiency = eff
