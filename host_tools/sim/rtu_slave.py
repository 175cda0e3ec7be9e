"""The slave side of Modbus RTU for the simulated devices: a request frame in, a response frame out.

protocol/modbus.py is the definition; this is a fast path over the same rules (about 20x faster
than construct, which matters at a million transactions per simulated day), proven identical to it
by tests/host_tools/sim/test_rtu_slave.py: same fields, same error class for every frame.

How a device answers, as a real one does (Modbus application protocol V1.1b3, §7):
- wrong CRC, too short or too long a frame, or another unit id: no answer at all;
- broadcast (unit 0): writes are carried out, never answered;
- an unknown function code: exception 01 (illegal function);
- a count or byte count outside the protocol's limits, a coil value other than FF00/0000, a PDU of
  the wrong size: exception 03 (illegal data value), but 01 when the device lacks the function
  (the function is checked first, device.py);
- the device's own register checks raise ModbusException: 02 (illegal address), 03, 04 (failure).
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from typing import Any, NamedTuple

from host_tools.sim.device import Device, ModbusException
from protocol.modbus import (
    ByteCountError,
    CountError,
    CrcError,
    FrameLengthError,
    FrameValueError,
    OversizedFrame,
    TruncatedFrame,
    UnsupportedFunction,
    crc16,
)

MAX_ADU = 256
ILLEGAL_FUNCTION = 1
ILLEGAL_DATA_VALUE = 3
DEVICE_FAILURE = 4

_READ_LIMITS = {1: 2000, 2: 2000, 3: 125, 4: 125}
_METHODS = {
    1: "read_coils",
    2: "read_discrete_inputs",
    3: "read_holding_registers",
    4: "read_input_registers",
    5: "write_coil",
    6: "write_register",
    15: "write_coils",
    16: "write_registers",
}
_WRITE_LIMITS = {15: 1968, 16: 123}
_DECODED_MAX = 4096


class Request(NamedTuple):
    unit: int
    function: int
    address: int
    count: int  # quantity for reads and multiple writes; 1 for single writes
    value: Any  # bool (05), int (06), list of bool (15), list of int (16); None for reads


# Memo of framed responses by body: a station answers the same bodies cycle after cycle (a drive's
# status at a steady speed, every write's echo), and the CRC is the costly part in Python. Bounded:
# emptied when full.
_FRAMED: dict[bytes, bytes] = {}
_FRAMED_MAX = 4096


def with_crc(body: bytes | bytearray) -> bytes:
    body = bytes(body)
    frame = _FRAMED.get(body)
    if frame is None:
        crc = crc16(body)
        frame = body + bytes((crc & 0xFF, crc >> 8))
        if len(_FRAMED) >= _FRAMED_MAX:
            _FRAMED.clear()
        _FRAMED[body] = frame
    return frame


def decode_request(frame: bytes) -> Request:
    """Same acceptance as protocol.modbus.parse_request, raising the same error classes."""
    n = len(frame)
    if n > MAX_ADU:
        raise OversizedFrame(f"{n} bytes, over {MAX_ADU}")
    if n < 4:
        raise TruncatedFrame(f"{n} bytes, under 4")
    if crc16(frame[:-2]) != frame[-2] | frame[-1] << 8:
        raise CrcError("wrong CRC")
    unit, function = frame[0], frame[1]
    if function in _READ_LIMITS or function in (5, 6):
        # Fields first (their own checks), then the length, as construct reads them.
        if n < 8:
            raise TruncatedFrame(f"{n} bytes, the function takes 8")
        address = frame[2] << 8 | frame[3]
        word = frame[4] << 8 | frame[5]
        if function == 5 and word not in (0xFF00, 0):
            raise FrameValueError(f"coil value 0x{word:04X}")
        if function in _READ_LIMITS:
            _check_count(word, _READ_LIMITS[function])
        if n > 8:
            raise FrameLengthError(f"{n - 8} bytes over the function's layout")
        if function == 5:
            return Request(unit, function, address, 1, word == 0xFF00)
        if function == 6:
            return Request(unit, function, address, 1, word)
        return Request(unit, function, address, word, None)
    if function in _WRITE_LIMITS:
        # Fields in wire order, as construct reads them: a frame cut anywhere is a byte-count error.
        if n < 8:
            raise ByteCountError(f"{n} bytes: no room for address and count")
        address = frame[2] << 8 | frame[3]
        count = frame[4] << 8 | frame[5]
        _check_count(count, _WRITE_LIMITS[function])
        if n < 9:
            raise ByteCountError(f"{n} bytes: no byte count")
        byte_count = frame[6]
        needed = (count + 7) // 8 if function == 15 else 2 * count
        if byte_count != needed:
            raise ByteCountError(f"byte count {byte_count} for {count} items")
        if n - 9 != byte_count:
            raise ByteCountError(f"byte count {byte_count}, {n - 9} data bytes")
        data = frame[7 : 7 + byte_count]
        if function == 15:
            bits = [bool(data[i >> 3] >> (i & 7) & 1) for i in range(count)]
            return Request(unit, function, address, count, bits)
        registers = [data[i] << 8 | data[i + 1] for i in range(0, byte_count, 2)]
        return Request(unit, function, address, count, registers)
    raise UnsupportedFunction(f"unsupported function 0x{function:02X}")


def _check_count(count: int, limit: int) -> None:
    if not 1 <= count <= limit:
        raise CountError(f"count {count} outside 1..{limit}")


def encode_bits(unit: int, function: int, bits: list[bool]) -> bytes:
    data = bytearray((len(bits) + 7) // 8)
    for i, bit in enumerate(bits):
        if bit:
            data[i >> 3] |= 1 << (i & 7)
    return with_crc(bytes((unit, function, len(data))) + data)


_REGISTER_BODIES: dict[int, struct.Struct] = {}  # by register count: unit, function, n, words


def encode_registers(unit: int, function: int, registers: list[int]) -> bytes:
    count = len(registers)
    body = _REGISTER_BODIES.get(count)
    if body is None:
        body = _REGISTER_BODIES[count] = struct.Struct(f">BBB{count}H")
    try:
        packed = body.pack(unit, function, 2 * count, *registers)
    except struct.error:  # a word outside 0..0xFFFF: the error int.to_bytes gives
        raise OverflowError(f"register value outside 0..0xFFFF in {registers}") from None
    frame = _FRAMED.get(packed)  # with_crc's memo, looked up here: every read
    return frame if frame is not None else with_crc(packed)


def encode_echo(unit: int, function: int, address: int, word: int) -> bytes:
    return with_crc(bytes((unit, function, address >> 8, address & 0xFF, word >> 8, word & 0xFF)))


def encode_exception(unit: int, function: int, code: int) -> bytes:
    return with_crc(bytes((unit, function | 0x80, code)))


def _execute(device: Device, request: Request, frame: bytes) -> bytes:
    """The device's answer to a valid request (its frame: a single write's echo is the frame)."""
    # Checked in the order of a station's traffic (register reads, then writes): every request.
    unit, function, address = request.unit, request.function, request.address
    if function == 3:
        return encode_registers(unit, 3, device.read_holding_registers(address, request.count))
    if function == 16:
        device.write_registers(address, request.value)
        return encode_echo(unit, 16, address, request.count)
    if function == 6:
        device.write_register(address, request.value)
        return frame
    if function == 4:
        return encode_registers(unit, 4, device.read_input_registers(address, request.count))
    if function == 2:
        return encode_bits(unit, 2, device.read_discrete_inputs(address, request.count))
    if function == 1:
        return encode_bits(unit, 1, device.read_coils(address, request.count))
    if function == 5:
        device.write_coil(address, request.value)
        return frame  # (its value word is FF00 or 0000: decode_request refuses others)
    device.write_coils(address, request.value)  # 15
    return encode_echo(unit, 15, address, request.count)


def supports(device: Device, function: int) -> bool:
    """Whether the device implements the function (its class overrides Device's refusal)."""
    name = _METHODS.get(function)
    return name is not None and getattr(type(device), name) is not getattr(Device, name)


class RtuSlaves:
    """The devices behind one RS-485 segment, each answering its own unit id.

    ``answer(frame, now_s)`` is what the wire sees: a response frame, or None for silence. Every
    CRC-valid request addressed to a device is ``heard`` by it (its comm-loss timer restarts).
    Counters show what was refused, for tests and the KPI table.
    """

    def __init__(self, devices: Mapping[int, Device]) -> None:
        self.devices = dict(devices)
        self.dropped_frames = 0  # bad CRC, wrong size: silence
        self.exceptions_sent = 0
        # Requests decoded before, by frame: a master sends the same frames every poll cycle.
        # Only valid ones are kept (a refused frame is decoded again, with its error); devices
        # never keep or change a request's values. Bounded: emptied when full.
        self._decoded: dict[bytes, Request] = {}

    def answer(self, frame: bytes, now_s: float) -> bytes | None:
        if type(frame) is not bytes:
            frame = bytes(frame)
        request = self._decoded.get(frame)
        if request is None:
            try:
                request = decode_request(frame)
            except (CrcError, TruncatedFrame, OversizedFrame, IndexError):
                self.dropped_frames += 1
                return None
            except UnsupportedFunction:
                return self._refuse(frame, ILLEGAL_FUNCTION, now_s)
            except (CountError, ByteCountError, FrameValueError, FrameLengthError):
                return self._refuse(frame, ILLEGAL_DATA_VALUE, now_s)
            if len(self._decoded) >= _DECODED_MAX:
                self._decoded.clear()
            self._decoded[frame] = request
        unit = request.unit
        if unit == 0:  # broadcast: every device carries out a write, none answers
            if request.value is None:
                return None
            for each in self.devices.values():
                self._run(each, request, frame, now_s)
            return None
        device = self.devices.get(unit)
        if device is None:
            return None
        device.heard(now_s)  # _run, inline: every request
        try:
            return _execute(device, request, frame)
        except ModbusException as exc:
            return self._exception(unit, request.function, exc.code)

    def _run(self, device: Device, request: Request, frame: bytes, now_s: float) -> bytes | None:
        device.heard(now_s)
        try:
            return _execute(device, request, frame)
        except ModbusException as exc:
            return self._exception(request.unit, request.function, exc.code)

    def _refuse(self, frame: bytes, code: int, now_s: float) -> bytes | None:
        device = self.devices.get(frame[0])
        if device is None:
            return None
        device.heard(now_s)
        if not supports(device, frame[1]):
            code = ILLEGAL_FUNCTION
        return self._exception(frame[0], frame[1], code)

    def _exception(self, unit: int, function: int, code: int) -> bytes | None:
        if unit == 0 or (unit not in self.devices):
            return None
        self.exceptions_sent += 1
        return encode_exception(unit, function & 0x7F, code)
