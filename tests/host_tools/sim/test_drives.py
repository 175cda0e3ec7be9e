"""Simulated VFDs: each profile's control sequences, ramps, scaling, faults, comm loss and the
Modbus exception codes, all on a virtual clock driven by the test."""

from __future__ import annotations

import dataclasses
import math
import tomllib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from host_tools.sim import scenario
from host_tools.sim.device import ModbusException
from host_tools.sim.drives import (
    DC_OVERVOLTAGE,
    OVERCURRENT,
    OVERTEMPERATURE,
    AbbDrive,
    DanfossDrive,
    Drive,
    DriveConfig,
    G120Drive,
    abb,
    danfoss,
    g120,
    make_drive,
)
from host_tools.sim.hardware import SimulatedStation
from host_tools.sim.plant import Plant
from host_tools.sim.station import REFERENCE


class Master:
    """A test master on a virtual clock: every request counts as communication, as on the bus."""

    def __init__(self, drive: Drive) -> None:
        self.drive = drive
        self.now = 0.0

    def write(self, address: int, value: int) -> None:
        self.drive.heard(self.now)
        self.drive.write_register(address, value)

    def read(self, address: int, count: int = 1) -> list[int]:
        self.drive.heard(self.now)
        return self.drive.read_holding_registers(address, count)

    def run(self, seconds: float, dt: float = 0.1, poll: bool = True) -> None:
        """Advance the clock; with ``poll`` the master talks to the drive every step."""
        for _ in range(round(seconds / dt)):
            self.now += dt
            if poll:
                self.drive.heard(self.now)
            self.drive.step(self.now, dt)


def abb_master(**config) -> Master:
    return Master(AbbDrive(1, DriveConfig(**config)))


def abb_running(ref1: int = 20000, **config) -> Master:
    m = abb_master(**config)
    m.write(abb.REF1, ref1)
    for word in (0x0476, 0x0477, 0x047F):
        m.write(abb.CONTROL_WORD, word)
    return m


def abb_status(m: Master) -> int:
    return m.read(abb.STATUS_WORD)[0]


def expect_exception(code: int, call, *args) -> None:
    with pytest.raises(ModbusException) as info:
        call(*args)
    assert info.value.code == code


# --- ABB Drives profile -----------------------------------------------------------------------


def test_abb_start_sequence_walks_the_state_machine():
    m = abb_master()
    assert abb_status(m) == 0x0240  # switch-on inhibited, remote
    m.write(abb.CONTROL_WORD, 0x0476)
    assert abb_status(m) == 0x0231  # RDY_ON
    m.write(abb.CONTROL_WORD, 0x0477)
    assert abb_status(m) == 0x0233  # + RDY_RUN
    m.write(abb.CONTROL_WORD, 0x047F)
    assert abb_status(m) == 0x0237  # + RDY_REF
    assert m.drive.pulses_on


def test_abb_run_word_from_switch_on_inhibited_does_not_start():
    m = abb_master()
    m.write(abb.REF1, 20000)
    m.write(abb.CONTROL_WORD, 0x047F)
    m.run(5)
    assert m.drive.speed_pct == 0.0
    assert abb_status(m) & 0x0040


def test_abb_reference_scaling_and_accel_slope():
    m = abb_running(ref1=20000, accel_s=60.0)
    m.run(15)
    assert m.drive.speed_pct == pytest.approx(25.0)  # 100 % / 60 s
    m.run(15)
    assert m.drive.speed_pct == pytest.approx(50.0)
    m.run(40)
    assert m.read(abb.ACT1)[0] == 20000
    assert m.read(abb.MOTOR_SPEED_RPM)[0] == 1480
    assert m.read(abb.OUTPUT_FREQUENCY)[0] == 5000
    assert abb_status(m) == 0x0737  # running, at setpoint, above limit
    m.write(abb.REF1, 15000)  # 75 %
    assert m.read(abb.ACT1)[0] == 20000
    m.run(70)
    assert m.read(abb.ACT1)[0] == 15000
    assert m.read(abb.MOTOR_SPEED_RPM)[0] == 1110


def test_abb_decel_slope_uses_its_own_time():
    m = abb_running(ref1=20000, accel_s=10.0, decel_s=40.0)
    m.run(10)
    assert m.drive.speed_pct == pytest.approx(100.0)
    m.write(abb.REF1, 12000)  # 60 %
    m.run(8)
    assert m.drive.speed_pct == pytest.approx(80.0)  # 2.5 %/s
    assert not abb_status(m) & 0x0100  # not at setpoint while ramping


def test_abb_off1_ramps_to_ready_to_switch_on():
    m = abb_running(ref1=20000, accel_s=10.0, decel_s=20.0)
    m.run(10)
    m.write(abb.CONTROL_WORD, 0x047E)
    m.run(5)
    assert m.drive.speed_pct == pytest.approx(75.0)
    assert abb_status(m) & 0x0007 == 0x0007  # pulses still on while ramping down
    m.run(16)
    assert m.drive.speed_pct == 0.0
    assert abb_status(m) == 0x0231
    m.write(abb.CONTROL_WORD, 0x047F)  # S2 -> S3 -> S4 in one write
    m.run(1)
    assert m.drive.speed_pct == pytest.approx(10.0)


def test_abb_off2_coasts_with_a_time_constant_and_inhibits_switch_on():
    m = abb_running(ref1=20000, accel_s=10.0, coast_tau_s=8.0)
    m.run(10)
    m.write(abb.CONTROL_WORD, 0x047D)  # OFF2
    status = abb_status(m)
    assert status & 0x0040 and not status & 0x0010 and not status & 0x0004
    m.run(8)
    assert m.drive.speed_pct == pytest.approx(100.0 / math.e, rel=1e-9)
    m.run(4)
    assert m.drive.speed_pct == pytest.approx(100.0 * math.exp(-1.5), rel=1e-9)
    m.run(40)
    assert m.drive.speed_pct == 0.0
    m.write(abb.CONTROL_WORD, 0x047F)
    assert abb_status(m) & 0x0040  # still inhibited: needs 0x0476 first
    m.write(abb.CONTROL_WORD, 0x0476)
    m.write(abb.CONTROL_WORD, 0x047F)
    m.run(1)
    assert m.drive.speed_pct == pytest.approx(10.0)


def test_abb_inhibit_operation_bit_coasts_back_to_ready_to_operate():
    m = abb_running(ref1=20000, accel_s=10.0)
    m.run(10)
    m.write(abb.CONTROL_WORD, 0x0477)  # RUN bit 3 = 0
    assert abb_status(m) & 0x0007 == 0x0003
    m.run(8)
    assert m.drive.speed_pct == pytest.approx(100.0 / math.e, rel=1e-9)


def test_abb_off3_quick_stop_ramp_ends_switch_on_inhibited():
    m = abb_running(ref1=20000, accel_s=10.0, quick_stop_s=10.0)
    m.run(10)
    m.write(abb.CONTROL_WORD, 0x047B)  # OFF3
    m.run(5)
    assert m.drive.speed_pct == pytest.approx(50.0)
    assert not abb_status(m) & 0x0020
    m.write(abb.CONTROL_WORD, 0x047F)  # a quick stop, once begun, completes
    m.run(6)
    assert m.drive.speed_pct == 0.0
    assert abb_status(m) & 0x0040


def test_abb_ramp_hold_and_ramp_input_zero():
    m = abb_running(ref1=20000, accel_s=10.0, decel_s=10.0, min_speed_pct=50.0)
    m.run(4)
    m.write(abb.CONTROL_WORD, 0x045F)  # RAMP_HOLD = 0
    m.run(5)
    assert m.drive.speed_pct == pytest.approx(40.0)
    m.write(abb.CONTROL_WORD, 0x047F)
    m.run(6)
    assert m.drive.speed_pct == pytest.approx(100.0)
    m.write(abb.CONTROL_WORD, 0x043F)  # RAMP_IN_ZERO: the minimum speed clamp still holds
    m.run(20)
    assert m.drive.speed_pct == pytest.approx(50.0)


def test_speed_clamped_to_min_and_max():
    m = abb_running(ref1=4000, accel_s=10.0, min_speed_pct=50.0, max_speed_pct=90.0)
    m.run(20)
    assert m.drive.speed_pct == pytest.approx(50.0)
    m.write(abb.REF1, (-20000) & 0xFFFF)  # reverse disabled: a negative reference is 0
    m.run(5)
    assert m.drive.speed_pct == pytest.approx(50.0)
    m.write(abb.REF1, 20000)
    m.run(20)
    assert m.drive.speed_pct == pytest.approx(90.0)


def test_abb_word_without_remote_bit_is_stored_but_ignored():
    m = abb_running(ref1=20000, accel_s=10.0)
    m.run(10)
    m.write(abb.CONTROL_WORD, 0x007E)
    assert m.read(abb.CONTROL_WORD)[0] == 0x007E
    m.run(2)
    assert m.drive.speed_pct == pytest.approx(100.0)


def test_abb_trip_needs_cleared_cause_reset_edge_and_new_start():
    m = abb_running(ref1=20000, accel_s=10.0)
    m.run(10)
    m.drive.inject_fault(OVERCURRENT)
    assert abb_status(m) & 0x0008
    assert m.read(abb.TRIPPING_FAULT)[0] == 0x2310
    m.run(8)
    assert m.drive.speed_pct == pytest.approx(100.0 / math.e, rel=1e-9)  # coasts
    m.write(abb.CONTROL_WORD, 0x04FF)  # reset edge while the cause persists
    assert m.drive.tripped
    m.drive.clear_fault(OVERCURRENT)
    m.write(abb.CONTROL_WORD, 0x04FF)  # no edge: bit 7 was already 1
    assert m.drive.tripped
    m.write(abb.CONTROL_WORD, 0x047F)
    m.write(abb.CONTROL_WORD, 0x04FF)  # edge: trip cleared, but ON stays high -> inhibited
    assert not m.drive.tripped
    assert m.read(abb.TRIPPING_FAULT)[0] == 0
    assert abb_status(m) & 0x0040
    m.run(60)
    assert m.drive.speed_pct == 0.0
    m.write(abb.CONTROL_WORD, 0x0476)
    m.write(abb.CONTROL_WORD, 0x047F)
    m.run(5)
    assert m.drive.speed_pct == pytest.approx(50.0)


# --- Danfoss FC profile -----------------------------------------------------------------------


def danfoss_master(**config) -> Master:
    return Master(DanfossDrive(2, DriveConfig(**config)))


def danfoss_status(m: Master) -> int:
    return m.read(danfoss.STATUS_WORD)[0]


def test_danfoss_start_stop_with_reference_scaling():
    m = danfoss_master(accel_s=20.0, decel_s=40.0)
    m.write(danfoss.BUS_REFERENCE, 0x4000)
    m.write(danfoss.CONTROL_WORD, 0x043C)
    assert danfoss_status(m) == 0x0607  # ready, enabled, bus control, not running
    m.write(danfoss.CONTROL_WORD, 0x047C)
    m.run(10)
    assert m.drive.speed_pct == pytest.approx(50.0)
    m.run(15)
    assert m.read(danfoss.MAIN_ACTUAL_VALUE)[0] == 0x4000
    assert danfoss_status(m) == 0x0F07  # running at reference
    m.write(danfoss.BUS_REFERENCE, 0x3000)  # 75 %
    m.run(20)
    assert m.read(danfoss.MAIN_ACTUAL_VALUE)[0] == 0x3000
    assert m.read(danfoss.SPEED_RPM)[0] == 1110
    m.write(danfoss.CONTROL_WORD, 0x043C)
    m.run(10)
    assert m.drive.speed_pct == pytest.approx(50.0)
    assert danfoss_status(m) & 0x0800
    m.run(21)
    assert danfoss_status(m) == 0x0607


def test_danfoss_coast_bit_releases_the_motor_and_start_resumes():
    m = danfoss_master(accel_s=10.0, coast_tau_s=5.0)
    m.write(danfoss.BUS_REFERENCE, 0x4000)
    m.write(danfoss.CONTROL_WORD, 0x047C)
    m.run(10)
    m.write(danfoss.CONTROL_WORD, 0x0474)  # bit 3 = 0
    assert not danfoss_status(m) & 0x0804  # coasting, not running
    m.run(5)
    assert m.drive.speed_pct == pytest.approx(100.0 / math.e, rel=1e-9)
    m.write(danfoss.CONTROL_WORD, 0x047C)
    m.run(1)
    assert m.drive.speed_pct == pytest.approx(100.0 / math.e + 10.0, rel=1e-9)


def test_danfoss_quick_stop_and_hold_bits():
    m = danfoss_master(accel_s=10.0, quick_stop_s=5.0)
    m.write(danfoss.BUS_REFERENCE, 0x4000)
    m.write(danfoss.CONTROL_WORD, 0x047C)
    m.run(3)
    m.write(danfoss.CONTROL_WORD, 0x045C)  # bit 5 = 0: hold output frequency
    m.run(3)
    assert m.drive.speed_pct == pytest.approx(30.0)
    m.write(danfoss.CONTROL_WORD, 0x047C)
    m.run(7)
    m.write(danfoss.CONTROL_WORD, 0x046C)  # bit 4 = 0: quick stop
    m.run(2)
    assert m.drive.speed_pct == pytest.approx(60.0)
    m.run(4)
    assert m.drive.speed_pct == 0.0
    assert not danfoss_status(m) & 0x0800


def test_danfoss_data_not_valid_word_is_ignored():
    m = danfoss_master(accel_s=10.0)
    m.write(danfoss.BUS_REFERENCE, 0x4000)
    m.write(danfoss.CONTROL_WORD, 0x007C)  # start without data valid
    m.run(2)
    assert m.drive.speed_pct == 0.0
    assert m.read(danfoss.CONTROL_WORD)[0] == 0x007C


def test_danfoss_trip_reset_then_new_start():
    m = danfoss_master(accel_s=10.0)
    m.write(danfoss.BUS_REFERENCE, 0x4000)
    m.write(danfoss.CONTROL_WORD, 0x047C)
    m.run(10)
    m.drive.inject_fault(OVERCURRENT)
    status = danfoss_status(m)
    assert status & 0x0008 and status & 0x4000 and not status & 0x0803
    assert m.read(danfoss.ALARM_CODE)[0] == 13
    m.drive.clear_fault()
    m.write(danfoss.CONTROL_WORD, 0x04FC)  # reset edge with start still set
    assert not m.drive.tripped
    m.run(60)
    assert not m.drive.pulses_on and m.drive.speed_pct == 0.0  # no restart: start not seen low
    m.write(danfoss.CONTROL_WORD, 0x043C)
    m.write(danfoss.CONTROL_WORD, 0x047C)
    m.run(5)
    assert m.drive.speed_pct == pytest.approx(50.0)


# --- Siemens G120 (PROFIdrive) ----------------------------------------------------------------


def g120_master(**config) -> Master:
    return Master(G120Drive(3, DriveConfig(**config)))


def zsw1(m: Master) -> int:
    return m.read(g120.ZSW1)[0]


def test_g120_profidrive_sequence_and_setpoint_scaling():
    m = g120_master(accel_s=20.0, decel_s=20.0)
    assert zsw1(m) & 0x0047 == 0x0040  # switching on inhibited
    m.write(g120.HSW, 0x2000)  # 50 %
    m.write(g120.STW1, 0x047E)
    assert zsw1(m) == 0xAA31  # ready to switch on
    m.write(g120.STW1, 0x047F)
    assert zsw1(m) & 0x0007 == 0x0007
    m.run(20)
    assert m.read(g120.HIW)[0] == 0x2000
    assert m.read(g120.ACTUAL_SPEED_RPM)[0] == 740
    assert zsw1(m) == 0xEF37  # running, at setpoint, turning
    m.write(g120.STW1, 0x047E)  # OFF1
    m.run(11)
    assert zsw1(m) == 0xAA31


def test_g120_ramp_time_registers_set_the_slope():
    m = g120_master(accel_s=60.0)
    m.write(g120.RAMP_UP_TIME, 3000)  # 30.00 s
    assert m.read(g120.RAMP_UP_TIME, 2) == [3000, 6000]
    m.write(g120.HSW, 0x4000)
    m.write(g120.STW1, 0x047E)
    m.write(g120.STW1, 0x047F)
    m.run(15)
    assert m.drive.speed_pct == pytest.approx(50.0)
    expect_exception(3, m.drive.write_register, g120.RAMP_UP_TIME, 65001)


def test_g120_fault_acknowledge():
    m = g120_master(accel_s=10.0)
    m.write(g120.HSW, 0x4000)
    m.write(g120.STW1, 0x047E)
    m.write(g120.STW1, 0x047F)
    m.run(10)
    m.drive.inject_fault(OVERTEMPERATURE)
    assert zsw1(m) & 0x0008
    assert not zsw1(m) & 0x2000  # motor overtemperature alarm
    assert m.read(g120.FAULT_NUMBER)[0] == 30004
    assert m.read(g120.HEAT_SINK_TEMPERATURE)[0] >= 95
    m.run(60)  # coasts to standstill
    m.drive.clear_fault(OVERTEMPERATURE)
    m.write(g120.STW1, 0x04FE)  # acknowledge edge; OFF1 low -> ready to switch on
    assert zsw1(m) & 0x004F == 0x0001
    m.write(g120.STW1, 0x047F)
    m.run(5)
    assert m.drive.speed_pct == pytest.approx(50.0)


def test_g120_off2_and_off3():
    m = g120_master(accel_s=10.0, quick_stop_s=20.0)
    m.write(g120.HSW, 0x4000)
    m.write(g120.STW1, 0x047E)
    m.write(g120.STW1, 0x047F)
    m.run(10)
    m.write(g120.STW1, 0x047B)  # OFF3
    m.run(10)
    assert m.drive.speed_pct == pytest.approx(50.0)
    m.write(g120.STW1, 0x047D)  # OFF2 overrides: coast
    assert zsw1(m) & 0x0050 == 0x0040
    assert not m.drive.pulses_on


# --- all profiles: faults, electrical values, comm loss ---------------------------------------

PROFILES = {
    # name: (control, reference, full-scale reference, start words, fault register)
    "abb": (abb.CONTROL_WORD, abb.REF1, 20000, (0x0476, 0x0477, 0x047F), abb.TRIPPING_FAULT),
    "danfoss": (
        danfoss.CONTROL_WORD,
        danfoss.BUS_REFERENCE,
        0x4000,
        (0x043C, 0x047C),
        danfoss.ALARM_CODE,
    ),
    "g120": (g120.STW1, g120.HSW, 0x4000, (0x047E, 0x047F), g120.FAULT_NUMBER),
}
FAULT_CODES = {
    "abb": {OVERCURRENT: 0x2310, OVERTEMPERATURE: 0x4210, DC_OVERVOLTAGE: 0x3210, "comm": 0x7510},
    "danfoss": {OVERCURRENT: 13, OVERTEMPERATURE: 29, DC_OVERVOLTAGE: 7, "comm": 17},
    "g120": {OVERCURRENT: 30001, OVERTEMPERATURE: 30004, DC_OVERVOLTAGE: 30002, "comm": 1910},
}
POWER_REGISTERS = {  # (power register, scale per kW, current register, scale per A)
    "abb": (abb.OUTPUT_POWER, 10, abb.MOTOR_CURRENT, 10),
    "danfoss": (danfoss.POWER, 10, danfoss.MOTOR_CURRENT, 10),
    "g120": (g120.ACTIVE_POWER, 100, g120.ACTUAL_CURRENT, 100),
}


def running(profile: str, percent: float = 100.0, **config) -> Master:
    control, reference, full, words, _ = PROFILES[profile]
    m = Master(make_drive(profile, 5, DriveConfig(**config)))
    m.write(reference, round(full * percent / 100.0))
    for word in words:
        m.write(control, word)
    return m


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("kind", [OVERCURRENT, OVERTEMPERATURE, DC_OVERVOLTAGE])
def test_injected_fault_trips_with_vendor_code(profile, kind):
    m = running(profile, accel_s=10.0)
    m.run(10)
    m.drive.inject_fault(kind)
    assert m.drive.tripped and not m.drive.pulses_on
    assert m.read(PROFILES[profile][4])[0] == FAULT_CODES[profile][kind]
    assert m.drive.dc_voltage_v == (840.0 if kind == DC_OVERVOLTAGE else 540.0)


@pytest.mark.parametrize("profile", PROFILES)
def test_power_and_current_come_from_the_plant_load(profile):
    power_reg, power_scale, current_reg, current_scale = POWER_REGISTERS[profile]
    m = running(profile, accel_s=10.0)
    m.run(10)
    assert m.read(power_reg)[0] == 110 * power_scale  # no load fed: cube law, 100 % speed
    m.drive.load_kw = 86.0
    expected_a = 86000.0 / (math.sqrt(3) * 400.0 * 0.86)
    assert m.read(power_reg)[0] == 86 * power_scale
    assert m.read(current_reg)[0] == round(expected_a * current_scale)
    m.drive.inject_fault(OVERCURRENT)
    assert m.read(power_reg)[0] == 0 and m.read(current_reg)[0] == 0


def test_cube_law_estimate_and_energy_without_plant():
    m = running("g120", percent=50.0, accel_s=0.0)
    m.run(3600, dt=10.0)
    assert m.drive.power_kw == pytest.approx(13.75)
    assert m.read(g120.ENERGY)[0] == 13


@pytest.mark.parametrize("profile", PROFILES)
def test_comm_loss_fault_trips_after_timeout_only(profile):
    m = running(profile, accel_s=10.0, comm_timeout_s=10.0, comm_loss_action="fault")
    m.run(10)
    m.run(10, dt=0.5, poll=False)  # exactly the timeout since the last request
    assert not m.drive.tripped
    m.run(0.5, dt=0.5, poll=False)
    assert m.drive.tripped and not m.drive.pulses_on
    assert m.read(PROFILES[profile][4])[0] == FAULT_CODES[profile]["comm"]


def test_comm_loss_fault_resets_once_the_link_is_back():
    m = running("abb", accel_s=10.0, comm_loss_action="fault")
    m.run(10)
    m.run(20, poll=False)
    assert m.drive.tripped
    m.write(abb.CONTROL_WORD, 0x04F6)  # the request itself restores the link
    assert not m.drive.tripped
    assert abb_status(m) == 0x0231


@pytest.mark.parametrize("profile", PROFILES)
def test_comm_loss_hold_keeps_the_speed_of_the_moment(profile):
    m = running(profile, accel_s=50.0, comm_timeout_s=5.0, comm_loss_action="hold")
    m.run(40)  # 80 %, still ramping to 100 %
    m.run(30, poll=False)
    assert m.drive.comm_lost and not m.drive.tripped
    # ramped until the loss (within a step of float clock drift)
    assert m.drive.speed_pct == pytest.approx(80.0 + 100.0 / 50.0 * 5.0, abs=0.25)
    m.run(1)  # link back: follows its reference again
    assert not m.drive.comm_lost
    assert m.drive.speed_pct == pytest.approx(92.0, abs=0.25)


@pytest.mark.parametrize("profile", PROFILES)
def test_comm_loss_safe_speed_ramps_there_and_raises_the_alarm(profile):
    m = running(
        profile,
        accel_s=10.0,
        decel_s=20.0,
        comm_timeout_s=10.0,
        comm_loss_action="safe_speed",
        safe_speed_pct=70.0,
    )
    m.run(10)
    m.run(13, poll=False)  # lost at 10 s of silence, then 3 s ramp at 5 %/s
    assert m.drive.speed_pct == pytest.approx(85.0, abs=0.5)
    m.run(20, poll=False)
    assert m.drive.speed_pct == pytest.approx(70.0)
    assert m.drive.alarm
    assert m.drive.status_word() & 0x0080  # alarm / warning bit, same place in all three
    m.run(10)
    assert m.drive.speed_pct == pytest.approx(100.0)
    assert not m.drive.status_word() & 0x0080


def test_no_supervision_before_the_first_request():
    drive = AbbDrive(1, DriveConfig(comm_loss_action="fault"))
    drive.step(100.0, 100.0)
    assert not drive.tripped


# --- Modbus exception codes -------------------------------------------------------------------


@pytest.mark.parametrize("profile", PROFILES)
def test_unsupported_functions_answer_01(profile):
    drive = make_drive(profile, 1)
    expect_exception(1, drive.read_coils, 0, 1)
    expect_exception(1, drive.read_discrete_inputs, 0, 1)
    expect_exception(1, drive.read_input_registers, 0, 1)
    expect_exception(1, drive.write_coil, 0, True)
    expect_exception(1, drive.write_coils, 0, [True])


@pytest.mark.parametrize(
    ("profile", "address", "count"),
    [
        ("abb", 6, 1),
        ("abb", 0, 7),
        ("abb", 65535, 1),
        ("danfoss", 50000, 1),
        ("danfoss", 49998, 2),
        ("g120", 98, 2),
        ("g120", 40099, 1),  # the Siemens register number itself is not a wire address
    ],
)
def test_absent_addresses_answer_02(profile, address, count):
    expect_exception(2, make_drive(profile, 1).read_holding_registers, address, count)


def test_block_reads_of_mapped_ranges():
    assert len(make_drive("abb", 1).read_holding_registers(0, 6)) == 6
    assert len(make_drive("g120", 1).read_holding_registers(339, 9)) == 9


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("count", [0, 126])
def test_bad_read_quantity_answers_03(profile, count):
    expect_exception(3, make_drive(profile, 1).read_holding_registers, 0, count)


@pytest.mark.parametrize(
    ("profile", "limit"), [("abb", 20000), ("danfoss", 0x4000), ("g120", 0x4000)]
)
def test_reference_beyond_limits_answers_03_and_keeps_the_old_value(profile, limit):
    _, reference, *_ = PROFILES[profile]
    drive = make_drive(profile, 1)
    drive.write_register(reference, limit)
    drive.write_register(reference, (-limit) & 0xFFFF)
    expect_exception(3, drive.write_register, reference, limit + 1)
    expect_exception(3, drive.write_register, reference, (-limit - 1) & 0xFFFF)
    expect_exception(3, drive.write_register, reference, 0x10000)
    assert drive.read_holding_registers(reference, 1) == [(-limit) & 0xFFFF]


def test_reference_range_follows_max_speed_above_100_percent():
    drive = AbbDrive(1, DriveConfig(max_speed_pct=110.0))
    drive.write_register(abb.REF1, 22000)
    expect_exception(3, drive.write_register, abb.REF1, 22001)


@pytest.mark.parametrize(
    ("profile", "status", "code"),
    [("abb", abb.STATUS_WORD, 2), ("danfoss", danfoss.STATUS_WORD, 2), ("g120", g120.ZSW1, 4)],
)
def test_write_to_read_only_register(profile, status, code):
    expect_exception(code, make_drive(profile, 1).write_register, status, 0)


def test_multi_register_write_is_all_or_nothing():
    drive = AbbDrive(1)
    drive.write_register(abb.CONTROL_WORD, 0x0476)
    expect_exception(3, drive.write_registers, abb.CONTROL_WORD, [0x0477, 30000])
    assert drive.read_holding_registers(abb.CONTROL_WORD, 2) == [0x0476, 0]
    expect_exception(2, drive.write_registers, abb.REF2, [0, 0])  # REF2 ok, status read-only
    expect_exception(3, drive.write_registers, abb.CONTROL_WORD, [])
    drive.write_registers(abb.CONTROL_WORD, [0x0477, 10000])
    assert drive.read_holding_registers(abb.CONTROL_WORD, 4) == [0x0477, 10000, 0, 0x0233]


def test_bad_configuration_names_the_field():
    with pytest.raises(ValueError, match="min_speed_pct"):
        DriveConfig(min_speed_pct=80.0, max_speed_pct=70.0)
    with pytest.raises(ValueError, match="comm_loss_action"):
        DriveConfig(comm_loss_action="explode")
    with pytest.raises(ValueError, match="profile"):
        make_drive("vacon", 1)
    with pytest.raises(ValueError, match="unit"):
        AbbDrive(0)


calls = st.one_of(
    st.tuples(
        st.sampled_from(["read_holding_registers", "read_input_registers", "read_coils"]),
        st.integers(-5, 70000),
        st.integers(-5, 300),
    ),
    st.tuples(st.just("write_register"), st.integers(-5, 70000), st.integers(-5, 70000)),
    st.tuples(
        st.just("write_registers"),
        st.integers(-5, 70000),
        st.lists(st.integers(-5, 70000), max_size=5),
    ),
    st.tuples(st.just("step"), st.floats(0.0, 30.0), st.just(None)),
)


@given(profile=st.sampled_from(sorted(PROFILES)), script=st.lists(calls, max_size=25))
def test_any_request_sequence_gets_data_or_a_modbus_exception(profile, script):
    drive = make_drive(profile, 1)
    now = 0.0
    for name, a, b in script:
        if name == "step":
            now += a
            drive.step(now, a)
            continue
        drive.heard(now)
        try:
            result = getattr(drive, name)(a, b)
        except ModbusException as error:
            assert error.code in (1, 2, 3, 4)
        else:
            if result is not None:
                assert all(0 <= word <= 0xFFFF for word in result)
    assert 0.0 <= drive.speed_pct <= 120.0


# --- current limit, I^2 t motor overload, ramp-time registers ---------------------------------


def kw_at_current(amps: float) -> float:
    """Electrical input power that makes the drive report this current (400 V, cos phi 0.86)."""
    return amps * math.sqrt(3) * 400.0 * 0.86 / 1000.0


def run_with_load(m: Master, seconds: float, load, dt: float = 0.2) -> float:
    """Advance as the simulator does: the drive steps, then sees the load at its new speed.
    Returns the highest current seen."""
    peak = 0.0
    for _ in range(round(seconds / dt)):
        m.now += dt
        m.drive.heard(m.now)
        m.drive.step(m.now, dt)
        m.drive.load_kw = load(m.drive.speed_ratio) if m.drive.pulses_on else 0.0
        peak = max(peak, m.drive.current_a)
    return peak


@pytest.mark.parametrize("profile", PROFILES)
def test_current_limit_sags_the_speed_instead_of_drawing_more(profile):
    m = running(profile, accel_s=10.0)

    def heavy(s):
        return 150.0 * s**3  # 150 kW at full speed: 238 A, more than the 220 A limit

    run_with_load(m, 60.0, heavy)
    limit_kw = kw_at_current(220.0)
    expected_pct = 100.0 * (limit_kw / 150.0) ** (1.0 / 3.0)  # 95.6 %
    assert m.drive.speed_pct == pytest.approx(expected_pct, abs=0.5)
    assert m.drive.current_a == pytest.approx(220.0, rel=0.01)
    assert m.drive.current_limited and not m.drive.at_setpoint
    peak = run_with_load(m, 60.0, heavy)  # stays there: no creeping above the limit
    assert peak < 220.0 * 1.01
    if profile == "g120":
        assert not zsw1(m) & 0x0800  # I/M/P limit reached
    if profile == "danfoss":
        assert danfoss_status(m) & 0x4000
    run_with_load(m, 10.0, lambda s: 100.0 * s**3)  # load gone: back to the reference
    assert m.drive.speed_pct == pytest.approx(100.0)
    assert not m.drive.current_limited


def test_current_limit_follows_its_setting():
    m = running("abb", accel_s=10.0, current_limit_pct=100.0, rated_current_a=180.0)
    run_with_load(m, 60.0, lambda s: 150.0 * s**3)
    assert m.drive.current_a == pytest.approx(180.0, rel=0.01)


def test_speed_sag_reaches_the_plant():
    """Through the hardware step order the plant pumps at the sagged speed."""
    plant = Plant(dataclasses.replace(REFERENCE, pump_count=1))
    plant.settle()
    m = running("abb", accel_s=10.0, current_limit_pct=60.0)
    for _ in range(600):
        m.now += 0.2
        m.drive.heard(m.now)
        m.drive.step(m.now, 0.2)
        plant.set_pump(0, m.drive.speed_ratio, m.drive.running)
        plant.step(0.2)
        m.drive.load_kw = plant.pump_power_kw[0]
    assert m.drive.current_a == pytest.approx(120.0, rel=0.02)
    assert plant.pump_speed[0] == m.drive.speed_ratio < 0.99


MOTOR_OVERLOAD_CODES = {"abb": 0x7122, "danfoss": 10, "g120": 7011}


@pytest.mark.parametrize("profile", PROFILES)
def test_i2t_trips_at_1_5_x_rated_after_the_class_10_time(profile):
    m = running(profile, accel_s=0.0, current_limit_pct=200.0)
    load = kw_at_current(300.0)  # 1.5 x 200 A
    run_with_load(m, 312.0, lambda s: load, dt=1.0)  # class 10 from cold: 313 s
    assert not m.drive.tripped
    run_with_load(m, 2.0, lambda s: load, dt=1.0)
    assert m.drive.tripped and not m.drive.pulses_on
    assert m.read(PROFILES[profile][4])[0] == MOTOR_OVERLOAD_CODES[profile]


def test_i2t_does_not_trip_at_rated_current_and_trips_in_the_current_limit():
    m = running("g120", accel_s=0.0)
    run_with_load(m, 4 * 3600.0, lambda s: kw_at_current(200.0), dt=5.0)
    assert not m.drive.tripped
    assert zsw1(m) & 0x2000  # no motor overtemperature alarm at rated current
    m = running("g120", accel_s=5.0)
    run_with_load(m, 1110.0, lambda s: 200.0 * s**3)  # held at 110 %: 1126 s from cold
    assert not m.drive.tripped
    assert not zsw1(m) & 0x2000  # alarm: the model is past its rated heat
    run_with_load(m, 40.0, lambda s: 200.0 * s**3)
    assert m.drive.tripped


def test_motor_overload_resets_only_after_cooling():
    m = running("abb", accel_s=0.0, current_limit_pct=200.0)
    run_with_load(m, 314.0, lambda s: kw_at_current(300.0), dt=1.0)
    assert m.drive.tripped
    m.write(abb.CONTROL_WORD, 0x04F6)  # reset edge while the motor is still hot
    assert m.drive.tripped
    m.write(abb.CONTROL_WORD, 0x0476)
    m.run(50)  # theta 1.1025 -> 1.0 with the motor stopped takes 45 s
    m.write(abb.CONTROL_WORD, 0x04F6)
    assert not m.drive.tripped


RAMP_REGISTERS = {  # (ramp-up, ramp-down, counts per second, highest raw value)
    "abb": (abb.ACCELERATION_TIME_1, abb.DECELERATION_TIME_1, 10, 18000),
    "g120": (g120.RAMP_UP_TIME, g120.RAMP_DOWN_TIME, 100, 65000),
}


def write_ramp(m: Master, profile: str, up: bool, seconds: float) -> None:
    if profile == "danfoss":
        raw = round(seconds * 100)
        m.drive.heard(m.now)
        address = danfoss.RAMP_UP_TIME if up else danfoss.RAMP_DOWN_TIME
        m.drive.write_registers(address, [raw >> 16, raw & 0xFFFF])
    else:
        ramp_up, ramp_down, per_s, _ = RAMP_REGISTERS[profile]
        m.write(ramp_up if up else ramp_down, round(seconds * per_s))


@pytest.mark.parametrize("profile", PROFILES)
def test_written_ramp_times_set_the_slopes(profile):
    m = running(profile, accel_s=60.0, decel_s=60.0)
    write_ramp(m, profile, True, 20.0)
    write_ramp(m, profile, False, 40.0)
    m.run(10)
    assert m.drive.speed_pct == pytest.approx(50.0)
    m.run(10)
    control, reference, full, *_ = PROFILES[profile]
    m.write(reference, 0)  # the minimum speed, 50 %
    m.run(10)
    assert m.drive.speed_pct == pytest.approx(75.0)  # 2.5 %/s


def test_abb_ramp_registers_read_power_up_values_and_scale():
    m = abb_master(accel_s=60.0, decel_s=90.0)
    assert m.read(abb.ACCELERATION_TIME_1, 2) == [600, 900]  # FbEq16: 10 = 1 s
    m.write(abb.ACCELERATION_TIME_1, 18000)
    assert m.drive.config.accel_s == 1800.0
    expect_exception(3, m.drive.write_register, abb.DECELERATION_TIME_1, 18001)
    assert m.read(abb.DECELERATION_TIME_1)[0] == 900


def test_danfoss_ramp_parameters_are_32_bit_high_word_first():
    m = danfoss_master(accel_s=60.0, decel_s=3600.0)
    assert m.read(danfoss.RAMP_UP_TIME, 2) == [0, 6000]  # 60.00 s, conversion index -2
    assert m.read(danfoss.RAMP_DOWN_TIME, 2) == [360000 >> 16, 360000 & 0xFFFF]
    m.drive.write_registers(danfoss.RAMP_UP_TIME, [1, 0x86A0])  # 100000 = 1000.00 s
    assert m.drive.config.accel_s == 1000.0
    expect_exception(3, m.drive.write_register, danfoss.RAMP_UP_TIME, 0)  # one word alone
    expect_exception(3, m.drive.write_register, danfoss.RAMP_UP_TIME + 1, 3000)
    expect_exception(3, m.drive.write_registers, danfoss.RAMP_UP_TIME, [0, 99])  # < 1.00 s
    expect_exception(3, m.drive.write_registers, danfoss.RAMP_DOWN_TIME, [5, 0x7E41])  # > 3600
    expect_exception(2, m.drive.write_registers, danfoss.RAMP_UP_TIME, [0, 6000, 0])
    assert m.read(danfoss.RAMP_UP_TIME, 2) == [1, 0x86A0]
    assert m.drive.config.decel_s == 3600.0


def test_g120_current_limit_and_rated_power_registers():
    m = g120_master()
    assert m.read(g120.RATED_POWER, 4) == [11000, 2200, 6000, 6000]  # 110 kW, 220.0 A, 60 s
    m.write(g120.CURRENT_LIMIT, 3000)  # 300 A = 150 % of 200 A
    assert m.drive.config.current_limit_a == pytest.approx(300.0)
    expect_exception(3, m.drive.write_register, g120.CURRENT_LIMIT, 3001)
    expect_exception(3, m.drive.write_register, g120.CURRENT_LIMIT, 199)
    m.write(g120.CURRENT_LIMIT, 1800)
    run_with_load(running_from(m), 60.0, lambda s: 150.0 * s**3)
    assert m.drive.current_a == pytest.approx(180.0, rel=0.01)


def test_current_limit_acts_within_a_fraction_of_a_second():
    """A drive's current controller holds its limit within tens of ms: when the load jumps to
    1.3 x the limit (a pump left alone against the column), the current is back at the limit
    two plant steps later, and its 10 s mean stays within 1 % (a 0.5 /s correction took ~3 s)."""
    m = running("abb", accel_s=10.0, current_limit_pct=100.0)
    run_with_load(m, 20.0, lambda s: kw_at_current(150.0) * s**3)
    assert m.drive.speed_pct == pytest.approx(100.0)
    heavy = kw_at_current(260.0)  # 1.3 x the 200 A limit at full speed
    currents = []
    for _ in range(50):  # 10 s at the simulator's 0.2 s step
        run_with_load(m, 0.2, lambda s: heavy * s**3)
        currents.append(m.drive.current_a)
    assert currents[1] <= 200.0 * 1.02
    assert sum(currents) / len(currents) <= 200.0 * 1.01
    assert m.drive.current_limited


CURRENT_LIMIT_WRITES = {  # profile: a write of the limit in amps
    "abb": lambda m, amps: m.write(abb.MAXIMUM_CURRENT, round(amps * 10)),
    "danfoss": lambda m, amps: m.drive.write_registers(
        danfoss.CURRENT_LIMIT, [0, round(amps / 200.0 * 1000)]
    ),
    "g120": lambda m, amps: m.write(g120.CURRENT_LIMIT, round(amps * 10)),
}


@pytest.mark.parametrize("profile", PROFILES)
def test_a_written_current_limit_holds_the_drive_there(profile):
    m = running(profile, accel_s=10.0)
    CURRENT_LIMIT_WRITES[profile](m, 180.0)
    assert m.drive.config.current_limit_a == pytest.approx(180.0)
    run_with_load(m, 60.0, lambda s: 150.0 * s**3)
    assert m.drive.current_a == pytest.approx(180.0, rel=0.01)


def test_abb_maximum_current_register():
    m = abb_master()
    assert m.read(abb.MAXIMUM_CURRENT)[0] == 2200  # 30.17: 220.0 A = 110 % of 200 A
    m.write(abb.MAXIMUM_CURRENT, 3000)  # 300 A: the power unit's maximum
    assert m.drive.config.current_limit_pct == pytest.approx(150.0)
    expect_exception(3, m.drive.write_register, abb.MAXIMUM_CURRENT, 3001)
    expect_exception(3, m.drive.write_register, abb.MAXIMUM_CURRENT, 199)  # < 10 %
    m.write(abb.MAXIMUM_CURRENT, 2000)
    assert m.read(abb.MAXIMUM_CURRENT)[0] == 2000
    assert m.drive.config.current_limit_pct == pytest.approx(100.0)


def test_danfoss_current_limit_is_32_bit_tenths_of_a_percent():
    m = danfoss_master()
    assert m.read(danfoss.CURRENT_LIMIT, 2) == [0, 1100]  # 4-18: 110.0 %, conversion index -1
    m.drive.write_registers(danfoss.CURRENT_LIMIT, [0, 1000])
    assert m.drive.config.current_limit_pct == pytest.approx(100.0)
    assert m.read(danfoss.CURRENT_LIMIT, 2) == [0, 1000]
    expect_exception(3, m.drive.write_registers, danfoss.CURRENT_LIMIT, [0, 1501])  # > 150 %
    expect_exception(3, m.drive.write_registers, danfoss.CURRENT_LIMIT, [0, 99])  # < 10 %
    expect_exception(3, m.drive.write_registers, danfoss.CURRENT_LIMIT, [1, 1000])
    expect_exception(3, m.drive.write_register, danfoss.CURRENT_LIMIT + 1, 1200)  # one word
    assert m.read(danfoss.CURRENT_LIMIT, 2) == [0, 1000]


def running_from(m: Master) -> Master:
    m.write(g120.HSW, 0x4000)
    m.write(g120.STW1, 0x047E)
    m.write(g120.STW1, 0x047F)
    return m


def test_scenario_drive_ratings_reach_the_simulated_drives():
    text = """
name = "t"
[[drives]]
unit = 1
profile = "g120"
rated_kw = 90
rated_current_a = 165
current_limit_pct = 120
accel_s = 45
[[drives]]
unit = 2
profile = "abb"
"""
    station = SimulatedStation(scenario.parse(tomllib.loads(text), "t.toml"))
    g, a = station.drives
    assert g.read_holding_registers(g120.RATED_POWER, 4) == [9000, 1980, 4500, 6000]
    assert (a.config.rated_kw, a.config.rated_current_a, a.config.current_limit_pct) == (
        110.0,
        200.0,
        110.0,
    )
    with pytest.raises(scenario.ScenarioError, match=r"drives\[0\].current_limit_pct"):
        scenario.parse(tomllib.loads(text.replace("= 120", "= 250")), "t.toml")


@pytest.mark.parametrize("profile", ["abb", "g120"])
def test_both_ramp_times_in_one_block_write_all_or_nothing(profile):
    ramp_up, ramp_down, per_s, highest = RAMP_REGISTERS[profile]
    assert ramp_down == ramp_up + 1  # one FC 16 covers both
    drive = make_drive(profile, 1)
    drive.write_registers(ramp_up, [100 * per_s, 120 * per_s])
    assert (drive.config.accel_s, drive.config.decel_s) == (100.0, 120.0)
    expect_exception(3, drive.write_registers, ramp_up, [30 * per_s, highest + 1])
    assert drive.read_holding_registers(ramp_up, 2) == [100 * per_s, 120 * per_s]
