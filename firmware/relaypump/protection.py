"""Station protection: decides each tick what the control and staging are allowed to do.

``Protection(config, events, state=None)``; per tick ``evaluate(snapshot, now_ms)`` (after the
sensors, before control) sets the outputs below; ``enforce(snapshot.commands)`` is the last guard
after staging; ``reset(pump, now_ms)`` is the operator's reset command (0 = station + all pumps).

Outputs (attributes, updated in place):
- ``stop_all`` / ``stop_reason``: the station's safe state: every relay pump stops, staggered
  (``hold_mask``), with ``stop_command[i]`` (CMD_STOP: the drive's ramp, a soft stop; CMD_COAST
  only for a drive that has tripped already). The reason is the EVENT_* code of the cause, by
  priority: STATION_LOCKOUT, SENSOR_FAULT, SOURCE_INTERLOCK_OPEN, DISCHARGE_TRIP, SUCTION_TRIP;
  0 = none.
- ``hold_mask`` (bitmask): during a station stop, the running pumps not yet told to stop; they
  run on at no more than their reference (and the cap) until their turn.
- ``start_allowed``: False = start no further pump (running ones may go on): suction below its
  limit even with one more pump sharing the flow, the source pumps not confirmed running (input
  off or unreadable), a protection sensor on "hold" or within its sensor_stop_delay_s.
- ``lost_running`` (bitmask): drives lost while running, assumed to go on at their comm-loss speed;
  ``lost_flow_m3h()`` what they are estimated to deliver and ``lost_delivering`` how many of them
  deliver at all (staging counts them); ``runout``: a controlled pump runs beyond its run-out
  limit (pump_model.runout_flow_ratio: staging brings in another pump).
- ``max_speed_pct``: speed cap for every pump (slow-down); speed.max_pct when nothing caps.
- ``allowed[i]`` (False: pump locked out, keep it stopped), ``pump_locked[i]``, ``locked_out``.
- ``alarm_bits``: ALARM_* bits for telemetry; ``suction_limit_kpa()`` for telemetry and KPIs.

Station stop: the last resort. Only these stop every pump (stop_all), each a real hazard:
  the source pumps stopped (their running input reads off for source_stop_delay_s: the relay
  pumps would empty their suction side); suction below its limit where no slower speed helps,
  for suction_stop_delay_s (cavitation); discharge at its max for discharge_stop_delay_s
  (over-pressure; the slow-down could not hold it); a lockout after repeated suction or
  discharge trips; and the configured safe state of a protection sensor with fallback "stop"
  that has been BAD (after the sensors' hold_s of its last good value, or an NE43 failure) for
  sensor_stop_delay_s (its protection is blind). Nothing else does: bus noise is ridden through
  by the sensors' hold_s (HELD values are used as they come), an unreadable source input only
  blocks starts (suction protection still guards the pumps), a lost drive or a tripped one is
  staging's failover, a dry run locks out that pump only.
  The stop is staggered to keep the surge low: one pump ramps down (CMD_STOP, the drive's own
  ramp at <= slew_pct_per_s; one already ramping down when the stop begins is the first) while
  the others hold their reference (hold_mask); the next, the slowest first, is told to stop
  once the last one's drive has stopped (or was lost), or after its ramp_down_s from max speed
  (+ 5 s) at most. Not sooner, at its check valve's cut-off: once
  the head falls below zero a turning pump still passes the column's flow, and pumps reaching
  standstill within one reflection time give it up to the bypass together. So the station's
  flow changes at one pump's ramp at a time; only a falling slow-down cap (suction, discharge:
  a protection first) takes a held pump down meanwhile, along the slew. If the cause clears
  while pumps are still held, they run on (agent.py).

Protections (units kPa gauge, degC, m3/h, % speed; delays in the config in s):
- Running pumps: those whose drive reports running, and a drive lost while running (comm loss):
  it goes on by its comm_loss_action ("safe_speed": speed.safe_pct, "hold": its last speed,
  "fault": it trips, so it counts as stopped), its assumed speed moving there from its last one at
  the slew limit (the drive's own ramp). A lost drive is never assumed stopped while it may run.
- Flow split: the measured station flow is shared by the running pumps in proportion to what
  their (identical) curves H = h0 s^2 - k q^2 deliver at the measured head (discharge - suction):
  q ~ sqrt(h0 s^2 - H), nothing below the check valve's cut-off speed (a lost pump at a safe
  speed under the head runs dead-headed). Head unknown, or no pump delivering by the curve (a
  real pump off its datasheet): equal split.
- Suction: limit = p_sat(T_supply) + max(50 kPa, rho g max(1.3 NPSHr, NPSHr + 1 m)) - p_atm
  + suction_margin_kpa, NPSHr = npsh_bep_m * max(0.6 s, q/Q_bep)^2, the largest of the running
  pumps at their speed and flow share (no pump running: NPSHr at BEP, full speed, the start
  condition). Above limit + suction_slowdown_kpa: no cap. Inside that band the cap falls linearly
  from max_pct to min_pct, plus a hold term: while the cap is what holds the pumps (the fastest
  within 1 % of it) and the margin lies above suction_hold_kpa, the term grows by 0.03 %/s per
  kPa the margin lies above it; below it, it shrinks at the same rate (never below 0, never
  past max_pct). So a long dip settles at suction_hold_kpa above the limit (the limit already
  holds its NPSH margin) instead of wherever the linear band balances (about two thirds into a
  30 kPa band: the DP held lower than the suction needs), within about 4 minutes (0.01 %/s per
  kPa took 10 to 13: the DP more than 2 m low meanwhile, on a fault day 247 s instead of 37). The term is dropped above the band and
  below the limit; suction_hold_kpa >= suction_slowdown_kpa: the linear band alone. Below the
  limit: min_pct; starts only if the limit with one more pump
  sharing the flow equally (the model's judgement: a start lowers each pump's NPSHr) lies at or
  below the suction. A trip (all stop) only when slowing down cannot help: below the limit with a
  pump running for suction_stop_delay_s while the suction is also below the vaporization floor
  p_sat + 50 kPa - p_atm + margin (no speed helps there), or the running drives are already at
  min_pct (+1 %). suction_lockout_trips trips within suction_lockout_window_s lock
  the station out; it resets itself after lockout_reset_s when suction_auto_reset (and suction is
  above the band), else by reset(). After a trip (or a reset) pumps may run again once suction has
  been above the band for restart_delay_s.
- Discharge: cap falls linearly from max_pct to min_pct over the discharge_slowdown_kpa below
  discharge_max_kpa; above the max for discharge_stop_delay_s with a pump running: trip (all stop);
  restart once below the band for restart_delay_s. discharge_lockout_trips trips within
  discharge_lockout_window_s lock the station out (STATION_LOCKOUT, as the suction lockout); it
  resets itself after lockout_reset_s below the band when discharge_auto_reset, else by reset().
- Dry run: pumps running with the station flow below dry_run_min_flow_m3h for dry_run_delay_s:
  each of those pumps is stopped and locked out (reset(); or after lockout_reset_s when
  dry_run_auto_reset). Judged on a measured flow only (GOOD or HELD): a substitute (a fallback
  number, or a transmitter plausibility.py found suspect, e.g. stuck at 0 while the pumps
  deliver) pauses the timer, so a lying flow transmitter never locks out healthy pumps.
- Source interlock: the source-running input off (or unreadable) blocks starts at once; off
  for source_stop_delay_s stops all pumps (unreadable: SENSOR_FAULT, no stop); pumps may run
  again once it has read on for source_restart_delay_s (default 10 s: the source pumps' run-up;
  the suction protection guards the start, which waits until the suction lies above its limit
  with one more pump). While the station stops for the source, a suction below its limit is no
  suction trip (the source explains it; a trip would count towards the lockout and hold the
  restart for restart_delay_s more): starts wait for the suction as above.
- Sensor faults (quality BAD) of suction, discharge, supply temperature and flow follow the
  channel's configured fallback. "stop" (and a sensor-name fallback: no other sensor can stand in
  for these): blind as "hold" below for sensor_stop_delay_s, then all pumps stop until the
  sensor has been good for restart_delay_s (a glitch is not a stop). A number is used
  as the value. "hold": suction/discharge -> speed capped at speed.safe_pct and no starts (the
  protection is blind); supply temperature -> the last good value (none yet: the sensor's top of
  range, the worst case); flow -> dry-run timing paused and NPSHr taken at runout_flow_ratio.
  "model": flow -> the pumps' flow from their curves (plausibility.py) as a SUBSTITUTE, and
  as "hold" while it cannot be had. Suction / discharge -> the other pressure -/+ the running
  pumps' head at their speeds and the measured flow (plausibility.py) as a SUBSTITUTE, judged
  with substitute_margin_kpa on the unsafe side (discharge + margin for the slow-down and the
  trip, suction - margin for the slow-down, start and trip: the model's error, ISO 9906 grade
  2B head tolerance and wear, ~5 % of the head); as "hold" (safe speed, no starts) while it
  cannot be had (no pump running, no usable flow); both pressures without a value (BAD, no
  substitute possible: no NPSH or over-pressure protection at all) -> as "stop". HELD and SUBSTITUTE values are used as they come. Every BAD
  transition (for flow and the remote DP: every SUBSTITUTE one too) emits SENSOR_FAULT /
  SENSOR_RESTORED (subject 1: the channel runs on its substitute, 0: no value). The shipped
  config runs a lost suction or discharge transmitter on its model substitute ("model"): one
  lost pressure transmitter no longer stops the station; both lost still do.
- Events go into the EventRing on transitions only; stop_all entering/leaving also emits
  SAFE_STATE_ENTERED (value = stop_reason) / SAFE_STATE_LEFT.

Implementation: measurements are converted to scaled integers (0.1 kPa, 0.01 degC, 0.1 m3/h,
0.01 %) when their value object changed (the sensors and the fieldbus build a new float only for a
new value; a conversion builds one float: heap objects on MicroPython); everything after that is
integer arithmetic below 2**30, so it allocates nothing and decides identically on CPython and
MicroPython. Timers accumulate the wrap-safe tick
differences (a stalled tick counts at most 10 min), so no stored tick can alias after 2**30 ms.
"""

from micropython import const

from . import codes
from .plausibility import isqrt
from .snapshot import BAD, CMD_COAST, CMD_RUN, CMD_STOP, DRIVE_RUNNING, DRIVE_TRIPPED, SUBSTITUTE
from .ticks import ticks_diff as _ticks_diff

_TICKS_MASK = const(0x3FFFFFFF)
_MAX_DT_MS = const(600000)
_MAX_TIMER_MS = const(0x10000000)
_OFF = const(-1)  # a timer that is not running
_NONE = const(-0x20000000)  # no usable value
_HYST_X10 = const(50)  # 5 kPa: a warning clears only this far inside the good side
_LOST_TRIPS = const(-1)  # comm_loss_action "fault": a lost drive trips (counts as stopped)
_LOST_HOLDS = const(-2)  # "hold": it keeps the speed it had
_HOLD_GAIN = const(3)  # the suction hold term: 0.03 %/s per kPa (x 0.01, the unit below)

# fallback kinds
_FB_STOP = const(0)
_FB_HOLD = const(1)
_FB_VALUE = const(2)
_FB_MODEL = const(3)  # a pressure from the other one and the pumps' head (plausibility.py)

# sensor channels (the value of SENSOR_FAULT / SENSOR_RESTORED events)
CH_SUCTION = const(1)
CH_DISCHARGE = const(2)
CH_REMOTE_DP = const(3)
CH_SUPPLY_TEMP = const(4)
CH_FLOW = const(5)
CH_SOURCE = const(6)

# suction / discharge state
_OK = const(0)
_TRIPPED = const(1)
_LOCKED = const(2)

# readings kept as scaled integers (Protection._scaled_of): x10 rounded below _R_TEMP
_R_SUCTION = const(0)
_R_DISCHARGE = const(1)
_R_FLOW = const(2)
_R_TEMP = const(3)
_R_SPEED = const(4)  # + pump index

# the settings in Protection._cfg, scaled integers (min_pct as configured, % speed)
_C_MARGIN_X10 = const(0)
_C_SUCTION_BAND_X10 = const(1)
_C_SUCTION_HOLD_X10 = const(2)
_C_SUCTION_DELAY_MS = const(3)
_C_LOCKOUT_WINDOW_MS = const(4)
_C_SUCTION_AUTO_RESET = const(5)
_C_LOCKOUT_RESET_MS = const(6)
_C_RESTART_MS = const(7)
_C_DISCHARGE_MAX_X10 = const(8)
_C_DISCHARGE_BAND_X10 = const(9)
_C_DISCHARGE_DELAY_MS = const(10)
_C_DISCHARGE_AUTO_RESET = const(11)
_C_DISCHARGE_WINDOW_MS = const(12)
_C_DRY_FLOW_X10 = const(13)
_C_DRY_DELAY_MS = const(14)
_C_DRY_AUTO_RESET = const(15)
_C_SOURCE_DELAY_MS = const(16)
_C_SOURCE_RESTART_MS = const(17)
_C_SENSOR_DELAY_MS = const(18)
_C_SUB_MARGIN_X10 = const(19)
_C_MIN_X100 = const(20)
_C_MAX_X100 = const(21)
_C_SAFE_X100 = const(22)
_C_SLEW_X100 = const(23)
_C_MIN_PCT = const(24)
_C_NPSH_BEP_MM = const(25)
_C_BEP_FLOW_X10 = const(26)
_C_MAX_FLOW_PERMIL = const(27)
_C_RHO_G = const(28)
_C_H0_MM = const(29)
_C_FB_SUCTION = const(30)
_C_FB_DISCHARGE = const(31)
_C_FB_TEMP = const(32)
_C_FB_FLOW = const(33)
_C_FBV_SUCTION = const(34)
_C_FBV_DISCHARGE = const(35)
_C_FBV_TEMP = const(36)
_C_FBV_FLOW = const(37)
_C_COUNT = const(38)

# p_sat of water (IAPWS-IF97 region 4) at 0, 2, 4 .. 200 degC in 0.1 kPa abs, rounded up; linear
# interpolation between the points of this convex curve stays on the high (safe) side.
_PSAT_X10 = (
    7, 8, 9, 10, 11, 13, 15, 16, 19, 21, 24, 27, 30, 34, 38, 43, 48, 54, 60, 67, 74, 83, 92,
    101, 112, 124, 137, 151, 166, 182, 200, 219, 240, 262, 286, 313, 341, 371, 403, 438, 475,
    514, 557, 602, 651, 702, 757, 816, 878, 944, 1015, 1089, 1168, 1252, 1341, 1434, 1533, 1638,
    1748, 1865, 1987, 2116, 2252, 2395, 2545, 2703, 2869, 3042, 3225, 3416, 3616, 3825, 4044,
    4273, 4512, 4762, 5022, 5294, 5578, 5874, 6182, 6503, 6837, 7184, 7545, 7921, 8311, 8717,
    9137, 9574, 10027, 10496, 10983, 11488, 12010, 12551, 13110, 13689, 14288, 14907, 15547,
)  # fmt: skip


def saturation_kpa_x10(temp_c_x100):
    """Vapour pressure of water (0.1 kPa abs, rounded up) at a temperature in 0.01 degC."""
    if temp_c_x100 <= 0:
        return _PSAT_X10[0]
    i = temp_c_x100 // 200
    if i >= 100:
        return _PSAT_X10[100]
    low = _PSAT_X10[i]
    return low + ((_PSAT_X10[i + 1] - low) * (temp_c_x100 - i * 200) + 199) // 200


def _timer(timer, active, dt):
    """Advance a timer: _OFF while inactive, else ms since the condition began (capped)."""
    if not active:
        return _OFF
    if timer < 0:
        return 0
    timer += dt
    return timer if timer < _MAX_TIMER_MS else _MAX_TIMER_MS


class Protection:
    def __init__(self, config, events, state=None):
        p = config["protection"]
        speed = config["speed"]
        model = config["pump_model"]
        channels = config["io"]["channels"]
        n = len(config["pumps"])
        self.pump_count = n
        self._events = events
        self._state = state
        # the settings as scaled integers (module constants _C_*), one tuple: an instance's
        # attribute table grows in steps (99 attributes took 1 KiB, up to 59 take 480 B)
        c = [0] * _C_COUNT
        c[_C_MARGIN_X10] = round(p["suction_margin_kpa"] * 10.0) - round(p["atmosphere_kpa"] * 10.0)
        c[_C_SUCTION_BAND_X10] = round(p["suction_slowdown_kpa"] * 10.0)
        c[_C_SUCTION_HOLD_X10] = round(p.get("suction_hold_kpa", 5.0) * 10.0)
        c[_C_SUCTION_DELAY_MS] = p["suction_stop_delay_s"] * 1000
        c[_C_LOCKOUT_WINDOW_MS] = p["suction_lockout_window_s"] * 1000
        c[_C_SUCTION_AUTO_RESET] = p["suction_auto_reset"]
        c[_C_LOCKOUT_RESET_MS] = p["lockout_reset_s"] * 1000
        c[_C_RESTART_MS] = p["restart_delay_s"] * 1000
        c[_C_DISCHARGE_MAX_X10] = round(p["discharge_max_kpa"] * 10.0)
        c[_C_DISCHARGE_BAND_X10] = round(p["discharge_slowdown_kpa"] * 10.0)
        c[_C_DISCHARGE_DELAY_MS] = p["discharge_stop_delay_s"] * 1000
        c[_C_DISCHARGE_AUTO_RESET] = p["discharge_auto_reset"]
        c[_C_DISCHARGE_WINDOW_MS] = p["discharge_lockout_window_s"] * 1000
        c[_C_DRY_FLOW_X10] = round(p["dry_run_min_flow_m3h"] * 10.0)
        c[_C_DRY_DELAY_MS] = p["dry_run_delay_s"] * 1000
        c[_C_DRY_AUTO_RESET] = p["dry_run_auto_reset"]
        c[_C_SOURCE_DELAY_MS] = p["source_stop_delay_s"] * 1000
        c[_C_SOURCE_RESTART_MS] = p.get("source_restart_delay_s", 10) * 1000
        c[_C_SENSOR_DELAY_MS] = p["sensor_stop_delay_s"] * 1000
        c[_C_SUB_MARGIN_X10] = round(p.get("substitute_margin_kpa", 30.0) * 10.0)
        c[_C_MIN_X100] = int(speed["min_pct"] * 100.0 + 0.5)
        c[_C_MAX_X100] = int(speed["max_pct"] * 100.0 + 0.5)
        c[_C_SAFE_X100] = int(speed["safe_pct"] * 100.0 + 0.5)
        c[_C_SLEW_X100] = int(speed["slew_pct_per_s"] * 100.0 + 0.5)  # per second
        c[_C_MIN_PCT] = speed["min_pct"]
        c[_C_NPSH_BEP_MM] = int(model["npsh_bep_m"] * 1000.0 + 0.5)
        c[_C_BEP_FLOW_X10] = round(model["bep_flow_m3h"] * 10.0)
        runout = model.get("runout_flow_ratio", model["max_flow_ratio"])  # (the run-out limit)
        c[_C_MAX_FLOW_PERMIL] = int(runout * 1000.0 + 0.5)
        c[_C_RHO_G] = int(model["density_kg_m3"] * 9.80665 + 0.5)  # Pa per m of water column
        c[_C_H0_MM] = int(model["shutoff_head_m"] * 1000.0 + 0.5)
        # a staggered stop waits for a stopping pump at most its drive's ramp from max speed
        self._ramp_ms = [0] * n
        for i in range(n):
            ramp_s = config["pumps"][i]["ramp_down_s"] * speed["max_pct"] / 100.0
            self._ramp_ms[i] = int(ramp_s * 1000.0 + 0.5) + 5000  # + a poll cycle and a tick
        # what each drive does when its link is lost: its assumed speed (0.01 %) or _LOST_*
        self._lost_action = [0] * n
        for i in range(n):
            action = config["pumps"][i].get("comm_loss_action", "safe_speed")
            if action == "fault":
                self._lost_action[i] = _LOST_TRIPS
            elif action == "hold":
                self._lost_action[i] = _LOST_HOLDS
            else:
                self._lost_action[i] = c[_C_SAFE_X100]
        # sensor fallbacks (kind, scaled value)
        for kind, scaled, name, scale in (
            (_C_FB_SUCTION, _C_FBV_SUCTION, "suction_kpa", 10.0),
            (_C_FB_DISCHARGE, _C_FBV_DISCHARGE, "discharge_kpa", 10.0),
            (_C_FB_TEMP, _C_FBV_TEMP, "supply_temp_c", 100.0),
            (_C_FB_FLOW, _C_FBV_FLOW, "flow_m3h", 10.0),
        ):
            fb = channels[name]["fallback"]
            c[scaled] = _NONE
            if type(fb) is float:
                c[kind] = _FB_VALUE
                c[scaled] = int(fb * scale + (0.5 if fb >= 0 else -0.5))
            elif fb == "model":  # flow or a pressure from the pumps' curves; without it as "hold"
                c[kind] = _FB_MODEL
            elif fb == "hold":
                c[kind] = _FB_HOLD
            else:  # "stop", or another sensor: none can stand in for a protection's sensor
                c[kind] = _FB_STOP
        self._cfg = tuple(c)
        self._temp_last_x100 = int(channels["supply_temp_c"]["high"] * 100.0 + 0.5)  # worst case
        # the readings as scaled integers (_scaled_of): the value object last converted and its
        # integer, by _R_* (then each pump's speed)
        self._seen = [None] * (_R_SPEED + n)
        self._scaled = [0] * (_R_SPEED + n)
        self._hold_x1e6 = 0  # the slow-down's hold term (1e-6 %: _HOLD_GAIN x 0.01 %/s per kPa)
        self._trip_age = [_OFF] * p["suction_lockout_trips"]  # ages of the trips
        self._discharge_trips = [_OFF] * p["discharge_lockout_trips"]  # their ages
        self._discharge_lock_age = _OFF
        # outputs
        self.stop_all = False
        self.stop_reason = 0
        self.start_allowed = False
        self.max_speed_pct = speed["max_pct"]
        self._cap_x100 = c[_C_MAX_X100]
        self.allowed = [True] * n
        self.pump_locked = [False] * n
        self.locked_out = False
        self.stop_command = [CMD_STOP] * n
        self.hold_mask = 0  # a staggered stop: running pumps not yet told to stop (bitmask)
        self.alarm_bits = 0
        self.suction_limit_x10 = 0
        # internal state
        self._started = False
        self._last_ms = 0
        self._running = 0  # running pumps (bit mask), a lost one included (module rules)
        self._lost_target = [0] * n  # its comm-loss speed (0.01 %)
        self._run_x100 = [0] * n  # each running pump's (assumed) speed, else 0
        self._share_x10 = [0] * n  # its part of the station flow (0.1 m3/h)
        self.lost_running = 0
        self.lost_delivering = 0
        self.lost_flow_x10 = 0
        self.runout = False
        self._suction_state = _OK
        self._suction_low = False
        self._suction_below = _OFF
        self._suction_good = _OFF
        self._lock_age = _OFF
        self._discharge_state = _OK
        self._discharge_high = False
        self._discharge_above = _OFF
        self._discharge_good = _OFF
        self._dry = _OFF
        self._pump_lock_age = [_OFF] * n
        self._source_open = False
        self._source_off = _OFF
        self._source_on = _OFF
        self._sensor_bits = 0  # bit CH_* set while that sensor is BAD
        self._sensor_stop = False
        self._sensor_bad = _OFF  # a "stop" sensor BAD since (ms), before sensor_stop_delay_s
        self._sensor_good = _OFF
        self._stopping = False  # the staggered stop in progress (module rules)
        self._released = -1  # the pump told to stop last, until its drive has stopped
        self._release_age = _OFF
        self._blind = False  # a protection sensor on "hold": cap at safe speed, no starts
        if state is not None:  # lockouts survive a restart
            if state.station_lockout:
                self._suction_state = _LOCKED
                self._lock_age = 0
                self.locked_out = True
            for i in range(min(n, state.pump_count)):
                if state.pump_lockout[i]:
                    self.pump_locked[i] = True
                    self._pump_lock_age[i] = 0

    # --- helpers ---------------------------------------------------------------------------------
    def _scaled_of(self, k, value):
        """Reading k (_R_*) as a scaled integer, converted again only when its value object
        changed: x10 rounded (pressures, flow), x100 truncated (temperature, speeds)."""
        if value is not self._seen[k]:
            self._seen[k] = value
            self._scaled[k] = round(value * 10.0) if k < _R_TEMP else int(value * 100.0)
        return self._scaled[k]

    def _sensor(self, m, channel, now, worst=BAD):
        """True when m is usable; tracks the fault bit of the channel (quality >= worst) and its
        events."""
        bit = 1 << channel
        if m.quality < worst:
            if self._sensor_bits & bit:
                self._sensor_bits &= ~bit
                self._events.push(
                    codes.EVENT_SENSOR_RESTORED, codes.SEVERITY_NOTICE, 0, channel, now
                )
            return True
        if not self._sensor_bits & bit:
            self._sensor_bits |= bit
            on_substitute = 1 if m.quality == SUBSTITUTE else 0
            self._events.push(
                codes.EVENT_SENSOR_FAULT, codes.SEVERITY_ALARM, on_substitute, channel, now
            )
        return m.quality != BAD

    def suction_limit_kpa(self):
        return self.suction_limit_x10 / 10.0

    # --- per tick --------------------------------------------------------------------------------
    def evaluate(self, snap, now_ms):
        cfg = self._cfg
        now = now_ms & _TICKS_MASK
        if self._started:
            dt = _ticks_diff(now, self._last_ms)
            if dt < 0:
                dt = 0
            elif dt > _MAX_DT_MS:
                dt = _MAX_DT_MS
        else:
            dt = 0
            self._started = True
        self._last_ms = now
        n = self.pump_count
        pumps = snap.pumps
        commands = snap.commands

        # which pumps run (a lost one by its comm-loss action), at which speed
        n_run = 0
        fastest = 0  # the fastest drive the agent still reaches (can it slow down?)
        step = cfg[_C_SLEW_X100] * dt // 1000
        lost_before = self.lost_running  # a lost pump stays lost (running) while offline
        lost_mask = 0
        run_mask = 0
        for i in range(n):
            p = pumps[i]
            s = 0
            bit = 1 << i
            if p.online:
                running = p.state == DRIVE_RUNNING
                if running:
                    s = self._scaled_of(_R_SPEED + i, p.speed_pct)
                    if s > fastest:
                        fastest = s
            else:
                running = lost_before & bit != 0
                if not running and self._running & bit:  # lost while running
                    action = self._lost_action[i]
                    if action != _LOST_TRIPS:
                        running = True
                        hold = action == _LOST_HOLDS
                        self._lost_target[i] = self._run_x100[i] if hold else action
                if running:
                    s = self._run_x100[i]  # towards its comm-loss speed along the drive's ramp
                    target = self._lost_target[i]
                    if s > target + step:
                        s -= step
                    elif s < target - step:
                        s += step
                    else:
                        s = target
                    lost_mask |= bit
            self._run_x100[i] = s
            if running:
                n_run += 1
                run_mask |= bit
            self.stop_command[i] = CMD_COAST if p.state == DRIVE_TRIPPED else CMD_STOP
        self.lost_running = lost_mask
        self._running = run_mask

        # measurements -> scaled integers (or _NONE), with the sensor fallbacks
        stop_sensor = False
        blind = False
        m = snap.suction_kpa
        if self._sensor(m, CH_SUCTION, now, SUBSTITUTE):  # every substitute is a sensor fault
            suction = self._scaled_of(_R_SUCTION, m.value)
            if m.quality == SUBSTITUTE and cfg[_C_FB_SUCTION] == _FB_MODEL:
                suction -= cfg[_C_SUB_MARGIN_X10]  # the model's error on the unsafe side
        else:
            suction = cfg[_C_FBV_SUCTION]
            if cfg[_C_FB_SUCTION] == _FB_STOP:
                stop_sensor = True
            elif cfg[_C_FB_SUCTION] != _FB_VALUE:
                blind = True
        m = snap.discharge_kpa
        if self._sensor(m, CH_DISCHARGE, now, SUBSTITUTE):
            discharge = self._scaled_of(_R_DISCHARGE, m.value)
            if m.quality == SUBSTITUTE and cfg[_C_FB_DISCHARGE] == _FB_MODEL:
                discharge += cfg[_C_SUB_MARGIN_X10]
        else:
            discharge = cfg[_C_FBV_DISCHARGE]
            if cfg[_C_FB_DISCHARGE] == _FB_STOP:
                stop_sensor = True
            elif cfg[_C_FB_DISCHARGE] != _FB_VALUE:
                blind = True
        if suction == _NONE and discharge == _NONE and cfg[_C_FB_SUCTION] == _FB_MODEL:
            stop_sensor = True  # both pressures lost: no substitute, a real hazard
        m = snap.supply_temp_c
        if self._sensor(m, CH_SUPPLY_TEMP, now):
            temp = self._scaled_of(_R_TEMP, m.value)
            self._temp_last_x100 = temp
        elif cfg[_C_FB_TEMP] == _FB_VALUE:
            temp = cfg[_C_FBV_TEMP]
        else:
            temp = self._temp_last_x100
            if cfg[_C_FB_TEMP] == _FB_STOP:
                stop_sensor = True
        m = snap.flow_m3h
        if self._sensor(m, CH_FLOW, now, SUBSTITUTE):  # a substitute flow is a sensor fault too
            flow = self._scaled_of(_R_FLOW, m.value)
        else:
            flow = cfg[_C_FBV_FLOW]
            if cfg[_C_FB_FLOW] == _FB_STOP:
                stop_sensor = True
        m = snap.source_running
        source_known = self._sensor(m, CH_SOURCE, now)  # GOOD, or HELD for io.hold_s
        source_off = source_known and m.value < 0.5
        source_ok = source_known and not source_off
        # The remote DP protects nothing itself, but a lost remote value (the loop then runs on
        # the discharge pressure) is a sensor fault the control room must see.
        self._sensor(snap.remote_dp_kpa, CH_REMOTE_DP, now, SUBSTITUTE)

        flow_known = flow != _NONE and flow >= 0
        n_deliver = self._shares(flow if flow_known else 0, suction, discharge, n_run)
        limit = self._suction_limit(temp, flow_known, n_run)
        self.suction_limit_x10 = limit
        cap = cfg[_C_MAX_X100]
        start_ok = True

        # suction (trips older than the lockout window no longer count)
        ages = self._trip_age
        window = cfg[_C_LOCKOUT_WINDOW_MS]
        for i in range(len(ages)):
            if ages[i] >= 0:
                age = ages[i] + dt
                ages[i] = age if age <= window else _OFF
        if suction != _NONE:
            floor = saturation_kpa_x10(temp) + 500 + cfg[_C_MARGIN_X10]  # NPSH-free: p_sat + 50
            hopeless = suction < floor or fastest <= cfg[_C_MIN_X100] + 100
            c = self._suction(suction - limit, n_run, dt, now, suction, hopeless, fastest)
            if c < cap:
                cap = c
            if suction < limit:
                more = limit
                if n_run and flow_known:  # one more pump would share the flow equally
                    r = flow // (n_deliver + 1) * 1000 // cfg[_C_BEP_FLOW_X10]
                    slow = 6 * fastest // 100
                    more = self._limit_of(temp, r if r > slow else slow)
                if suction < more:
                    start_ok = False
        elif self._suction_state == _LOCKED:
            self._lock_age = _timer(self._lock_age, True, dt)

        # discharge
        if discharge != _NONE:
            c = self._discharge(discharge, n_run, dt, now)
            if c < cap:
                cap = c

        # dry run: on a measured flow only (unknown or a substitute: paused)
        if flow != _NONE and snap.flow_m3h.quality < SUBSTITUTE:
            self._dry_run(flow, n_run, dt, now)
        ages = self._pump_lock_age  # a locked pump's own reset (dry_run_auto_reset)
        for i in range(n):
            if ages[i] >= 0:
                ages[i] = _timer(ages[i], True, dt)
                if cfg[_C_DRY_AUTO_RESET] and ages[i] >= cfg[_C_LOCKOUT_RESET_MS]:
                    self._unlock_pump(i, 0, now)

        # source interlock: a stop only on a read "off"; unreadable blocks starts only
        self._source_off = _timer(self._source_off, source_off, dt)
        self._source_on = _timer(self._source_on, source_ok and self._source_open, dt)
        if not source_ok:
            start_ok = False
            if not self._source_open and self._source_off >= cfg[_C_SOURCE_DELAY_MS]:
                self._source_open = True
                self._events.push(
                    codes.EVENT_SOURCE_INTERLOCK_OPEN, codes.SEVERITY_ALARM, 0, 0, now
                )
        elif self._source_open and self._source_on >= cfg[_C_SOURCE_RESTART_MS]:
            self._source_open = False
            self._source_on = _OFF
            self._events.push(
                codes.EVENT_PROTECTION_CLEARED,
                codes.SEVERITY_NOTICE,
                0,
                codes.EVENT_SOURCE_INTERLOCK_OPEN,
                now,
            )

        # sensor faults: a "stop" sensor BAD past sensor_stop_delay_s stops; until then blind
        self._sensor_bad = _timer(self._sensor_bad, stop_sensor, dt)
        if stop_sensor and (self._sensor_stop or self._sensor_bad >= cfg[_C_SENSOR_DELAY_MS]):
            self._sensor_stop = True
            self._sensor_good = _OFF
        elif stop_sensor:
            blind = True
        elif self._sensor_stop:
            self._sensor_good = _timer(self._sensor_good, True, dt)
            if self._sensor_good >= cfg[_C_RESTART_MS]:
                self._sensor_stop = False
                self._sensor_good = _OFF
        self._blind = blind
        if blind:
            start_ok = False
            if cfg[_C_SAFE_X100] < cap:
                cap = cfg[_C_SAFE_X100]

        self._outputs(cap, start_ok, now, dt, commands)
        self._sequence(pumps, commands, dt)

    def _sequence(self, pumps, commands, dt):
        """The staggered stop (module rules): hold_mask keeps the running pumps not yet told to
        stop; one is released once the last one released has stopped."""
        if not self.stop_all:
            self._stopping = False
            self._released = -1
            self.hold_mask = 0
            return
        n = self.pump_count
        hold = self.hold_mask
        if not self._stopping:  # the stop begins: every pump running on a RUN command waits
            self._stopping = True
            self._released = -1
            self._release_age = 0
            hold = 0
            for i in range(n):
                p = pumps[i]
                if p.online and p.state == DRIVE_RUNNING:
                    if commands[i].command == CMD_RUN:
                        hold |= 1 << i
                    else:  # already ramping down (a demand stop): its turn comes first
                        self._released = i
        for i in range(n):  # stopped, tripped or lost meanwhile: nothing to wait for
            if hold & (1 << i) and not (pumps[i].online and pumps[i].state == DRIVE_RUNNING):
                hold &= ~(1 << i)
        r = self._released
        if r >= 0:
            self._release_age = _timer(self._release_age, True, dt)
            p = pumps[r]
            if p.online and p.state == DRIVE_RUNNING and self._release_age < self._ramp_ms[r]:
                self.hold_mask = hold
                return
            self._released = -1
            self._release_age = _OFF
        if hold:  # the slowest next: the smallest flow step first
            r = -1
            for i in range(n):
                if hold & (1 << i) and (r < 0 or self._run_x100[i] < self._run_x100[r]):
                    r = i
            hold &= ~(1 << r)
            self._released = r
            self._release_age = 0
        self.hold_mask = hold

    def _shares(self, flow, suction, discharge, n_run):
        """Each running pump's part of the flow (0.1 m3/h) into _share_x10 (module rules: "Flow
        split"); the lost ones' sum and count into lost_flow_x10 / lost_delivering, run-out into
        runout. Returns how many pumps deliver. Integers only."""
        shares = self._share_x10
        running = self._running
        speeds = self._run_x100
        n = self.pump_count
        total = 0
        if suction != _NONE and discharge != _NONE:
            head_mm = (discharge - suction) * 10000 // self._cfg[_C_RHO_G] * 10
            h0 = self._cfg[_C_H0_MM]
            for i in range(n):
                w = 0
                if running & (1 << i):
                    s = speeds[i] // 10
                    w = isqrt((h0 * s // 1000 * s // 1000 - head_mm) * 100)
                shares[i] = w
                total += w
        n_deliver = 0
        lost_flow = 0
        lost_deliver = 0
        runout = False
        lost = self.lost_running
        for i in range(n):
            if not running & (1 << i):
                shares[i] = 0
                continue
            if total > 0:
                if shares[i] <= 0:
                    continue  # under its cut-off speed: no flow
                q = flow * shares[i] // total
            else:
                q = flow // n_run
            shares[i] = q
            n_deliver += 1
            if lost & (1 << i):
                lost_flow += q
                lost_deliver += 1
            elif speeds[i] > 0:  # run-out: q / s beyond runout_flow_ratio x BEP
                x = q * 1000 // self._cfg[_C_BEP_FLOW_X10] * 10000 // speeds[i]
                if x > self._cfg[_C_MAX_FLOW_PERMIL]:
                    runout = True
        self.lost_flow_x10 = lost_flow
        self.lost_delivering = lost_deliver
        self.runout = runout
        return n_deliver

    def lost_flow_m3h(self):
        return self.lost_flow_x10 / 10.0

    def _suction_limit(self, temp_x100, flow_known, n_run):
        """Lowest allowed suction pressure (0.1 kPa gauge) for this temperature and duty: the
        largest NPSHr of the running pumps at their speed and flow share."""
        if n_run == 0:
            return self._limit_of(temp_x100, 1000)  # NPSHr at BEP: the start condition
        r = 0
        for i in range(self.pump_count):
            if self._running & (1 << i):
                s_permil = self._run_x100[i] // 10
                if flow_known:
                    x = self._share_x10[i] * 1000 // self._cfg[_C_BEP_FLOW_X10]
                else:  # unknown flow: the worst allowed
                    x = self._cfg[_C_MAX_FLOW_PERMIL] * s_permil // 1000
                if x > r:
                    r = x
                x = 6 * s_permil // 10
                if x > r:
                    r = x
        return self._limit_of(temp_x100, r)

    def _limit_of(self, temp_x100, r):
        """The suction limit for NPSHr = npsh_bep_m * (r / 1000)^2."""
        npsh_mm = (self._cfg[_C_NPSH_BEP_MM] * r // 1000) * r // 1000
        need_mm = (13 * npsh_mm + 9) // 10
        if npsh_mm + 1000 > need_mm:
            need_mm = npsh_mm + 1000
        need_x10 = ((need_mm + 9) // 10 * self._cfg[_C_RHO_G] + 9999) // 10000
        if need_x10 < 500:
            need_x10 = 500  # p_sat + 50 kPa at least
        return saturation_kpa_x10(temp_x100) + need_x10 + self._cfg[_C_MARGIN_X10]

    def _suction(self, margin, n_run, dt, now, suction, hopeless=True, fastest=0):
        """Suction state machine; returns its speed cap (0.01 %). hopeless: no slower speed can
        help (below the vaporization floor, or the drives at min speed already)."""
        cfg = self._cfg
        band = cfg[_C_SUCTION_BAND_X10]
        # warning: entering the slow-down band
        if not self._suction_low:
            if margin < band or margin < 0:  # (band 0: below the limit)
                self._suction_low = True
                self._events.push(codes.EVENT_SUCTION_LOW, codes.SEVERITY_WARNING, 0, suction, now)
        elif margin >= band + _HYST_X10:
            self._suction_low = False
            self._events.push(
                codes.EVENT_PROTECTION_CLEARED,
                codes.SEVERITY_NOTICE,
                0,
                codes.EVENT_SUCTION_LOW,
                now,
            )
        state = self._suction_state
        above_band = margin >= band
        if state == _OK:
            below = margin < 0 and n_run > 0 and hopeless and not self._source_open
            self._suction_below = _timer(self._suction_below, below, dt)
            if self._suction_below >= cfg[_C_SUCTION_DELAY_MS]:
                self._suction_trip(now, suction)
        elif state == _TRIPPED:
            self._suction_good = _timer(self._suction_good, above_band, dt)
            if self._suction_good >= cfg[_C_RESTART_MS]:
                self._suction_state = _OK
                self._suction_good = _OFF
                self._events.push(
                    codes.EVENT_PROTECTION_CLEARED,
                    codes.SEVERITY_NOTICE,
                    0,
                    codes.EVENT_SUCTION_TRIP,
                    now,
                )
        else:  # locked out
            self._lock_age = _timer(self._lock_age, True, dt)
            if (
                cfg[_C_SUCTION_AUTO_RESET]
                and self._lock_age >= cfg[_C_LOCKOUT_RESET_MS]
                and above_band
            ):
                self._unlock_station(0, now)
        if margin < 0 or margin >= band:
            self._hold_x1e6 = 0
            return cfg[_C_MIN_X100] if margin < 0 else cfg[_C_MAX_X100]
        span = cfg[_C_MAX_X100] - cfg[_C_MIN_X100]
        cap = cfg[_C_MIN_X100] + span * margin // band
        # the hold term (rules): 0.1 kPa x ms x 1 = 1e-6 %, i.e. 0.01 %/s per kPa, x _HOLD_GAIN
        # (below 2**30: |error| < the 30 kPa band, dt < 10 min)
        error = margin - cfg[_C_SUCTION_HOLD_X10]
        hold = self._hold_x1e6
        if error < 0 or fastest + 100 >= self._cap_x100:
            hold += _HOLD_GAIN * error * dt
            if hold < 0:
                hold = 0
            elif hold > span * 10000:
                hold = span * 10000
            self._hold_x1e6 = hold
        cap += hold // 10000
        return cap if cap < cfg[_C_MAX_X100] else cfg[_C_MAX_X100]

    def _suction_trip(self, now, suction):
        self._suction_below = _OFF
        self._suction_good = _OFF
        ages = self._trip_age
        count = 1  # this trip
        slot = -1
        for i in range(len(ages)):
            if ages[i] >= 0:
                count += 1
            elif slot < 0:
                slot = i
        if slot < 0:  # every slot holds a recent trip: reuse the oldest
            slot = 0
            for i in range(1, len(ages)):
                if ages[i] > ages[slot]:
                    slot = i
        ages[slot] = 0
        self._events.push(codes.EVENT_SUCTION_TRIP, codes.SEVERITY_ALARM, 0, suction, now)
        if count >= len(ages):
            self._suction_state = _LOCKED
            self._lock_age = 0
            self.locked_out = True
            if self._state is not None:
                self._state.set_station_lockout(True)
            self._events.push(codes.EVENT_STATION_LOCKOUT, codes.SEVERITY_CRITICAL, 0, count, now)
        else:
            self._suction_state = _TRIPPED

    def _unlock_station(self, manual, now):
        self._suction_state = _TRIPPED  # pumps run again after restart_delay_s above the band
        self._suction_good = _OFF
        self._lock_age = _OFF
        ages = self._trip_age
        for i in range(len(ages)):
            ages[i] = _OFF
        self.locked_out = False
        if self._state is not None:
            self._state.set_station_lockout(False)
        self._events.push(codes.EVENT_LOCKOUT_RESET, codes.SEVERITY_NOTICE, 0, manual, now)

    def _discharge(self, discharge, n_run, dt, now):
        cfg = self._cfg
        dmax = cfg[_C_DISCHARGE_MAX_X10]
        band = cfg[_C_DISCHARGE_BAND_X10]
        start = dmax - band
        if not self._discharge_high:
            if discharge > start or discharge >= dmax:
                self._discharge_high = True
                self._events.push(
                    codes.EVENT_DISCHARGE_HIGH, codes.SEVERITY_WARNING, 0, discharge, now
                )
        elif discharge < start - _HYST_X10:
            self._discharge_high = False
            self._events.push(
                codes.EVENT_PROTECTION_CLEARED,
                codes.SEVERITY_NOTICE,
                0,
                codes.EVENT_DISCHARGE_HIGH,
                now,
            )
        ages = self._discharge_trips  # trips older than the lockout window no longer count
        count = 1  # with a trip now
        for i in range(len(ages)):
            if ages[i] >= 0:
                age = ages[i] + dt
                ages[i] = age if age <= cfg[_C_DISCHARGE_WINDOW_MS] else _OFF
                if ages[i] >= 0:
                    count += 1
        if self._discharge_state == _OK:
            self._discharge_above = _timer(
                self._discharge_above, discharge >= dmax and n_run > 0, dt
            )
            if self._discharge_above >= cfg[_C_DISCHARGE_DELAY_MS]:
                self._discharge_state = _TRIPPED
                self._discharge_above = _OFF
                self._events.push(
                    codes.EVENT_DISCHARGE_TRIP, codes.SEVERITY_ALARM, 0, discharge, now
                )
                slot = -1  # a free slot, else the oldest trip's
                for i in range(len(ages)):
                    if ages[i] < 0 and slot < 0:
                        slot = i
                if slot < 0:
                    slot = 0
                    for i in range(1, len(ages)):
                        if ages[i] > ages[slot]:
                            slot = i
                ages[slot] = 0
                if count >= len(ages):
                    self._discharge_state = _LOCKED
                    self._discharge_lock_age = 0
                    self.locked_out = True
                    if self._state is not None:
                        self._state.set_station_lockout(True)
                    self._events.push(
                        codes.EVENT_STATION_LOCKOUT, codes.SEVERITY_CRITICAL, 0, count, now
                    )
        elif self._discharge_state == _LOCKED:
            self._discharge_lock_age = _timer(self._discharge_lock_age, True, dt)
            if (
                cfg[_C_DISCHARGE_AUTO_RESET]
                and self._discharge_lock_age >= cfg[_C_LOCKOUT_RESET_MS]
                and discharge <= start
            ):
                self._unlock_discharge(0, now)
        else:
            self._discharge_good = _timer(self._discharge_good, discharge <= start, dt)
            if self._discharge_good >= cfg[_C_RESTART_MS]:
                self._discharge_state = _OK
                self._discharge_good = _OFF
                self._events.push(
                    codes.EVENT_PROTECTION_CLEARED,
                    codes.SEVERITY_NOTICE,
                    0,
                    codes.EVENT_DISCHARGE_TRIP,
                    now,
                )
        if discharge >= dmax:
            return cfg[_C_MIN_X100]
        if discharge > start:
            return (
                cfg[_C_MAX_X100]
                - (cfg[_C_MAX_X100] - cfg[_C_MIN_X100]) * (discharge - start) // band
            )
        return cfg[_C_MAX_X100]

    def _unlock_discharge(self, manual, now):
        self._discharge_state = _TRIPPED  # pumps run again after restart_delay_s below the band
        self._discharge_good = _OFF
        self._discharge_lock_age = _OFF
        ages = self._discharge_trips
        for i in range(len(ages)):
            ages[i] = _OFF
        self.locked_out = self._suction_state == _LOCKED
        if self._state is not None:
            self._state.set_station_lockout(self.locked_out)
        self._events.push(codes.EVENT_LOCKOUT_RESET, codes.SEVERITY_NOTICE, 0, manual, now)

    def _dry_run(self, flow, n_run, dt, now):
        self._dry = _timer(self._dry, n_run > 0 and flow < self._cfg[_C_DRY_FLOW_X10], dt)
        if self._dry < self._cfg[_C_DRY_DELAY_MS]:
            return
        self._dry = _OFF
        for i in range(self.pump_count):
            if self._running & (1 << i) and not self.pump_locked[i]:
                self.pump_locked[i] = True
                self._pump_lock_age[i] = 0
                if self._state is not None:
                    self._state.set_pump_lockout(i, True)
                self._events.push(codes.EVENT_DRY_RUN, codes.SEVERITY_ALARM, i + 1, flow, now)
                self._events.push(codes.EVENT_PUMP_LOCKOUT, codes.SEVERITY_ALARM, i + 1, 1, now)

    def _unlock_pump(self, i, manual, now):
        self.pump_locked[i] = False
        self._pump_lock_age[i] = _OFF
        if self._state is not None:
            self._state.set_pump_lockout(i, False)
        self._events.push(codes.EVENT_LOCKOUT_RESET, codes.SEVERITY_NOTICE, i + 1, manual, now)

    def _highest_ref_x100(self, commands):
        """The highest speed reference written to a running pump (0.01 %, rounded up). Asked only
        while a slow-down bites: each reference costs a float."""
        ref_x100 = 0
        for i in range(self.pump_count):
            if commands[i].command == CMD_RUN:
                v = commands[i].speed_pct * 100.0
                s = int(v)
                if s < v:
                    s += 1
                if s > ref_x100:
                    ref_x100 = s
        return ref_x100

    def _outputs(self, cap, start_ok, now, dt, commands):
        if self._suction_state == _LOCKED or self._discharge_state == _LOCKED:
            reason = codes.EVENT_STATION_LOCKOUT
        elif self._sensor_stop:
            reason = codes.EVENT_SENSOR_FAULT
        elif self._source_open:
            reason = codes.EVENT_SOURCE_INTERLOCK_OPEN
        elif self._discharge_state != _OK:
            reason = codes.EVENT_DISCHARGE_TRIP
        elif self._suction_state != _OK:
            reason = codes.EVENT_SUCTION_TRIP
        else:
            reason = 0
        if reason != self.stop_reason:
            if reason:
                self._events.push(
                    codes.EVENT_SAFE_STATE_ENTERED, codes.SEVERITY_ALARM, 0, reason, now
                )
            else:
                self._events.push(codes.EVENT_SAFE_STATE_LEFT, codes.SEVERITY_NOTICE, 0, 0, now)
            self.stop_reason = reason
        stop = reason != 0
        self.stop_all = stop
        self.start_allowed = start_ok and not stop
        for i in range(self.pump_count):
            self.allowed[i] = not stop and not self.pump_locked[i]
        if cap < self._cfg[_C_MIN_X100]:
            cap = self._cfg[_C_MIN_X100]
        # A slow-down is itself a speed change: the cap moves no faster than the slew limit
        # (water hammer); what cannot wait is a stop, which goes through the drives' ramps.
        step = self._cfg[_C_SLEW_X100] * dt // 1000 if dt else 0
        base = self._cap_x100
        if cap < base:
            ref_x100 = self._highest_ref_x100(commands)
            if ref_x100 < base:
                # A slow-down starts from the highest reference written, not from an idle cap
                # above it (which would take (cap - speed) / slew seconds to bite).
                base = ref_x100 if ref_x100 > cap else cap
        if cap < base - step:
            cap = base - step
        elif cap > base + step:
            cap = base + step
        if cap != self._cap_x100:
            self._cap_x100 = cap
            self.max_speed_pct = cap / 100.0
        bits = 0
        if self._suction_low:
            bits |= 1 << codes.ALARM_SUCTION_LOW
        if self._suction_state != _OK:
            bits |= 1 << codes.ALARM_SUCTION_TRIP
        if self._discharge_high or self._discharge_state != _OK:
            bits |= 1 << codes.ALARM_DISCHARGE_HIGH
        if self._source_open:
            bits |= 1 << codes.ALARM_SOURCE_INTERLOCK_OPEN
        if stop:
            bits |= 1 << codes.ALARM_SAFE_STATE
        if self._sensor_bits:
            bits |= 1 << codes.ALARM_SENSOR_FAULT
        self.alarm_bits = bits

    # --- commands --------------------------------------------------------------------------------
    def reset(self, pump, now_ms):
        """Operator reset: pump 0 = the station lockout and every pump's, 1..n = that pump's.
        Returns True when a lockout was cleared. Pumps run again only once the protections allow
        (after a station reset: suction above the band for restart_delay_s)."""
        now = now_ms & _TICKS_MASK
        done = False
        if pump == 0 and self._suction_state == _LOCKED:
            self._unlock_station(1, now)
            done = True
        if pump == 0 and self._discharge_state == _LOCKED:
            self._unlock_discharge(1, now)
            done = True
        for i in range(self.pump_count):
            if (pump == 0 or pump == i + 1) and self.pump_locked[i]:
                self._unlock_pump(i, 1, now)
                done = True
        if done:
            for i in range(self.pump_count):
                self.allowed[i] = not self.stop_all and not self.pump_locked[i]
        return done

    def enforce(self, commands):
        """Last guard after staging: stops what must not run, keeps RUN speeds inside
        speed.min_pct..max_speed_pct. Allocates nothing."""
        stop = self.stop_all
        hold = self.hold_mask
        for i in range(self.pump_count):
            cmd = commands[i]
            if self.pump_locked[i] or (stop and not hold & (1 << i)):
                if cmd.command == CMD_RUN:
                    cmd.command = self.stop_command[i]
                    cmd.speed_pct = 0.0
            elif cmd.command == CMD_RUN:
                if cmd.speed_pct > self.max_speed_pct:
                    cmd.speed_pct = self.max_speed_pct
                elif cmd.speed_pct < self._cfg[_C_MIN_PCT]:
                    cmd.speed_pct = self._cfg[_C_MIN_PCT]
