"""Master-side drive profiles: what to write to a VFD and how to read what it reports.

One small object per drive (``make_profile(pump_config, rated_kw)``), of the class its config's
"profile" names: "abb" (ABB Drives profile, ACS/ACQ/ACH 580), "danfoss" (Danfoss FC profile,
FC 102/202) or "g120" / "profidrive" (PROFIdrive telegram 1 words over Modbus, SINAMICS G120 map).
The object holds the register map, scales and a tiny per-drive state: the last status word read
and the last control word written, because starting and resetting are sequences:

- PROFIdrive and ABB (same state machine): from SWITCH-ON INHIBITED (status bit 6) the master
  writes 0x0476 (-> READY TO SWITCH ON), then 0x0477 (-> READY TO OPERATE), then 0x047F (run).
  ``control_word`` picks the next word from the status it was given, so one status read + one
  write per poll cycle walks the sequence. Stop (ramp, OFF1) is 0x047E: ON = 0 with "enable
  operation" kept, otherwise the drive coasts instead of ramping. Coast (OFF2) 0x047D, quick
  stop (OFF3) 0x047B.
- Danfoss FC: bits are levels. 0x047C run, 0x043C ramp stop, 0x0474 coast, 0x046C quick stop.
- Reset: bit 7 must rise from 0 to 1. While a tripped drive is not being reset the master writes
  a word with bit 7 = 0 (0x0476 / 0x043C); a reset request then writes the same word with bit 7
  set (0x04F6 / 0x04BC), which also leaves the drive stopped, so a new start sequence follows.
  A reset is only sent to a drive whose status says tripped; ``reset_sent`` tells the caller the
  edge went out (the request is consumed).
Reference: speed % of nominal -> register: round(pct * full_scale / 100), clamped to 0..100 %
(pump drives run forward only; a NaN counts as 0). ABB REF1 full scale is a drive parameter
(46.01, config "ref_full_scale", default 20000); Danfoss and PROFIdrive use 0x4000 = 100 %.
Actual speed uses the reference's scale, signed.
Status -> DRIVE_* (snapshot.py): trip bit -> TRIPPED; inverter modulating (PROFIdrive bit 2
"operation enabled", Danfoss bit 11 "running") -> RUNNING (also while ramping down); not under
fieldbus control (PROFIdrive bit 9, Danfoss bit 9) -> NOT_READY; otherwise READY, including
SWITCH-ON INHIBITED, which the start sequence leaves on its own.
Fault codes (vendor numbers as read from the fault register) map to a common meaning: FAULT_*.
Ramp times (config ramp_up_s / ramp_down_s: 0 -> 100 % and 100 -> 0 % of the speed scale) are
drive parameters the master writes at commissioning and reads back (fieldbus.py); per profile:
- ABB ACS580: 23.12 acceleration time 1 / 23.13 deceleration time 1, holding registers
  402312 / 402313 (400000 + 100 group + index) -> wire 2311 / 2312, 16-bit, 10 = 1 s (0..1800 s);
- Danfoss FC: 3-41 ramp 1 ramp-up / 3-42 ramp-down time -> wire 3409 / 3419 (10 x number - 1),
  32-bit (two registers, high word first), conversion index -2: 100 = 1 s (1..3600 s);
- G120: p1120 ramp-up / p1121 ramp-down time, registers 40322 / 40323 -> wire 321 / 322, 16-bit,
  100 = 1 s (0..650 s).
The drive's current limit (config pumps[].current_limit_pct of the motor's rated current,
default 100; pumps[].rated_current_a where the parameter is in amps) is commissioned the same
way, right after the ramp times: at the limit the drive lowers the frequency instead of drawing
more (a pump is a rising-torque load), within tens of milliseconds, so a pump left alone against
the column stays within its motor rating however fast the column pushes it; per profile:
- ABB ACS580: 30.17 maximum current, 403017 -> wire 3016, 16-bit, 0.1 A;
- Danfoss FC: 4-18 current limit -> wire 4179, 32-bit, conversion index -1: 0.1 % of the motor's
  nominal current (1-24);
- G120: p0640 current limit, 40321 -> wire 320, 16-bit, 0.1 A.
``ramp_blocks`` / ``ramp_values`` give the writes (one fc16 per block: ABB and G120 one block of
both times, Danfoss one block per 32-bit time; then the current limit's block, always the last);
``ramp_ds`` decodes a read-back ramp time,
``limit_pct10`` a read-back current limit (0.1 % of the rated current).
Nothing here allocates per call except the float reference conversion.
"""

from micropython import const

from relaypump.snapshot import (
    CMD_COAST,
    CMD_QUICK_STOP,
    CMD_RUN,
    DRIVE_NOT_READY,
    DRIVE_READY,
    DRIVE_RUNNING,
    DRIVE_TRIPPED,
)

FAULT_NONE = const(0)
FAULT_OVERCURRENT = const(1)
FAULT_OVERTEMPERATURE = const(2)
FAULT_DC_OVERVOLTAGE = const(3)
FAULT_COMM_LOSS = const(4)
FAULT_OTHER = const(5)

_RESET_BIT = const(0x0080)
_PD_READY_TO_SWITCH_ON = const(0x0001)
_PD_READY_TO_OPERATE = const(0x0002)
_PD_OPERATION_ENABLED = const(0x0004)
_PD_FAULT = const(0x0008)
_PD_SWITCH_ON_INHIBITED = const(0x0040)
_PD_REMOTE = const(0x0200)
# control words (module constants: folded into the code, not class attributes)
_PD_WORD_IDLE = const(0x0476)  # OFF1 with pulses disabled: READY TO SWITCH ON
_PD_WORD_SWITCH_ON = const(0x0477)
_PD_WORD_RUN = const(0x047F)
_PD_WORD_RAMP_STOP = const(0x047E)
_PD_WORD_COAST = const(0x047D)
_PD_WORD_QUICK_STOP = const(0x047B)
_FC_WORD_RUN = const(0x047C)
_FC_WORD_RAMP_STOP = const(0x043C)
_FC_WORD_COAST = const(0x0474)
_FC_WORD_QUICK_STOP = const(0x046C)
_FC_READY = const(0x0003)
_FC_TRIP = const(0x0008)
_FC_BUS_CONTROL = const(0x0200)
_FC_RUNNING = const(0x0800)


class ProfileError(ValueError):
    """A pump's config names an unknown profile or a bad scale."""


class _Profile:
    # The names with a type and no value every profile sets (a bare annotation costs no entry
    # in the class's dict: heap on a board); the others are defaults a profile may override.
    NAME: str
    # Fast block, read every cycle: first register is the status word.
    STATUS_ADDRESS: int
    STATUS_COUNT: int
    ACTUAL_INDEX = -1  # actual speed inside the fast block, or -1: read at ACTUAL_ADDRESS
    ACTUAL_ADDRESS = -1
    POWER_INDEX = -1  # power inside the fast block (ABB ACT2), or -1
    CONTROL_ADDRESS: int
    REFERENCE_ADDRESS: int
    FULL_SCALE = 0x4000
    FAULT_ADDRESS: int
    # Slow blocks, read in rotation: (address, count, current index, power index); -1 = absent.
    AUX_BLOCKS: tuple
    CURRENT_SCALE = 0.1  # A per bit
    POWER_SCALE = 0.1  # kW per bit
    FAULTS: tuple  # (vendor code, FAULT_*) pairs: a constant, no dict built at import
    # Ramp-time parameters: wire addresses, registers per value (2: high word first), units per
    # second, largest time the register takes.
    RAMP_UP_ADDRESS: int
    RAMP_DOWN_ADDRESS: int
    RAMP_WORDS = 1
    RAMP_PER_S: int
    RAMP_MAX_S: float
    # Current-limit parameter: wire address, registers (2: high word first), units per A (amps)
    # or per % of the rated current (LIMIT_AMPS False).
    LIMIT_ADDRESS: int
    LIMIT_WORDS = 1
    LIMIT_PER_UNIT = 10
    LIMIT_AMPS = True

    def __init__(
        self,
        full_scale=0,
        rated_kw=0.0,
        ramp_up_s=100.0,
        ramp_down_s=100.0,
        limit_pct=100.0,
        rated_a=0.0,
    ):
        self.full_scale = full_scale or self.FULL_SCALE
        if not 0 < self.full_scale <= 0x7FFF:
            raise ProfileError("ref_full_scale %d outside 1..32767" % self.full_scale)
        self.ramp_blocks: tuple = ()
        self.ramp_values: tuple = ()
        up = self._ramp_raw("ramp_up_s", ramp_up_s)
        down = self._ramp_raw("ramp_down_s", ramp_down_s)
        if self.RAMP_WORDS == 2:
            self.ramp_blocks = (self.RAMP_UP_ADDRESS, self.RAMP_DOWN_ADDRESS)
            self.ramp_values = ([up >> 16, up & 0xFFFF], [down >> 16, down & 0xFFFF])
        elif self.RAMP_DOWN_ADDRESS == self.RAMP_UP_ADDRESS + 1:
            self.ramp_blocks = (self.RAMP_UP_ADDRESS,)
            self.ramp_values = ([up, down],)
        else:
            self.ramp_blocks = (self.RAMP_UP_ADDRESS, self.RAMP_DOWN_ADDRESS)
            self.ramp_values = ([up], [down])
        if not 10.0 <= limit_pct <= 150.0:  # also NaN
            raise ProfileError("current_limit_pct %s outside 10..150 %%" % limit_pct)
        if self.LIMIT_AMPS and not 0.1 <= rated_a <= 6000.0:
            raise ProfileError(
                "rated_current_a %s: the %s current limit is in amps, needs the motor's rated "
                "current (0.1..6000 A)" % (rated_a, self.NAME)
            )
        self.rated_da = int(rated_a * 10 + 0.5)  # 0.1 A, an int: no heap float
        unit = limit_pct * rated_a / 100.0 if self.LIMIT_AMPS else limit_pct
        limit = int(unit * self.LIMIT_PER_UNIT + 0.5)
        self.ramp_blocks += (self.LIMIT_ADDRESS,)
        if self.LIMIT_WORDS == 2:
            self.ramp_values += ([limit >> 16, limit & 0xFFFF],)
        else:
            self.ramp_values += ([limit],)
        self.speed_scale = 100.0 / self.full_scale  # % per bit of the actual value
        self._ref_scale = self.full_scale / 100.0
        self.power_scale = self.POWER_SCALE
        self.status = 0  # last status word given to decode_status
        self.last_word = 0  # last control word handed out
        self.reset_sent = False  # the last control_word() call carried the reset edge

    @property
    def contiguous_write(self):
        """Control word and reference can go in one write multiple registers (fc16)."""
        return self.REFERENCE_ADDRESS == self.CONTROL_ADDRESS + 1

    def _ramp_raw(self, key, seconds):
        if not 0.0 < seconds <= self.RAMP_MAX_S:  # also NaN
            raise ProfileError(
                "%s %s outside 0..%d s for %s" % (key, seconds, self.RAMP_MAX_S, self.NAME)
            )
        return int(seconds * self.RAMP_PER_S + 0.5)

    def ramp_ds(self, high, low):
        """A ramp time read back, in 0.1 s (high is ignored for 16-bit parameters)."""
        raw = (high << 16 | low) if self.RAMP_WORDS == 2 else low
        return raw * 10 // self.RAMP_PER_S

    def limit_pct10(self, high, low):
        """A current limit read back, in 0.1 % of the rated current (high ignored for 16-bit)."""
        raw = (high << 16 | low) if self.LIMIT_WORDS == 2 else low
        if self.LIMIT_AMPS:
            per = self.LIMIT_PER_UNIT * self.rated_da
            return (raw * 10000 + per // 2) // per
        return raw * 10 // self.LIMIT_PER_UNIT

    def reference(self, speed_pct):
        """Register value for a speed reference in % of nominal speed."""
        if not speed_pct > 0.0:  # also NaN
            return 0
        if speed_pct >= 100.0:
            return self.full_scale
        return int(speed_pct * self._ref_scale + 0.5)

    def speed_pct(self, raw):
        signed = raw - 0x10000 if raw & 0x8000 else raw  # a 16-bit two's complement word
        return signed * self.speed_scale

    def fault_meaning(self, code):
        if not code:
            return FAULT_NONE
        for known, meaning in self.FAULTS:
            if known == code:
                return meaning
        return FAULT_OTHER

    def decode_status(self, word):
        raise NotImplementedError

    def control_word(self, command, reset):
        raise NotImplementedError

    def _tripped_word(self, idle_word, reset):
        """bit 7 low first, then the edge when a reset is wanted."""
        if reset and not self.last_word & _RESET_BIT:
            self.reset_sent = True
            return idle_word | _RESET_BIT
        return idle_word


class ProfidriveProfile(_Profile):
    """PROFIdrive STW1/ZSW1 over Modbus, register map of a SINAMICS G120 (wire = 40001-based
    register number - 40001: STW1 40100 -> 99)."""

    NAME = "profidrive"
    STATUS_ADDRESS = 109  # ZSW1, then HIW actual speed
    STATUS_COUNT = 2
    ACTUAL_INDEX = 1
    CONTROL_ADDRESS = 99  # STW1, then HSW setpoint
    REFERENCE_ADDRESS = 100
    FAULT_ADDRESS = 399  # r0947[0]
    AUX_BLOCKS = ((344, 3, 0, 2),)  # r0027 current 0.01 A, r0031 torque, r0032 power 0.01 kW
    CURRENT_SCALE = 0.01
    POWER_SCALE = 0.01
    RAMP_UP_ADDRESS = 321  # p1120 ramp-up time (40322), then p1121 ramp-down time (40323)
    RAMP_DOWN_ADDRESS = 322
    RAMP_PER_S = 100
    RAMP_MAX_S = 650.0
    LIMIT_ADDRESS = 320  # p0640 current limit (40321), 0.1 A
    FAULTS: tuple = (
        (30001, FAULT_OVERCURRENT),
        (30017, FAULT_OVERCURRENT),  # hardware current limit
        (7801, FAULT_OVERCURRENT),  # motor overcurrent
        (30002, FAULT_DC_OVERVOLTAGE),
        (7901, FAULT_OTHER),
        (30004, FAULT_OVERTEMPERATURE),
        (30005, FAULT_OVERTEMPERATURE),  # power unit I2t overload
        (7011, FAULT_OVERTEMPERATURE),  # motor overtemperature
        (1910, FAULT_COMM_LOSS),  # fieldbus setpoint timeout
        (8501, FAULT_COMM_LOSS),
    )

    def decode_status(self, word):
        self.status = word
        if word & _PD_FAULT:
            return DRIVE_TRIPPED
        if word & _PD_OPERATION_ENABLED:
            return DRIVE_RUNNING
        if not word & _PD_REMOTE:
            return DRIVE_NOT_READY
        return DRIVE_READY

    def control_word(self, command, reset):
        status = self.status
        self.reset_sent = False
        if status & _PD_FAULT:
            word = self._tripped_word(_PD_WORD_IDLE, reset)
        elif command == CMD_RUN:
            if status & _PD_SWITCH_ON_INHIBITED:
                word = _PD_WORD_IDLE
            elif status & (_PD_READY_TO_OPERATE | _PD_OPERATION_ENABLED):
                word = _PD_WORD_RUN
            elif status & _PD_READY_TO_SWITCH_ON:
                word = _PD_WORD_SWITCH_ON
            else:
                word = _PD_WORD_IDLE
        elif command == CMD_COAST:
            word = _PD_WORD_COAST
        elif command == CMD_QUICK_STOP:
            word = _PD_WORD_QUICK_STOP
        else:
            word = _PD_WORD_RAMP_STOP
        self.last_word = word
        return word


class AbbProfile(ProfidriveProfile):
    """ABB Drives profile (embedded fieldbus, Modbus): 400001.. -> wire 0.."""

    NAME = "abb"
    STATUS_ADDRESS = 3  # status word, ACT1 speed, ACT2 power (10000 = rated power)
    STATUS_COUNT = 3
    ACTUAL_INDEX = 1
    POWER_INDEX = 2
    CONTROL_ADDRESS = 0  # control word, REF1
    REFERENCE_ADDRESS = 1
    FULL_SCALE = 20000
    FAULT_ADDRESS = 400  # 04.01 tripping fault
    AUX_BLOCKS = ((106, 1, 0, -1),)  # 01.07 motor current 0.1 A
    CURRENT_SCALE = 0.1
    RAMP_UP_ADDRESS = 2311  # 23.12 acceleration time 1 (402312), then 23.13 deceleration time 1
    RAMP_DOWN_ADDRESS = 2312
    RAMP_PER_S = 10
    RAMP_MAX_S = 1800.0
    LIMIT_ADDRESS = 3016  # 30.17 maximum current (403017), 0.1 A
    FAULTS: tuple = (
        (0x2310, FAULT_OVERCURRENT),
        (0x2340, FAULT_OVERCURRENT),  # short circuit
        (0x3210, FAULT_DC_OVERVOLTAGE),
        (0x4210, FAULT_OVERTEMPERATURE),  # IGBT
        (0x4310, FAULT_OVERTEMPERATURE),  # excess temperature
        (0x4981, FAULT_OVERTEMPERATURE),  # external temperature
        (0x7510, FAULT_COMM_LOSS),  # FBA A communication
        (0x6681, FAULT_COMM_LOSS),  # EFB communication loss
    )

    def __init__(
        self,
        full_scale=0,
        rated_kw=0.0,
        ramp_up_s=100.0,
        ramp_down_s=100.0,
        limit_pct=100.0,
        rated_a=0.0,
    ):
        super().__init__(full_scale, rated_kw, ramp_up_s, ramp_down_s, limit_pct, rated_a)
        if not rated_kw > 0.0:
            raise ProfileError("abb: rated_kw needed to scale ACT2 power")
        self.power_scale = rated_kw / 10000.0


class DanfossProfile(_Profile):
    """Danfoss FC profile (parameter 8-10 = FC profile); wire address = manual number - 1."""

    NAME = "danfoss"
    STATUS_ADDRESS = 50199  # STW
    STATUS_COUNT = 1
    ACTUAL_ADDRESS = 50209  # MAV (not adjacent: a second read)
    CONTROL_ADDRESS = 49999  # CTW
    REFERENCE_ADDRESS = 50009  # REF (not adjacent: two single writes)
    FAULT_ADDRESS = 15299  # 15-30 alarm log: error code
    AUX_BLOCKS = ((16099, 1, -1, 0), (16139, 1, 0, -1))  # 16-10 power 0.1 kW, 16-14 current 0.1 A
    RAMP_UP_ADDRESS = 3409  # 3-41 ramp 1 ramp-up time, uint32 0.01 s
    RAMP_DOWN_ADDRESS = 3419  # 3-42 ramp 1 ramp-down time
    RAMP_WORDS = 2
    RAMP_PER_S = 100
    RAMP_MAX_S = 3600.0
    LIMIT_ADDRESS = 4179  # 4-18 current limit, uint32, 0.1 % of the motor's nominal current
    LIMIT_WORDS = 2
    LIMIT_AMPS = False
    FAULTS: tuple = (
        (13, FAULT_OVERCURRENT),
        (16, FAULT_OVERCURRENT),  # short circuit
        (7, FAULT_DC_OVERVOLTAGE),
        (29, FAULT_OVERTEMPERATURE),  # heat sink
        (65, FAULT_OVERTEMPERATURE),  # control card
        (17, FAULT_COMM_LOSS),  # control word timeout
    )

    def decode_status(self, word):
        self.status = word
        if word & _FC_TRIP:
            return DRIVE_TRIPPED
        if word & _FC_RUNNING:
            return DRIVE_RUNNING
        if word & _FC_READY != _FC_READY or not word & _FC_BUS_CONTROL:
            return DRIVE_NOT_READY
        return DRIVE_READY

    def control_word(self, command, reset):
        self.reset_sent = False
        if self.status & _FC_TRIP:
            word = self._tripped_word(_FC_WORD_RAMP_STOP, reset)
        elif command == CMD_RUN:
            word = _FC_WORD_RUN
        elif command == CMD_COAST:
            word = _FC_WORD_COAST
        elif command == CMD_QUICK_STOP:
            word = _FC_WORD_QUICK_STOP
        else:
            word = _FC_WORD_RAMP_STOP
        self.last_word = word
        return word


PROFILES = {
    "abb": AbbProfile,
    "danfoss": DanfossProfile,
    "g120": ProfidriveProfile,
    "profidrive": ProfidriveProfile,
}


def make_profile(pump, rated_kw=0.0, ramp_s=100.0):
    """The profile object for one entry of config "pumps" (keys "profile", "ref_full_scale",
    "rated_kw", "ramp_up_s", "ramp_down_s", "current_limit_pct", "rated_current_a"; ``rated_kw``
    is the default for rated_kw, from pump_model, ``ramp_s`` the one for both ramps:
    100 / speed.slew_pct_per_s, as config.py; the current limit defaults to 100 %)."""
    name = pump.get("profile")
    cls = PROFILES.get(name)
    if cls is None:
        raise ProfileError("pumps[].profile %r is not one of abb, danfoss, g120, profidrive" % name)
    return cls(
        pump.get("ref_full_scale", 0),
        pump.get("rated_kw", rated_kw),
        pump.get("ramp_up_s", ramp_s),
        pump.get("ramp_down_s", ramp_s),
        pump.get("current_limit_pct", 100.0),
        pump.get("rated_current_a", 0.0),
    )
