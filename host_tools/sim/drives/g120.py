"""Siemens SINAMICS G120 (PROFIdrive telegram 1 over Modbus RTU).

Siemens numbers holding registers 40001.. ; on the wire a register is addressed as number - 40001
(what an S7 MB_MASTER sends for DATA_ADDR 40100). Holding registers (FC 03 / 06 / 16):
    wire (register)  meaning                       access  scale
    99   (40100)     STW1 control word             R/W     PROFIdrive bits, see profidrive.py
    100  (40101)     HSW main setpoint             R/W     signed, 0x4000 = 100 % = p2000 (1480 rpm);
                                                           |HSW| > 0x4000 * max(100 %, max speed) -> 03
    109  (40110)     ZSW1 status word              R       bits below
    110  (40111)     HIW actual speed              R       signed, 0x4000 = 100 %
    319  (40320)     rated power r0206             R       0.01 kW
    320  (40321)     current limit p0640           R/W     0.1 A; 10..150 % of the rated motor
                                                           current (150 %: the power unit's
                                                           maximum current), else -> 03
    321  (40322)     ramp-up time p1120            R/W     0.01 s (0..65000 = 650 s), 0 -> 100 %
    322  (40323)     ramp-down time p1121          R/W     0.01 s
    323  (40324)     reference speed p2000         R       rpm (read-only here)
    339  (40340)     speed setpoint r0020          R       rpm, signed (RFG target while running)
    340  (40341)     actual speed r0022            R       rpm, signed
    341  (40342)     output frequency r0024        R       0.01 Hz
    342  (40343)     output voltage r0025          R       V (V/f: 400 V * speed / 100 %)
    343  (40344)     DC-link voltage r0026         R       V
    344  (40345)     actual current r0027          R       0.01 A
    345  (40346)     actual torque r0031           R       0.01 Nm (power / angular speed), saturated
                                                           at 32767 as Siemens
                                                           documents for 16-bit registers
    346  (40347)     active power r0032            R       0.01 kW
    347  (40348)     energy consumption r0039      R       kWh (saturating)
    349  (40350)     heat sink temperature r0037   R       degC (simulator extension of the table)
    399  (40400)     fault number r0947[0]         R       30001 overcurrent, 30004 heat sink
                                                           overtemperature, 30002 DC-link
                                                           overvoltage, 7011 motor overtemperature
                                                           (I^2 t model), 1910 fieldbus setpoint
                                                           timeout; 0 = no fault
Any other address -> 02; a write to a read-only register -> 04 (as the G120 manual states);
coils / discrete inputs / input registers -> 01.
ZSW1: bits 0..9 as profidrive.py; 10 speed >= minimum speed (comparison value), 11 I/M/P limit
not reached (0 while the current limit holds the speed down), 12 holding brake open (0),
13 no motor overtemperature alarm (0 while injected or while the I^2 t model is above 1.0),
14 motor turns clockwise (speed > 0), 15 no power-unit thermal overload alarm.
Typical STW1 words: 0x047E (OFF1: from S1 to ready to switch on), 0x047F (on + run),
0x04FE fault acknowledge (bit 7 rising edge), 0x047D OFF2 (coast), 0x047B OFF3 (quick stop).
"""

from __future__ import annotations

import math

from ..device import SERVER_DEVICE_FAILURE, Register, to_s16
from .base import (
    COMM_LOSS,
    DC_OVERVOLTAGE,
    MOTOR_OVERLOAD,
    OVERCURRENT,
    OVERTEMPERATURE,
    DriveConfig,
)
from .profidrive import ProfidriveDrive

SETPOINT_FULL_SCALE = 0x4000

STW1 = 99
HSW = 100
ZSW1 = 109
HIW = 110
RATED_POWER = 319
CURRENT_LIMIT = 320
RAMP_UP_TIME = 321
RAMP_DOWN_TIME = 322
REFERENCE_SPEED = 323
SPEED_SETPOINT_RPM = 339
ACTUAL_SPEED_RPM = 340
OUTPUT_FREQUENCY = 341
OUTPUT_VOLTAGE = 342
DC_LINK_VOLTAGE = 343
ACTUAL_CURRENT = 344
ACTUAL_TORQUE = 345
ACTIVE_POWER = 346
ENERGY = 347
HEAT_SINK_TEMPERATURE = 349
FAULT_NUMBER = 399

RAMP_TIME_MAX = 65000  # 650.00 s


def _saturate_s16(value: float) -> int:
    return max(-0x8000, min(0x7FFF, round(value)))


class G120Drive(ProfidriveDrive):
    PROFILE = "g120"
    READ_ONLY_CODE = SERVER_DEVICE_FAILURE
    FAULT_CODES = {
        OVERCURRENT: 30001,
        OVERTEMPERATURE: 30004,
        DC_OVERVOLTAGE: 30002,
        MOTOR_OVERLOAD: 7011,
        COMM_LOSS: 1910,
    }

    def __init__(self, unit: int, config: DriveConfig | None = None) -> None:
        self.setpoint = 0
        super().__init__(unit, config)

    def _build_registers(self) -> None:
        c = self.config
        limit = self._reference_limit(SETPOINT_FULL_SCALE)
        add = self.bank.add
        add(STW1, Register(lambda: self.control_register, self._write_control))
        add(
            HSW,
            Register(
                lambda: self.setpoint, self._write_setpoint, lambda v: abs(to_s16(v)) <= limit
            ),
        )
        add(ZSW1, Register(self.status_word))
        add(HIW, Register(lambda: round(self.speed_pct / 100.0 * SETPOINT_FULL_SCALE)))
        add(RATED_POWER, Register(lambda: round(c.rated_kw * 100)))
        add(
            CURRENT_LIMIT,
            Register(
                lambda: round(c.current_limit_a * 10),
                self._write_current_limit,
                self._valid_current_limit,
            ),
        )
        add(
            RAMP_UP_TIME,
            Register(lambda: round(c.accel_s * 100), self._write_accel, _valid_ramp_time),
        )
        add(
            RAMP_DOWN_TIME,
            Register(lambda: round(c.decel_s * 100), self._write_decel, _valid_ramp_time),
        )
        add(REFERENCE_SPEED, Register(lambda: round(c.nominal_rpm)))
        add(SPEED_SETPOINT_RPM, Register(self._setpoint_rpm))
        add(ACTUAL_SPEED_RPM, Register(lambda: round(self.rpm)))
        add(OUTPUT_FREQUENCY, Register(lambda: round(self.frequency_hz * 100)))
        add(OUTPUT_VOLTAGE, Register(self._output_voltage))
        add(DC_LINK_VOLTAGE, Register(lambda: round(self.dc_voltage_v)))
        add(ACTUAL_CURRENT, Register(lambda: round(self.current_a * 100)))
        add(ACTUAL_TORQUE, Register(self._torque_register))
        add(ACTIVE_POWER, Register(lambda: round(self.power_kw * 100)))
        add(ENERGY, Register(lambda: min(0x7FFF, int(self.energy_kwh))))
        add(HEAT_SINK_TEMPERATURE, Register(lambda: round(self.reported_temperature_c)))
        add(FAULT_NUMBER, Register(lambda: self.fault_code))

    def _write_setpoint(self, word: int) -> None:
        self.setpoint = word
        self._set_reference(to_s16(word) * 100.0 / SETPOINT_FULL_SCALE)

    def _write_accel(self, word: int) -> None:
        self.config.accel_s = word / 100.0

    def _write_decel(self, word: int) -> None:
        self.config.decel_s = word / 100.0

    def _write_current_limit(self, word: int) -> None:
        self.config.current_limit_pct = word / 10.0 / self.config.rated_current_a * 100.0

    def _valid_current_limit(self, word: int) -> bool:
        c = self.config
        return c.accepts_current_limit_pct(word / 10.0 / c.rated_current_a * 100.0)

    def _setpoint_rpm(self) -> int:
        if not self.pulses_on:
            return 0
        return round(self.target_pct / 100.0 * self.config.nominal_rpm)

    def _output_voltage(self) -> int:
        if not self.pulses_on:
            return 0
        return round(self.config.voltage_v * min(1.0, self.speed_ratio))

    def _torque_register(self) -> int:
        omega = self.rpm * 2.0 * math.pi / 60.0
        torque_nm = self.power_kw * 1000.0 / omega if omega > 0 else 0.0
        return _saturate_s16(torque_nm * 100)

    def status_word(self) -> int:
        bits = self.common_status_bits()
        if self.speed_pct >= self.config.min_speed_pct:
            bits |= 0x0400
        if not self.current_limited:
            bits |= 0x0800
        if OVERTEMPERATURE not in self.conditions:
            bits |= 0x8000
            if self.motor_theta <= 1.0:
                bits |= 0x2000
        if self.speed_pct > 0:
            bits |= 0x4000
        return bits


def _valid_ramp_time(word: int) -> bool:
    return word <= RAMP_TIME_MAX
