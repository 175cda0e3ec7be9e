"""Sensor validation: 4-20 mA loop currents -> engineering values with a quality, per config io.

Two faces: the fieldbus hands over each fresh sample (``sample_analog(now_ms, ua, first)`` with
the module's loop currents in uA, ``sample_inputs(now_ms, bits)``), and the control tick calls
``update(now_ms)``, which writes value + quality + at_ms into the Snapshot's Measurements.

Per analog channel (config io.channels.<name>, the name is the Snapshot attribute):
- NAMUR NE43 on the current I: I <= 3.6 mA failure low (wire break), I >= 21 mA failure high
  (short circuit): the channel has failed. 3.6 < I < 3.8 (under range) and 20.5 < I < 21 (over
  range) are saturated measurements: kept, clamped to 4..20 mA, i.e. to low..high.
- Scaling: value = low + (I - 4 mA) * (high - low) / 16 mA, on the clamped current.
- Rate of change: a sample further from the last accepted one than max_rate_per_s * dt (+ 0.5 % of
  span for noise) is a spike: rejected, the channel is HELD for that sample. If the next sample
  lies within the rate limit of the rejected one, the step was real and is accepted (one sample of
  delay, so a genuine fast change - a pump trip - still reaches protection at once).
- Filter: first order, time constant io.filter_s, on accepted samples (0 = no filter). The filter
  restarts from the first sample after a failure or stale period.
- Freshness and transients: a channel is GOOD while its last sample is at most io.stale_s old.
  A missed sample (a failed or corrupted I/O-module transaction, a missed poll window, the module
  declared lost for a moment) is not a fault: the channel is HELD with its last good value for its
  hold_s (io.channels.<name>.hold_s, default io.hold_s) after its last good sample, and only then
  falls back. The filter and the rate check carry on across such a gap (dt grows with it); they
  restart only after a gap longer than hold_s or a failure. So bus noise never stops a station,
  while a module that stays silent past hold_s does reach the fallback.
- Plausibility across channels: while a pump runs (online, RUNNING, speed >= io.cross_check_min_
  speed_pct), suction must stay below discharge; when it does not for io.cross_check_s, both
  channels have failed (which one lies is unknown).
- Suspect (``suspect[i]``, set by plausibility.py: frozen, or against the model): the channel
  falls back at once, as on a failure, but with no hold (its last value is what is doubted).
Quality when the channel is fine: GOOD. When it failed (NE43 failure, silent past its hold_s,
cross-check, suspect), its "fallback" decides:
    "stop"       BAD: who depends on it goes to its safe state
    "hold"       HELD with the last good value for hold_s after the last good sample, then BAD
                 (a suspect channel: BAD at once)
    a number     SUBSTITUTE with that value
    "discharge"  SUBSTITUTE with the last good value: the marker that control must switch to
                 discharge-pressure control (remote DP lost); ``fallback_kind(name)`` tells which
    "model"      SUBSTITUTE from the pump model (plausibility.py writes ``estimate_x10[i]``,
                 0.1 units; -1 = none: BAD): flow_m3h the pumps' flow from their speeds and
                 head; discharge_kpa suction + the running pumps' head at their speeds and the
                 measured flow; suction_kpa discharge - that head (both pressures lost: BAD)
A substitute owns the Measurement's value until the channel is GOOD or HELD again.
Digital inputs (config io.inputs.<name>: bit): 1.0 / 0.0, GOOD while fresh, HELD (last value) for
io.hold_s after the last read, then BAD.
For plausibility.py: ``raw_ua[i]`` is the last sample's current as read (uA), ``filtered[i]`` the
filtered current in 1/16 uA, ``failed(i)`` whether the channel's last sample failed NE43.
Allocation: samples are processed in integers (1/16 uA) and allocate nothing; ``update`` makes one
or two floats per channel whose filtered value changed.
"""

from micropython import const

from relaypump.snapshot import BAD, DRIVE_RUNNING, GOOD, HELD, SUBSTITUTE
from relaypump.ticks import ticks_diff as _ticks_diff

NE43_OK = const(0)
NE43_UNDER_RANGE = const(1)
NE43_OVER_RANGE = const(2)
NE43_FAIL_LOW = const(3)  # wire break
NE43_FAIL_HIGH = const(4)  # short circuit

FALLBACK_STOP = const(0)
FALLBACK_HOLD = const(1)
FALLBACK_VALUE = const(2)
FALLBACK_DISCHARGE = const(3)
FALLBACK_MODEL = const(4)

# Channel condition after its last sample.
_NONE = const(0)  # never sampled
_OK = const(1)
_SPIKE = const(2)
_FAILED = const(3)

_UA_FAIL_LOW = const(3600)
_UA_FAIL_HIGH = const(21000)
_UA_MIN = const(3800)
_UA_MAX = const(20500)
_UA_4 = const(4000)
_UA_20 = const(20000)
_SUB = const(16)  # filter state in 1/16 uA
_TOLERANCE_UA = const(80)  # rate check: 0.5 % of the 16 mA span, for noise
_MAX_DT_MS = const(60000)
_PRESSURES = ("suction_kpa", "discharge_kpa")  # "model": the other one -/+ the pumps' head

ANALOG_NAMES = (
    "suction_kpa",
    "discharge_kpa",
    "remote_dp_kpa",
    "supply_temp_c",
    "flow_m3h",
    "outdoor_temp_c",
)
INPUT_NAMES = ("source_running", "bypass_open")
_ONE = 1.0
_ZERO = 0.0


class SensorConfigError(ValueError):
    """io config refused: names the field and the reason."""


def _number(section, key, default, where, low=0.0):
    value = section.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= low:
        raise SensorConfigError("%s.%s: need a number >= %s" % (where, key, low))
    return float(value)


def ne43_status(ua):
    if ua <= _UA_FAIL_LOW:
        return NE43_FAIL_LOW
    if ua >= _UA_FAIL_HIGH:
        return NE43_FAIL_HIGH
    if ua < _UA_MIN:
        return NE43_UNDER_RANGE
    if ua > _UA_MAX:
        return NE43_OVER_RANGE
    return NE43_OK


class Sensors:
    def __init__(self, io_config, snapshot):
        self.snapshot = snapshot
        channels = io_config.get("channels", {})
        names = [n for n in ANALOG_NAMES if n in channels]
        for name in channels:
            if name not in ANALOG_NAMES:
                raise SensorConfigError("io.channels.%s: not a measurement of the snapshot" % name)
        self.names = names
        n = len(names)
        self._filter_ms = int(_number(io_config, "filter_s", 2.0, "io") * 1000)
        hold_s = _number(io_config, "hold_s", 10.0, "io")
        self._inputs_hold_ms = int(hold_s * 1000)
        self._stale_ms = int(_number(io_config, "stale_s", 1.0, "io") * 1000)
        self._cross_ms = int(_number(io_config, "cross_check_s", 2.0, "io") * 1000)
        self._cross_speed = _number(io_config, "cross_check_min_speed_pct", 40.0, "io")
        self.register = [0] * n
        self.low = [0.0] * n
        self._per_sub = [0.0] * n  # engineering units per 1/16 uA
        # filtered + this = value / per_sub, when low allows (else None)
        self._zero_sub: list = [0] * n
        self._rate = [0] * n  # uA per s, 0 = no rate check
        self.fallback = [FALLBACK_STOP] * n
        self.fallback_value = [0.0] * n
        self._hold_ms = [0] * n  # a missed sample keeps the last good value this long
        self.measurements = [getattr(snapshot, name) for name in names]
        for i, name in enumerate(names):
            c = channels[name]
            where = "io.channels." + name
            reg = c.get("register")
            if not isinstance(reg, int) or isinstance(reg, bool) or not 0 <= reg <= 0xFFFF:
                raise SensorConfigError(where + ".register: need an integer 0..65535")
            self.register[i] = reg
            low = _number(c, "low", None, where, -1e9)
            high = _number(c, "high", None, where, -1e9)
            if not high > low:
                raise SensorConfigError(where + ": need high > low")
            self.low[i] = low
            self._per_sub[i] = (high - low) / (16000 * _SUB)
            zero = low / self._per_sub[i]  # a whole number (low = 0): one float per conversion
            self._zero_sub[i] = int(zero) - _UA_4 * _SUB if zero == int(zero) else None
            rate = _number(c, "max_rate_per_s", 0.0, where)
            self._rate[i] = int(rate * 16000 / (high - low) + 0.5) if rate else 0
            self._hold_ms[i] = int(_number(c, "hold_s", hold_s, where) * 1000)
            fb = c.get("fallback", "stop")
            if fb == "stop":
                self.fallback[i] = FALLBACK_STOP
            elif fb == "hold":
                self.fallback[i] = FALLBACK_HOLD
            elif fb == "model":
                if name != "flow_m3h" and (
                    name not in _PRESSURES
                    or "suction_kpa" not in channels
                    or "discharge_kpa" not in channels
                ):
                    raise SensorConfigError(
                        where + ".fallback: 'model' is for flow_m3h, suction_kpa, discharge_kpa"
                    )
                self.fallback[i] = FALLBACK_MODEL
            elif fb == "discharge":
                if name != "remote_dp_kpa" or "discharge_kpa" not in channels:
                    raise SensorConfigError(where + ".fallback: 'discharge' is for remote_dp_kpa")
                self.fallback[i] = FALLBACK_DISCHARGE
            elif isinstance(fb, (int, float)) and not isinstance(fb, bool):
                self.fallback[i] = FALLBACK_VALUE
                self.fallback_value[i] = float(fb)
            else:
                raise SensorConfigError(
                    where + ".fallback: stop, hold, discharge, model or a number"
                )
        self._suction = names.index("suction_kpa") if "suction_kpa" in names else -1
        self._discharge = names.index("discharge_kpa") if "discharge_kpa" in names else -1

        inputs = io_config.get("inputs", {})
        self.input_names = [k for k in INPUT_NAMES if k in inputs]
        for name in inputs:
            if name not in INPUT_NAMES:
                raise SensorConfigError("io.inputs.%s: not an input of the snapshot" % name)
        self._input_bit = [inputs[k] for k in self.input_names]
        self._input_meas = [getattr(snapshot, k) for k in self.input_names]
        self._inputs = 0
        self._inputs_ms = 0
        self._inputs_seen = False

        # Per channel state (ints).
        self.ne43 = [NE43_FAIL_LOW] * n  # of the last sample
        self._cond = [_NONE] * n
        self._sample_ms = [0] * n  # last sample of any kind
        self._accepted_ua = [0] * n  # last accepted (clamped) current, 0 = none yet
        self._spike_ua = [0] * n  # a rejected sample awaiting its confirmation, 0 = none
        self.raw_ua = [0] * n  # the last sample as read
        self.filtered = [0] * n  # 1/16 uA
        self.suspect = [False] * n  # set by plausibility.py
        self._published = [-1] * n  # filtered value last converted to the Measurement
        self._substituted = [False] * n  # the fallback owns the Measurement's value
        self.estimate_x10 = [-1] * n  # FALLBACK_MODEL's value (plausibility.py), -1 = none
        self._estimate_used = [-1] * n
        self._good_ms = [0] * n  # last accepted sample
        self._cross_since = 0
        self._cross_pending = False
        self.cross_check_failed = False
        # Counters: they only grow.
        self.spikes = [0] * n
        self.faults = [0] * n  # NE43 failure samples

    def fallback_kind(self, name):
        return self.fallback[self.names.index(name)]

    def failed(self, i):
        """The channel's last sample failed NE43 (or it was never sampled)."""
        return self._cond[i] == _FAILED or self._cond[i] == _NONE

    # -- samples (from the fieldbus) ------------------------------------------------------------

    def sample_analog(self, now_ms, ua, first=0):
        """A fresh read of the I/O module: ua[k] is the current of register first + k, in uA."""
        for i in range(len(self.names)):
            self._sample(i, now_ms, ua[self.register[i] - first])

    def sample_inputs(self, now_ms, bits):
        self._inputs = bits
        self._inputs_ms = now_ms
        self._inputs_seen = True

    def _sample(self, i, now_ms, ua):
        status = ne43_status(ua)
        self.ne43[i] = status
        self.raw_ua[i] = ua
        cond = self._cond[i]
        # After a failure or a gap longer than the hold the filter starts afresh; a shorter gap
        # (missed samples) is bridged: the filter and the rate check scale with dt.
        dt = _ticks_diff(now_ms, self._good_ms[i])  # since the last accepted sample
        stale = cond == _NONE or cond == _FAILED or dt > self._hold_ms[i]
        self._sample_ms[i] = now_ms
        if status == NE43_FAIL_LOW or status == NE43_FAIL_HIGH:
            self.faults[i] += 1
            self._cond[i] = _FAILED
            self._spike_ua[i] = 0
            return
        if ua < _UA_4:
            ua = _UA_4
        elif ua > _UA_20:
            ua = _UA_20
        if stale or not self._accepted_ua[i]:
            self._accept(i, now_ms, ua, True, dt)
            return
        rate = self._rate[i]
        if rate:  # the step allowed: the rate over dt (clamped), plus the noise tolerance
            allowed = rate * (0 if dt < 0 else dt if dt < _MAX_DT_MS else _MAX_DT_MS) // 1000
            allowed += _TOLERANCE_UA
            if abs(ua - self._accepted_ua[i]) > allowed:
                if self._spike_ua[i] and abs(ua - self._spike_ua[i]) <= allowed:
                    self._accept(i, now_ms, ua, False, dt)  # confirmed: a real step
                    return
                self._spike_ua[i] = ua
                self.spikes[i] += 1
                self._cond[i] = _SPIKE
                return
        self._accept(i, now_ms, ua, False, dt)

    def _accept(self, i, now_ms, ua, restart, dt):
        target = ua * _SUB
        if restart or self._filter_ms <= 0:
            self.filtered[i] = target
        else:
            if dt < 0:
                dt = 0
            elif dt > _MAX_DT_MS:
                dt = _MAX_DT_MS
            alpha = (dt << 10) // (self._filter_ms + dt)  # 1024 = take the sample as it is
            diff = target - self.filtered[i]
            step = (diff * alpha + 512) >> 10
            if step == 0 and diff:  # keep converging where the product rounds to nothing
                step = 1 if diff > 0 else -1
            self.filtered[i] += step
        self._accepted_ua[i] = ua
        self._good_ms[i] = now_ms
        self._spike_ua[i] = 0
        self._cond[i] = _OK

    # -- the control tick -----------------------------------------------------------------------

    def update(self, now_ms):
        """Measurements of the Snapshot from the latest samples, the clock and the fallbacks."""
        snap = self.snapshot
        io_ok = snap.io_online
        stale_ms = self._stale_ms
        n = len(self.names)
        for i in range(n):
            if not self._substituted[i]:
                self._publish(i)
        # across channels: suction below discharge while a pump runs (module rules)
        s = self._suction
        d = self._discharge
        if s >= 0 and d >= 0:
            running = False
            for ps in snap.pumps:
                if ps.online and ps.state == DRIVE_RUNNING and ps.speed_pct >= self._cross_speed:
                    running = True
                    break
            ms = self.measurements
            if (
                running
                and self._cond[s] == _OK
                and self._cond[d] == _OK
                and ms[s].value >= ms[d].value
            ):
                if not self._cross_pending:
                    self._cross_pending = True
                    self._cross_since = now_ms
                if _ticks_diff(now_ms, self._cross_since) >= self._cross_ms:
                    self.cross_check_failed = True
            else:
                self._cross_pending = False
                self.cross_check_failed = False
        for i in range(n):
            m = self.measurements[i]
            cond = self._cond[i]
            if self.suspect[i] or (
                self.cross_check_failed and (i == self._suction or i == self._discharge)
            ):
                self._fall_back(i, m, now_ms, False)  # its last value is what is doubted
            elif cond == _FAILED or cond == _NONE:
                self._fall_back(i, m, now_ms, True)
            else:
                # a missed sample or a spike: the last good value, for the channel's hold_s
                held = not io_ok or _ticks_diff(now_ms, self._sample_ms[i]) > stale_ms
                held = held or cond == _SPIKE
                if held and _ticks_diff(now_ms, self._good_ms[i]) > self._hold_ms[i]:
                    self._fall_back(i, m, now_ms, False)
                    continue
                if self._substituted[i]:  # it measures again: its value replaces a substitute
                    self._substituted[i] = False
                    self._published[i] = -1
                    self._estimate_used[i] = -1
                    self._publish(i)
                if held:
                    m.quality = HELD
                else:
                    m.quality = GOOD
                    m.at_ms = self._good_ms[i]
        seen = self._inputs_seen
        age = _ticks_diff(now_ms, self._inputs_ms)
        for k in range(len(self.input_names)):
            m = self._input_meas[k]
            if seen and io_ok and age <= stale_ms:
                m.value = _ONE if self._inputs >> self._input_bit[k] & 1 else _ZERO
                m.quality = GOOD
                m.at_ms = self._inputs_ms
            elif seen and age <= self._inputs_hold_ms:
                m.quality = HELD  # a missed read: the last state, for io.hold_s
            else:
                m.quality = BAD

    def _publish(self, i):
        """The filtered value into the Measurement (one float, only when it changed)."""
        if self._accepted_ua[i] and self.filtered[i] != self._published[i]:
            self._published[i] = self.filtered[i]
            zero = self._zero_sub[i]
            if zero is not None:
                self.measurements[i].value = (self.filtered[i] + zero) * self._per_sub[i]
            else:
                self.measurements[i].value = (
                    self.low[i] + (self.filtered[i] - _UA_4 * _SUB) * self._per_sub[i]
                )

    def _fall_back(self, i, m, now_ms, may_hold):
        kind = self.fallback[i]
        if kind == FALLBACK_VALUE:
            m.value = self.fallback_value[i]
            m.quality = SUBSTITUTE
            self._substituted[i] = True
        elif kind == FALLBACK_MODEL:
            estimate = self.estimate_x10[i]
            if estimate >= 0:
                if estimate != self._estimate_used[i] or not self._substituted[i]:
                    self._estimate_used[i] = estimate
                    m.value = estimate / 10.0
                m.quality = SUBSTITUTE
                self._substituted[i] = True
            else:
                m.quality = BAD
        elif kind == FALLBACK_DISCHARGE:
            m.quality = SUBSTITUTE
        elif (
            kind == FALLBACK_HOLD
            and may_hold
            and self._accepted_ua[i]
            and _ticks_diff(now_ms, self._good_ms[i]) <= self._hold_ms[i]
        ):
            m.quality = HELD
        else:
            m.quality = BAD
