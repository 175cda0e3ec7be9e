"""Persistent station state: run time, starts, energy, lockouts and the last accepted command.

Rules:
- Remote settings (``set_remote``: station off, pumps disabled, a remote setpoint; the uplink's
  commands) survive a reset; a state file without them (older) loads with none.
- Counters that grow for years are integers only: run time as whole seconds + a millisecond
  remainder, energy as whole kWh + Wh + a W*ms remainder. Floats appear only at the edge (a
  power reading in kW is rounded to whole watts once per call), so MicroPython's 32-bit floats
  (ESP32, RP2) lose nothing however long the station runs: a 32-bit float total stops growing
  once it reaches 2**24 units (e.g. 16.7 GWh counted in Wh), an integer never does.
- All integers stay below 2**30 for a century of normal use (run seconds reach 2**30 after 34
  years; above that MicroPython switches to a long int, still exact). Adding allocates nothing.
- ``to_json`` / ``from_json`` give compact JSON; ``from_json`` validates every field and raises
  StateError (a ValueError) naming it, so storage.read_latest can fall back to the older copy.
  A state saved with a different pump count is adapted: extra pumps dropped, missing ones zero.
- ``urgent`` is set when something changed that must reach flash before the agent acts on it
  (a lockout, an accepted command counter); ``dirty`` when anything changed at all. The runtime
  saves (storage.save) and clears them; run time and energy only need a periodic save.
"""

import json

from . import storage

_MS_PER_S = 1000
_WMS_PER_WH = 3600000  # W*ms in one Wh
_WH_PER_KWH = 1000
_MS_PER_HOUR = 3600000
_MAX_STEP_MS = 4000  # keeps watts * ms below 2**30 for drives up to 250 kW
VERSION = 1


class StateError(ValueError):
    """A saved state that cannot be used; the message names the field."""


class StationState:
    def __init__(self, pump_count):
        n = pump_count
        self.pump_count = n
        self.run_s = [0] * n
        self.run_ms = [0] * n  # 0..999, not yet a whole second
        self.starts = [0] * n
        self.energy_kwh = [0] * n
        self.energy_wh = [0] * n  # 0..999
        self.energy_wms = [0] * n  # 0..3599999 W*ms, not yet a whole Wh
        self.pump_lockout = [False] * n
        self.station_lockout = False
        self.lockouts = 0  # lockouts since commissioning (station and pumps)
        self.command_counter = 0  # last accepted uplink command counter (replay protection)
        # what remote commands set (station_uplink.py), kept across a reset
        self.remote_off = False  # the station switched off
        self.remote_disabled = 0  # pumps disabled (bit mask)
        self.remote_setpoint_x10 = 0  # a remote DP setpoint in 0.1 kPa; 0: none
        self.dirty = False
        self.urgent = False

    # --- counting (per tick; no allocation) -----------------------------------------------------
    def add_run(self, pump, dt_ms):
        if dt_ms <= 0:
            return
        ms = self.run_ms[pump] + dt_ms
        if ms >= _MS_PER_S:
            self.run_s[pump] += ms // _MS_PER_S
            ms %= _MS_PER_S
        self.run_ms[pump] = ms
        self.dirty = True

    def add_energy(self, pump, power_kw, dt_ms):
        """Electrical energy of one pump over dt_ms at power_kw (negative counts as zero)."""
        if dt_ms <= 0 or not power_kw > 0.0:  # also refuses NaN
            return
        watts = round(power_kw * 1000.0)
        self.add_energy_w(pump, watts, dt_ms)

    def add_energy_w(self, pump, watts, dt_ms):
        if dt_ms <= 0 or watts <= 0:
            return
        hours = dt_ms // _MS_PER_HOUR  # whole hours add whole Wh: exact and quick
        if hours:
            dt_ms -= hours * _MS_PER_HOUR
            wh = self.energy_wh[pump] + watts * hours
            self.energy_kwh[pump] += wh // _WH_PER_KWH
            self.energy_wh[pump] = wh % _WH_PER_KWH
        while dt_ms > 0:
            step = dt_ms if dt_ms < _MAX_STEP_MS else _MAX_STEP_MS
            dt_ms -= step
            wms = self.energy_wms[pump] + watts * step
            if wms >= _WMS_PER_WH:
                wh = self.energy_wh[pump] + wms // _WMS_PER_WH
                wms %= _WMS_PER_WH
                if wh >= _WH_PER_KWH:
                    self.energy_kwh[pump] += wh // _WH_PER_KWH
                    wh %= _WH_PER_KWH
                self.energy_wh[pump] = wh
            self.energy_wms[pump] = wms
        self.dirty = True

    def count_start(self, pump):
        self.starts[pump] += 1
        self.dirty = True

    def set_pump_lockout(self, pump, locked):
        if self.pump_lockout[pump] != locked:
            self.pump_lockout[pump] = locked
            if locked:
                self.lockouts += 1
            self.dirty = self.urgent = True

    def set_station_lockout(self, locked):
        if self.station_lockout != locked:
            self.station_lockout = locked
            if locked:
                self.lockouts += 1
            self.dirty = self.urgent = True

    def accept_command(self, counter):
        """True (and remembered) when counter is above the last accepted one: not a replay."""
        if counter <= self.command_counter:
            return False
        self.command_counter = counter
        self.dirty = self.urgent = True
        return True

    def set_remote(self, off, disabled, setpoint_x10):
        """What the remote commands have set (saved at once: a reset must not undo a remote
        stop or a pump taken out of service)."""
        if (
            off != self.remote_off
            or disabled != self.remote_disabled
            or setpoint_x10 != self.remote_setpoint_x10
        ):
            self.remote_off = off
            self.remote_disabled = disabled
            self.remote_setpoint_x10 = setpoint_x10
            self.dirty = self.urgent = True

    # --- reading -----------------------------------------------------------------------------------
    def run_hours(self, pump):
        return self.run_s[pump] / 3600.0

    def energy_kwh_x10(self, pump):
        """Energy in 0.1 kWh (the telemetry field), exact."""
        return self.energy_kwh[pump] * 10 + self.energy_wh[pump] // 100

    def total_energy_kwh_x10(self):
        total = 0
        for i in range(self.pump_count):
            total += self.energy_kwh_x10(i)
        return total

    # --- persistence -------------------------------------------------------------------------------
    def to_json(self):
        return json.dumps(
            {
                "v": VERSION,
                "run_s": self.run_s,
                "run_ms": self.run_ms,
                "starts": self.starts,
                "kwh": self.energy_kwh,
                "wh": self.energy_wh,
                "wms": self.energy_wms,
                "pump_lockout": [1 if x else 0 for x in self.pump_lockout],
                "station_lockout": 1 if self.station_lockout else 0,
                "lockouts": self.lockouts,
                "command_counter": self.command_counter,
                "remote": [
                    1 if self.remote_off else 0,
                    self.remote_disabled,
                    self.remote_setpoint_x10,
                ],
            }
        )


def _count(doc, key, limit=None):
    value = doc.get(key)
    if type(value) is not int or value < 0:
        raise StateError("%s: must be a non-negative integer" % key)
    if limit is not None and value >= limit:
        raise StateError("%s: %d not below %d" % (key, value, limit))
    return value


def _counts(doc, key, n, limit=None):
    values = doc.get(key)
    if type(values) is not list:
        raise StateError("%s: must be a list" % key)
    out = [0] * n
    for i in range(len(values)):
        value = values[i]
        if type(value) is not int or value < 0:
            raise StateError("%s[%d]: must be a non-negative integer" % (key, i))
        if limit is not None and value >= limit:
            raise StateError("%s[%d]: %d not below %d" % (key, i, value, limit))
        if i < n:
            out[i] = value
    return out


def from_json(text, pump_count):
    """A StationState from to_json's output (str or bytes); StateError names what is wrong."""
    if isinstance(text, (bytes, bytearray)):
        try:
            text = bytes(text).decode()
        except UnicodeError:
            raise StateError("not UTF-8 text") from None
    try:
        doc = json.loads(text)
    except ValueError:
        raise StateError("not JSON") from None
    if type(doc) is not dict:
        raise StateError("not a JSON object")
    if doc.get("v") != VERSION:
        raise StateError("v: version %r, expected %d" % (doc.get("v"), VERSION))
    known = (
        "v",
        "run_s",
        "run_ms",
        "starts",
        "kwh",
        "wh",
        "wms",
        "pump_lockout",
        "station_lockout",
        "lockouts",
        "command_counter",
        "remote",  # optional: a state saved before the uplink has none
    )
    for key in doc:
        if key not in known:
            raise StateError("%s: unknown field" % key)
    n = pump_count
    state = StationState(n)
    state.run_s = _counts(doc, "run_s", n)
    state.run_ms = _counts(doc, "run_ms", n, _MS_PER_S)
    state.starts = _counts(doc, "starts", n)
    state.energy_kwh = _counts(doc, "kwh", n)
    state.energy_wh = _counts(doc, "wh", n, _WH_PER_KWH)
    state.energy_wms = _counts(doc, "wms", n, _WMS_PER_WH)
    locks = _counts(doc, "pump_lockout", n, 2)
    state.pump_lockout = [x == 1 for x in locks]
    state.station_lockout = _count(doc, "station_lockout", 2) == 1
    state.lockouts = _count(doc, "lockouts")
    state.command_counter = _count(doc, "command_counter")
    if "remote" in doc:
        remote = _counts(doc, "remote", 3, 0x10000)
        if len(doc["remote"]) != 3 or remote[0] > 1:
            raise StateError("remote: must be [off 0/1, disabled pumps mask, setpoint x10]")
        state.remote_off = remote[0] == 1
        state.remote_disabled = remote[1] & ((1 << n) - 1)  # adapted as the other fields
        state.remote_setpoint_x10 = remote[2]
    return state


def load(fs, base, pump_count, opener=open):
    """(state, seq) from the newest valid generation on storage; a fresh state and seq 0 when none
    is usable (first boot, or both copies corrupt)."""
    got = storage.read_latest(fs, base, lambda payload: from_json(payload, pump_count), opener)
    if got is None:
        return StationState(pump_count), 0
    return got[1], got[0]


def save(fs, base, state, seq, opener=open):
    """Write state as generation seq (pass the loaded seq + 1, then + 1 per save)."""
    storage.save(fs, base, state.to_json().encode(), seq, opener)
    state.dirty = state.urgent = False
