"""Transmitter plausibility: a reading that cannot be true is SUSPECT and replaced by its fallback.

``Plausibility(config, sensors, snapshot, fieldbus, events)``; each control tick, after the
fieldbus has updated the snapshot and before ``sensors.update``, ``update(now_ms)`` sets
``sensors.suspect[i]`` (sensors.py then gives that channel its configured fallback at once:
remote DP -> control on the discharge pressure, flow "hold" -> BAD, the dry run paused, ...).

Checks (thresholds in config io.plausibility and io.channels.<name>.frozen_s):
- Frozen: a channel with frozen_s > 0 whose raw loop current stays within frozen_band_ua of one
  value for frozen_s after the plant moved - the running pumps' speeds summed moved by
  move_speed_pct, up and down counted alike (the PI trimming a steady plant by a few 0.01 %
  moves the flow and the pressures a live transmitter follows; counting only the net move,
  one pump holding a flat load never "moved" and a frozen flow went unflagged for 11 min), or
  another checked transmitter by move_ua - is frozen (a live transmitter shows its noise and
  follows the plant). A current pinned at the NE43 saturation limits
  (<= 3.8 or >= 20.5 mA) is not judged: the range, not the transmitter, is the limit.
- The station head three ways (0.1 kPa), the two-out-of-three check of suction, discharge,
  flow and remote DP: measured hm = discharge - suction; by the pump model hp, the head at which
  the running pumps at their measured speeds pass the measured flow (datasheet H = h0 s^2 - k
  q^2 per pump, bisection as for the substitutes below: pumps at unequal speeds are judged too);
  by the network hr = remote DP + loss (setpoint.network_loss_m_per_m3h2 * Q^2, the system curve
  the discharge fallback uses). e_p = hm - hp (tolerance tol_p = head_tolerance_ratio * h0
  s_max^2 + head_tolerance_kpa), e_r = hm - hr (tol_r = dp_tolerance_kpa + dp_tolerance_ratio *
  loss). A wrong channel shows thus: a pressure moves hm against both, e_p ~ e_r; the remote DP
  moves e_r only; the flow moves hp and the loss, and then the flow the network passes under hm
  and the remote DP, q_n, meets hm on the pump curve ("the flow fits": |hm - hp(q_n)| within
  half of tol_p). Verdicts, in this order:
  - e_p and e_r the same sign beyond half of tol_p and of dp_tolerance_kpa (two independent
    opinions agreeing: the network's transient share is not needed) and the flow does not fit:
    a pressure lies. Which one: the one already suspect, else the one whose lie keeps the
    suction (set by the network upstream, the slower quantity) nearer its value when the three
    last agreed (the network within a quarter of dp_tolerance_kpa: a pressure's error shows there
    in full, while the pump model may sit off by its static error; suction lying: true suction =
    its reading + the head's error; discharge lying: its reading); none while no such value.
  - both within tolerance: all agree (a suspect one is re-judged on its own reading and cleared).
  - e_r beyond tol_r, e_p within half of tol_p: the remote DP lies.
  - otherwise, where the flow fits: the flow lies; else no verdict (the timers hold).
  Without a usable remote DP there is no third opinion: the flow is judged against the pump
  model alone (as it always was). The pump-model opinion is formed only while the bypass is
  shut, the head is at least min_head_ratio * h0 s_max^2 (a pump running dry gives no head and
  no flow: that is the dry-run protection's case, not a lying transmitter) and every running
  pump's point by the model (its flow at its speed and the measured head, not the
  transmitter's) lies inside the allowed window, at most max_flow_ratio * bep_flow * s: beyond
  it, towards run-out, the datasheet curve is no reference a real pump keeps to (a pump 8 % off
  in flow, ISO 9906 grade 2B, is ~1 m off in head at 1.3 x BEP).
  No opinion that needs a pump's speed is formed while a pump that was running is unreachable
  (its drive lost: its speed is assumed, not measured, and its flow is in the meter).
- Calibration hold: ``head_model.fit_hold`` (the agent's pump model, which pumpmodel.Calibration
  fits) is set while the remote DP or the flow is unreadable (no third opinion), e_r lay beyond
  half of dp_tolerance_kpa when last judged (the speeds never settling, as with noisy
  transmitters, leaves no opinion: then the calibration's own steady rules decide alone), or
  any of suction, discharge, flow, remote DP is
  suspect or disagreeing: the calibration must not learn a drifting transmitter as the pumps'
  curve.
- Intermittent: a channel whose loop fails (NE43) latch_faults times within latch_window_s (a
  loose contact) is latched SUSPECT (CHECK_INTERMITTENT) and stays on its fallback until it has
  read without a failure for latch_clear_s: one event each way, not a pair per burst. Only a
  channel whose fallback is a substitute (a number, "discharge", "model"): latching a "stop" or
  "hold" one would turn glitches shorter than the protection's delays into a lasting BAD.
- The flow substitute (a flow_m3h channel with fallback "model"): the sum over the running pumps
  of the flow each gives at its measured speed against the measured head, q = sqrt((h0 s^2 -
  H) / k), at most runout_flow_ratio * bep_flow * s (run-out), 0 below its check valve's cut-off;
  written to ``sensors.estimate_x10`` every tick (-1 while the head is not usable).
- The pressure substitutes (suction_kpa / discharge_kpa with fallback "model"): the running
  pumps' head H at their measured speeds and the measured flow (GOOD or HELD: the flow
  substitute needs both pressures, so it cannot stand in here), the H where the pumps' flows
  sum(min(sqrt((fh h0 s^2 - H) / (fh k)), run-out)) meet the flow (bisection in integers; fh the
  calibrated head factor of ``head_model``, when the agent hands one over, else 1); discharge =
  suction + H, suction = discharge - H (at least 0). -1 (BAD) while no pump runs, the flow or
  the other pressure is not usable: both pressures lost is a real hazard, no substitute.
The three-way check holds in a steady state only: it is judged once the running pumps' speeds
(summed) have moved less than 0.3 %/s for settle_s (a speed ramp or a pump joining moves flow and
the network's pressures through the water column's inertia first), every running pump turns at
min_pct or more, and with its inputs readable (not failed, GOOD or HELD; one suspect by this very
check is read as it is, to be re-judged); a verdict counts after check_s (flow) or dp_check_s
(remote DP and pressures: slow network transients) of continuous disagreement (a tick without a
verdict holds the timers); a SUSPECT channel is cleared after clear_s of agreement (for the frozen
check: once its current moved again). Every transition raises SENSOR_SUSPECT / SENSOR_PLAUSIBLE
(subject CHECK_FROZEN, CHECK_MODEL or CHECK_INTERMITTENT, value the channel, as SENSOR_FAULT).

Allocation: none per tick. Readings are taken as integers from the sensors' filtered loop
currents and the drives' raw speeds; the model's constants are fixed-point integers built once
(squares through a scaled square root keep every product below 2**30).
"""

from micropython import const

from . import codes
from .sensors import FALLBACK_HOLD, FALLBACK_MODEL, FALLBACK_STOP
from .snapshot import DRIVE_RUNNING, HELD
from .ticks import ticks_diff as _ticks_diff

CHECK_FROZEN = const(1)
CHECK_MODEL = const(2)
CHECK_INTERMITTENT = const(3)

_OFF = const(-1)
_MAX_DT_MS = const(60000)
_UA_4 = const(4000)
_UA_SAT_LOW = const(3800)
_UA_SAT_HIGH = const(20500)
_STEADY_X100_PER_S = const(30)  # speeds summed moving slower than 0.3 %/s: a steady state
_G = 9.80665

# event channel numbers (protection.CH_*: the value of SENSOR_* events): position + 1 (6 is
# CH_SOURCE, no transmitter). A tuple, not a dict: a constant, frozen in flash with the code.
_CHANNELS = (
    "suction_kpa",
    "discharge_kpa",
    "remote_dp_kpa",
    "supply_temp_c",
    "flow_m3h",
    "",
    "outdoor_temp_c",
)


def _sqrt_q16(x):
    """round(sqrt(x) * 2**16) for a constant x (start-up only)."""
    return int((x**0.5) * 65536.0 + 0.5)


def _speed_x100(fb, i):
    """Drive i's actual speed in 0.01 % of full scale (its register is signed)."""
    raw = fb.actual_raw[i]
    if raw >= 0x8000:
        raw -= 0x10000
    return raw * 10000 // fb.profiles[i].full_scale


def isqrt(n):
    """floor(sqrt(n)) of an integer, in integers (no float, no allocation below 2**30); also
    protection's. Newton from a power of 16 at or above the root (x >= n // x: no product
    that could outgrow a small int): within 16x of it, fewer steps than doubling to 2x."""
    if n <= 0:
        return 0
    x = 1
    while x < n // x:
        x <<= 4
    while True:
        y = (x + n // x) >> 1
        if y >= x:
            return x
        x = y


def _timer(timer, active, dt):
    if not active:
        return _OFF
    if timer < 0:
        return 0
    timer += dt
    return timer if timer < 0x10000000 else 0x10000000


class Plausibility:
    def __init__(self, config, sensors, snapshot, fieldbus, events):
        self.sensors = sensors
        self.snapshot = snapshot
        self.fieldbus = fieldbus
        self.events = events
        p = config["io"]["plausibility"]
        channels = config["io"]["channels"]
        names = sensors.names
        n = len(names)
        self._n = n
        self._band = p["frozen_band_ua"]
        self._move_speed = int(p["move_speed_pct"] * 100.0 + 0.5)
        self._move_ua = p["move_ua"]
        self._check_ms = p["check_s"] * 1000
        self._dp_check_ms = p["dp_check_s"] * 1000
        self._settle_ms = p["settle_s"] * 1000
        self._clear_ms = p["clear_s"] * 1000
        self._latch_faults = p["latch_faults"]
        self._latch_window_ms = p["latch_window_s"] * 1000
        self._latch_clear_ms = p["latch_clear_s"] * 1000
        self._frozen_ms = [int(channels[k]["frozen_s"] * 1000.0 + 0.5) for k in names]
        self._watched = [i for i in range(n) if self._frozen_ms[i] > 0]
        self._event_channel = [_CHANNELS.index(k) + 1 if k in _CHANNELS else 0 for k in names]
        # engineering value in 0.1 units = lo_x10 + (uA - 4000) * span_x10 // 16000
        self._lo_x10 = [int(round(channels[k]["low"] * 10.0)) for k in names]
        self._span_x10 = [
            int(round((channels[k]["high"] - channels[k]["low"]) * 10.0)) for k in names
        ]
        self._suction = names.index("suction_kpa") if "suction_kpa" in names else -1
        self._discharge = names.index("discharge_kpa") if "discharge_kpa" in names else -1
        self._remote = names.index("remote_dp_kpa") if "remote_dp_kpa" in names else -1
        self._flow = names.index("flow_m3h") if "flow_m3h" in names else -1
        # tolerances (0.1 kPa, per mille)
        self._dp_tol_x10 = int(p["dp_tolerance_kpa"] * 10.0 + 0.5)
        self._dp_ratio = int(p["dp_tolerance_ratio"] * 1000.0 + 0.5)
        self._head_ratio = int(p["head_tolerance_ratio"] * 1000.0 + 0.5)
        self._head_tol_x10 = int(p["head_tolerance_kpa"] * 10.0 + 0.5)
        self._min_head = int(p["min_head_ratio"] * 1000.0 + 0.5)
        # models in fixed point: a*q^2 (0.1 kPa, q in 0.1 m3/h) = (q * sqrt(a/100) * 2**16 >> 10)^2
        # >> 12, a in 0.1 kPa per (m3/h)^2
        model = config["pump_model"]
        kpa_per_m = model["density_kg_m3"] * _G / 1000.0
        self._h0_x10 = int(model["shutoff_head_m"] * kpa_per_m * 10.0 + 0.5)
        self._k_c = _sqrt_q16(model["curve_k"] * kpa_per_m * 10.0 / 100.0)
        loss_m = config["setpoint"]["network_loss_m_per_m3h2"]
        self._loss_c = _sqrt_q16(loss_m * kpa_per_m * 10.0 / 100.0)
        self._min_x100 = int(config["speed"]["min_pct"] * 100.0 + 0.5)
        # flow substitute: q_x10^2 = (shutoff - H)_x10 * _q_mul; run-out q_x10 = _q_max * s // 10000
        self._q_mul = int(100.0 / (model["curve_k"] * kpa_per_m * 10.0) + 0.5)
        # the window's top (0.1 m3/h at full speed): the flow check is judged inside it only
        self._q_win = int(model["max_flow_ratio"] * model["bep_flow_m3h"] * 10.0 + 0.5)
        runout = model.get("runout_flow_ratio", model["max_flow_ratio"])
        self._q_max = int(runout * model["bep_flow_m3h"] * 10.0 + 0.5)
        f = self._flow
        self._estimate = f >= 0 and sensors.fallback[f] == FALLBACK_MODEL
        su = self._suction
        di = self._discharge
        self._estimate_suction = su >= 0 and sensors.fallback[su] == FALLBACK_MODEL
        self._estimate_discharge = di >= 0 and sensors.fallback[di] == FALLBACK_MODEL
        self.head_model = None  # the calibrated pump model (its head_factor), set by the agent
        self._factor = None  # the head_factor object last converted
        self._factor_permil = 1000
        # state
        self._last_ms = 0
        self._started = False
        self._last_speed_sum = 0
        self._last_n_run = 0
        self._steady = _OFF  # ms the speeds have been steady
        self._ran = 0  # bit i: pump i was running when last reachable
        self._memo_flow = -1  # this tick's last _head_at: its flow (-1: none) and head
        self._memo_head = 0
        self._hold = False  # the network's last opinion: the pressures off (none yet: not held)
        # the suction (0.1 kPa) when the three heads last agreed closely: as the suction's lie
        # would have it (reading + the head's error), and as read
        self._ref_suction = 0
        self._ref_reading = -1
        self.suspect_by = [0] * n  # CHECK_* that made the channel suspect, 0 = plausible
        self._ref_ua = [0] * n
        self._moved = [_OFF] * n  # ms frozen since the plant moved
        self._sig_speed = [0] * n
        self._path = [0] * n  # the speeds' summed path since the reference (0.01 %)
        self._sig_ua = [0] * (n * n)  # [k * n + j]: channel j's current when k's froze
        self._bad = [_OFF] * n  # model disagreement timer
        self._good = [_OFF] * n  # agreement timer of a suspect channel
        self._was_failed = [True] * n  # the last tick's NE43 failure (never sampled: failed)
        self._onsets = [0] * n  # failures begun inside the present window
        self._window = [_OFF] * n  # ms since the window's first failure
        # for telemetry and tests: the last residuals (0.1 kPa)
        self.dp_residual_x10 = 0
        self.head_residual_x10 = 0

    # --- helpers ---------------------------------------------------------------------------------
    def _x10(self, i):
        """Channel i's filtered value in 0.1 units (an integer)."""
        ua = self.sensors.filtered[i] >> 4
        return self._lo_x10[i] + (ua - _UA_4) * self._span_x10[i] // 16000

    def _usable(self, i):
        """An input of a model check: sampled, not failed, GOOD or HELD, not suspect."""
        s = self.sensors
        return i >= 0 and not s.failed(i) and not s.suspect[i] and s.measurements[i].quality <= HELD

    @staticmethod
    def _square(q_x10, c):
        w = q_x10 * c >> 10
        return w * w >> 12

    def _emit(self, code, severity, check, i, now_ms):
        self.events.push(code, severity, check, self._event_channel[i], now_ms)

    # --- per tick --------------------------------------------------------------------------------
    def update(self, now_ms):
        dt = _ticks_diff(now_ms, self._last_ms) if self._started else 0
        if dt < 0:
            dt = 0
        elif dt > _MAX_DT_MS:
            dt = _MAX_DT_MS
        self._started = True
        self._last_ms = now_ms
        # the running pumps' speeds (0.01 %) from the drives' raw actual values
        fb = self.fieldbus
        pumps = self.snapshot.pumps
        n_run = 0
        speed_sum = 0
        s_min = 0x7FFFFFFF
        s_max = 0
        lost = False
        for i in range(len(pumps)):
            p = pumps[i]
            bit = 1 << i
            if not p.online:
                if self._ran & bit:
                    lost = True  # unreachable while running: its speed is assumed, not measured
                continue
            if p.state != DRIVE_RUNNING:
                self._ran &= ~bit
                continue
            self._ran |= bit
            s = _speed_x100(fb, i)
            n_run += 1
            speed_sum += s
            if s < s_min:
                s_min = s
            if s > s_max:
                s_max = s
        self._memo_flow = -1  # (the speeds are this tick's)
        for i in range(self._n):
            self._intermittent(i, dt, now_ms)
        for i in self._watched:
            self._frozen(i, speed_sum, dt, now_ms)
        if self._estimate:
            self.sensors.estimate_x10[self._flow] = self._model_flow()
        if self._estimate_suction or self._estimate_discharge:
            self._model_pressures(n_run)
        d = speed_sum - self._last_speed_sum
        limit = _STEADY_X100_PER_S * dt // 1000
        steady = n_run == self._last_n_run and d <= limit and -d <= limit
        self._steady = _timer(self._steady, steady, dt)
        self._last_speed_sum = speed_sum
        self._last_n_run = n_run
        running = (
            n_run > 0 and not lost and s_min >= self._min_x100 and self._steady >= self._settle_ms
        )
        self._cross(running, s_max, dt, now_ms)

    def _cross(self, running, s_max, dt, now_ms):
        """The station head three ways: measured (discharge - suction), by the pump model (the
        running pumps at their speeds passing the measured flow) and by the network (remote DP +
        its loss at the measured flow); the reading that disagrees with the two others is
        blamed (module rules)."""
        su = self._suction
        di = self._discharge
        f = self._flow
        r = self._remote
        press = running and self._readable(su) and self._readable(di)
        hm = self._x10(di) - self._x10(su) if press else 0
        # by the pump model (judged inside the window, not dry: module rules)
        p_on = False
        e_p = 0
        tol_p = 0
        bypass = self.snapshot.bypass_open
        if press and self._readable(f) and not (bypass.quality <= HELD and bypass.value > 0.5):
            shutoff = self._h0_x10 * s_max // 10000 * s_max // 10000
            if hm * 1000 >= self._min_head * shutoff and self._in_window(hm):
                q = self._x10(f)
                hp = self._head_at(q if q > 0 else 0)
                e_p = hm - hp
                self.head_residual_x10 = e_p
                tol_p = self._head_ratio * shutoff // 1000 + self._head_tol_x10
                p_on = True
        # by the network
        r_on = False
        e_r = 0
        tol_r = 0
        if press and self._readable(r) and self._readable(f):
            loss = self._square(self._x10(f), self._loss_c)
            e_r = hm - (self._x10(r) + loss)
            self.dp_residual_x10 = -e_r
            tol_r = self._dp_tol_x10 + self._dp_ratio * loss // 1000
            r_on = True
        v_flow = 0  # 0 = not judged, 1 = agrees, 2 = disagrees
        v_remote = 0
        v_press = 0
        if p_on and r_on:
            half_p = tol_p >> 1
            half_r = self._dp_tol_x10 >> 1  # (not the loss share: steady, and both must agree)
            quarter_r = half_r >> 1
            bad_p = e_p > tol_p or e_p < -tol_p
            bad_r = e_r > tol_r or e_r < -tol_r
            if (
                (e_p > half_p and e_r > half_r) or (e_p < -half_p and e_r < -half_r)
            ) and not self._flow_fits(hm, half_p):
                # the measured head off against both opinions the same way, by the same amount
                # more nearly than a wrong flow explains: a pressure lies (two opinions agreeing,
                # half of the model's tolerance and of the fixed DP one are evidence enough)
                v_press = 2
            elif not bad_p and not bad_r:
                v_flow = v_remote = v_press = 1
                if -quarter_r <= e_r <= quarter_r:
                    # the network agrees closely (a pressure's error shows there in full; the
                    # pump model may sit off by its static error): the suction as each
                    # pressure's lie would have it
                    self._ref_suction = self._x10(su) + ((e_p + e_r) >> 1)
                    self._ref_reading = self._x10(su)
            elif bad_r and -half_p <= e_p <= half_p:
                v_remote = 2  # the pump model backs the measured head: the remote DP lies
                v_flow = 1
            elif self._flow_fits(hm, half_p):
                v_flow = 2  # one wrong flow explains both (the network's loss is the steeper)
        elif p_on:  # no third opinion: the flow as before
            v_flow = 2 if e_p > tol_p or e_p < -tol_p else 1
        elif r_on:
            v_remote = 2 if e_r > tol_r or e_r < -tol_r else 1
        if f >= 0:
            self._judge(f, v_flow, self._check_ms, dt, now_ms)
        if r >= 0:
            self._judge(r, v_remote, self._dp_check_ms, dt, now_ms)
        if su >= 0 and di >= 0:
            if v_press == 2:
                blamed = self._blame(su, di, e_p, e_r)
                if blamed >= 0:
                    self._judge(blamed, 2, self._dp_check_ms, dt, now_ms)
            elif v_press == 1:
                self._judge(su, 1, self._dp_check_ms, dt, now_ms)
                self._judge(di, 1, self._dp_check_ms, dt, now_ms)
        model = self.head_model
        if model is not None:  # the calibration learns from readings that agree only
            if r_on:  # (not judged while the speeds move: the last opinion stands)
                half_r = self._dp_tol_x10 >> 1
                self._hold = e_r > half_r or e_r < -half_r
            # (no readable remote DP or flow: no third opinion, held while it lasts)
            model.fit_hold = (
                self._hold
                or not self._readable(r)
                or not self._readable(f)
                or self._doubted(su)
                or self._doubted(di)
                or self._doubted(f)
                or self._doubted(r)
            )

    def _doubted(self, i):
        """Channel i is suspect, or a check's disagreement timer runs on it."""
        return i >= 0 and (self.suspect_by[i] != 0 or self._bad[i] >= 0)

    def _readable(self, i):
        """A reading a cross-check may judge: sampled, not failed, GOOD or HELD - or suspect by
        the model checks themselves (re-judged, to be cleared once it agrees)."""
        s = self.sensors
        if i < 0 or s.failed(i):
            return False
        if self.suspect_by[i] == CHECK_MODEL:
            return True
        return not s.suspect[i] and s.measurements[i].quality <= HELD

    def _blame(self, su, di, e_p, e_r):
        """Which pressure lies: the one already suspect, else the one whose story keeps the
        suction (set by the network upstream, the slower quantity) nearer its value when all
        last agreed; -1 with no such value yet."""
        if self.suspect_by[su] == CHECK_MODEL:
            return su
        if self.suspect_by[di] == CHECK_MODEL:
            return di
        if self._ref_reading < 0:
            return -1
        off = (e_p + e_r) >> 1  # the measured head's error
        # suction lying: the true suction is its reading + off; discharge lying: the reading
        d_su = self._x10(su) + off - self._ref_suction
        d_di = self._x10(su) - self._ref_reading
        if d_su < 0:
            d_su = -d_su
        if d_di < 0:
            d_di = -d_di
        return su if d_su <= d_di else di

    def _flow_fits(self, hm, tolerance):
        """A wrong flow reading alone explains the residuals: the pumps' head at the flow the
        network passes under the measured head and remote DP (remote DP + loss = measured head)
        lies within tolerance of the measured head."""
        lift = hm - self._x10(self._remote)
        q = 0
        if lift > 0:
            q = (isqrt(lift << 12) << 10) // self._loss_c  # inverts _square(q, _loss_c)
        e_n = hm - self._head_at(q)
        return -tolerance <= e_n <= tolerance

    def _in_window(self, head):
        """Every running pump's point by the model (its flow at its speed against head) inside
        the allowed window (module rules)."""
        fb = self.fieldbus
        pumps = self.snapshot.pumps
        for i in range(len(pumps)):
            p = pumps[i]
            if p.online and p.state == DRIVE_RUNNING:
                s = _speed_x100(fb, i)
                lift = self._h0_x10 * s // 10000 * s // 10000 - head
                if lift > 0:
                    q = self._q_win * s // 10000
                    if lift * self._q_mul > q * q:
                        return False
        return True

    def _model_flow(self):
        """The running pumps' flow (0.1 m3/h) from their speeds and the head; -1 if unknown."""
        if not (self._usable(self._discharge) and self._usable(self._suction)):
            return -1
        return self._flow_at(self._x10(self._discharge) - self._x10(self._suction))

    def _model_pressures(self, n_run):
        """The pressure substitutes (0.1 kPa) from the other pressure and the pumps' head."""
        sensors = self.sensors
        su = self._suction
        di = self._discharge
        head = self._model_head() if n_run > 0 and self._usable(self._flow) else -1
        if self._estimate_discharge:
            ok = head >= 0 and self._usable(su)
            sensors.estimate_x10[di] = self._x10(su) + head if ok else -1
        if self._estimate_suction:
            ok = head >= 0 and self._usable(di)
            v = self._x10(di) - head
            sensors.estimate_x10[su] = (v if v > 0 else 0) if ok else -1

    def _model_head(self):
        """The running pumps' head (0.1 kPa) at their speeds and the measured flow; -1 if none."""
        model = self.head_model
        if model is not None and model.head_factor is not self._factor:
            self._factor = model.head_factor
            self._factor_permil = int(model.head_factor * 1000.0 + 0.5)
        fh = self._factor_permil
        flow = self._x10(self._flow)
        head = self._head_at(flow if flow > 0 else 0)
        return head * fh // 1000 if head >= 0 else -1

    def _head_at(self, flow):
        """The running pumps' head by the datasheet (0.1 kPa) at their speeds passing flow (0.1
        m3/h, >= 0); -1 if none runs. The pumps' flow falls as the head rises: the largest head
        below the highest shut-off that still passes the flow (0 if none), the integer a bisection
        over 0..shut-off finds. Found from the closed form for pumps at one speed (each passes
        flow / n: head = shut-off - (flow / n)^2 / q_mul), checked against the flows summed and,
        where the speeds differ or run-out caps a pump, moved by doubling steps and bisection:
        2 sums in the common case instead of ~13. The substitutes and the check ask the same flow
        in a tick: the last answer is kept for the tick."""
        if flow == self._memo_flow:
            return self._memo_head
        fb = self.fieldbus
        pumps = self.snapshot.pumps
        n = 0
        top = 0
        total = 0
        for i in range(len(pumps)):
            p = pumps[i]
            if p.online and p.state == DRIVE_RUNNING:
                s = _speed_x100(fb, i)
                shutoff = self._h0_x10 * s // 10000 * s // 10000
                n += 1
                total += shutoff
                if shutoff > top:
                    top = shutoff
        if top <= 0:
            return -1
        each = (flow + n - 1) // n
        if each > self._q_max:  # (an estimate only: keeps the square small)
            each = self._q_max
        head = total // n - (each * each + self._q_mul - 1) // self._q_mul
        if head >= top:
            head = top - 1
        elif head < 0:
            head = 0
        # invariants: lo == 0 or lo passes the flow; hi == top or hi does not
        step = 1
        if self._flow_at(head) >= flow:
            lo = head
            while True:
                hi = lo + step
                if hi >= top:
                    hi = top
                    break
                if self._flow_at(hi) < flow:
                    break
                lo = hi
                step <<= 1
        else:
            hi = head
            while True:
                lo = hi - step
                if lo <= 0:
                    lo = 0
                    break
                if self._flow_at(lo) >= flow:
                    break
                hi = lo
                step <<= 1
        while hi - lo > 1:
            mid = (lo + hi) >> 1
            if self._flow_at(mid) >= flow:
                lo = mid
            else:
                hi = mid
        self._memo_flow = flow
        self._memo_head = lo
        return lo

    def _flow_at(self, head):
        """The running pumps' flow summed (0.1 m3/h) at their speeds against head (0.1 kPa)."""
        fb = self.fieldbus
        pumps = self.snapshot.pumps
        total = 0
        for i in range(len(pumps)):
            p = pumps[i]
            if p.online and p.state == DRIVE_RUNNING:
                s = _speed_x100(fb, i)
                lift = self._h0_x10 * s // 10000 * s // 10000 - head
                if lift > 0:
                    q = isqrt(lift * self._q_mul)
                    cap = self._q_max * s // 10000
                    total += q if q < cap else cap
        return total

    def _frozen(self, i, speed_sum, dt, now_ms):
        sensors = self.sensors
        raw = sensors.raw_ua[i]
        n = self._n
        base = i * n
        if sensors.failed(i) or raw <= _UA_SAT_LOW or raw >= _UA_SAT_HIGH:
            self._moved[i] = _OFF
            self._ref_ua[i] = -1000  # a fresh start once it measures again
            return
        if raw - self._ref_ua[i] > self._band or self._ref_ua[i] - raw > self._band:
            # alive: a new reference, and the plant as it is now
            self._ref_ua[i] = raw
            self._moved[i] = _OFF
            self._sig_speed[i] = speed_sum
            self._path[i] = 0
            for j in self._watched:
                self._sig_ua[base + j] = sensors.raw_ua[j]
            if self.suspect_by[i] == CHECK_FROZEN:
                self._clear(i, now_ms)
            return
        if self._moved[i] < 0:
            d = speed_sum - self._sig_speed[i]  # (the last tick's sum: the path, both ways)
            self._sig_speed[i] = speed_sum
            self._path[i] += d if d >= 0 else -d
            moved = self._path[i] >= self._move_speed
            if not moved:
                for j in self._watched:
                    if j != i:
                        d = sensors.raw_ua[j] - self._sig_ua[base + j]
                        if d >= self._move_ua or -d >= self._move_ua:
                            moved = True
                            break
            if moved:
                self._moved[i] = 0
            return
        self._moved[i] += dt
        if self._moved[i] >= self._frozen_ms[i] and not self.suspect_by[i]:
            self._suspect(i, CHECK_FROZEN, now_ms)

    def _intermittent(self, i, dt, now_ms):
        """latch_faults NE43 failures begun within latch_window_s: latched SUSPECT until the
        channel has read without a failure for latch_clear_s (one event each way)."""
        kind = self.sensors.fallback[i]
        if kind == FALLBACK_STOP or kind == FALLBACK_HOLD:
            return  # no substitute: latched, each glitch would become a lasting BAD (a stop)
        failed = self.sensors.failed(i)
        onset = failed and not self._was_failed[i]
        self._was_failed[i] = failed
        if self.suspect_by[i] == CHECK_INTERMITTENT:
            self._good[i] = _timer(self._good[i], not failed, dt)
            if self._good[i] >= self._latch_clear_ms:
                self._clear(i, now_ms)
            return
        w = self._window[i]
        if w >= 0:
            w += dt
            if w > self._latch_window_ms:
                w = _OFF
                self._onsets[i] = 0
            self._window[i] = w
        if not onset:
            return
        if w < 0:
            self._window[i] = 0
        self._onsets[i] += 1
        if self._onsets[i] >= self._latch_faults and not self.suspect_by[i]:
            self._onsets[i] = 0
            self._window[i] = _OFF
            self._suspect(i, CHECK_INTERMITTENT, now_ms)

    def _judge(self, i, verdict, delay_ms, dt, now_ms):
        """verdict 0 = not judged (timers hold), 1 = agrees, 2 = disagrees."""
        if verdict == 0:
            return
        self._bad[i] = _timer(self._bad[i], verdict == 2, dt)
        if self.suspect_by[i] == 0:
            if self._bad[i] >= delay_ms:
                self._suspect(i, CHECK_MODEL, now_ms)
        elif self.suspect_by[i] == CHECK_MODEL:
            self._good[i] = _timer(self._good[i], verdict == 1, dt)
            if self._good[i] >= self._clear_ms:
                self._clear(i, now_ms)

    def _suspect(self, i, check, now_ms):
        self.suspect_by[i] = check
        self.sensors.suspect[i] = True
        self._good[i] = _OFF
        self._emit(codes.EVENT_SENSOR_SUSPECT, codes.SEVERITY_ALARM, check, i, now_ms)

    def _clear(self, i, now_ms):
        check = self.suspect_by[i]
        self.suspect_by[i] = 0
        self.sensors.suspect[i] = False
        self._bad[i] = _OFF
        self._good[i] = _OFF
        self._emit(codes.EVENT_SENSOR_PLAUSIBLE, codes.SEVERITY_NOTICE, check, i, now_ms)
