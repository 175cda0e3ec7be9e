"""Danfoss VLT FC 102 / FC 202 with the FC profile (8-10 = FC profile) over Modbus RTU.

Danfoss addresses a parameter x-yz at register 10 * xyz (manual numbering, 1-based); the wire
address is one less. Holding registers (FC 03 / 06 / 16):
    wire   manual  meaning                         access  scale
    49999  50000   control word (CTW)              R/W     FC profile bits below
    50009  50010   bus reference (REF)             R/W     signed, 0x4000 = 100 % = 1480 rpm;
                                                           |REF| > 0x4000 * max(100 %, max speed)
                                                           / 100 % -> exception 03
    50199  50200   status word (STW)               R       bits below
    50209  50210   main actual value (MAV)         R       signed, 0x4000 = 100 % speed
    3409   3410    3-41 ramp 1 ramp up time, high  R/W     32 bit (Uint32, conversion index -2:
    3410   3411         ... low word                       0.01 s), high word first, 0 -> 100 %
                                                           speed; 100..360000 (1.00..3600.00 s)
    3419   3420    3-42 ramp 1 ramp down time, high R/W    as 3-41, 100 % -> 0
    3420   3421         ... low word
    4179   4180    4-18 current limit, high word   R/W     32 bit (Uint32, conversion index -1:
    4180   4181         ... low word                       0.1 %) of the motor's nominal current
                                                           (1-24); 100..1500 (10.0..150.0 %: the
                                                           upper bound is the power unit's maximum
                                                           current, size-dependent on a real FC)
    15299  15300   15-30 alarm log: error code     R       alarm number of the active trip:
                                                           13 overcurrent, 29 heat sink
                                                           temperature, 7 DC overvoltage,
                                                           10 motor overload (ETR, the I^2 t
                                                           model), 17 control word timeout;
                                                           0 = none
    16099  16100   16-10 power                     R       0.1 kW
    16119  16120   16-12 motor voltage             R       1 V
    16129  16130   16-13 frequency                 R       0.1 Hz
    16139  16140   16-14 motor current             R       0.1 A
    16169  16170   16-17 speed                     R       rpm
    16299  16300   16-30 DC link voltage           R       1 V
    16339  16340   16-34 heat sink temperature     R       1 degC
The scales of groups 15 and 16 are this simulator's (the real parameters carry their own
conversion index); 3-41 / 3-42 / 4-18 use the parameter's own. A 32-bit parameter is written as one
FC 16 of its two words (as Danfoss documents); a write of one word alone, or a value outside the
range, -> 03 and nothing changes. Any other address -> 02, a write to a read-only register -> 02,
other functions -> 01.

Control word (1 = normal): 2 ramp (0 = DC brake; simulated as a quick stop), 3 no coast
(0 = coast), 4 no quick stop, 5 ramp (0 = hold output frequency), 6 start (0 = ramp stop),
7 reset on the 0 -> 1 edge, 10 data valid (0 = control word ignored). Bits 0/1 (preset
reference), 8 (jog), 9 (ramp 2), 11..14 and 15 (reverse) are accepted and ignored.
Words: 0x047C start, 0x043C ramp stop, 0x0474 coast, 0x046C quick stop, 0x04BC reset (start 0).
The bits act as levels: releasing coast or quick stop with start still set restarts the motor.
After a trip, a reset edge (with no fault cause left) leaves the drive stopped until the start
bit has been seen at 0 (a new start: e.g. 0x04BC or 0x043C, then 0x047C).
Status word: 0 control ready, 1 drive ready (both 0 while tripped), 2 enabled (0 = coasting),
3 trip, 7 warning (comm-loss hold / safe speed), 8 speed = reference, 9 bus control,
10 within frequency limits (0 = reference clamped by min/max speed), 11 running,
13 voltage exceeded (DC overvoltage), 14 torque exceeded (overcurrent, or running in the current
limit), 15 thermal (overtemperature). Typical: 0x0607 stopped and ready, 0x0F07 running at reference.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ..device import ILLEGAL_DATA_VALUE, ModbusException, Register, to_s16
from .base import (
    COAST,
    COMM_LOSS,
    DC_OVERVOLTAGE,
    MOTOR_OVERLOAD,
    OVERCURRENT,
    OVERTEMPERATURE,
    QUICK_STOP,
    RAMP_STOP,
    RUN,
    Drive,
    DriveConfig,
)

REFERENCE_FULL_SCALE = 0x4000

CONTROL_WORD = 49999
BUS_REFERENCE = 50009
STATUS_WORD = 50199
MAIN_ACTUAL_VALUE = 50209
ALARM_CODE = 15299
POWER = 16099
MOTOR_VOLTAGE = 16119
FREQUENCY = 16129
MOTOR_CURRENT = 16139
SPEED_RPM = 16169
DC_LINK_VOLTAGE = 16299
HEAT_SINK_TEMPERATURE = 16339
RAMP_UP_TIME = 3409  # 3-41, two registers
RAMP_DOWN_TIME = 3419  # 3-42, two registers
CURRENT_LIMIT = 4179  # 4-18, two registers
CURRENT_LIMIT_PER_PCT = 10  # conversion index -1

RAMP_TIME_PER_S = 100  # conversion index -2
RAMP_TIME_MIN = 100  # 1.00 s
RAMP_TIME_MAX = 360000  # 3600.00 s

CTW_NO_DC_BRAKE = 0x0004
CTW_NO_COAST = 0x0008
CTW_NO_QUICK_STOP = 0x0010
CTW_NO_HOLD = 0x0020
CTW_START = 0x0040
CTW_RESET = 0x0080
CTW_DATA_VALID = 0x0400


class DanfossDrive(Drive):
    PROFILE = "danfoss"
    FAULT_CODES = {
        OVERCURRENT: 13,
        OVERTEMPERATURE: 29,
        DC_OVERVOLTAGE: 7,
        MOTOR_OVERLOAD: 10,
        COMM_LOSS: 17,
    }

    def __init__(self, unit: int, config: DriveConfig | None = None) -> None:
        self.reference = 0
        self.control_register = 0
        self.start_inhibited = False  # after a reset until the start bit is seen at 0
        super().__init__(unit, config)

    def _build_registers(self) -> None:
        limit = self._reference_limit(REFERENCE_FULL_SCALE)
        add = self.bank.add
        add(CONTROL_WORD, Register(lambda: self.control_register, self._write_control))
        add(
            BUS_REFERENCE,
            Register(
                lambda: self.reference, self._write_reference, lambda v: abs(to_s16(v)) <= limit
            ),
        )
        add(STATUS_WORD, Register(self.status_word))
        add(MAIN_ACTUAL_VALUE, Register(lambda: round(self.speed_pct / 100 * REFERENCE_FULL_SCALE)))
        add(ALARM_CODE, Register(lambda: self.fault_code))
        add(POWER, Register(lambda: round(self.power_kw * 10)))
        add(MOTOR_VOLTAGE, Register(self._motor_voltage))
        add(FREQUENCY, Register(lambda: round(self.frequency_hz * 10)))
        add(MOTOR_CURRENT, Register(lambda: round(self.current_a * 10)))
        add(SPEED_RPM, Register(lambda: round(self.rpm)))
        add(DC_LINK_VOLTAGE, Register(lambda: round(self.dc_voltage_v)))
        add(HEAT_SINK_TEMPERATURE, Register(lambda: round(self.reported_temperature_c)))
        c = self.config
        self._long_params: dict[int, tuple[Callable[[int], None], Callable[[int], bool]]] = {}
        self._add_long(
            RAMP_UP_TIME, lambda: round(c.accel_s * RAMP_TIME_PER_S), self._set_accel, _valid_ramp
        )
        self._add_long(
            RAMP_DOWN_TIME, lambda: round(c.decel_s * RAMP_TIME_PER_S), self._set_decel, _valid_ramp
        )
        self._add_long(
            CURRENT_LIMIT,
            lambda: round(c.current_limit_pct * CURRENT_LIMIT_PER_PCT),
            self._set_current_limit,
            lambda value: c.accepts_current_limit_pct(value / CURRENT_LIMIT_PER_PCT),
        )

    def _add_long(
        self,
        address: int,
        read: Callable[[], int],
        write: Callable[[int], None],
        valid: Callable[[int], bool],
    ) -> None:
        """A 32-bit parameter: high word at ``address``, low word after it. The bank refuses
        every write touching one (03); write_registers takes the two-word write itself."""
        self.bank.add(address, Register(lambda: read() >> 16 & 0xFFFF, _never, _refuse))
        self.bank.add(address + 1, Register(lambda: read() & 0xFFFF, _never, _refuse))
        self._long_params[address] = (write, valid)

    def write_registers(self, address: int, values: Sequence[int]) -> None:
        param = self._long_params.get(address)
        if param is None or len(values) != 2:
            super().write_registers(address, values)
            return
        writer, valid = param
        high, low = values
        value = (high << 16) | low
        if not (0 <= high <= 0xFFFF and 0 <= low <= 0xFFFF and valid(value)):
            raise ModbusException(ILLEGAL_DATA_VALUE, f"value {value} refused by parameter")
        writer(value)

    def _set_accel(self, value: int) -> None:
        self.config.accel_s = value / RAMP_TIME_PER_S

    def _set_decel(self, value: int) -> None:
        self.config.decel_s = value / RAMP_TIME_PER_S

    def _set_current_limit(self, value: int) -> None:
        self.config.current_limit_pct = value / CURRENT_LIMIT_PER_PCT

    def _write_control(self, word: int) -> None:
        self.control_register = word
        if word & CTW_DATA_VALID:
            self._control_written(word)

    def _write_reference(self, word: int) -> None:
        self.reference = word
        self._set_reference(to_s16(word) * 100.0 / REFERENCE_FULL_SCALE)

    def _motor_voltage(self) -> int:
        return round(self.config.voltage_v * min(1.0, self.speed_ratio)) if self.pulses_on else 0

    def _evaluate(self, reset_edge: bool) -> None:
        cw = self.control_word
        self.rfg_hold = not cw & CTW_NO_HOLD
        self.rfg_input_zero = False
        self.rfg_output_zero = False
        if self.tripped:
            if not (reset_edge and self._try_reset()):
                self.motion = COAST
                return
            self.start_inhibited = True
        start = bool(cw & CTW_START)
        if not start:
            self.start_inhibited = False
        moving = self.speed_pct > 0
        if not cw & CTW_NO_COAST:
            self.motion = COAST
        elif not cw & CTW_NO_QUICK_STOP or not cw & CTW_NO_DC_BRAKE:
            self.motion = QUICK_STOP if moving and self.pulses_on else COAST
        elif start and not self.start_inhibited:
            self.motion = RUN
        else:
            self.motion = RAMP_STOP if moving and self.pulses_on else COAST

    def status_word(self) -> int:
        cw = self.control_word
        bits = 0
        if not self.tripped:
            bits |= 0x0003
            if cw & CTW_NO_COAST:
                bits |= 0x0004
        else:
            bits |= 0x0008
        if self.alarm:
            bits |= 0x0080
        if self.at_setpoint:
            bits |= 0x0100
        bits |= 0x0200
        if not (self.motion == RUN and self.reference_clamped):
            bits |= 0x0400
        if self.pulses_on:
            bits |= 0x0800
        if DC_OVERVOLTAGE in self.conditions:
            bits |= 0x2000
        if OVERCURRENT in self.conditions or self.current_limited:
            bits |= 0x4000
        if OVERTEMPERATURE in self.conditions:
            bits |= 0x8000
        return bits


def _valid_ramp(value: int) -> bool:
    return RAMP_TIME_MIN <= value <= RAMP_TIME_MAX


def _refuse(_word: int) -> bool:
    return False


def _never(_word: int) -> None:
    raise AssertionError("the bank never writes a 32-bit parameter's word alone")
