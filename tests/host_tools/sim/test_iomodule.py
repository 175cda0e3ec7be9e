"""Simulated 4-20 mA / DI module: scaling, NE43 currents and status, faults, exception codes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from host_tools.sim.device import ModbusException
from host_tools.sim.iomodule import (
    DEFAULT_ANALOG,
    STATUS_BASE,
    AnalogChannel,
    IoModule,
    ne43_status,
)

SUCTION, DISCHARGE, REMOTE_DP, SUPPLY_TEMP, FLOW = range(5)


def expect_exception(code: int, call, *args) -> None:
    with pytest.raises(ModbusException) as info:
        call(*args)
    assert info.value.code == code


def test_default_channels_of_the_reference_station():
    module = IoModule(10)
    assert [c.name for c in DEFAULT_ANALOG] == [
        "suction_kpa",
        "discharge_kpa",
        "remote_dp_kpa",
        "supply_temp_c",
        "flow_m3h",
    ]
    assert module.digital_names == ("source_pumps_running", "bypass_open")
    assert module.read_input_registers(0, 5) == [4000] * 5  # every channel at its range start


def test_engineering_value_maps_linearly_to_4_20_ma():
    module = IoModule(10)
    module.set_value("suction_kpa", 500.0)  # 0..1000 kPa
    module.set_value("discharge_kpa", 1600.0)  # 0..1600 kPa
    module.set_value("remote_dp_kpa", 111.0)  # 0..400 kPa
    module.set_value("supply_temp_c", 120.0)  # 0..150 degC
    module.set_value("flow_m3h", 800.0)  # 0..1200 m3/h
    assert module.read_input_registers(0, 5) == [12000, 20000, 8440, 16800, 14667]
    assert module.read_input_registers(STATUS_BASE, 5) == [0] * 5


def test_receiver_scaling_inverts_the_transmitter():
    channel = AnalogChannel("x", -50.0, 150.0, "degC")
    assert channel.to_value(channel.to_ua(87.5)) == pytest.approx(87.5, abs=0.01)


def test_out_of_range_values_saturate_per_ne43():
    module = IoModule(10)
    module.set_value("flow_m3h", -100.0)
    module.set_value("suction_kpa", 5000.0)
    assert module.current_ua("flow_m3h") == 3800
    assert module.current_ua("suction_kpa") == 20500
    assert module.read_input_registers(STATUS_BASE + SUCTION, 1) == [0]  # saturated, not failed


@pytest.mark.parametrize(
    ("kind", "ua", "status"),
    [("wire_break", 0, 3), ("short", 24000, 4), ("fail_low", 3600, 3), ("fail_high", 21000, 4)],
)
def test_faults_give_ne43_failure_currents(kind, ua, status):
    module = IoModule(10)
    module.set_value("discharge_kpa", 800.0)
    module.inject_fault("discharge_kpa", kind)
    module.set_value("discharge_kpa", 900.0)  # the plant keeps writing; the loop stays failed
    assert module.read_input_registers(DISCHARGE, 1) == [ua]
    assert module.read_input_registers(STATUS_BASE + DISCHARGE, 1) == [status]
    assert module.current_ua("suction_kpa") == 4000  # other channels unaffected
    module.clear_fault("discharge_kpa")
    assert module.read_input_registers(DISCHARGE, 1) == [13000]


def test_stuck_channel_freezes_its_current():
    module = IoModule(10)
    module.set_value("remote_dp_kpa", 100.0)
    module.inject_fault("remote_dp_kpa", "stuck")
    module.set_value("remote_dp_kpa", 300.0)
    assert module.current_ua("remote_dp_kpa") == 8000
    module.clear_fault()
    assert module.current_ua("remote_dp_kpa") == 16000


def test_set_current_is_the_transmitter_loop_and_injected_faults_win():
    module = IoModule(10)
    module.set_current("flow_m3h", 12345)
    assert module.read_input_registers(FLOW, 1) == [12345]
    module.set_current("flow_m3h", 30000)  # the card reads at most 24 mA
    assert module.read_input_registers(FLOW, 1) == [24000]
    module.set_current("flow_m3h", -5)
    assert module.read_input_registers(STATUS_BASE + FLOW, 1) == [3]
    module.inject_fault("flow_m3h", "short")
    module.set_current("flow_m3h", 12000)
    assert module.current_ua("flow_m3h") == 24000
    module.clear_fault("flow_m3h")
    assert module.current_ua("flow_m3h") == 12000


@pytest.mark.parametrize(
    ("ua", "status"),
    [
        (0, 3),
        (3600, 3),
        (3601, 1),
        (3799, 1),
        (3800, 0),
        (20500, 0),
        (20501, 2),
        (20999, 2),
        (21000, 4),
    ],
)
def test_ne43_status_boundaries(ua, status):
    assert ne43_status(ua) == status


def test_digital_inputs():
    module = IoModule(10)
    module.set_input("source_pumps_running", True)
    assert module.read_discrete_inputs(0, 2) == [True, False]
    module.set_input("bypass_open", True)
    module.set_input("source_pumps_running", False)
    assert module.read_discrete_inputs(1, 1) == [True]
    assert module.read_discrete_inputs(0, 2) == [False, True]


def test_unknown_names_and_kinds_are_typed_errors():
    module = IoModule(10)
    with pytest.raises(KeyError):
        module.set_value("level_m", 1.0)
    with pytest.raises(KeyError):
        module.set_input("door_open", True)
    with pytest.raises(ValueError, match="fault kind"):
        module.inject_fault("flow_m3h", "melted")
    with pytest.raises(ValueError, match="hi > lo"):
        AnalogChannel("bad", 10.0, 10.0, "kPa")
    with pytest.raises(ValueError, match="unique"):
        IoModule(10, digital=("flow_m3h",))


def test_exception_codes():
    module = IoModule(10)
    for call, args in [
        (module.read_coils, (0, 1)),
        (module.read_holding_registers, (0, 1)),
        (module.write_coil, (0, True)),
        (module.write_register, (0, 1)),
        (module.write_registers, (0, [1])),
        (module.write_coils, (0, [True])),
    ]:
        expect_exception(1, call, *args)
    expect_exception(2, module.read_input_registers, 5, 1)
    expect_exception(2, module.read_input_registers, 3, 3)
    expect_exception(2, module.read_input_registers, STATUS_BASE + 5, 1)
    expect_exception(2, module.read_discrete_inputs, 2, 1)
    expect_exception(2, module.read_discrete_inputs, 1, 2)
    expect_exception(3, module.read_input_registers, 0, 0)
    expect_exception(3, module.read_input_registers, 0, 126)
    expect_exception(3, module.read_discrete_inputs, 0, 0)
    expect_exception(3, module.read_discrete_inputs, 0, 2001)


@given(
    function=st.sampled_from(["read_input_registers", "read_discrete_inputs", "read_coils"]),
    address=st.integers(-5, 70000),
    count=st.integers(-5, 3000),
)
def test_any_read_gets_data_or_a_modbus_exception(function, address, count):
    module = IoModule(10)
    try:
        result = getattr(module, function)(address, count)
    except ModbusException as error:
        assert error.code in (1, 2, 3)
    else:
        assert len(result) == count
