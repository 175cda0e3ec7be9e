"""The simulator's fast slave codec against the construct definition (protocol/modbus.py)."""

from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from strategies import modbus_request_frames

from host_tools.sim import rtu_slave
from protocol import modbus

FUNCTIONS = [1, 2, 3, 4, 5, 6, 15, 16]


def as_fields(request: rtu_slave.Request) -> dict[str, Any]:
    fields: dict[str, Any] = {"unit": request.unit, "function": request.function}
    fields["address"] = request.address
    if request.function in (1, 2, 3, 4):
        fields["count"] = request.count
    elif request.function in (5, 6):
        fields["value"] = request.value
    elif request.function == 15:
        fields["bits"] = request.value
    else:
        fields["registers"] = request.value
    return fields


def outcome(decode, frame):
    try:
        return decode(frame)
    except modbus.ModbusFrameError as exc:
        return type(exc)


requests = modbus_request_frames


@given(requests())
def test_valid_requests_decode_to_the_same_fields(frame):
    assert as_fields(rtu_slave.decode_request(frame)) == modbus.parse_request(frame)


def reseal(frame: bytes) -> bytes:
    return rtu_slave.with_crc(frame[:-2])


@given(
    requests(),
    st.lists(st.tuples(st.integers(0, 300), st.integers(0, 255)), max_size=3),
    st.integers(-3, 3),
    st.booleans(),
)
def test_damaged_requests_get_the_same_verdict(frame, edits, resize, keep_crc_valid):
    data = bytearray(frame[:-2])
    for position, value in edits:
        if data:
            data[position % len(data)] = value
    if resize > 0:
        data += bytes(resize)
    elif resize < 0:
        del data[resize:]
    damaged = rtu_slave.with_crc(data) if keep_crc_valid else bytes(data) + frame[-2:]
    fast = outcome(rtu_slave.decode_request, damaged)
    reference = outcome(modbus.parse_request, damaged)
    if isinstance(fast, rtu_slave.Request):
        assert as_fields(fast) == reference
    else:
        assert fast is reference


@given(st.binary(max_size=300))
def test_random_bytes_get_the_same_verdict(data):
    fast = outcome(rtu_slave.decode_request, data)
    reference = outcome(modbus.parse_request, data)
    assert (as_fields(fast) if isinstance(fast, rtu_slave.Request) else fast) == reference


@given(
    st.integers(1, 247), st.sampled_from([1, 2]), st.lists(st.booleans(), min_size=1, max_size=2000)
)
def test_bit_responses_are_byte_identical(unit, function, bits):
    assert rtu_slave.encode_bits(unit, function, bits) == modbus.build_response(
        unit, function, bits=bits
    )


@given(
    st.integers(1, 247),
    st.sampled_from([3, 4]),
    st.lists(st.integers(0, 0xFFFF), min_size=1, max_size=125),
)
def test_register_responses_are_byte_identical(unit, function, registers):
    assert rtu_slave.encode_registers(unit, function, registers) == modbus.build_response(
        unit, function, registers=registers
    )


@given(st.integers(1, 247), st.integers(0, 0xFFFF), st.integers(0, 0xFFFF), st.integers(1, 123))
def test_write_echoes_and_exceptions_are_byte_identical(unit, address, value, count):
    assert rtu_slave.encode_echo(unit, 6, address, value) == modbus.build_response(
        unit, 6, address=address, value=value
    )
    assert rtu_slave.encode_echo(unit, 16, address, count) == modbus.build_response(
        unit, 16, address=address, count=count
    )
    assert rtu_slave.encode_exception(unit, 3, 2) == modbus.build_exception(unit, 3, 2)


def test_bus_delivers_each_response_at_its_completion_time_hours_into_a_run():
    # At t ~ 8192 s a float sum is off by ~1e-12 s: every byte due at response_complete_at()
    # must still be handed out then, or a runtime waiting for it wakes at the same time forever.
    from host_tools.sim.bus import SimulatedBus
    from host_tools.sim.device import Device

    class Sink(Device):
        def write_register(self, address, value):
            pass

    bus = SimulatedBus(rtu_slave.RtuSlaves({1: Sink(1)}))
    request = modbus.build_request(1, 6, address=0, value=7)
    for k in range(3000):
        t = 8192.0 + k * 0.0137 + k * 1e-7
        bus.send(request, t)
        done = bus.response_complete_at()
        assert bus.receive(done) == request, k


def station_slaves():
    from host_tools.sim import scenario
    from host_tools.sim.hardware import SimulatedStation

    station = SimulatedStation(scenario.load(scenario.DEFAULT_SCENARIO))
    return station, station.slaves


def test_devices_answer_bad_requests_as_real_devices_do():
    station, slaves = station_slaves()
    good = modbus.build_request(1, 3, address=0, count=6)
    corrupt = bytearray(good)
    corrupt[3] ^= 0x10
    assert slaves.answer(bytes(corrupt), 0.0) is None  # bad CRC: silence
    assert slaves.dropped_frames == 1
    assert slaves.answer(modbus.build_request(9, 3, address=0, count=1), 0.0) is None  # nobody
    unknown = rtu_slave.with_crc(bytes([1, 0x2B, 0x0E, 0x01, 0x00]))
    assert slaves.answer(unknown, 0.0) == rtu_slave.with_crc(
        bytes([1, 0xAB, 1])
    )  # illegal function
    zero = rtu_slave.with_crc(bytes([1, 3, 0, 0, 0, 0]))  # count 0
    assert slaves.answer(zero, 0.0) == modbus.build_exception(1, 3, 3)
    far = modbus.build_request(1, 3, address=4000, count=2)  # no such register
    assert slaves.answer(far, 0.0) == modbus.build_exception(1, 3, 2)
    assert modbus.parse_response(3, slaves.answer(good, 0.0), 6)["unit"] == 1


def test_a_broadcast_write_acts_on_every_drive_and_gets_no_answer():
    station, slaves = station_slaves()
    abb = station.drives[0]
    before = abb.requests_heard
    assert slaves.answer(modbus.build_request(0, 6, address=0, value=0x0476), 0.0) is None
    assert abb.requests_heard == before + 1
    assert slaves.answer(modbus.build_request(0, 3, address=0, count=1), 0.0) is None  # no reads


@given(st.binary(min_size=0, max_size=80))
def test_any_bytes_get_an_answer_or_silence_and_the_devices_keep_running(data):
    station, slaves = station_slaves()
    for frame in (data, rtu_slave.with_crc(data[:60])):
        answer = slaves.answer(frame, 0.0)
        if answer is not None:
            assert answer[0] == frame[0] and rtu_slave.with_crc(answer[:-2]) == answer
    station.step(0.2)
