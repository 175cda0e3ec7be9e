"""Properties of the firmware Modbus master codec on CPython (hypothesis), beyond the golden vectors.

The in-VM bounded fuzz lives in tests/firmware/test_modbus_master.py; this one searches harder.
"""

from hypothesis import given
from hypothesis import strategies as st
from relaypump import modbus as mb

units = st.integers(1, 247)
addresses = st.integers(0, 0xFFFF)
words = st.integers(0, 0xFFFF)


def with_crc(body: bytes) -> bytes:
    crc = mb.crc16(body)
    return body + bytes((crc & 0xFF, crc >> 8))


def feed_in_pieces(master: mb.RtuMaster, data: bytes, cuts: list[int]) -> int:
    consumed, start = 0, 0
    for cut in sorted(set(c % (len(data) + 1) for c in cuts)) + [len(data)]:
        consumed += master.receive(data[start:cut])
        start = cut
    return consumed


@st.composite
def read_transactions(draw):
    unit = draw(units)
    registers = draw(st.lists(words, min_size=1, max_size=125))
    body = bytes([unit, 3, 2 * len(registers)]) + b"".join(r.to_bytes(2, "big") for r in registers)
    return unit, registers, with_crc(body)


@given(read_transactions(), st.binary(max_size=300), st.lists(st.integers(0, 2000), max_size=8))
def test_response_after_garbage_in_any_split_decodes(transaction, garbage, cuts):
    unit, registers, response = transaction
    garbage = bytes(b for b in garbage if b != unit)  # only our unit byte can start a candidate
    master = mb.RtuMaster()
    master.read_holding_registers(unit, 0, len(registers))
    master.poll(0)
    assert feed_in_pieces(master, garbage + response, cuts) == len(garbage) + len(response)
    assert master.poll(1) == mb.DONE
    assert master.values() == registers
    assert master.garbage_bytes == len(garbage)


@given(
    units,
    st.sampled_from([1, 2, 3, 4, 5, 6, 15, 16]),
    st.integers(1, 100),
    st.binary(max_size=600),
    st.lists(st.integers(0, 2000), max_size=8),
)
def test_arbitrary_bytes_end_in_done_or_a_typed_error(unit, function, count, data, cuts):
    master = mb.RtuMaster(timeout_ms=20)
    build = {
        1: lambda: master.read_coils(unit, 0, count),
        2: lambda: master.read_discrete_inputs(unit, 0, count),
        3: lambda: master.read_holding_registers(unit, 0, count),
        4: lambda: master.read_input_registers(unit, 0, count),
        5: lambda: master.write_coil(unit, 0, True),
        6: lambda: master.write_register(unit, 0, count),
        15: lambda: master.write_coils(unit, 0, [True] * count),
        16: lambda: master.write_registers(unit, 0, list(range(count))),
    }[function]
    build()
    master.poll(0)
    consumed = feed_in_pieces(master, data, cuts)
    assert 0 <= consumed <= len(data)
    try:
        status = master.poll(20)
    except mb.ModbusError:
        return
    assert status == mb.DONE
    values = master.values()
    if function in (1, 2, 3, 4):
        assert len(values) == count


@given(units, st.integers(1, 125), st.integers(0, 255), st.integers(0, 7))
def test_a_flipped_bit_is_never_accepted_as_a_response(unit, count, position, bit):
    body = bytes([unit, 4, 2 * count]) + bytes(2 * count)
    response = bytearray(with_crc(body))
    response[position % len(response)] ^= 1 << bit
    master = mb.RtuMaster(timeout_ms=10)
    master.read_input_registers(unit, 0, count)
    master.poll(0)
    master.receive(bytes(response))
    try:
        master.poll(10)
    except (mb.CrcError, mb.UnexpectedResponse, mb.ModbusTimeout):
        return
    raise AssertionError("a corrupted frame was accepted")
