"""Modbus RTU frames (requests, responses, exception responses), defined once with construct.

Frame (ADU) layout on the wire::

    unit (u8) | function (u8) | data (function-specific, big-endian) | CRC-16/MODBUS (u16, LITTLE-endian)

Supported function codes and their data:

    code  name                      request                                  response
    0x01  read coils                address u16, count u16                   byte_count u8, bits
    0x02  read discrete inputs      address u16, count u16                   byte_count u8, bits
    0x03  read holding registers    address u16, count u16                   byte_count u8, u16 * n
    0x04  read input registers      address u16, count u16                   byte_count u8, u16 * n
    0x05  write single coil         address u16, value 0xFF00 / 0x0000       echo of the request
    0x06  write single register     address u16, value u16                   echo of the request
    0x0F  write multiple coils      address u16, count u16, byte_count, bits address u16, count u16
    0x10  write multiple registers  address u16, count u16, byte_count, u16*n address u16, count u16
    exception response: function | 0x80, exception_code u8

Decoding rules (a frame breaking any of them is rejected with a typed error, never accepted):

- A frame is at most 256 bytes (OversizedFrame) and at least 4: unit, function, CRC (TruncatedFrame).
- The last two bytes are the CRC-16/MODBUS (poly 0xA001 reflected, init 0xFFFF) of everything
  before them, low byte first (CrcError). The helpers check the CRC FIRST, before any field: a
  corrupted frame must be dropped silently by a slave, never answered with an exception response.
- count limits: 1..2000 bits read (0x01/0x02), 1..125 registers read (0x03/0x04), 1..1968 coils
  written (0x0F), 1..123 registers written (0x10) (CountError).
- byte counts agree: read-bits responses 1..250 bytes, read-register responses even, 2..250 bytes;
  0x0F requests carry ceil(count / 8) bytes, 0x10 requests 2 * count bytes; the frame holds exactly
  that many data bytes; given the request's count, a read response carries exactly the bytes that
  count needs (ByteCountError).
- A fixed-layout PDU (reads' requests, 0x05, 0x06, writes' responses) has exactly its size
  (TruncatedFrame when short, FrameLengthError when long).
- A single-coil value is 0xFF00 (on) or 0x0000 (off) (FrameValueError). Exception codes pass
  through as they are (0..255): the caller decides what an undefined code means.
- Only the function codes above are understood (UnsupportedFunction); a response must answer the
  function asked (UnexpectedFunction).
- Unit ids 0..255 all parse: broadcast (0) and address filtering are the slave's business.
- Padding bits after the last coil in a bit field are ignored (the spec says they are zero, but a
  receiver gains nothing by refusing a frame for them).

Every error raised is a construct.ConstructError; the ones this module raises are ModbusFrameError
subclasses with a short `.reason` ("crc", "truncated", ...) that the golden vectors
(protocol/vectors/modbus.json) use as the implementation-neutral error name.

Public API:
    crc16(data) -> int
    build_request(unit, function, **fields) -> bytes
    parse_request(frame) -> dict(unit=, function=, **fields)
    build_response(unit, function, **fields) -> bytes      (exception_code=... gives an exception)
    build_exception(unit, function, exception_code) -> bytes
    parse_response(function, frame, count=None) -> dict(unit=, function=, **fields)
    RequestADU, ResponseADU: the construct structs themselves (fields first, CRC last).

Fields by function (requests / responses):
    0x01, 0x02   {address, count}           / {bits}   (count bits if count given, else 8 per byte)
    0x03, 0x04   {address, count}           / {registers}
    0x05         {address, value: bool}     / {address, value: bool}
    0x06         {address, value: int}      / {address, value: int}
    0x0F         {address, bits}            / {address, count}
    0x10         {address, registers}       / {address, count}
    exception    -                          / {exception_code}
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from construct import (
    Adapter,
    Array,
    Bytes,
    Checksum,
    ChecksumError,
    Construct,
    ConstructError,
    Int8ub,
    Int16ub,
    Int16ul,
    RawCopy,
    Rebuild,
    StreamError,
    Struct,
    Switch,
    TerminatedError,
    ValidationError,
    Validator,
    len_,
    this,
)

READ_COILS = 0x01
READ_DISCRETE_INPUTS = 0x02
READ_HOLDING_REGISTERS = 0x03
READ_INPUT_REGISTERS = 0x04
WRITE_SINGLE_COIL = 0x05
WRITE_SINGLE_REGISTER = 0x06
WRITE_MULTIPLE_COILS = 0x0F
WRITE_MULTIPLE_REGISTERS = 0x10
FUNCTIONS = (0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x0F, 0x10)
EXCEPTION_FLAG = 0x80

MAX_ADU = 256
MIN_ADU = 4
MAX_READ_BITS = 2000
MAX_READ_REGISTERS = 125
MAX_WRITE_BITS = 1968
MAX_WRITE_REGISTERS = 123
COIL_ON = 0xFF00
COIL_OFF = 0x0000

BIT_READS = (READ_COILS, READ_DISCRETE_INPUTS)
REGISTER_READS = (READ_HOLDING_REGISTERS, READ_INPUT_REGISTERS)
# PDUs whose length is carried by a byte count (a length error there is a byte-count error).
_BYTE_COUNTED_REQUESTS = (WRITE_MULTIPLE_COILS, WRITE_MULTIPLE_REGISTERS)
_BYTE_COUNTED_RESPONSES = BIT_READS + REGISTER_READS


# --- errors ---------------------------------------------------------------------------------------


class ModbusFrameError(ConstructError):
    """A frame broke one of the decoding rules (or a build got fields it cannot encode)."""

    reason = "frame"


class CrcError(ModbusFrameError, ChecksumError):
    reason = "crc"


class TruncatedFrame(ModbusFrameError, StreamError):
    reason = "truncated"


class FrameLengthError(ModbusFrameError, TerminatedError):
    reason = "length"


class OversizedFrame(ModbusFrameError):
    reason = "oversized"


class ByteCountError(ModbusFrameError, ValidationError):
    reason = "byte_count"


class CountError(ModbusFrameError, ValidationError):
    reason = "count"


class FrameValueError(ModbusFrameError, ValidationError):
    reason = "value"


class UnsupportedFunction(ModbusFrameError, ValidationError):
    reason = "function"


class UnexpectedFunction(ModbusFrameError):
    reason = "unexpected"


# --- CRC ------------------------------------------------------------------------------------------


def _crc_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_CRC_TABLE = _crc_table()


def crc16(data: bytes | bytearray | memoryview) -> int:
    """CRC-16/MODBUS of data (sent on the wire low byte first)."""
    crc = 0xFFFF
    for byte in bytes(data):
        crc = (crc >> 8) ^ _CRC_TABLE[(crc ^ byte) & 0xFF]
    return crc


# --- building blocks ------------------------------------------------------------------------------


class _Rule(Validator):
    """Validator raising a specific ModbusFrameError subclass (construct's own raises the base)."""

    def __init__(
        self, subcon: Construct, check: Callable[[Any, Any], bool], error: type, what: str
    ) -> None:
        super().__init__(subcon)
        self.check = check
        self.error = error
        self.what = what

    def _validate(self, obj: Any, context: Any, path: str) -> bool:
        if not self.check(obj, context):
            raise self.error(f"{self.what}: {obj!r}", path=path)
        return True


def _count(limit: int) -> Construct:
    return _Rule(Int16ub, lambda n, _: 1 <= n <= limit, CountError, f"count must be 1..{limit}")


class _BitField(Adapter):
    """Packed bits, first bit in the least significant bit of the first byte.

    Decodes to `this.count` bools when the context has a count (0x0F requests), otherwise to
    8 bools per byte (read responses: the count is the request's, not the frame's).
    """

    def _decode(self, obj: bytes, context: Any, path: str) -> list[bool]:
        bits = [bool(byte >> shift & 1) for byte in obj for shift in range(8)]
        count = context.get("count")
        return bits[:count] if count is not None else bits

    def _encode(self, obj: Sequence[bool], context: Any, path: str) -> bytes:
        packed = bytearray((len(obj) + 7) // 8)
        for index, bit in enumerate(obj):
            if bit:
                packed[index >> 3] |= 1 << (index & 7)
        return bytes(packed)


_CoilValue = _Rule(
    Int16ub,
    lambda v, _: v in (COIL_ON, COIL_OFF),
    FrameValueError,
    "coil value must be 0xFF00 or 0x0000",
)


class _CoilState(Adapter):
    def _decode(self, obj: int, context: Any, path: str) -> bool:
        return obj == COIL_ON

    def _encode(self, obj: bool, context: Any, path: str) -> int:
        if not isinstance(obj, bool):
            raise FrameValueError(f"coil value must be a bool: {obj!r}", path=path)
        return COIL_ON if obj else COIL_OFF


def _read_request(limit: int) -> Struct:
    return Struct("address" / Int16ub, "count" / _count(limit))


_WriteSingleCoil = Struct("address" / Int16ub, "value" / _CoilState(_CoilValue))
_WriteSingleRegister = Struct("address" / Int16ub, "value" / Int16ub)


def _write_echo(limit: int) -> Struct:
    return Struct("address" / Int16ub, "count" / _count(limit))


_REQUEST_BODIES = {
    READ_COILS: _read_request(MAX_READ_BITS),
    READ_DISCRETE_INPUTS: _read_request(MAX_READ_BITS),
    READ_HOLDING_REGISTERS: _read_request(MAX_READ_REGISTERS),
    READ_INPUT_REGISTERS: _read_request(MAX_READ_REGISTERS),
    WRITE_SINGLE_COIL: _WriteSingleCoil,
    WRITE_SINGLE_REGISTER: _WriteSingleRegister,
    WRITE_MULTIPLE_COILS: Struct(
        "address" / Int16ub,
        "count" / Rebuild(_count(MAX_WRITE_BITS), len_(this.bits)),
        "byte_count"
        / Rebuild(
            _Rule(
                Int8ub,
                lambda b, ctx: b == (ctx.count + 7) // 8,
                ByteCountError,
                "byte count must be ceil(count / 8)",
            ),
            (this.count + 7) // 8,
        ),
        "bits" / _BitField(Bytes(this.byte_count)),
    ),
    WRITE_MULTIPLE_REGISTERS: Struct(
        "address" / Int16ub,
        "count" / Rebuild(_count(MAX_WRITE_REGISTERS), len_(this.registers)),
        "byte_count"
        / Rebuild(
            _Rule(
                Int8ub,
                lambda b, ctx: b == 2 * ctx.count,
                ByteCountError,
                "byte count must be 2 * count",
            ),
            this.count * 2,
        ),
        "registers" / Array(this.count, Int16ub),
    ),
}

_BitsResponse = Struct(
    "byte_count"
    / Rebuild(
        _Rule(
            Int8ub,
            lambda b, _: 1 <= b <= MAX_READ_BITS // 8,
            ByteCountError,
            "byte count must be 1..250",
        ),
        (len_(this.bits) + 7) // 8,
    ),
    "bits" / _BitField(Bytes(this.byte_count)),
)
_RegistersResponse = Struct(
    "byte_count"
    / Rebuild(
        _Rule(
            Int8ub,
            lambda b, _: b % 2 == 0 and 2 <= b <= 2 * MAX_READ_REGISTERS,
            ByteCountError,
            "byte count must be even, 2..250",
        ),
        len_(this.registers) * 2,
    ),
    "registers" / Array(this.byte_count // 2, Int16ub),
)

_RESPONSE_BODIES = {
    READ_COILS: _BitsResponse,
    READ_DISCRETE_INPUTS: _BitsResponse,
    READ_HOLDING_REGISTERS: _RegistersResponse,
    READ_INPUT_REGISTERS: _RegistersResponse,
    WRITE_SINGLE_COIL: _WriteSingleCoil,
    WRITE_SINGLE_REGISTER: _WriteSingleRegister,
    WRITE_MULTIPLE_COILS: _write_echo(MAX_WRITE_BITS),
    WRITE_MULTIPLE_REGISTERS: _write_echo(MAX_WRITE_REGISTERS),
}
_ExceptionBody = Struct("exception_code" / Int8ub)
for _code in FUNCTIONS:
    _RESPONSE_BODIES[_code | EXCEPTION_FLAG] = _ExceptionBody


def _function(codes: Sequence[int]) -> Construct:
    return _Rule(Int8ub, lambda f, _: f in codes, UnsupportedFunction, "unsupported function")


def _content(function: Construct, bodies: dict[int, Construct]) -> Struct:
    return Struct("unit" / Int8ub, "function" / function, "body" / Switch(this.function, bodies))


def _adu(content: Construct) -> Struct:
    return Struct("frame" / content, "crc" / Checksum(Int16ul, crc16, this.frame.data))


_RequestContent = RawCopy(_content(_function(FUNCTIONS), _REQUEST_BODIES))
_ResponseContent = RawCopy(_content(_function(tuple(_RESPONSE_BODIES)), _RESPONSE_BODIES))
#: Request ADU: {"frame": {"value": {"unit", "function", "body": {...}}}, "crc"}. Parsing it
#: directly reads fields first and the CRC last; the helpers below check the CRC first.
RequestADU = _adu(_RequestContent)
#: Response ADU (normal or exception): same shape; an exception has function | 0x80.
ResponseADU = _adu(_ResponseContent)


# --- helpers --------------------------------------------------------------------------------------

_REQUEST_FIELDS: dict[int, tuple[str, ...]] = {
    READ_COILS: ("address", "count"),
    READ_DISCRETE_INPUTS: ("address", "count"),
    READ_HOLDING_REGISTERS: ("address", "count"),
    READ_INPUT_REGISTERS: ("address", "count"),
    WRITE_SINGLE_COIL: ("address", "value"),
    WRITE_SINGLE_REGISTER: ("address", "value"),
    WRITE_MULTIPLE_COILS: ("address", "bits"),
    WRITE_MULTIPLE_REGISTERS: ("address", "registers"),
}
_RESPONSE_FIELDS: dict[int, tuple[str, ...]] = {
    READ_COILS: ("bits",),
    READ_DISCRETE_INPUTS: ("bits",),
    READ_HOLDING_REGISTERS: ("registers",),
    READ_INPUT_REGISTERS: ("registers",),
    WRITE_SINGLE_COIL: ("address", "value"),
    WRITE_SINGLE_REGISTER: ("address", "value"),
    WRITE_MULTIPLE_COILS: ("address", "count"),
    WRITE_MULTIPLE_REGISTERS: ("address", "count"),
}


def _build(adu: Struct, unit: int, function: int, body: dict[str, Any]) -> bytes:
    frame = adu.build({"frame": {"value": {"unit": unit, "function": function, "body": body}}})
    if len(frame) > MAX_ADU:
        raise OversizedFrame(f"frame would be {len(frame)} bytes, over {MAX_ADU}")
    return frame


def _check_fields(function: int, fields: dict[str, Any], table: dict[int, tuple[str, ...]]) -> None:
    if function not in table:
        raise UnsupportedFunction(f"unsupported function {function!r}")
    if set(fields) != set(table[function]):
        raise ModbusFrameError(
            f"function {function} takes fields {table[function]}, got {tuple(fields)}"
        )


def build_request(unit: int, function: int, **fields: Any) -> bytes:
    """Request ADU for function with the fields listed in the module docstring."""
    _check_fields(function, fields, _REQUEST_FIELDS)
    return _build(RequestADU, unit, function, fields)


def build_response(unit: int, function: int, **fields: Any) -> bytes:
    """Response ADU; with exception_code=... the exception response to function instead."""
    if set(fields) == {"exception_code"}:
        return build_exception(unit, function, fields["exception_code"])
    _check_fields(function, fields, _RESPONSE_FIELDS)
    return _build(ResponseADU, unit, function, fields)


def build_exception(unit: int, function: int, exception_code: int) -> bytes:
    """Exception response ADU: function | 0x80, exception_code."""
    if function not in FUNCTIONS:
        raise UnsupportedFunction(f"unsupported function {function!r}")
    return _build(ResponseADU, unit, function | EXCEPTION_FLAG, {"exception_code": exception_code})


def _check_frame(frame: Any) -> bytes:
    """Length and CRC checks every frame passes before any field is looked at."""
    if not isinstance(frame, bytes | bytearray | memoryview):
        raise ModbusFrameError(f"a frame is bytes, not {type(frame).__name__}")
    frame = bytes(frame)
    if len(frame) > MAX_ADU:
        raise OversizedFrame(f"{len(frame)} bytes, over {MAX_ADU}")
    if len(frame) < MIN_ADU:
        raise TruncatedFrame(f"{len(frame)} bytes, under {MIN_ADU}")
    if crc16(frame[:-2]) != frame[-2] | frame[-1] << 8:
        raise CrcError("wrong CRC")
    return frame


def _parse(
    content: Construct, frame: bytes, byte_counted: bool, fields: tuple[str, ...]
) -> dict[str, Any]:
    """Parse a CRC-checked frame's content (all but the CRC), which must be consumed exactly."""
    data = frame[:-2]
    try:
        parsed = content.parse(data)
    except StreamError as exc:
        if byte_counted:
            raise ByteCountError(f"byte count claims more than the frame holds: {exc}") from exc
        raise TruncatedFrame(str(exc)) from exc
    if len(parsed.data) != len(data):
        if byte_counted:
            raise ByteCountError(f"byte count leaves {len(data) - len(parsed.data)} bytes over")
        raise FrameLengthError(f"{len(data) - len(parsed.data)} bytes over the function's layout")
    value = parsed.value
    result: dict[str, Any] = {"unit": value.unit, "function": value.function}
    for key, item in value.body.items():
        if key in fields:
            result[key] = list(item) if isinstance(item, list) else item
    return result


def parse_request(frame: bytes | bytearray | memoryview) -> dict[str, Any]:
    """Decode a request ADU into {unit, function, **fields}; raises ModbusFrameError subclasses."""
    frame = _check_frame(frame)
    function = frame[1]
    if function not in FUNCTIONS:
        raise UnsupportedFunction(f"unsupported function 0x{function:02X}")
    return _parse(
        _RequestContent, frame, function in _BYTE_COUNTED_REQUESTS, _REQUEST_FIELDS[function]
    )


def parse_response(
    function: int, frame: bytes | bytearray | memoryview, count: int | None = None
) -> dict[str, Any]:
    """Decode the response to a request of `function` (and `count`, for reads).

    Returns {unit, function, **fields}; an exception response gives {unit, function (the plain
    code), exception_code}. With count, a read response must carry exactly count's bytes and its
    bits are cut to count.
    """
    if function not in FUNCTIONS:
        raise UnsupportedFunction(f"unsupported function {function!r}")
    frame = _check_frame(frame)
    if frame[1] not in (function, function | EXCEPTION_FLAG):
        raise UnexpectedFunction(f"asked function 0x{function:02X}, answer 0x{frame[1]:02X}")
    if frame[1] & EXCEPTION_FLAG:
        result = _parse(_ResponseContent, frame, False, ("exception_code",))
        result["function"] = function
        return result
    result = _parse(
        _ResponseContent, frame, function in _BYTE_COUNTED_RESPONSES, _RESPONSE_FIELDS[function]
    )
    if count is not None and function in BIT_READS:
        if frame[2] != (count + 7) // 8:
            raise ByteCountError(f"{frame[2]} bytes cannot answer a read of {count} bits")
        result["bits"] = result["bits"][:count]
    if count is not None and function in REGISTER_READS and frame[2] != 2 * count:
        raise ByteCountError(f"{frame[2]} bytes cannot answer a read of {count} registers")
    return result
