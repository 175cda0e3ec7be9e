"""The remote differential-pressure setpoint (config "setpoint") and its discharge equivalent.

Rules:
- Target by mode: "fixed" -> dp_kpa; "flow" -> flow_curve(flow); "outdoor" -> outdoor_curve(T_out).
  Curves are piecewise linear [[x, y], ...] with x increasing, held flat beyond their ends. A curve
  whose input is not usable (quality BAD) keeps its last target.
- Every target is clamped to the local envelope min_kpa..max_kpa, and the value the controller
  uses moves towards it at ramp_kpa_per_s at most (a remote change, a mode change, a curve that
  moves); the first update after start takes the target at once.
- set_remote(kpa): a remote operator's number. It switches to the "fixed" mode with that value
  clamped to the envelope and ramped. Returns ACK_OK when it lay inside the envelope and
  ACK_OUT_OF_ENVELOPE when it was clamped (the clamped value IS applied: the station goes as far
  as the local envelope allows; the ack tells the control room it did not get its number);
  ACK_MALFORMED for a value that is not a finite number (nothing changes).
- Discharge fallback (while the remote DP is not usable): the discharge pressure that gives the
  DP setpoint through the system curve, suction + dp + rho g * network_loss_m_per_m3h2 * Q^2
  (reference: H = 12 m + 6.72e-5 Q^2), when suction and flow are usable; otherwise the fixed
  discharge_fallback_kpa.
Time is injected (now_ms, wrap-safe differences); no allocation beyond float results.
"""

from micropython import const

from .codes import ACK_MALFORMED, ACK_OK, ACK_OUT_OF_ENVELOPE
from .snapshot import BAD
from .ticks import ticks_diff

SETPOINT_FIXED = const(0)
SETPOINT_FLOW = const(1)
SETPOINT_OUTDOOR = const(2)
MODE_NAMES = ("fixed", "flow", "outdoor")
DEFAULT_NETWORK_LOSS_M_PER_M3H2 = 6.72e-5  # reference system curve


def _curve(points, flat_kpa):
    if not points:  # no curve configured (validated config leaves it out): flat at dp_kpa
        return (0.0, 1.0), (flat_kpa, flat_kpa)
    xs = tuple(float(p[0]) for p in points)
    ys = tuple(float(p[1]) for p in points)
    return xs, ys


def interp(x, xs, ys):
    """Piecewise linear through (xs, ys), flat beyond the ends."""
    if x <= xs[0]:
        return ys[0]
    n = len(xs)
    for i in range(1, n):
        if x <= xs[i]:
            x0 = xs[i - 1]
            return ys[i - 1] + (ys[i] - ys[i - 1]) * (x - x0) / (xs[i] - x0)
    return ys[n - 1]


class Setpoint:
    def __init__(self, config):
        sp = config["setpoint"]
        self.min_kpa = float(sp["min_kpa"])
        self.max_kpa = float(sp["max_kpa"])
        self.ramp_kpa_per_s = float(sp["ramp_kpa_per_s"])
        self.fixed_kpa = self.clamp(float(sp["dp_kpa"]))
        self.has_curve = ("flow_curve" in sp, "outdoor_curve" in sp)
        self.flow_xs, self.flow_ys = _curve(sp.get("flow_curve"), self.fixed_kpa)
        self.outdoor_xs, self.outdoor_ys = _curve(sp.get("outdoor_curve"), self.fixed_kpa)
        self.discharge_fallback_kpa = float(sp["discharge_fallback_kpa"])
        density = float(config["pump_model"]["density_kg_m3"])
        loss_m = float(sp.get("network_loss_m_per_m3h2", DEFAULT_NETWORK_LOSS_M_PER_M3H2))
        self.loss_kpa = loss_m * density * 9.81 / 1000.0  # kPa per (m3/h)^2
        self.mode = MODE_NAMES.index(sp["mode"])
        self.target_kpa = self.fixed_kpa
        self.value_kpa = self.fixed_kpa
        self._started = False
        self._last_ms = 0

    def clamp(self, kpa):
        if kpa < self.min_kpa:
            return self.min_kpa
        if kpa > self.max_kpa:
            return self.max_kpa
        return kpa

    # --- commands (rare: allocation does not matter) -------------------------------------------
    def set_remote(self, kpa):
        try:
            kpa = float(kpa)
        except (TypeError, ValueError):
            return ACK_MALFORMED
        if kpa != kpa or kpa in (float("inf"), float("-inf")):
            return ACK_MALFORMED
        clamped = self.clamp(kpa)
        self.fixed_kpa = clamped
        self.mode = SETPOINT_FIXED
        return ACK_OK if clamped == kpa else ACK_OUT_OF_ENVELOPE

    def set_mode(self, name):
        """Select "fixed", "flow" or "outdoor"; False (nothing changes) for another name or a
        curve that is not configured."""
        if name not in MODE_NAMES:
            return False
        if name != "fixed" and not self.has_curve[MODE_NAMES.index(name) - 1]:
            return False
        self.mode = MODE_NAMES.index(name)
        return True

    # --- per tick ------------------------------------------------------------------------------
    def update(self, now_ms, flow, outdoor):
        """flow, outdoor: snapshot Measurements. Returns the ramped DP setpoint (kPa)."""
        if self.mode == SETPOINT_FLOW:
            if flow.quality != BAD:
                self.target_kpa = self.clamp(interp(flow.value, self.flow_xs, self.flow_ys))
        elif self.mode == SETPOINT_OUTDOOR:
            if outdoor.quality != BAD:
                self.target_kpa = self.clamp(
                    interp(outdoor.value, self.outdoor_xs, self.outdoor_ys)
                )
        else:
            self.target_kpa = self.fixed_kpa
        if not self._started:
            self._started = True
            self.value_kpa = self.target_kpa
        else:
            dt_ms = ticks_diff(now_ms, self._last_ms)
            if dt_ms > 0 and self.target_kpa != self.value_kpa:  # steady: no float built
                step = self.ramp_kpa_per_s * dt_ms / 1000.0
                v = self.value_kpa
                t = self.target_kpa
                if t > v + step:
                    self.value_kpa = v + step
                elif t < v - step:
                    self.value_kpa = v - step
                elif t != v:
                    self.value_kpa = t
        self._last_ms = now_ms
        return self.value_kpa

    def discharge_kpa(self, suction, flow):
        """Discharge pressure (kPa) equivalent to the present DP setpoint (see module rules)."""
        if suction.quality != BAD and flow.quality != BAD:
            q = flow.value if flow.value > 0.0 else 0.0
            return suction.value + self.value_kpa + self.loss_kpa * q * q
        return self.discharge_fallback_kpa

    def required_head_m(self, flow_m3h, kpa_per_m):
        """Station head (m) the present setpoint needs at this flow: what staging plans for."""
        q = flow_m3h if flow_m3h > 0.0 else 0.0
        return (self.value_kpa + self.loss_kpa * q * q) / kpa_per_m
