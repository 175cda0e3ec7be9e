"""The station configuration: one JSON file on the board, validated before anything uses it.

``load_config(text_or_dict)`` returns a new dict with every key checked and every optional key
filled with its default, or raises ConfigError whose message starts with the field's path and says
why, e.g. ``pumps[1].profile: must be one of abb, danfoss, g120`` or
``speed.min_pct: 120 > speed.max_pct 100``. List indices in paths are 0-based.

Rules:
- Unknown keys are errors (a typo must not silently fall back to a default).
- Types are strict: an integer field refuses 2.5 and true; a number field takes 2 or 2.5 and is
  returned as a float; booleans are JSON true/false only.
- Ranges and cross-field rules: speed envelope 0 <= min < max <= 120 % with safe_pct inside it
  (drives with comm_loss_action safe_speed go there); drive ramp times (pumps[].ramp_up_s /
  ramp_down_s, 0 -> 100 %) no faster than speed.slew_pct_per_s and within the drive's parameter
  range, default 100 / slew_pct_per_s; the drive's current limit pumps[].current_limit_pct
  10..150 % of the motor's rated current (default 100), with pumps[].rated_current_a required
  where the drive takes the limit in amps (abb, g120); 1..3 pumps (the telemetry frame has 3 pump
  slots); Modbus units unique over pumps and the I/O module; I/O registers and input bits unique;
  sensor ranges low < high; a sensor fallback is "stop", "hold", a number inside the sensor's range,
  or, for remote_dp_kpa only, "discharge" (control on the discharge pressure; "discharge_kpa" is
  returned as "discharge"), for flow_m3h, suction_kpa and discharge_kpa, "model" (the pumps'
  flow from their speeds and head; a pressure from the other one and the pumps' head, both
  pressure channels needed): no other sensor can stand in for one; per channel hold_s (default
  io.hold_s) and frozen_s (default FROZEN_S for the channels the pumps move, else 0 = not
  checked); io.plausibility thresholds (plausibility.py); the flow's frozen_s and
  io.plausibility.check_s below protection.dry_run_delay_s (a flow transmitter stuck at 0 is
  found before the dry run would lock out healthy pumps); setpoint envelope min < max with the setpoint and both curves inside
  it; curves have at least two points with strictly increasing x; the discharge fallback setpoint
  below the discharge trip; the discharge trip inside the discharge sensor's range; the supply
  temperature sensor inside 0..200 degC (the saturation table of protection.py).
- Uplink sections (optional): "mqtt", "outbox", "ntp", "commands" (uplink_config.py; defaults
  filled when "mqtt" is there). Without "mqtt" the station runs
  without an uplink and the other three are refused. A validated dict passes again unchanged
  (a config change of the uplink, station_uplink.py, runs the whole config through here).
- Runs once at start-up on MicroPython: plain code, no schema objects kept in RAM afterwards.
"""

import json

MAX_PUMPS = 3  # uplink.PUMP_SLOTS: the telemetry frame reports 3 pumps
PROFILES = ("abb", "danfoss", "g120")
REF_FULL_SCALE = {"abb": 20000, "danfoss": 16384, "g120": 16384}  # 0x4000 = 100 % (FC, PROFIdrive)
COMM_LOSS_ACTIONS = ("fault", "hold", "safe_speed")
# Largest ramp time each drive's parameter takes (drives.py): ACS580 23.12, FC 3-41, G120 p1120.
RAMP_MAX_S = {"abb": 1800.0, "danfoss": 3600.0, "g120": 650.0}
LIMIT_IN_AMPS = ("abb", "g120")  # current-limit parameters in A (Danfoss 4-18: % of rated)
BAUDS = (1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200)
PARITIES = ("N", "E", "O")
REQUIRED_CHANNELS = ("suction_kpa", "discharge_kpa", "remote_dp_kpa", "supply_temp_c", "flow_m3h")
OPTIONAL_CHANNELS = ("outdoor_temp_c",)
REQUIRED_INPUTS = ("source_running",)
OPTIONAL_INPUTS = ("bypass_open",)
SETPOINT_MODES = ("fixed", "flow", "outdoor")
FALLBACK_WORDS = ("stop", "hold")
# plausibility.py: frozen-value check of the channels the pumps move (0 = not checked)
FROZEN_S = {"discharge_kpa": 45.0, "remote_dp_kpa": 45.0, "flow_m3h": 45.0}
MAX_SUPPLY_TEMP_C = 200.0

_REQUIRED = "\x00required"


class ConfigError(ValueError):
    """A configuration that must not be used; str() starts with the field's path."""


def _fmt(value):
    if isinstance(value, float):
        return "%g" % value
    if isinstance(value, str):
        return '"%s"' % value
    return str(value)


def _given(value):
    """What a value of the wrong type is, in words (1.0 is not the integer 1; "19200" is text)."""
    if value is None:
        return "null"
    if type(value) is bool:
        return "true" if value else "false"
    if type(value) is float:
        return "%r (a decimal number)" % value
    if type(value) is str:
        return 'the text "%s" (numbers and true/false are written without quotes)' % value
    if type(value) is list:
        return "a list"
    if type(value) is dict:
        return "an object"
    return str(value)


def _fail(path, why):
    raise ConfigError("%s: %s" % (path, why))


def _section(doc, path, required, optional=()):
    """Check doc is an object with every required key and nothing unknown."""
    if type(doc) is not dict:
        _fail(path, "must be an object")
    for key in doc:
        if key not in required and key not in optional:
            _fail(_join(path, key), "unknown key")
    for key in required:
        if key not in doc:
            _fail(_join(path, key), "missing")
    return {}


def _join(path, key):
    return key if not path else path + "." + key


def _get(doc, path, key, default):
    if key in doc:
        return doc[key]
    if default is _REQUIRED:
        _fail(_join(path, key), "missing")
    return default


def _num(doc, out, path, key, lo, hi, default=_REQUIRED):
    value = _get(doc, path, key, default)
    if type(value) not in (int, float):  # bool is not int here: type() is exact
        _fail(_join(path, key), "must be a number, not %s" % _given(value))
    value = float(value)
    if not lo <= value <= hi:  # also refuses NaN
        _fail(_join(path, key), "%s outside %s..%s" % (_fmt(value), _fmt(lo), _fmt(hi)))
    out[key] = value
    return value


def _int(doc, out, path, key, lo, hi, default=_REQUIRED):
    value = _get(doc, path, key, default)
    if type(value) is not int:
        _fail(_join(path, key), "must be a whole number (an integer), not %s" % _given(value))
    if not lo <= value <= hi:
        _fail(_join(path, key), "%d outside %d..%d" % (value, lo, hi))
    out[key] = value
    return value


def _bool(doc, out, path, key, default=_REQUIRED):
    value = _get(doc, path, key, default)
    if type(value) is not bool:
        _fail(_join(path, key), "must be true or false, not %s" % _given(value))
    out[key] = value
    return value


def _choice(doc, out, path, key, choices, default=_REQUIRED):
    value = _get(doc, path, key, default)
    if value not in choices or type(value) is not type(choices[0]):
        given = _given(value) if type(value) is not type(choices[0]) else _fmt(value)
        _fail(
            _join(path, key),
            "must be one of %s, not %s" % (", ".join(str(c) for c in choices), given),
        )
    out[key] = value
    return value


def _less(out, path, low_key, high_key):
    """out[low_key] < out[high_key], else an error naming both."""
    low = out[low_key]
    high = out[high_key]
    if low > high:
        _fail(_join(path, low_key), "%s > %s %s" % (_fmt(low), _join(path, high_key), _fmt(high)))
    if low == high:
        _fail(
            _join(path, low_key),
            "%s = %s %s, must be below" % (_fmt(low), _join(path, high_key), _fmt(high)),
        )


# --- sections ------------------------------------------------------------------------------------


def _station(doc):
    path = "station"
    _section(doc, path, ("id", "name"))
    out: dict = {}
    _int(doc, out, path, "id", 0, 0xFFFFFFFF)
    name = doc["name"]
    if type(name) is not str or not 0 < len(name) <= 64:
        _fail("station.name", "must be a text of 1..64 characters")
    out["name"] = name
    return out


def _bus(doc):
    path = "bus"
    _section(
        doc,
        path,
        ("baud",),
        (
            "parity",
            "turnaround_ms",
            "retries",
            "lost_after_failures",
            "lost_after_ms",
            "timeout_margin_ms",
            "lost_probe_ms",
            "cycle_ms",
        ),
    )
    out: dict = {}
    _choice(doc, out, path, "baud", BAUDS)
    _choice(doc, out, path, "parity", PARITIES, "E")
    _int(doc, out, path, "turnaround_ms", 0, 10000, 5)
    _int(doc, out, path, "retries", 0, 10, 1)
    _int(doc, out, path, "lost_after_failures", 1, 1000, 3)
    _int(doc, out, path, "lost_after_ms", 0, 3600000, 5000)  # fieldbus.py: silence before lost
    _int(doc, out, path, "timeout_margin_ms", 0, 10000, 10)  # fieldbus.py: runtime latency
    _int(doc, out, path, "lost_probe_ms", 0, 3600000, 1000)  # fieldbus.py: lost-device probe
    _int(
        doc, out, path, "cycle_ms", 0, 60000, 0
    )  # fieldbus.py: poll cycle pacing, 0 = back to back
    return out


def _pumps(doc):
    if type(doc) is not list:
        _fail("pumps", "must be a list")
    if not 1 <= len(doc) <= MAX_PUMPS:
        _fail("pumps", "%d pumps, must be 1..%d" % (len(doc), MAX_PUMPS))
    pumps: list = []
    units: dict = {}
    for i in range(len(doc)):
        path = "pumps[%d]" % i
        entry = doc[i]
        _section(
            entry,
            path,
            ("unit", "profile"),
            (
                "ref_full_scale",
                "comm_loss_action",
                "rated_kw",
                "ramp_up_s",
                "ramp_down_s",
                "current_limit_pct",
                "rated_current_a",
            ),
        )
        out: dict = {}
        unit = _int(entry, out, path, "unit", 1, 247)
        if unit in units:
            _fail(path + ".unit", "%d is already used by %s" % (unit, units[unit]))
        units[unit] = path + ".unit"
        profile = _choice(entry, out, path, "profile", PROFILES)
        _int(entry, out, path, "ref_full_scale", 1, 32767, REF_FULL_SCALE[profile])
        _choice(entry, out, path, "comm_loss_action", COMM_LOSS_ACTIONS, "safe_speed")
        if "rated_kw" in entry:  # drives.py: else pump_model.rated_kw
            _num(entry, out, path, "rated_kw", 0.1, 5000.0)
        # the drive's current limit, commissioned with the ramps (drives.py); in amps on ABB 30.17
        # and G120 p0640, so those need the motor's nameplate current
        _num(entry, out, path, "current_limit_pct", 10.0, 150.0, 100.0)
        if "rated_current_a" in entry:
            _num(entry, out, path, "rated_current_a", 0.1, 6000.0)
        elif profile in LIMIT_IN_AMPS:
            _fail(
                path + ".rated_current_a",
                "required: the %s drive takes its current limit in amps (the motor's nameplate "
                "current)" % profile,
            )
        pumps.append(out)
    return pumps, units


def _ramps(doc, pumps, speed):
    """pumps[].ramp_up_s / ramp_down_s (0 -> 100 %): never faster than speed.slew_pct_per_s,
    so a drive's own ramp (a stop, its comm-loss speed) keeps the slew limit; default exactly
    that (100 s at 1 %/s)."""
    fastest = 100.0 / speed["slew_pct_per_s"]
    for i in range(len(pumps)):
        path = "pumps[%d]" % i
        most = RAMP_MAX_S[pumps[i]["profile"]]
        for key in ("ramp_up_s", "ramp_down_s"):
            if key not in doc[i] and fastest > most:
                _fail(
                    _join(path, key),
                    "default %s s (100 / speed.slew_pct_per_s) above the drive's %s s"
                    % (_fmt(fastest), _fmt(most)),
                )
            value = _num(doc[i], pumps[i], path, key, 0.0, most, fastest)
            if value < fastest:
                _fail(
                    _join(path, key),
                    "%s s ramps faster than speed.slew_pct_per_s %s (at least %s s)"
                    % (_fmt(value), _fmt(speed["slew_pct_per_s"]), _fmt(fastest)),
                )


def _channel(doc, path, registers, key):
    _section(
        doc, path, ("register", "low", "high", "fallback"), ("max_rate_per_s", "hold_s", "frozen_s")
    )
    out: dict = {}
    register = _int(doc, out, path, "register", 0, 65535)
    if register in registers:
        _fail(path + ".register", "%d is already used by %s" % (register, registers[register]))
    registers[register] = path
    _num(doc, out, path, "low", -1e6, 1e6)
    _num(doc, out, path, "high", -1e6, 1e6)
    _less(out, path, "low", "high")
    _num(doc, out, path, "max_rate_per_s", 0.0, 1e6, 0.0)  # 0 = no rate-of-change check
    if "hold_s" in doc:  # sensors.py: a missed sample keeps the last good value; else io.hold_s
        _num(doc, out, path, "hold_s", 0.0, 600.0)
    _num(doc, out, path, "frozen_s", 0.0, 3600.0, FROZEN_S.get(key, 0.0))  # plausibility.py
    out["fallback"] = doc["fallback"]
    return out


def _check_fallbacks(channels, path):
    for key in channels:
        where = "%s.%s.fallback" % (path, key)
        fallback = channels[key]["fallback"]
        kind = type(fallback)
        if kind in (int, float):
            fallback = float(fallback)
            low = channels[key]["low"]
            high = channels[key]["high"]
            if not low <= fallback <= high:
                _fail(
                    where,
                    "%s outside the sensor's range %s..%s"
                    % (_fmt(fallback), _fmt(low), _fmt(high)),
                )
            channels[key]["fallback"] = fallback
            continue
        if kind is not str:
            _fail(
                where, "must be stop, hold, a number, discharge or model, not %s" % _fmt(fallback)
            )
        if fallback in FALLBACK_WORDS:
            continue
        if fallback == "model":
            # sensors.py / plausibility.py: the pumps' flow from their curve, or a pressure from
            # the other one and the pumps' head
            if key not in ("flow_m3h", "suction_kpa", "discharge_kpa"):
                _fail(
                    where,
                    '"model" stands in for flow_m3h, suction_kpa or discharge_kpa only;'
                    " use stop, hold or a number",
                )
            continue
        if fallback not in ("discharge", "discharge_kpa"):
            _fail(where, "%s is not stop, hold, a number, discharge or model" % _fmt(fallback))
        if key != "remote_dp_kpa":
            # sensors.py: only the remote DP has a stand-in (control on the discharge pressure)
            _fail(where, '"discharge" stands in for remote_dp_kpa only; use stop, hold or a number')
        channels[key]["fallback"] = "discharge"


def _io(doc, pump_units):
    path = "io"
    _section(
        doc,
        path,
        ("unit", "channels", "inputs"),
        (
            "filter_s",
            "hold_s",
            "stale_s",
            "cross_check_s",
            "cross_check_min_speed_pct",
            "plausibility",
        ),
    )
    out: dict = {}
    unit = _int(doc, out, path, "unit", 1, 247)
    if unit in pump_units:
        _fail("io.unit", "%d is already used by %s" % (unit, pump_units[unit]))
    cpath = "io.channels"
    channels_doc = doc["channels"]
    _section(channels_doc, cpath, REQUIRED_CHANNELS, OPTIONAL_CHANNELS)
    channels: dict = {}
    registers: dict = {}
    for key in REQUIRED_CHANNELS + OPTIONAL_CHANNELS:
        if key in channels_doc:
            channels[key] = _channel(channels_doc[key], cpath + "." + key, registers, key)
    _check_fallbacks(channels, cpath)
    if channels["supply_temp_c"]["high"] > MAX_SUPPLY_TEMP_C:
        _fail(
            "io.channels.supply_temp_c.high",
            "%s above %s degC (the saturation table of the suction protection)"
            % (_fmt(channels["supply_temp_c"]["high"]), _fmt(MAX_SUPPLY_TEMP_C)),
        )
    out["channels"] = channels
    ipath = "io.inputs"
    inputs_doc = doc["inputs"]
    _section(inputs_doc, ipath, REQUIRED_INPUTS, OPTIONAL_INPUTS)
    inputs: dict = {}
    bits: dict = {}
    for key in REQUIRED_INPUTS + OPTIONAL_INPUTS:
        if key in inputs_doc:
            bit = _int(inputs_doc, inputs, ipath, key, 0, 15)
            if bit in bits:
                _fail(ipath + "." + key, "bit %d is already used by %s" % (bit, bits[bit]))
            bits[bit] = ipath + "." + key
    out["inputs"] = inputs
    _num(doc, out, path, "filter_s", 0.0, 60.0, 2.0)
    hold_s = _num(doc, out, path, "hold_s", 0.0, 600.0, 10.0)
    for key in channels:
        if "hold_s" not in channels[key]:
            channels[key]["hold_s"] = hold_s
    _num(doc, out, path, "stale_s", 0.0, 600.0, 1.0)  # sensors.py: no sample for this long
    _num(doc, out, path, "cross_check_s", 0.0, 600.0, 2.0)  # sensors.py: suction < discharge
    _num(doc, out, path, "cross_check_min_speed_pct", 0.0, 120.0, 40.0)
    out["plausibility"] = _plausibility(doc.get("plausibility", {}))
    return out


def _plausibility(doc):
    """Thresholds of plausibility.py (tolerant of the transmitters' noise and lag and of pumps
    some 5 % off their datasheet curve)."""
    path = "io.plausibility"
    keys = (
        "frozen_band_ua",
        "move_speed_pct",
        "move_ua",
        "dp_tolerance_kpa",
        "dp_tolerance_ratio",
        "head_tolerance_ratio",
        "head_tolerance_kpa",
        "min_head_ratio",
        "settle_s",
        "check_s",
        "dp_check_s",
        "clear_s",
        "latch_faults",
        "latch_window_s",
        "latch_clear_s",
    )
    _section(doc, path, (), keys)
    out: dict = {}
    _int(doc, out, path, "frozen_band_ua", 0, 1000, 2)  # unchanged = within this many uA
    _num(doc, out, path, "move_speed_pct", 0.01, 50.0, 0.5)  # the plant moved: speeds summed
    _int(doc, out, path, "move_ua", 1, 16000, 16)  # or another transmitter moved this much
    _num(doc, out, path, "dp_tolerance_kpa", 1.0, 1000.0, 30.0)  # remote DP vs its estimate
    _num(doc, out, path, "dp_tolerance_ratio", 0.0, 2.0, 0.15)  # + this share of the network loss
    _num(doc, out, path, "head_tolerance_ratio", 0.0, 1.0, 0.06)  # head vs the pump model
    _num(doc, out, path, "head_tolerance_kpa", 0.0, 1000.0, 10.0)
    _num(doc, out, path, "min_head_ratio", 0.0, 1.0, 0.3)  # below: a pump running dry
    _int(doc, out, path, "settle_s", 0, 3600, 10)  # speeds steady this long: judged
    _int(doc, out, path, "check_s", 1, 3600, 20)  # flow implausible this long: suspect
    _int(doc, out, path, "dp_check_s", 1, 3600, 180)  # remote DP implausible this long
    _int(doc, out, path, "clear_s", 1, 3600, 30)  # plausible this long: cleared
    # a channel failing (NE43) latch_faults times within latch_window_s stays SUSPECT until it has
    # read without a failure for latch_clear_s (a loose contact: one event, not one per burst)
    _int(doc, out, path, "latch_faults", 2, 1000, 3)
    _int(doc, out, path, "latch_window_s", 1, 86400, 600)
    _int(doc, out, path, "latch_clear_s", 1, 86400, 600)
    return out


def _pump_model(doc):
    path = "pump_model"
    required = (
        "shutoff_head_m",
        "curve_k",
        "bep_flow_m3h",
        "bep_efficiency",
        "min_flow_ratio",
        "max_flow_ratio",
        "rated_kw",
    )
    _section(doc, path, required, ("density_kg_m3", "npsh_bep_m", "runout_flow_ratio"))
    out: dict = {}
    _num(doc, out, path, "shutoff_head_m", 1.0, 500.0)
    _num(doc, out, path, "curve_k", 1e-9, 1.0)
    _num(doc, out, path, "bep_flow_m3h", 1.0, 10000.0)
    _num(doc, out, path, "bep_efficiency", 0.05, 1.0)
    _num(doc, out, path, "min_flow_ratio", 0.0, 2.0)
    _num(doc, out, path, "max_flow_ratio", 0.1, 2.0)
    _less(out, path, "min_flow_ratio", "max_flow_ratio")
    # the pump's run-out limit (the end of its datasheet curve): one pump may run alone up to it
    # when that is cheaper (staging), the run-out protection judges against it; default: the
    # allowed window's top (nothing beyond it)
    _num(doc, out, path, "runout_flow_ratio", 0.1, 2.0, out["max_flow_ratio"])
    runout = out["runout_flow_ratio"]
    if runout < out["max_flow_ratio"]:
        top = _join(path, "max_flow_ratio")
        why = "%s < %s %s, must not be below" % (_fmt(runout), top, _fmt(out["max_flow_ratio"]))
        _fail(_join(path, "runout_flow_ratio"), why)
    _num(doc, out, path, "rated_kw", 0.1, 5000.0)
    _num(doc, out, path, "density_kg_m3", 800.0, 1100.0, 943.0)
    _num(doc, out, path, "npsh_bep_m", 0.0, 30.0, 4.0)
    return out


def _speed(doc):
    path = "speed"
    _section(doc, path, ("min_pct", "max_pct", "safe_pct"), ("slew_pct_per_s", "follow_band_pct"))
    out: dict = {}
    _num(doc, out, path, "min_pct", 0.0, 120.0)
    _num(doc, out, path, "max_pct", 1.0, 120.0)
    _less(out, path, "min_pct", "max_pct")
    _num(doc, out, path, "slew_pct_per_s", 0.01, 20.0, 1.0)
    _num(doc, out, path, "follow_band_pct", 0.0, 50.0, 2.0)  # control.py
    safe = _num(doc, out, path, "safe_pct", 0.0, 120.0)
    if not out["min_pct"] <= safe <= out["max_pct"]:
        _fail(
            "speed.safe_pct",
            "%s outside the speed envelope speed.min_pct..max_pct %s..%s"
            % (_fmt(safe), _fmt(out["min_pct"]), _fmt(out["max_pct"])),
        )
    return out


def _curve(doc, path, lo, hi):
    if type(doc) is not list or len(doc) < 2:
        _fail(path, "must be a list of at least 2 [x, y] points")
    points: list = []
    for i in range(len(doc)):
        where = "%s[%d]" % (path, i)
        point = doc[i]
        if (
            type(point) is not list
            or len(point) != 2
            or type(point[0]) not in (int, float)
            or type(point[1]) not in (int, float)
        ):
            _fail(where, "must be an [x, y] pair of numbers")
        x = float(point[0])
        y = float(point[1])
        if not -1e6 <= x <= 1e6:
            _fail(where, "x %s out of range" % _fmt(x))
        if points and x <= points[-1][0]:
            _fail(where, "x %s not above the previous point's %s" % (_fmt(x), _fmt(points[-1][0])))
        if not lo <= y <= hi:
            _fail(
                where,
                "y %s outside setpoint.min_kpa..max_kpa %s..%s" % (_fmt(y), _fmt(lo), _fmt(hi)),
            )
        points.append([x, y])
    return points


def _setpoint(doc, channels):
    path = "setpoint"
    _section(
        doc,
        path,
        ("mode", "dp_kpa", "min_kpa", "max_kpa", "discharge_fallback_kpa"),
        ("ramp_kpa_per_s", "flow_curve", "outdoor_curve", "network_loss_m_per_m3h2"),
    )
    out: dict = {}
    mode = _choice(doc, out, path, "mode", SETPOINT_MODES)
    _num(doc, out, path, "min_kpa", 0.0, 2000.0)
    _num(doc, out, path, "max_kpa", 0.0, 2000.0)
    _less(out, path, "min_kpa", "max_kpa")
    dp = _num(doc, out, path, "dp_kpa", 0.0, 2000.0)
    if not out["min_kpa"] <= dp <= out["max_kpa"]:
        _fail(
            "setpoint.dp_kpa",
            "%s outside setpoint.min_kpa..max_kpa %s..%s"
            % (_fmt(dp), _fmt(out["min_kpa"]), _fmt(out["max_kpa"])),
        )
    _num(doc, out, path, "ramp_kpa_per_s", 0.001, 100.0, 0.5)
    for key, needed in (("flow_curve", "flow"), ("outdoor_curve", "outdoor")):
        if key in doc:
            out[key] = _curve(doc[key], path + "." + key, out["min_kpa"], out["max_kpa"])
        elif mode == needed:
            _fail(path + "." + key, "missing (setpoint.mode is %s)" % mode)
    if mode == "outdoor" and "outdoor_temp_c" not in channels:
        _fail("setpoint.mode", "outdoor needs the sensor io.channels.outdoor_temp_c")
    _num(doc, out, path, "discharge_fallback_kpa", 1.0, 4000.0)
    _num(doc, out, path, "network_loss_m_per_m3h2", 0.0, 1.0, 6.72e-5)  # setpoint.py
    return out


def _pid(doc):
    path = "pid"
    _section(doc, path, ("kp", "ti_s"), ("td_s", "period_ms"))
    out: dict = {}
    _num(doc, out, path, "kp", 1e-6, 100.0)
    _num(doc, out, path, "ti_s", 0.0, 3600.0)  # 0 = no integral action
    _num(doc, out, path, "td_s", 0.0, 600.0, 0.0)
    _int(doc, out, path, "period_ms", 50, 60000, 1000)
    return out


def _staging(doc, pump_count):
    path = "staging"
    _section(
        doc,
        path,
        (),
        (
            "min_run_s",
            "min_stop_s",
            "max_starts_per_hour",
            "hysteresis",
            "rotation_hours",
            "exercise_idle_hours",
            "exercise_s",
            "eval_period_s",
            "settle_s",
            "feasibility_margin",
            "handover_s",
            "max_running",
            "restart_as_before",
        ),
    )
    out: dict = {}
    _int(doc, out, path, "min_run_s", 0, 86400, 600)
    _int(doc, out, path, "min_stop_s", 0, 86400, 300)
    _int(doc, out, path, "max_starts_per_hour", 1, 60, 4)
    _num(doc, out, path, "hysteresis", 0.0, 0.5, 0.05)
    _int(doc, out, path, "rotation_hours", 0, 8760, 168)  # 0 = no rotation
    _int(doc, out, path, "exercise_idle_hours", 0, 8760, 168)  # 0 = no exercise
    _int(doc, out, path, "exercise_s", 0, 3600, 60)
    _int(doc, out, path, "eval_period_s", 1, 3600, 10)  # staging.py
    _int(doc, out, path, "settle_s", 0, 3600, 120)
    _num(doc, out, path, "feasibility_margin", 0.0, 0.5, 0.03)
    _int(doc, out, path, "handover_s", 1, 3600, 90)
    _bool(doc, out, path, "restart_as_before", True)  # staging.py "Restart"
    if "max_running" in doc:  # staging.py: else pumps - 1 (one standby)
        _int(doc, out, path, "max_running", 1, pump_count)
    return out


def _protection(doc, channels, plausibility):
    path = "protection"
    _section(
        doc,
        path,
        ("discharge_max_kpa", "atmosphere_kpa"),
        (
            "suction_margin_kpa",
            "suction_slowdown_kpa",
            "suction_hold_kpa",
            "suction_stop_delay_s",
            "suction_lockout_trips",
            "suction_lockout_window_s",
            "suction_auto_reset",
            "lockout_reset_s",
            "restart_delay_s",
            "discharge_slowdown_kpa",
            "discharge_stop_delay_s",
            "discharge_lockout_trips",
            "discharge_lockout_window_s",
            "discharge_auto_reset",
            "dry_run_min_flow_m3h",
            "dry_run_delay_s",
            "dry_run_auto_reset",
            "source_stop_delay_s",
            "source_restart_delay_s",
            "sensor_stop_delay_s",
            "substitute_margin_kpa",
            "drive_reset_delay_s",
            "drive_resets_per_hour",
        ),
    )
    out: dict = {}
    _num(doc, out, path, "suction_margin_kpa", 0.0, 500.0, 0.0)
    _num(doc, out, path, "suction_slowdown_kpa", 0.0, 500.0, 30.0)
    _num(doc, out, path, "suction_hold_kpa", 0.0, 500.0, 5.0)  # protection.py "Suction"
    _int(doc, out, path, "suction_stop_delay_s", 0, 600, 10)
    _int(doc, out, path, "suction_lockout_trips", 1, 20, 3)
    _int(doc, out, path, "suction_lockout_window_s", 60, 86400, 3600)
    _bool(doc, out, path, "suction_auto_reset", True)
    _int(doc, out, path, "lockout_reset_s", 0, 86400, 1800)
    _int(doc, out, path, "restart_delay_s", 0, 3600, 30)
    dmax = _num(doc, out, path, "discharge_max_kpa", 10.0, 4000.0)
    _num(doc, out, path, "discharge_slowdown_kpa", 0.0, 1000.0, 50.0)
    if out["discharge_slowdown_kpa"] >= dmax:
        _fail(
            "protection.discharge_slowdown_kpa",
            "%s not below protection.discharge_max_kpa %s"
            % (_fmt(out["discharge_slowdown_kpa"]), _fmt(dmax)),
        )
    high = channels["discharge_kpa"]["high"]
    if dmax >= high:
        _fail(
            "protection.discharge_max_kpa",
            "%s not below the sensor's top io.channels."
            "discharge_kpa.high %s: the trip could never be seen" % (_fmt(dmax), _fmt(high)),
        )
    _int(doc, out, path, "discharge_stop_delay_s", 0, 600, 2)
    _int(doc, out, path, "discharge_lockout_trips", 1, 20, 3)  # as the suction lockout
    _int(doc, out, path, "discharge_lockout_window_s", 60, 86400, 3600)
    _bool(doc, out, path, "discharge_auto_reset", True)
    _num(doc, out, path, "dry_run_min_flow_m3h", 0.0, 10000.0, 50.0)
    dry_s = _int(doc, out, path, "dry_run_delay_s", 1, 3600, 60)
    frozen_s = channels["flow_m3h"]["frozen_s"]
    if frozen_s >= dry_s:
        _fail(
            "io.channels.flow_m3h.frozen_s",
            "%s not below protection.dry_run_delay_s %d: a flow transmitter stuck at 0 would lock"
            " out healthy pumps" % (_fmt(frozen_s), dry_s),
        )
    if plausibility["check_s"] >= dry_s:
        _fail(
            "io.plausibility.check_s",
            "%d not below protection.dry_run_delay_s %d" % (plausibility["check_s"], dry_s),
        )
    _bool(doc, out, path, "dry_run_auto_reset", False)
    _int(doc, out, path, "source_stop_delay_s", 0, 600, 5)
    _int(doc, out, path, "source_restart_delay_s", 0, 3600, 10)  # protection.py "Source"
    # a protection sensor with fallback "stop" BAD this long stops the station (protection.py)
    _int(doc, out, path, "sensor_stop_delay_s", 0, 600, 10)
    # a pressure on its model substitute is judged this much on the unsafe side (protection.py)
    _num(doc, out, path, "substitute_margin_kpa", 0.0, 500.0, 30.0)
    _int(doc, out, path, "drive_reset_delay_s", 10, 86400, 300)
    _int(doc, out, path, "drive_resets_per_hour", 0, 10, 3)
    _num(doc, out, path, "atmosphere_kpa", 50.0, 110.0)
    return out


_TOP = ("station", "bus", "pumps", "io", "pump_model", "speed", "setpoint", "pid", "protection")
_UPLINK = ("mqtt", "outbox", "ntp", "commands")  # optional: the uplink (station_uplink.py)


def _refuse_duplicate_keys(text):
    """JSON keeps the last of two equal keys silently; a config must not (which one was meant?).

    MicroPython's json has no object_pairs_hook, so this walks the (already valid) text itself:
    a stack of open objects/arrays, each object with the keys seen so far and its path.
    """
    stack: list = []  # [path, keys (set) or None for an array, expecting a key, array index]
    i = 0
    n = len(text)
    while i < n:
        c = text[i]
        if c == '"':
            j = i + 1
            while text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            if stack and stack[-1][2]:
                top = stack[-1]
                key = json.loads(text[i : j + 1])
                if key in top[1]:
                    _fail(_join(top[0], key), "duplicate key (JSON would keep only the last)")
                top[1].add(key)
                top[2] = False
                top[3] = key
            i = j + 1
            continue
        if c == "{" or c == "[":
            path = ""
            if stack:
                top = stack[-1]
                path = "%s[%d]" % (top[0], top[3]) if top[1] is None else _join(top[0], top[3])
            stack.append([path, set() if c == "{" else None, c == "{", 0])
        elif c == "}" or c == "]":
            stack.pop()
        elif c == "," and stack:
            top = stack[-1]
            if top[1] is None:
                top[3] += 1
            else:
                top[2] = True
        i += 1


def load_config(source):
    """A validated config dict (defaults filled) from JSON text/bytes or a parsed dict."""
    if isinstance(source, (bytes, bytearray)):
        try:
            source = bytes(source).decode()
        except UnicodeError:
            raise ConfigError("config: not UTF-8 text") from None
    if isinstance(source, str):
        try:
            parsed = json.loads(source)
        except ValueError as err:
            raise ConfigError("config: not valid JSON (%s)" % err) from None
        _refuse_duplicate_keys(source)
        source = parsed
    _section(source, "", _TOP, ("staging",) + _UPLINK)
    out: dict = {}
    out["station"] = _station(source["station"])
    out["bus"] = _bus(source["bus"])
    out["pumps"], units = _pumps(source["pumps"])
    out["io"] = _io(source["io"], units)
    channels = out["io"]["channels"]
    out["pump_model"] = _pump_model(source["pump_model"])
    out["speed"] = _speed(source["speed"])
    _ramps(source["pumps"], out["pumps"], out["speed"])
    out["pid"] = _pid(source["pid"])
    out["staging"] = _staging(source.get("staging", {}), len(out["pumps"]))
    out["protection"] = _protection(source["protection"], channels, out["io"]["plausibility"])
    out["setpoint"] = _setpoint(source["setpoint"], channels)
    if out["setpoint"]["discharge_fallback_kpa"] >= out["protection"]["discharge_max_kpa"]:
        _fail(
            "setpoint.discharge_fallback_kpa",
            "%s not below protection.discharge_max_kpa %s"
            % (
                _fmt(out["setpoint"]["discharge_fallback_kpa"]),
                _fmt(out["protection"]["discharge_max_kpa"]),
            ),
        )
    if "mqtt" in source:
        _uplink(source, out)
    else:
        for key in _UPLINK:
            if key in source:
                _fail(key, "needs the mqtt section (no uplink without a broker)")
    return out


def _uplink(source, out):
    """The uplink's sections (station_uplink.py), checked by uplink_config.py; its errors name
    the field. Without "mqtt" the station runs without an uplink."""
    from . import uplink_config as sections

    try:
        out["mqtt"] = sections.mqtt_section(source["mqtt"], "mqtt")
        out["outbox"] = sections.outbox_section(source.get("outbox"))
        out["ntp"] = sections.ntp_section(source.get("ntp"))
        out["commands"] = sections.commands_section(source.get("commands"))
    except ValueError as err:
        raise ConfigError(str(err)) from None


def load_config_file(path, opener=open):
    """load_config of a file (the runtime's helper); an unreadable file is a ConfigError too."""
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except OSError as err:
        raise ConfigError("config: cannot read %s (%s)" % (path, err)) from None
    return load_config(data)
