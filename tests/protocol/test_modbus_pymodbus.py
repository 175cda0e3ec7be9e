"""Interop with an independent peer: pymodbus 3.16.1's RTU framer and PDUs, run for real.

For the same operation, our frames must be byte-identical to pymodbus', and each side must decode
the other's, in both directions (requests and responses, every function code, exception
responses). Two implementations of ours are checked: protocol/modbus.py (construct) and the
firmware master codec firmware/relaypump/modbus.py (which builds requests and decodes responses).

Known, deliberate differences from pymodbus (pinned by the last tests here):
- pymodbus decodes a 0x05 value other than 0xFF00/0x0000 as "on"; we reject the frame.
- pymodbus builds 0x0F writes of up to 2000 coils and 0x10 writes of any register count, i.e.
  frames over the 256-byte ADU limit; we refuse counts over 1968 coils / 123 registers.
"""

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pymodbus.framer import FramerRTU
from pymodbus.pdu import DecodePDU, ExceptionResponse
from pymodbus.pdu import bit_message as pm_bits
from pymodbus.pdu import register_message as pm_regs
from relaypump import modbus as fw
from strategies import modbus_requests, words

from protocol import modbus

SERVER_FRAMER = FramerRTU(DecodePDU(is_server=True))  # decodes requests
CLIENT_FRAMER = FramerRTU(DecodePDU(is_server=False))  # decodes responses

REQUEST_CLASSES = {
    1: pm_bits.ReadCoilsRequest,
    2: pm_bits.ReadDiscreteInputsRequest,
    3: pm_regs.ReadHoldingRegistersRequest,
    4: pm_regs.ReadInputRegistersRequest,
    5: pm_bits.WriteSingleCoilRequest,
    6: pm_regs.WriteSingleRegisterRequest,
    15: pm_bits.WriteMultipleCoilsRequest,
    16: pm_regs.WriteMultipleRegistersRequest,
}
RESPONSE_CLASSES = {
    1: pm_bits.ReadCoilsResponse,
    2: pm_bits.ReadDiscreteInputsResponse,
    3: pm_regs.ReadHoldingRegistersResponse,
    4: pm_regs.ReadInputRegistersResponse,
    5: pm_bits.WriteSingleCoilResponse,
    6: pm_regs.WriteSingleRegisterResponse,
    15: pm_bits.WriteMultipleCoilsResponse,
    16: pm_regs.WriteMultipleRegistersResponse,
}


# --- operations -----------------------------------------------------------------------------------

# The firmware master only addresses single devices (1..247); ours parses any unit.
units = st.integers(1, 247)


def requests():
    """(unit, function, our request fields)."""
    return modbus_requests(units)


@st.composite
def exchanges(draw):
    """(unit, function, request fields, response fields): a request and a valid answer to it."""
    unit, function, request = draw(requests())
    if draw(st.integers(0, 4)) == 0:
        return unit, function, request, {"exception_code": draw(st.integers(0, 255))}
    if function in modbus.BIT_READS:
        bits = draw(st.lists(st.booleans(), min_size=request["count"], max_size=request["count"]))
        return unit, function, request, {"bits": bits}
    if function in modbus.REGISTER_READS:
        size = request["count"]
        registers = draw(st.lists(words, min_size=size, max_size=size))
        return unit, function, request, {"registers": registers}
    if function in (modbus.WRITE_SINGLE_COIL, modbus.WRITE_SINGLE_REGISTER):
        return unit, function, request, dict(request)
    count = len(request.get("bits") or request.get("registers"))
    return unit, function, request, {"address": request["address"], "count": count}


def pymodbus_request(unit, function, fields):
    cls = REQUEST_CLASSES[function]
    if function == modbus.WRITE_SINGLE_COIL:
        return cls(address=fields["address"], bits=[fields["value"]], dev_id=unit)
    if function == modbus.WRITE_SINGLE_REGISTER:
        return cls(address=fields["address"], registers=[fields["value"]], dev_id=unit)
    if function == modbus.WRITE_MULTIPLE_COILS:
        return cls(address=fields["address"], bits=fields["bits"], dev_id=unit)
    if function == modbus.WRITE_MULTIPLE_REGISTERS:
        return cls(address=fields["address"], registers=fields["registers"], dev_id=unit)
    return cls(address=fields["address"], count=fields["count"], dev_id=unit)


def pymodbus_response(unit, function, fields):
    if "exception_code" in fields:
        return ExceptionResponse(function, fields["exception_code"], device_id=unit)
    cls = RESPONSE_CLASSES[function]
    if function in modbus.BIT_READS:
        return cls(bits=fields["bits"], dev_id=unit)
    if function in modbus.REGISTER_READS:
        return cls(registers=fields["registers"], dev_id=unit)
    if function == modbus.WRITE_SINGLE_COIL:
        return cls(address=fields["address"], bits=[fields["value"]], dev_id=unit)
    if function == modbus.WRITE_SINGLE_REGISTER:
        return cls(address=fields["address"], registers=[fields["value"]], dev_id=unit)
    return cls(address=fields["address"], count=fields["count"], dev_id=unit)


def pymodbus_decode(framer, frame):
    """pymodbus' own RTU receive path; returns its PDU object (None = dropped)."""
    used, pdu = framer.handleFrame(frame, 0, 0)
    assert used == len(frame)
    assert pdu is not None, f"pymodbus dropped {frame.hex()}"
    return pdu


def fields_of_pymodbus_request(pdu):
    function = pdu.function_code
    if function == modbus.WRITE_SINGLE_COIL:
        return {"address": pdu.address, "value": pdu.bits[0]}
    if function == modbus.WRITE_SINGLE_REGISTER:
        return {"address": pdu.address, "value": pdu.registers[0]}
    if function == modbus.WRITE_MULTIPLE_COILS:
        return {"address": pdu.address, "bits": list(pdu.bits)}
    if function == modbus.WRITE_MULTIPLE_REGISTERS:
        return {"address": pdu.address, "registers": list(pdu.registers)}
    return {"address": pdu.address, "count": pdu.count}


def fields_of_pymodbus_response(pdu, count):
    if pdu.isError():
        return {"exception_code": pdu.exception_code}
    function = pdu.function_code
    if function in modbus.BIT_READS:
        assert len(pdu.bits) == 8 * ((count + 7) // 8)  # pymodbus keeps the padding bits
        return {"bits": list(pdu.bits[:count])}
    if function in modbus.REGISTER_READS:
        return {"registers": list(pdu.registers)}
    return (
        fields_of_pymodbus_request(pdu)
        if function in (5, 6)
        else {
            "address": pdu.address,
            "count": pdu.count,
        }
    )


def firmware_send(master, unit, function, fields):
    if function == modbus.READ_COILS:
        adu = master.read_coils(unit, fields["address"], fields["count"])
    elif function == modbus.READ_DISCRETE_INPUTS:
        adu = master.read_discrete_inputs(unit, fields["address"], fields["count"])
    elif function == modbus.READ_HOLDING_REGISTERS:
        adu = master.read_holding_registers(unit, fields["address"], fields["count"])
    elif function == modbus.READ_INPUT_REGISTERS:
        adu = master.read_input_registers(unit, fields["address"], fields["count"])
    elif function == modbus.WRITE_SINGLE_COIL:
        adu = master.write_coil(unit, fields["address"], fields["value"])
    elif function == modbus.WRITE_SINGLE_REGISTER:
        adu = master.write_register(unit, fields["address"], fields["value"])
    elif function == modbus.WRITE_MULTIPLE_COILS:
        adu = master.write_coils(unit, fields["address"], fields["bits"])
    else:
        adu = master.write_registers(unit, fields["address"], fields["registers"])
    return bytes(adu)


def firmware_values_for(function, fields):
    """What the firmware master's values() returns for a response with these fields."""
    if function in modbus.BIT_READS:
        return fields["bits"]
    if function in modbus.REGISTER_READS:
        return fields["registers"]
    if function == modbus.WRITE_SINGLE_COIL:
        return (fields["address"], modbus.COIL_ON if fields["value"] else modbus.COIL_OFF)
    if function == modbus.WRITE_SINGLE_REGISTER:
        return (fields["address"], fields["value"])
    return (fields["address"], fields["count"])


# --- requests -------------------------------------------------------------------------------------


@given(requests())
def test_our_requests_are_byte_identical_to_pymodbus(request):
    unit, function, fields = request
    theirs = CLIENT_FRAMER.buildFrame(pymodbus_request(unit, function, fields))
    assert modbus.build_request(unit, function, **fields) == theirs


@given(requests())
def test_firmware_requests_are_byte_identical_to_pymodbus(request):
    unit, function, fields = request
    theirs = CLIENT_FRAMER.buildFrame(pymodbus_request(unit, function, fields))
    assert firmware_send(fw.RtuMaster(), unit, function, fields) == theirs


@given(requests())
def test_pymodbus_decodes_our_requests(request):
    unit, function, fields = request
    pdu = pymodbus_decode(SERVER_FRAMER, modbus.build_request(unit, function, **fields))
    assert (pdu.dev_id, pdu.function_code) == (unit, function)
    assert fields_of_pymodbus_request(pdu) == fields


@given(requests())
def test_pymodbus_decodes_firmware_requests(request):
    unit, function, fields = request
    pdu = pymodbus_decode(SERVER_FRAMER, firmware_send(fw.RtuMaster(), unit, function, fields))
    assert (pdu.dev_id, pdu.function_code) == (unit, function)
    assert fields_of_pymodbus_request(pdu) == fields


@given(requests())
def test_we_decode_pymodbus_requests(request):
    unit, function, fields = request
    theirs = CLIENT_FRAMER.buildFrame(pymodbus_request(unit, function, fields))
    assert modbus.parse_request(theirs) == {"unit": unit, "function": function, **fields}


# --- responses ------------------------------------------------------------------------------------


def read_count(function, request):
    return request["count"] if function in modbus.BIT_READS + modbus.REGISTER_READS else None


@given(exchanges())
def test_our_responses_are_byte_identical_to_pymodbus(exchange):
    unit, function, _, response = exchange
    theirs = SERVER_FRAMER.buildFrame(pymodbus_response(unit, function, response))
    assert modbus.build_response(unit, function, **response) == theirs


@given(exchanges())
def test_pymodbus_decodes_our_responses(exchange):
    unit, function, request, response = exchange
    pdu = pymodbus_decode(CLIENT_FRAMER, modbus.build_response(unit, function, **response))
    assert pdu.dev_id == unit
    assert pdu.function_code == (function | 0x80 if "exception_code" in response else function)
    assert fields_of_pymodbus_response(pdu, read_count(function, request)) == response


@given(exchanges())
def test_we_decode_pymodbus_responses(exchange):
    unit, function, request, response = exchange
    theirs = SERVER_FRAMER.buildFrame(pymodbus_response(unit, function, response))
    parsed = modbus.parse_response(function, theirs, count=read_count(function, request))
    assert parsed == {"unit": unit, "function": function, **response}


@given(exchanges(), st.integers(1, 8))
def test_firmware_decodes_pymodbus_responses(exchange, pieces):
    unit, function, request, response = exchange
    theirs = SERVER_FRAMER.buildFrame(pymodbus_response(unit, function, response))
    master = fw.RtuMaster()
    firmware_send(master, unit, function, request)
    assert master.poll(0) == fw.PENDING
    step = max(1, len(theirs) // pieces)
    for start in range(0, len(theirs), step):  # the bus delivers in arbitrary pieces
        assert master.receive(theirs[start : start + step]) == len(theirs[start : start + step])
    if "exception_code" in response:
        with pytest.raises(fw.ExceptionResponse) as caught:
            master.poll(1)
        assert caught.value.code == response["exception_code"]
        assert (caught.value.unit, caught.value.function) == (unit, function)
    else:
        assert master.poll(1) == fw.DONE
        assert master.values() == firmware_values_for(function, response)


def test_firmware_and_our_crc_agree_with_pymodbus():
    for data in (b"", b"\x00", b"123456789", bytes(range(256))):
        swapped = modbus.crc16(data)
        assert FramerRTU.compute_CRC(data) == (swapped >> 8) | (swapped & 0xFF) << 8
        assert fw.crc16(data) == swapped


# --- where pymodbus is more lenient than the protocol (and we are not) -------------------------


def test_pymodbus_reads_any_single_coil_value_as_on_we_reject_it():
    content = bytes.fromhex("110500ac1234")
    crc = modbus.crc16(content)
    frame = content + bytes((crc & 0xFF, crc >> 8))
    assert pymodbus_decode(SERVER_FRAMER, frame).bits == [True]
    with pytest.raises(modbus.FrameValueError):
        modbus.parse_request(frame)
    master = fw.RtuMaster()
    master.write_coil(0x11, 0xAC, True)
    master.poll(0)
    master.receive(frame)
    with pytest.raises(fw.UnexpectedResponse):
        master.poll(1)


def test_pymodbus_builds_coil_writes_over_the_adu_limit_we_refuse():
    bits = [True] * 2000
    theirs = CLIENT_FRAMER.buildFrame(pm_bits.WriteMultipleCoilsRequest(bits=bits, dev_id=1))
    assert len(theirs) > modbus.MAX_ADU
    with pytest.raises(modbus.CountError):
        modbus.build_request(1, modbus.WRITE_MULTIPLE_COILS, address=0, bits=bits)
    with pytest.raises(ValueError):
        fw.RtuMaster().write_coils(1, 0, bits)
    with pytest.raises(modbus.OversizedFrame):
        modbus.parse_request(theirs)


def test_pymodbus_builds_register_writes_over_the_adu_limit_we_refuse():
    registers = [7] * 124
    theirs = CLIENT_FRAMER.buildFrame(
        pm_regs.WriteMultipleRegistersRequest(registers=registers, dev_id=1)
    )
    assert len(theirs) > modbus.MAX_ADU
    with pytest.raises(modbus.CountError):
        modbus.build_request(1, modbus.WRITE_MULTIPLE_REGISTERS, address=0, registers=registers)
    with pytest.raises(ValueError):
        fw.RtuMaster().write_registers(1, 0, registers)
    with pytest.raises(modbus.OversizedFrame):
        modbus.parse_request(theirs)
