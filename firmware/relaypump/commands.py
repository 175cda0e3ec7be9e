"""Signed commands from the control room: verified, judged against the local envelope, answered.

    cmds = Commands(station_id, key, cfg, clock)
    result = cmds.handle(frame, now_ms, last_counter, mode)   # an ACK_* of codes.py
    cmds.ack(buf, seq, timestamp_s)    # the ack frame (21 B) for the control room
    cmds.event(buf, seq, timestamp_s)  # the event frame (24 B) for the outbox

After ``handle``: ``result``; ``counter`` (the command's counter, 0 when unreadable);
``consumed`` (True: the caller stores ``counter`` as the last accepted one -- state.accept_command
-- and saves it before acting); ``command_type`` and ``arg`` (setpoint in 0.1 kPa, mode, pump
number; for a config change the key id) and ``value``; ``config``: for an accepted config change
the new, validated config dict (the caller stores it atomically, applies it without a restart,
then calls ``use_config``), else None. Nothing here acts on the plant.

Rules, checked in this order; the first that fails is the result:
1. MALFORMED: not an uplink command frame (shorter than the header, bad magic or version,
   another kind).
2. WRONG_STATION: station_id is not ours (read from the clear header, before the tag).
3. UNKNOWN_COMMAND: a command type this firmware does not know; MALFORMED: a length that does
   not fit its type.
4. BAD_SIGNATURE: the HMAC-SHA256 tag over every byte before it, under the station's key, does not
   match (uplink.decode_command; HMAC from hashlib alone, compared in constant time).
5. REPLAYED: command_counter not above ``last_counter``.
   From here on the command is authentic and fresh: its counter is consumed whatever the result,
   so a refused command can never be replayed later (after a config change, say).
6. CLOCK_NOT_SYNCED: the wall clock is not set: the expiry cannot be judged, so nothing runs.
7. EXPIRED: expiry_s is before now (a command is good through its expiry second).
8. REFUSED_LOCAL: the station is in local control (mode LOCAL).
9. OUT_OF_ENVELOPE: setpoint outside the active pressure mode's envelope (REMOTE_DP:
   setpoint.min_kpa..max_kpa; DISCHARGE: above 0 and below protection.discharge_max_kpa less
   discharge_slowdown_kpa; no pressure setpoint in OFF or MANUAL_SPEED); a mode other than OFF,
   REMOTE_DP, DISCHARGE, MANUAL_SPEED; a pump number outside 1..pumps (0 allowed for reset: the
   station and every pump); a config value that config.load_config refuses.
   UNKNOWN_COMMAND again for a config key id not in config_keys.CONFIG_KEYS.
Every command gets an ack and an event: COMMAND_ACCEPTED (notice; subject the pump, value the
command type) or COMMAND_REJECTED (warning; value the ack result).

Config key ids: config_keys.py (CONFIG_KEYS), loaded with config.py for a config change only; a
config change is judged by uplink_config.judge_change, the key checked and read by
uplink_build.check_key / read_key (CommandConfigError): code that runs once or rarely, in
modules the uplink drops again.
Allocation: a command allocates its decoded tuple and the HMAC's digests (a few hundred bytes); a
config change loads config.py and copies the config (rare; the runtime may drop config.py after).
"""

from micropython import const

from relaypump import codes, uplink  # codes.X: an imported name is a slot of our dict

_SETTABLE_MODES = (
    codes.MODE_OFF,
    codes.MODE_REMOTE_DP,
    codes.MODE_DISCHARGE,
    codes.MODE_MANUAL_SPEED,
)
_COUNTER_AT = const(16)


class Commands:
    def __init__(self, station_id, key, cfg, clock):
        from relaypump.uplink_build import check_key  # (boot only: the uplink drops it again)

        self.station_id = station_id
        self.key = check_key(key)
        self.clock = clock
        self.cfg = cfg
        self.result = codes.ACK_OK
        self.counter = 0
        self.consumed = False
        self.command_type = 0
        self.arg = 0
        self.value = 0
        self.config = None
        self.handled = 0

    def use_config(self, cfg):
        """The config now in force (after a config change was stored and applied)."""
        self.cfg = cfg

    def handle(self, frame, now_ms, last_counter, mode):
        """Judge one command frame (the payload of a message on the command topic)."""
        self.counter = 0
        self.consumed = False
        self.command_type = 0
        self.arg = 0
        self.value = 0
        self.config = None
        self.handled += 1
        self.result = self._judge(frame, now_ms, last_counter, mode)
        return self.result

    def _judge(self, frame, now_ms, last_counter, mode):
        try:
            if uplink.frame_kind(frame) != uplink.KIND_COMMAND:
                return codes.ACK_MALFORMED
        except uplink.UplinkError:
            return codes.ACK_MALFORMED
        if len(frame) >= _COUNTER_AT + 4:  # the claimed counter, for the ack (not yet trusted)
            self.counter = (
                frame[_COUNTER_AT] << 24
                | frame[_COUNTER_AT + 1] << 16
                | frame[_COUNTER_AT + 2] << 8
                | frame[_COUNTER_AT + 3]
            )
        station = frame[4] << 24 | frame[5] << 16 | frame[6] << 8 | frame[7]
        if station != self.station_id:
            return codes.ACK_WRONG_STATION
        try:
            values = uplink.decode_command(frame, self.key)
        except uplink.UnknownCommand:
            return codes.ACK_UNKNOWN_COMMAND
        except uplink.BadSignature:
            return codes.ACK_BAD_SIGNATURE
        except uplink.UplinkError:  # truncated, too long
            return codes.ACK_MALFORMED
        counter = values[uplink.I_COMMAND_COMMAND_COUNTER]
        self.counter = counter
        self.command_type = values[uplink.I_COMMAND_COMMAND_TYPE]
        self.arg = values[uplink.I_COMMAND_ARG0]
        if len(values) > uplink.I_COMMAND_ARG0 + 1:
            self.value = values[uplink.I_COMMAND_ARG0 + 1]
        if counter <= last_counter:
            return codes.ACK_REPLAYED
        self.consumed = True
        if not self.clock.synced:
            return codes.ACK_CLOCK_NOT_SYNCED
        if values[uplink.I_COMMAND_EXPIRY_S] < self.clock.stamp(now_ms):
            return codes.ACK_EXPIRED
        if mode == codes.MODE_LOCAL:
            return codes.ACK_REFUSED_LOCAL
        # 9. the envelope
        kind = self.command_type
        arg = self.arg
        pumps = len(self.cfg["pumps"])
        if kind == uplink.COMMAND_SETPOINT:
            kpa = arg / 10
            if mode == codes.MODE_REMOTE_DP:
                sp = self.cfg["setpoint"]
                ok = sp["min_kpa"] <= kpa <= sp["max_kpa"]
            elif mode == codes.MODE_DISCHARGE:
                pr = self.cfg["protection"]
                ok = 0 < kpa < pr["discharge_max_kpa"] - pr["discharge_slowdown_kpa"]
            else:
                ok = False  # no pressure setpoint in OFF or MANUAL_SPEED
            return codes.ACK_OK if ok else codes.ACK_OUT_OF_ENVELOPE
        if kind == uplink.COMMAND_MODE:
            return codes.ACK_OK if arg in _SETTABLE_MODES else codes.ACK_OUT_OF_ENVELOPE
        if kind == uplink.COMMAND_PUMP_ENABLE or kind == uplink.COMMAND_PUMP_DISABLE:
            return codes.ACK_OK if 1 <= arg <= pumps else codes.ACK_OUT_OF_ENVELOPE
        if kind == uplink.COMMAND_RESET:
            return codes.ACK_OK if 0 <= arg <= pumps else codes.ACK_OUT_OF_ENVELOPE
        from relaypump import uplink_config  # a config change (rare): its code loaded for it

        return uplink_config.judge_change(self)

    # --- answers --------------------------------------------------------------------------------
    def ack(self, buf, seq, timestamp_s):
        """The ack frame of the last command into buf; returns its length (21)."""
        # (values made per command: commands are rare, a list kept is heap all the time)
        values = [self.station_id, seq, timestamp_s, self.counter, self.result]
        return uplink.encode_ack(buf, values)

    def event(self, buf, seq, timestamp_s):
        """The event frame of the last command into buf; returns its length (24)."""
        values = [self.station_id, seq, timestamp_s, 0, 0, 0, 0]
        if self.result == codes.ACK_OK:
            values[3] = codes.EVENT_COMMAND_ACCEPTED
            values[4] = codes.SEVERITY_NOTICE
            pump_command = self.command_type in (
                uplink.COMMAND_PUMP_ENABLE,
                uplink.COMMAND_PUMP_DISABLE,
                uplink.COMMAND_RESET,
            )
            values[5] = self.arg if pump_command else 0
            values[6] = self.command_type
        else:
            values[3] = codes.EVENT_COMMAND_REJECTED
            values[4] = codes.SEVERITY_WARNING
            values[5] = 0
            values[6] = self.result
        return uplink.encode_event(buf, values)
