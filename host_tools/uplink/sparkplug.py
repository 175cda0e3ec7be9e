"""Sparkplug B payloads (Eclipse Sparkplug 3.0, namespace spBv1.0): a small protobuf wire codec of
our own for the part of the Payload message a bridge uses.

Rules:
- Wire format: protobuf (proto2) as the Sparkplug B schema numbers it. Payload: 1 timestamp
  (uint64, ms since the epoch), 2 metrics (repeated Metric), 3 seq (uint64). Metric: 1 name,
  2 alias, 3 timestamp, 4 datatype (uint32), 5 is_historical, 6 is_transient, 7 is_null,
  8 metadata (MetaData: 8 description), 9 properties (PropertySet: 1 keys, 2 values of
  PropertyValue: 1 type, 2 is_null, 3 int_value, 4 long_value, 6 double_value, 7 boolean_value,
  8 string_value), and one value field: 10 int_value (uint32), 11 long_value (uint64),
  12 float_value, 13 double_value, 14 boolean_value, 15 string_value, 16 bytes_value.
- Datatypes (DataType) choose the value field. Signed integers travel as the two's complement of
  their own width in the unsigned field (Int16 -5 -> int_value 65531), as the Sparkplug spec and
  its reference implementations do.
- Encoding writes fields in number order, omits what is None, and never writes a value for a
  null metric (is_null = true instead).
- Decoding skips unknown fields (protobuf's rule) and refuses what breaks the structure with
  SparkplugError naming the field: a truncated varint or field, an unknown wire type, a value
  that does not fit its datatype. A metric's value is given as its field carried it
  (Metric.value) until ``typed_value`` reads it as a datatype: a DCMD from a host may leave the
  datatype out and the bridge supplies the one it declared in its birth.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from enum import IntEnum
from functools import lru_cache

NAMESPACE = "spBv1.0"


class SparkplugError(ValueError):
    """A payload that is not a valid Sparkplug B payload, or a value that does not fit."""


class DataType(IntEnum):
    UNKNOWN = 0
    INT8 = 1
    INT16 = 2
    INT32 = 3
    INT64 = 4
    UINT8 = 5
    UINT16 = 6
    UINT32 = 7
    UINT64 = 8
    FLOAT = 9
    DOUBLE = 10
    BOOLEAN = 11
    STRING = 12
    DATETIME = 13
    TEXT = 14
    UUID = 15
    BYTES = 17


# datatype -> (value field number, signed bits or None, unsigned bits or None)
_INT_FIELD, _LONG_FIELD, _FLOAT_FIELD, _DOUBLE_FIELD = 10, 11, 12, 13
_BOOL_FIELD, _STRING_FIELD, _BYTES_FIELD = 14, 15, 16
_VALUE_FIELDS = {
    DataType.INT8: (_INT_FIELD, 8),
    DataType.INT16: (_INT_FIELD, 16),
    DataType.INT32: (_INT_FIELD, 32),
    DataType.INT64: (_LONG_FIELD, 64),
    DataType.UINT8: (_INT_FIELD, 8),
    DataType.UINT16: (_INT_FIELD, 16),
    DataType.UINT32: (_INT_FIELD, 32),
    DataType.UINT64: (_LONG_FIELD, 64),
    DataType.DATETIME: (_LONG_FIELD, 64),
    DataType.FLOAT: (_FLOAT_FIELD, None),
    DataType.DOUBLE: (_DOUBLE_FIELD, None),
    DataType.BOOLEAN: (_BOOL_FIELD, None),
    DataType.STRING: (_STRING_FIELD, None),
    DataType.TEXT: (_STRING_FIELD, None),
    DataType.UUID: (_STRING_FIELD, None),
    DataType.BYTES: (_BYTES_FIELD, None),
}
_SIGNED = {DataType.INT8, DataType.INT16, DataType.INT32, DataType.INT64}
# PropertyValue type codes share the DataType numbers
_PROPERTY_FIELDS = {
    int: (DataType.UINT64, 4),
    bool: (DataType.BOOLEAN, 7),
    str: (DataType.STRING, 8),
}


@dataclass
class Metric:
    name: str | None
    datatype: int = DataType.UNKNOWN
    value: object = None  # None with is_null; decoded: as its field carried it (see typed_value)
    timestamp: int | None = None  # ms since the epoch
    alias: int | None = None
    is_null: bool = False
    is_historical: bool = False
    description: str | None = None  # MetaData.description
    properties: dict[str, object] = field(default_factory=dict)  # str, bool or int values
    value_field: int | None = None  # decoded: the field number the value came in


@dataclass
class Payload:
    timestamp: int | None = None
    seq: int | None = None
    metrics: list[Metric] = field(default_factory=list)


# --- encoding --------------------------------------------------------------------------------
def _varint(n: int) -> bytes:
    if 0 <= n < 0x80:
        return _SMALL[n]
    if n < 0:
        n += 1 << 64  # protobuf's encoding of a negative int64
    out = bytearray()
    while n > 0x7F:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


_SMALL = [bytes((n,)) for n in range(0x80)]


def _key(number: int, wire_type: int) -> bytes:
    return _varint(number << 3 | wire_type)


# every key we write, made once: (number, wire type) -> bytes
_KEYS = {(n, w): _key(n, w) for n in range(1, 20) for w in (0, 1, 2, 5)}


def _len_field(number: int, data: bytes) -> bytes:
    return _KEYS[number, 2] + _varint(len(data)) + data


def _varint_field(number: int, n: int) -> bytes:
    return _KEYS[number, 0] + _varint(n)


_DOUBLE_KEY = _key(_DOUBLE_FIELD, 1)
_FLOAT_KEY = _key(_FLOAT_FIELD, 5)
_pack_double = struct.Struct("<d").pack
_pack_float = struct.Struct("<f").pack


def _value_bytes(datatype: int, value) -> bytes:
    try:
        number, bits = _VALUE_FIELDS[datatype]
    except KeyError:
        raise SparkplugError(f"datatype {datatype} is not supported") from None
    if number == _DOUBLE_FIELD:
        return _DOUBLE_KEY + _pack_double(float(value))
    if number == _FLOAT_FIELD:
        return _FLOAT_KEY + _pack_float(float(value))
    if number == _BOOL_FIELD:
        return _varint_field(number, 1 if value else 0)
    if number == _STRING_FIELD:
        return _len_field(number, str(value).encode())
    if number == _BYTES_FIELD:
        return _len_field(number, bytes(value))
    n = int(value)
    if datatype in _SIGNED:
        if not -(1 << (bits - 1)) <= n < 1 << (bits - 1):
            raise SparkplugError(f"{n} does not fit {DataType(datatype).name}")
        n &= (1 << bits) - 1
    elif not 0 <= n < 1 << bits:
        raise SparkplugError(f"{n} does not fit {DataType(datatype).name}")
    return _varint_field(number, n)


def _properties_bytes(props: dict[str, object]) -> bytes:
    keys = b"".join(_len_field(1, k.encode()) for k in props)
    values = b""
    for v in props.values():
        kind = bool if isinstance(v, bool) else type(v)
        if kind not in _PROPERTY_FIELDS:
            raise SparkplugError(f"property value {v!r}: only str, bool and int are supported")
        datatype, number = _PROPERTY_FIELDS[kind]
        body = _varint_field(1, datatype)
        body += _len_field(number, v.encode()) if kind is str else _varint_field(number, int(v))
        values += _len_field(2, body)
    return keys + values


@lru_cache(maxsize=4096)
def _parts(
    name: str | None, alias: int | None, datatype: int, description: str | None
) -> tuple[bytes, bytes, bytes]:
    """(name and alias, datatype, metadata) fields of a metric: the same in every message."""
    head = b"" if name is None else _len_field(1, name.encode())
    if alias is not None:
        head += _varint_field(2, alias)
    dtype = _varint_field(4, datatype) if datatype else b""
    meta = b"" if description is None else _len_field(8, _len_field(8, description.encode()))
    return head, dtype, meta


def encode_metric(m: Metric) -> bytes:
    name_alias, datatype, metadata = _parts(m.name, m.alias, int(m.datatype), m.description)
    out = name_alias
    if m.timestamp is not None:
        out += _varint_field(3, m.timestamp)
    out += datatype
    if m.is_historical:
        out += _varint_field(5, 1)
    if m.is_null or m.value is None:
        out += _varint_field(7, 1)
    out += metadata
    if m.properties:
        out += _len_field(9, _properties_bytes(m.properties))
    if not (m.is_null or m.value is None):
        out += _value_bytes(m.datatype, m.value)
    return out


def encode(payload: Payload) -> bytes:
    out = b"" if payload.timestamp is None else _varint_field(1, payload.timestamp)
    out += b"".join(_len_field(2, encode_metric(m)) for m in payload.metrics)
    if payload.seq is not None:
        out += _varint_field(3, payload.seq)
    return out


# --- decoding --------------------------------------------------------------------------------
def _read_varint(data: bytes, pos: int, what: str) -> tuple[int, int]:
    n = shift = 0
    while True:
        if pos >= len(data):
            raise SparkplugError(f"{what}: truncated varint")
        b = data[pos]
        pos += 1
        n |= (b & 0x7F) << shift
        if not b & 0x80:
            return n, pos
        shift += 7
        if shift >= 70:
            raise SparkplugError(f"{what}: varint longer than 10 bytes")


def _fields(data: bytes, what: str):
    """(number, wire type, value) of each field: ints for varints, bytes for the rest."""
    pos = 0
    while pos < len(data):
        key, pos = _read_varint(data, pos, what)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _read_varint(data, pos, f"{what} field {number}")
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            value, pos = data[pos : pos + size], pos + size
            if pos > len(data):
                raise SparkplugError(f"{what} field {number}: truncated")
        elif wire == 2:
            size, pos = _read_varint(data, pos, f"{what} field {number}")
            value, pos = data[pos : pos + size], pos + size
            if pos > len(data):
                raise SparkplugError(f"{what} field {number}: truncated")
        else:
            raise SparkplugError(f"{what} field {number}: wire type {wire} is not supported")
        yield number, wire, value


def _text(value, what: str) -> str:
    if not isinstance(value, bytes):
        raise SparkplugError(f"{what}: expected a string")
    try:
        return value.decode()
    except UnicodeDecodeError:
        raise SparkplugError(f"{what}: not UTF-8") from None


def _want(wire: int, expected: int, what: str) -> None:
    if wire != expected:
        raise SparkplugError(f"{what}: wire type {wire}, expected {expected}")


def _decode_properties(data: bytes, what: str) -> dict[str, object]:
    keys, values = [], []
    for number, wire, value in _fields(data, what):
        if number == 1:
            _want(wire, 2, f"{what} key")
            keys.append(_text(value, f"{what} key"))
        elif number == 2:
            _want(wire, 2, f"{what} value")
            got = None
            for n, w, v in _fields(value, f"{what} value"):
                if n in (3, 4, 7) and w == 0:
                    got = bool(v) if n == 7 else v
                elif n == 8 and w == 2:
                    got = _text(v, f"{what} value")
                elif n == 6 and w == 1:
                    got = struct.unpack("<d", v)[0]
            values.append(got)
    if len(keys) != len(values):
        raise SparkplugError(f"{what}: {len(keys)} keys, {len(values)} values")
    return dict(zip(keys, values, strict=True))


def _decode_metric(data: bytes, index: int) -> Metric:
    what = f"metric {index}"
    m = Metric(None)
    for number, wire, value in _fields(data, what):
        if number == 1:
            _want(wire, 2, f"{what} name")
            m.name = _text(value, f"{what} name")
            what = f"metric {m.name!r}"
        elif number in (2, 3, 4, 5, 6, 7):
            _want(wire, 0, f"{what} field {number}")
            if number == 2:
                m.alias = value
            elif number == 3:
                m.timestamp = value
            elif number == 4:
                m.datatype = value
            elif number == 5:
                m.is_historical = bool(value)
            elif number == 7:
                m.is_null = bool(value)
        elif number == 8:
            _want(wire, 2, f"{what} metadata")
            for n, w, v in _fields(value, f"{what} metadata"):
                if n == 8 and w == 2:
                    m.description = _text(v, f"{what} description")
        elif number == 9:
            _want(wire, 2, f"{what} properties")
            m.properties = _decode_properties(value, f"{what} properties")
        elif number in (_INT_FIELD, _LONG_FIELD, _BOOL_FIELD):
            _want(wire, 0, f"{what} value")
            m.value, m.value_field = (bool(value) if number == _BOOL_FIELD else value), number
        elif number == _FLOAT_FIELD:
            _want(wire, 5, f"{what} value")
            m.value, m.value_field = struct.unpack("<f", value)[0], number
        elif number == _DOUBLE_FIELD:
            _want(wire, 1, f"{what} value")
            m.value, m.value_field = struct.unpack("<d", value)[0], number
        elif number == _STRING_FIELD:
            _want(wire, 2, f"{what} value")
            m.value, m.value_field = _text(value, f"{what} value"), number
        elif number == _BYTES_FIELD:
            _want(wire, 2, f"{what} value")
            m.value, m.value_field = bytes(value), number
    if m.is_null:
        m.value = None
    return m


def decode(data: bytes) -> Payload:
    """A Sparkplug B payload; SparkplugError when it breaks the structure."""
    p = Payload()
    for number, wire, value in _fields(bytes(data), "payload"):
        if number == 1:
            _want(wire, 0, "payload timestamp")
            p.timestamp = value
        elif number == 2:
            _want(wire, 2, "payload metric")
            p.metrics.append(_decode_metric(value, len(p.metrics)))
        elif number == 3:
            _want(wire, 0, "payload seq")
            p.seq = value
    return p


def _type_name(code: int) -> str:
    return DataType(code).name if code in DataType._value2member_map_ else "unknown"


def typed_value(m: Metric, datatype: int):
    """The metric's value read as `datatype` (signed integers sign-extended): SparkplugError when
    its field is not that datatype's or the value does not fit it."""
    name = _type_name(datatype)
    if m.datatype not in (DataType.UNKNOWN, datatype):
        got = _type_name(m.datatype)
        raise SparkplugError(f"metric {m.name!r}: datatype {m.datatype} ({got}), expected {name}")
    if m.is_null or m.value is None:
        raise SparkplugError(f"metric {m.name!r}: no value")
    number, bits = _VALUE_FIELDS[datatype]
    if m.value_field != number:
        raise SparkplugError(f"metric {m.name!r}: a {name} value in field {m.value_field}")
    if bits is None:
        return m.value
    n = m.value
    if not 0 <= n < 1 << bits:
        raise SparkplugError(f"metric {m.name!r}: {n} does not fit {name}")
    if datatype in _SIGNED and n >= 1 << (bits - 1):
        n -= 1 << bits
    return n


# --- topics ----------------------------------------------------------------------------------
def topic(group: str, message_type: str, node: str, device: str | None = None) -> str:
    parts = [NAMESPACE, group, message_type, node] + ([device] if device is not None else [])
    return "/".join(parts)


def check_id(kind: str, text: str) -> str:
    """A group, edge node or device id: not empty, without the MQTT separators / + #."""
    if not text or any(c in text for c in "/+#"):
        raise SparkplugError(f"{kind} id {text!r}: must be non-empty without / + or #")
    return text
