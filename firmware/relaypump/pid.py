"""PI(D) controller in position form with back-calculation, for a slew- and range-limited output.

Rules:
- u = kp e + I + D; I integrates kp e dt / ti; D = -kp td d(pv)/dt (on the measurement, so a
  setpoint step gives no kick), first-order filtered with td/8; td = 0 switches it off.
- Each step gets the window [lo, hi] the output may take this step (range, minimum speed and the
  slew limit, intersected by the caller). The output is clamped to it and the integrator is then
  set so that kp e + I + D equals the clamped output: the integrator never winds up, whatever
  limited the output, and a saturated output leaves saturation as soon as the error turns.
- Bumpless transfer: track(u, e) sets the integrator so that the next output continues from u
  with the new error e (a change of measured variable, of mode, of pump count).
No allocation beyond float results; no clock (dt given in seconds).
"""


class Pid:
    def __init__(self, kp, ti_s, td_s=0.0):
        self.kp = float(kp)
        self.ti_s = float(ti_s)
        self.td_s = float(td_s)
        self.integral = 0.0
        self.output = 0.0
        self._d = 0.0
        self._last_pv = 0.0
        self._have_pv = False
        self._dt_s = -1.0
        self._ki_dt = 0.0

    def track(self, output, error=0.0):
        """Continue from `output` with the present error: no jump on the next step."""
        self.output = output
        self.integral = output - self.kp * error
        self._d = 0.0
        self._have_pv = False

    def step(self, dt_s, error, pv, lo, hi):
        kp = self.kp
        if dt_s != self._dt_s:  # cached: a steady tick period builds no float for it
            self._dt_s = dt_s
            self._ki_dt = kp * dt_s / self.ti_s if self.ti_s > 0.0 and dt_s > 0.0 else 0.0
        p = kp * error
        integral = self.integral
        if self._ki_dt != 0.0:
            integral += self._ki_dt * error
        d = 0.0
        if self.td_s > 0.0 and dt_s > 0.0:
            if self._have_pv:
                raw = -kp * self.td_s * (pv - self._last_pv) / dt_s
                a = dt_s / (dt_s + self.td_s / 8.0)
                d = self._d + a * (raw - self._d)
            self._last_pv = pv
            self._have_pv = True
            self._d = d
            u = p + integral + d
        else:
            u = p + integral
        if u > hi:
            u = hi
        elif u < lo:
            u = lo
        else:
            self.integral = integral
            self.output = u
            return u
        self.integral = u - p - d if d != 0.0 else u - p  # back-calculation
        self.output = u
        return u
