"""Pressure control: setpoint -> PI on the remote DP (or the discharge) -> slew-limited speeds.

Per tick (after protection, around staging):
    common = control.regulate(now_ms, snapshot, speed_cap_pct)   # setpoint + PID
    mask = staging.update(...)                                   # which pumps run
    control.drive(now_ms, snapshot, mask, exercise_mask)         # per-pump refs -> commands

Rules:
- Measured variable: the remote DP while its quality is GOOD or HELD (source REMOTE); else the
  discharge pressure against the discharge equivalent of the DP setpoint (setpoint.discharge_kpa:
  suction + DP + system-curve loss; source DISCHARGE); with neither usable the speed is held
  (source HOLD; protection decides about a safe state). The discharge error is scaled by
  DP setpoint / station-head setpoint so that the loop gain stays the same (both ~ speed^2).
- One PI output: the common speed (%) of all joined pumps (equal split for identical pumps).
  Every step it is limited to min_pct..max_pct, to the protection cap (reached along the slew, never
  jumped), to +-slew_pct_per_s * dt around its last value, and to follow_band_pct above the
  slowest joined pump's actual speed (a drive that lags behind is not outrun). The integrator is
  back-calculated to whatever the limits left (no windup).
- Motor rating: a running pump whose drive reports more than LOAD_OVER x its rated input
  sets `overloaded` (staging then judges one more pump) and caps the common speed where, by the
  affinity laws (P ~ s^3 along the network's curve), it would draw LOAD_TARGET x rated input.
  Like with like: rated_kw (pumps[i].rated_kw, else pump_model.rated_kw) is the motor's rated
  shaft output; the drives' power register is read as the pump set's electrical input (the pump
  model's "electrical", what the calibration inverts; every simulated profile reports exactly
  that), so the rated input is rated_kw over the model's motor and VFD efficiency at full load
  (pumpmodel.rated_input_kw: 110 -> 118.4 kW). A real drive whose register is its output to the
  motor reads the VFD's loss (~3 %) less: its cap then aims at the motor's rated shaft power
  itself. The cap is reckoned from the common speed asked (not the actual one,
  which a drive in its current limit lets sag); the cap only falls while a pump is over, holds while the
  hottest one draws between LOAD_OK and LOAD_OVER x rated, and rises at the slew limit once every
  pump is under LOAD_OK x rated. It acts like the protection cap (reached along the slew).
- Bumpless: a change of measured variable, of mode (auto/manual) or the first pump joining
  re-tracks the integrator to the present output. Pump-count changes are fed forward: the group's
  effective size counts a joining/leaving pump by how far it is between its check valve's
  cut-off speed and the common speed (a trip drops it at once); when that size changes, the speed
  difference the pump model gives at the present flow and head is queued and released into the
  integrator no faster than the slew limit. On a tick the agent calls busy (staging evaluates a
  count: the tick's floats are spent there) the feedforward is not updated; the next tick
  reckons from the size it last saw, so nothing is lost, only shifted by a tick.
- Per pump: a pump that staging adds starts at min_pct (its drive ramps 0 -> min at its own ramp;
  below min speed its check valve stays shut) and climbs at the slew limit, never more than one
  slew step ahead of the drive's actual speed (the drive's own ramp is faster than the slew), until
  it meets the common speed (JOINED). A pump
  staging removes ramps down at the slew limit to min_pct and then gets CMD_STOP; one a staggered
  station stop holds (hold_mask: protection tells one pump at a time to stop) keeps its reference
  instead, no higher than the cap, until its turn. rejoin(mask): a stop called off while it held
  pumps: they run on from their references. An exercised pump
  runs at min_pct. A pump that is offline or tripped gets CMD_STOP and ref 0 at once.
- Manual mode: the common speed slews to the commanded speed (same limits); back to auto the PI
  continues from the present speed.
- `at_floor`: in auto on the remote DP with pumps joined, the common speed at min_pct and the DP
  more than 2 % above its setpoint (the PI wants less than the floor gives; staging's "Head at
  the floor" may then hand over to a weaker pump).
No allocation per tick beyond float results; time only through now_ms.
"""

from micropython import const

from . import codes
from .pid import Pid
from .pumpmodel import PumpModel, rated_input_kw
from .setpoint import Setpoint
from .snapshot import BAD, CMD_RUN, CMD_STOP, DRIVE_RUNNING, DRIVE_TRIPPED, GOOD, HELD
from .ticks import ticks_diff

SOURCE_HOLD = const(0)
SOURCE_REMOTE = const(1)
SOURCE_DISCHARGE = const(2)

PHASE_IDLE = const(0)
PHASE_JOINING = const(1)
PHASE_JOINED = const(2)
PHASE_LEAVING = const(3)
PHASE_EXERCISE = const(4)

LOAD_OVER = 0.99  # of rated power: over it the speed is capped and staging judges a start
LOAD_TARGET = 0.97  # where the cap aims
LOAD_OK = 0.95  # under it (every pump) the cap is released along the slew
_THIRD = 1.0 / 3.0


class Controller:
    def __init__(self, config, model=None):
        spd = config["speed"]
        pid = config["pid"]
        self.pump_count = len(config["pumps"])
        self.min_pct = float(spd["min_pct"])
        self.max_pct = float(spd["max_pct"])
        self.slew_pct_per_s = float(spd["slew_pct_per_s"])
        self.follow_band_pct = float(spd.get("follow_band_pct", 2.0))  # config.py's default
        self.setpoint = Setpoint(config)
        self.model = model if model is not None else PumpModel(config)
        self.pid = Pid(pid["kp"], pid["ti_s"], pid.get("td_s", 0.0))
        self.manual = False
        self.manual_pct = self.min_pct
        self.source = SOURCE_HOLD
        self.common_pct = self.min_pct
        self.sp_kpa = 0.0  # setpoint of the measured variable in use (kPa)
        self.pv_kpa = 0.0  # that variable's value
        self.dp_setpoint_kpa = self.setpoint.value_kpa
        self.joined = 0  # pumps at the common speed
        n = self.pump_count
        self.phase = [PHASE_IDLE] * n
        self.ref_pct = [0.0] * n
        self._reg_ms = 0
        self._drive_ms = 0
        self._reg_started = False
        self._drive_started = False
        self._dt_ms = -1
        self._dt_s = 0.0
        self._step = 0.0
        self._neg_step = 0.0  # -_step, kept with it
        self._ff_pending = 0.0  # feedforward not yet released into the PI (slew-limited)
        rated = float(config["pump_model"]["rated_kw"])
        inputs = [rated_input_kw(float(p.get("rated_kw", rated))) for p in config["pumps"]]
        over = self._over_kw = [0.0] * n
        target = self._target_kw = [0.0] * n
        ok = self._ok_kw = [0.0] * n
        for i in range(n):
            j = inputs.index(inputs[i])  # pumps alike share their floats (16 B heap objects)
            if j < i:
                over[i], target[i], ok[i] = over[j], target[j], ok[j]
            else:
                kw = inputs[i]
                over[i], target[i], ok[i] = kw * LOAD_OVER, kw * LOAD_TARGET, kw * LOAD_OK
        self.load_cap_pct = self.max_pct
        self.cap_pct = self.max_pct  # the cap of the last regulate() (protection and rating)
        self.overloaded = False  # a running pump over its rating (this tick)
        self._n_eff = 0.0  # effective pumps in the group at the last drive() (feedforward)
        self.fed_forward = False  # the last drive() updated the feedforward (it built floats)
        self.at_floor = False  # the PI holds min_pct and wants less (the remote DP > 2 % high)

    # --- commands ------------------------------------------------------------------------------
    def set_manual(self, speed_pct):
        """Manual speed mode at speed_pct (clamped to the speed envelope); bumpless."""
        if speed_pct < self.min_pct:
            speed_pct = self.min_pct
        if speed_pct > self.max_pct:
            speed_pct = self.max_pct
        self.manual_pct = speed_pct
        self.manual = True

    def set_auto(self):
        if self.manual:
            self.manual = False
            self.source = SOURCE_HOLD  # the next regulate() re-tracks the PI: no jump

    def telemetry_mode(self):
        if self.manual:
            return codes.MODE_MANUAL_SPEED
        return codes.MODE_DISCHARGE if self.source == SOURCE_DISCHARGE else codes.MODE_REMOTE_DP

    def resume(self, snap):
        """After an agent reset: adopt the pumps that still run, at their actual speed."""
        top = 0.0
        for i in range(self.pump_count):
            st = snap.pumps[i]
            if st.online and st.state == DRIVE_RUNNING and st.speed_pct >= self.min_pct:
                self.phase[i] = PHASE_JOINED
                self.ref_pct[i] = st.speed_pct
                if st.speed_pct > top:
                    top = st.speed_pct
        if top > 0.0:
            self.common_pct = top if top <= self.max_pct else self.max_pct
            self.pid.track(self.common_pct)
        self.joined = self._count_joined()

    def rejoin(self, mask):
        """A staggered stop called off (its cause cleared first): the pumps in mask that it
        still held run on from their references; the fastest sets the common speed, the others
        join it along the slew (no step)."""
        top = 0.0
        for i in range(self.pump_count):
            if mask & (1 << i) and self.ref_pct[i] > top:
                top = self.ref_pct[i]
        if top < self.min_pct:
            return
        for i in range(self.pump_count):
            if mask & (1 << i) and self.ref_pct[i] >= self.min_pct:
                self.phase[i] = PHASE_JOINED if self.ref_pct[i] == top else PHASE_JOINING
        self.common_pct = top
        self.pid.track(top)
        self.joined = self._count_joined()

    # --- per tick: the common speed -----------------------------------------------------------
    def _step_for(self, dt_ms):
        """Slew step (%) and dt (s) for this tick; cached while the tick period stays the same
        (floats are heap objects on MicroPython: a steady tick builds none here)."""
        if dt_ms != self._dt_ms:
            self._dt_ms = dt_ms
            self._dt_s = dt_ms / 1000.0
            self._step = self.slew_pct_per_s * self._dt_s
            self._neg_step = -self._step

    def regulate(self, now_ms, snap, speed_cap_pct=100.0):
        dt_ms = 0
        if self._reg_started:
            dt_ms = ticks_diff(now_ms, self._reg_ms)
            if dt_ms < 0:
                dt_ms = 0
        self._reg_started = True
        self._reg_ms = now_ms
        self._step_for(dt_ms)
        dt_s = self._dt_s
        setpoint = self.setpoint
        dp_sp = setpoint.update(now_ms, snap.flow_m3h, snap.outdoor_temp_c)
        self.dp_setpoint_kpa = dp_sp
        # measured variable
        remote = snap.remote_dp_kpa
        scale = 1.0
        if remote.quality == GOOD or remote.quality == HELD:
            source = SOURCE_REMOTE
            sp = dp_sp
            pv = remote.value
        elif snap.discharge_kpa.quality != BAD:
            source = SOURCE_DISCHARGE
            sp = setpoint.discharge_kpa(snap.suction_kpa, snap.flow_m3h)
            pv = snap.discharge_kpa.value
            head = sp - snap.suction_kpa.value if snap.suction_kpa.quality != BAD else sp
            if head > dp_sp:
                scale = dp_sp / head
        else:
            source = SOURCE_HOLD
            sp = dp_sp
            pv = dp_sp
        self.sp_kpa = sp
        self.pv_kpa = pv
        error = sp - pv
        if scale != 1.0:
            error *= scale
            pv *= scale
        common = self.common_pct
        # the window the common speed may take this step
        step = self._step
        down = common - step  # one float for both uses below
        hi = common + step
        if hi > self.max_pct:
            hi = self.max_pct
        cap = speed_cap_pct if speed_cap_pct > self.min_pct else self.min_pct
        load_cap = self._load_cap(snap, step)
        if load_cap < cap:
            cap = load_cap if load_cap > self.min_pct else self.min_pct
        self.cap_pct = cap
        if hi > cap:
            hi = cap if cap > down else down
        slowest = self._slowest_joined_actual(snap)
        if slowest >= 0.0 and hi > common:
            guard = slowest + self.follow_band_pct
            if hi > guard:
                hi = guard if guard > common else common
        lo = down
        if lo < self.min_pct:
            lo = self.min_pct
        if lo > hi:
            lo = hi
        if self.joined == 0 or self.manual or source == SOURCE_HOLD:
            self._ff_pending = 0.0
        if self.joined == 0:
            # nothing to regulate: start the first pump from min speed
            common = self.min_pct
            self.pid.track(common, error)
        elif self.manual:
            target = self.manual_pct
            common = hi if target > hi else (lo if target < lo else target)
            self.pid.track(common, error)
            source = self.source  # keep: the PI re-tracks on return anyway
        elif source == SOURCE_HOLD:
            common = common if common <= hi else hi
            common = common if common >= lo else lo
            self.pid.track(common, 0.0)
        else:
            if source != self.source:
                self.pid.track(common, error)
            # release the pump-count feedforward at no more than the slew allows
            ff = self._ff_pending
            if ff != 0.0:
                if ff > step:
                    ff = step
                elif ff < self._neg_step:
                    ff = self._neg_step
                self._ff_pending -= ff
                self.pid.integral += ff
            common = self.pid.step(dt_s, error, pv, lo, hi)
        # (staging's "Head at the floor"; the float only at min speed on the remote DP)
        self.at_floor = (
            common <= self.min_pct
            and source == SOURCE_REMOTE
            and not self.manual
            and self.joined > 0
            and error < -0.02 * sp
        )
        self.source = source
        self.common_pct = common
        return common

    def _load_cap(self, snap, step):
        """The motor-rating cap (module rules); floats only while a pump is over or the cap
        is being released."""
        cap = self.load_cap_pct
        over = False
        hot = False
        for i in range(self.pump_count):
            st = snap.pumps[i]
            if not st.online or st.state != DRIVE_RUNNING:
                continue
            kw = st.power_kw
            if kw > self._over_kw[i]:
                over = True
                # from the speed asked (a drive in its current limit sags below it)
                c = self.common_pct * (self._target_kw[i] / kw) ** _THIRD
                if c < cap:
                    cap = c
            elif kw > self._ok_kw[i]:
                hot = True
        self.overloaded = over
        if not over and not hot and cap < self.max_pct:
            cap += step  # (one float: the sum is not taken twice)
            if cap > self.max_pct:
                cap = self.max_pct
        self.load_cap_pct = cap
        return cap

    def _slowest_joined_actual(self, snap):
        slowest = -1.0
        for i in range(self.pump_count):
            if self.phase[i] == PHASE_JOINED:
                st = snap.pumps[i]
                if st.online and (slowest < 0.0 or st.speed_pct < slowest):
                    slowest = st.speed_pct
        return slowest

    def _count_joined(self):
        n = 0
        for i in range(self.pump_count):
            if self.phase[i] == PHASE_JOINED:
                n += 1
        return n

    # --- per tick: each pump's command --------------------------------------------------------
    def drive(self, now_ms, snap, run_mask, exercise_mask=0, hold_mask=0, busy=False):
        """Per-pump commands. busy: another concern already builds floats this tick (staging
        evaluates a count); the feedforward's update then waits for the next tick."""
        dt_ms = 0
        if self._drive_started:
            dt_ms = ticks_diff(now_ms, self._drive_ms)
            if dt_ms < 0:
                dt_ms = 0
        self._drive_started = True
        self._drive_ms = now_ms
        self._step_for(dt_ms)
        step = self._step
        common = self.common_pct
        lo = self.min_pct
        phase = self.phase
        ref = self.ref_pct
        before = self.joined
        for i in range(self.pump_count):
            st = snap.pumps[i]
            cmd = snap.commands[i]
            bit = 1 << i
            p = phase[i]
            if not st.online or st.state == DRIVE_TRIPPED:
                phase[i] = PHASE_IDLE
                ref[i] = 0.0
                cmd.command = CMD_STOP
                cmd.speed_pct = 0.0
                continue
            r = ref[i]
            if run_mask & bit:
                if p == PHASE_IDLE:
                    p = PHASE_JOINING
                    r = lo
                elif p == PHASE_EXERCISE or p == PHASE_LEAVING:
                    p = PHASE_JOINING
                if p == PHASE_JOINING:
                    if r < common:
                        # Never lead the drive by more than one slew step: its own start ramp
                        # is faster than the slew, and it would carry on past min speed.
                        lead = st.speed_pct + step
                        if r < lead:
                            r = r + step if r + step < lead else lead
                            if r > common:
                                r = common
                    elif r > common:
                        r = r - step if r - step > common else common
                    if r == common:
                        p = PHASE_JOINED
                else:
                    r = common
                cmd.command = CMD_RUN
            elif exercise_mask & bit and p != PHASE_JOINED and p != PHASE_LEAVING:
                if p != PHASE_EXERCISE:
                    p = PHASE_EXERCISE
                    r = lo
                cmd.command = CMD_RUN
            else:
                held = hold_mask & bit and r >= lo
                if p == PHASE_JOINED or p == PHASE_JOINING or held:
                    p = PHASE_LEAVING
                if held:
                    # a staggered stop holds it (no faster than the cap falls) for its turn
                    if r > self.cap_pct:
                        r = self.cap_pct
                elif p == PHASE_LEAVING:
                    r = r - step if r - step > lo else lo
                    if r <= lo:
                        p = PHASE_IDLE
                if p == PHASE_LEAVING:
                    cmd.command = CMD_RUN
                else:
                    p = PHASE_IDLE
                    r = 0.0
                    cmd.command = CMD_STOP
            phase[i] = p
            ref[i] = r
            cmd.speed_pct = r
        joined = self._count_joined()
        if joined and not before:
            self.pid.track(self.common_pct)
        self.fed_forward = False if busy else self._feedforward(snap, joined)
        self.joined = joined

    def _feedforward(self, snap, joined):
        """Shift the PI by the change in common speed the pump model asks for when the group's
        effective size changes: a pump counts 1 when joined and, while it climbs or falls between
        its check valve's cut-off speed and the common speed, the fraction of that way it has
        gone (a tripped pump drops out at once). Evaluated at the present flow and head only, so
        flow changes do not feed back through it."""
        moving = False
        for i in range(self.pump_count):
            p = self.phase[i]
            if p == PHASE_JOINING or p == PHASE_LEAVING:
                moving = True
        if not moving and joined == self._n_eff:
            return False  # steady group: nothing to do (and nothing allocated)
        flow = snap.flow_m3h
        n_eff: float = 0  # joined pumps count as ints (no float each), moving ones' fractions add
        ok = flow.quality != BAD and joined > 0 and not self.manual
        head = None  # the required head at this flow, computed once
        if not moving:
            n_eff = joined
        elif ok:
            model = self.model
            q = flow.value
            head = self.setpoint.required_head_m(q, model.kpa_per_m)
            cut = 100.0 * model.cutoff_speed(head)
            common = self.common_pct
            span = common - cut
            for i in range(self.pump_count):
                p = self.phase[i]
                if p == PHASE_JOINED:
                    n_eff += 1
                elif (p == PHASE_JOINING or p == PHASE_LEAVING) and span > 0.5:
                    f = (self.ref_pct[i] - cut) / span
                    if f > 0.0:
                        n_eff += f if f < 1.0 else 1.0
        if ok:
            model = self.model
            q = flow.value
            prev = self._n_eff
            if prev > 0 and n_eff != prev:
                if head is None:
                    head = self.setpoint.required_head_m(q, model.kpa_per_m)
                s_old = model.station_speed_pct(prev, q, head)
                s_new = model.station_speed_pct(n_eff, q, head)
                if s_old > 0.0 and s_new > 0.0:
                    self._ff_pending += s_new - s_old
        self._n_eff = n_eff
        return True
