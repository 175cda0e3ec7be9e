"""ABB Drives profile (ACS580 / ACQ580 / ACH580 embedded fieldbus, Modbus RTU).

Register map, holding registers (FC 03 / 06 / 16), 0-based wire address (manual number):
    0   (400001) control word                 R/W  PROFIdrive bits, see profidrive.py
    1   (400002) REF1 speed reference          R/W  signed, 20000 = 100 % = 1480 rpm (scaling
                                                    parameter 46.01); |REF1| > 20000 * max(100 %,
                                                    max speed) / 100 % -> exception 03
    2   (400003) REF2                          R/W  signed, 10000 = 100 %; stored, not used by a
                                                    speed-controlled pump (|REF2| > 10000 -> 03)
    3   (400004) status word                   R    bits below
    4   (400005) ACT1 actual speed             R    signed, same scale as REF1
    5   (400006) ACT2 actual power             R    10000 = 100 % of rated power
    100 (400101) 01.01 motor speed used        R    rpm, signed
    105 (400106) 01.06 output frequency        R    0.01 Hz
    106 (400107) 01.07 motor current           R    0.1 A
    110 (400111) 01.11 DC voltage              R    1 V
    113 (400114) 01.14 output power            R    0.1 kW
    400 (400401) 04.01 tripping fault          R    fault code as the hex number ABB prints:
                                                    0x2310 overcurrent, 0x4210 overtemperature
                                                    (IGBT), 0x3210 DC link overvoltage,
                                                    0x7122 motor overload (I^2 t model),
                                                    0x7510 fieldbus comm loss; 0 = no fault
    510 (400511) 05.11 inverter temperature    R    1 degC (the real drive reports % of limit)
    2311 (402312) 23.12 acceleration time 1    R/W  FbEq16 10 = 1 s, 0 -> 100 % speed (46.01);
                                                    0..18000 (1800.0 s), above -> 03
    2312 (402313) 23.13 deceleration time 1    R/W  as 23.12, 100 % -> 0
    3016 (403017) 30.17 maximum current        R/W  0.1 A; the drive's current limit: 10 % of the
                                                    motor's rated current (99.06) up to the power
                                                    unit's maximum current (150 % here), else -> 03
The grouping follows ABB's parameter addressing (400000 + 100 * group + index, wire address one
less); the scales of groups 01..05 and of 30.17 are this simulator's (0.1 A, as 01.07),
23.12 / 23.13 use the firmware manual's FbEq16. Any other address -> exception 02, a write to a read-only register -> 02,
coils / discrete inputs / input registers -> 01.
Status word bits: 0 RDY_ON, 1 RDY_RUN, 2 RDY_REF, 3 TRIPPED, 4 OFF_2_STA (1 = OFF2 inactive),
5 OFF_3_STA, 6 SWC_ON_INHIB, 7 ALARM (comm-loss hold / safe speed), 8 AT_SETPOINT, 9 REMOTE,
10 ABOVE_LIMIT (speed >= minimum speed). Typical words after 0x0476 / 0x0477 / 0x047F: 0x0231,
0x0233, 0x0737 (running at setpoint); switch-on inhibited 0x0270 (0x0240 if OFF2/OFF3 active).
Control word bit 10 REMOTE_CMD = 0: the word is stored but ignored (the drive keeps acting on the
last word that had it set). Reset = bit 7 rising edge, e.g. 0x04F6 after 0x0476.
"""

from __future__ import annotations

from ..device import Register, to_s16
from .base import (
    COMM_LOSS,
    DC_OVERVOLTAGE,
    MOTOR_OVERLOAD,
    OVERCURRENT,
    OVERTEMPERATURE,
    DriveConfig,
)
from .profidrive import ProfidriveDrive

REF1_FULL_SCALE = 20000
REF2_FULL_SCALE = 10000

CONTROL_WORD = 0
REF1 = 1
REF2 = 2
STATUS_WORD = 3
ACT1 = 4
ACT2 = 5
MOTOR_SPEED_RPM = 100
OUTPUT_FREQUENCY = 105
MOTOR_CURRENT = 106
DC_VOLTAGE = 110
OUTPUT_POWER = 113
TRIPPING_FAULT = 400
INVERTER_TEMPERATURE = 510
ACCELERATION_TIME_1 = 2311
DECELERATION_TIME_1 = 2312
MAXIMUM_CURRENT = 3016  # 30.17

RAMP_TIME_PER_S = 10  # FbEq16 of 23.12 / 23.13
RAMP_TIME_MAX = 18000  # 1800.0 s


class AbbDrive(ProfidriveDrive):
    PROFILE = "abb"
    FAULT_CODES = {
        OVERCURRENT: 0x2310,
        OVERTEMPERATURE: 0x4210,
        DC_OVERVOLTAGE: 0x3210,
        MOTOR_OVERLOAD: 0x7122,
        COMM_LOSS: 0x7510,
    }

    def __init__(self, unit: int, config: DriveConfig | None = None) -> None:
        self.ref1 = 0
        self.ref2 = 0
        super().__init__(unit, config)

    def _build_registers(self) -> None:
        limit1 = self._reference_limit(REF1_FULL_SCALE)
        add = self.bank.add
        add(CONTROL_WORD, Register(lambda: self.control_register, self._write_control))
        add(REF1, Register(lambda: self.ref1, self._write_ref1, lambda v: abs(to_s16(v)) <= limit1))
        add(
            REF2,
            Register(
                lambda: self.ref2, self._write_ref2, lambda v: abs(to_s16(v)) <= REF2_FULL_SCALE
            ),
        )
        add(STATUS_WORD, Register(self.status_word))
        add(ACT1, Register(lambda: round(self.speed_pct / 100.0 * REF1_FULL_SCALE)))
        add(ACT2, Register(lambda: round(self.power_kw / self.config.rated_kw * 10000)))
        add(MOTOR_SPEED_RPM, Register(lambda: round(self.rpm)))
        add(OUTPUT_FREQUENCY, Register(lambda: round(self.frequency_hz * 100)))
        add(MOTOR_CURRENT, Register(lambda: round(self.current_a * 10)))
        add(DC_VOLTAGE, Register(lambda: round(self.dc_voltage_v)))
        add(OUTPUT_POWER, Register(lambda: round(self.power_kw * 10)))
        add(TRIPPING_FAULT, Register(lambda: self.fault_code))
        add(INVERTER_TEMPERATURE, Register(lambda: round(self.reported_temperature_c)))
        c = self.config
        add(
            ACCELERATION_TIME_1,
            Register(lambda: round(c.accel_s * RAMP_TIME_PER_S), self._write_accel, _valid_ramp),
        )
        add(
            DECELERATION_TIME_1,
            Register(lambda: round(c.decel_s * RAMP_TIME_PER_S), self._write_decel, _valid_ramp),
        )
        add(
            MAXIMUM_CURRENT,
            Register(
                lambda: round(c.current_limit_a * 10),
                self._write_maximum_current,
                lambda word: c.accepts_current_limit_pct(word * 10.0 / c.rated_current_a),
            ),
        )

    def _write_accel(self, word: int) -> None:
        self.config.accel_s = word / RAMP_TIME_PER_S

    def _write_decel(self, word: int) -> None:
        self.config.decel_s = word / RAMP_TIME_PER_S

    def _write_maximum_current(self, word: int) -> None:
        self.config.current_limit_pct = word * 10.0 / self.config.rated_current_a

    def _write_ref1(self, word: int) -> None:
        self.ref1 = word
        self._set_reference(to_s16(word) * 100.0 / REF1_FULL_SCALE)

    def _write_ref2(self, word: int) -> None:
        self.ref2 = word

    def status_word(self) -> int:
        bits = self.common_status_bits()
        if self.speed_pct >= self.config.min_speed_pct:
            bits |= 0x0400
        return bits


def _valid_ramp(word: int) -> bool:
    return word <= RAMP_TIME_MAX
