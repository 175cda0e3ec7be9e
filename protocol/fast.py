"""Fast host decoders of uplink frames, derived from the construct schema via protocol.layout.

For host tools that decode at volume (recorder, replay, KPI tables). Rules:
- Same answers as protocol.uplink.parse / parse_any: the same nested dicts (magic, version and kind
  included, pumps as a list, command arguments under "args", the command's tag) and the same
  typed errors in the same order (see protocol/uplink.py); tests/protocol/test_uplink_fast.py
  proves it with hypothesis.
- Nothing here restates a field: struct formats come from the layouts and the dict builders are
  generated from the field paths when this module is imported.
- Batch API for telemetry: decode_telemetry_many(buffer) checks every header with a few strided
  byte comparisons, then hands out struct.iter_unpack tuples (TELEMETRY_FIELDS order).
"""

import hmac
import struct
from collections.abc import Iterator

from protocol import layout as layout_mod
from protocol.uplink import (
    HEADER_SIZE,
    MAGIC,
    VERSION,
    BadLength,
    BadMagic,
    BadSignature,
    BadVersion,
    Kind,
    TruncatedFrame,
    UnknownCommand,
    UnknownKind,
    UplinkError,
    WrongKind,
    hmac_sha256,
    need_key,
)


class _Shape:
    """One layout compiled for speed: its struct, size and a dict builder."""

    def __init__(self, lay: layout_mod.Layout):
        self.layout = lay
        self.size = lay.size
        self.body = lay.size - lay.tag_size
        self.struct = struct.Struct(lay.decode_format)
        self.to_dict = _dict_builder(lay)
        self.fields = tuple(f.flat_name for f in lay.values)


def _dict_builder(lay: layout_mod.Layout):
    """Compile `lambda values, tag: {...}` mirroring construct's container for this layout."""
    skeleton = layout_mod.to_container(lay, [_Slot(i) for i in range(len(lay.values))])
    if lay.tag_size:
        skeleton["tag"] = _Slot(None)
    source = "lambda v, tag: " + _render(skeleton)
    return eval(compile(source, f"<uplink {lay.name} builder>", "eval"))  # noqa: S307 - our source


class _Slot:
    def __init__(self, index):
        self.index = index

    def __repr__(self) -> str:
        return "tag" if self.index is None else f"v[{self.index}]"


def _render(node) -> str:
    if isinstance(node, dict):
        return "{" + ", ".join(f"{k!r}: {_render(v)}" for k, v in node.items()) + "}"
    if isinstance(node, list):
        return "[" + ", ".join(_render(v) for v in node) + "]"
    return repr(node)


_SHAPES = {lay.name: _Shape(lay) for lay in layout_mod.layouts()}
_TELEMETRY = _SHAPES["telemetry"]
_BY_KIND = {lay.kind: _SHAPES[lay.name] for lay in layout_mod.layouts() if lay.command_type is None}
_COMMANDS = {t: _SHAPES[lay.name] for t, lay in layout_mod.command_layouts().items()}


def _offset_of(lay: layout_mod.Layout, path: tuple) -> int:
    index = [f.path for f in lay.fields].index(path)
    return struct.calcsize(">" + "".join(f.code for f in lay.fields[:index]))


_COMMAND_TYPE_AT = _offset_of(next(iter(_COMMANDS.values())).layout, ("command_type",))

TELEMETRY_SIZE = _TELEMETRY.size
TELEMETRY_FIELDS = _TELEMETRY.fields
_PREFIX = {kind: MAGIC + bytes((VERSION, kind)) for kind in Kind}


def _check_header(frame, kind: int | None) -> int:
    if len(frame) < HEADER_SIZE:
        raise TruncatedFrame(f"{len(frame)} bytes, the header alone is {HEADER_SIZE}")
    if frame[:2] != MAGIC:
        raise BadMagic("not an uplink frame")
    if frame[2] != VERSION:
        raise BadVersion(f"version {frame[2]}, expected {VERSION}")
    found = frame[3]
    if kind is None:
        if found not in _PREFIX:
            raise UnknownKind(f"kind {found}")
    elif found != kind:
        raise WrongKind(f"kind {found}, expected {kind}")
    return found


def _shape_of(frame, kind: int) -> _Shape:
    if kind != Kind.COMMAND:
        return _BY_KIND[kind]
    if len(frame) <= _COMMAND_TYPE_AT:
        raise TruncatedFrame("command shorter than its type byte")
    shape = _COMMANDS.get(frame[_COMMAND_TYPE_AT])
    if shape is None:
        raise UnknownCommand(f"command type {frame[_COMMAND_TYPE_AT]}")
    return shape


def _check_size(frame, size: int) -> None:
    if len(frame) < size:
        raise TruncatedFrame(f"{len(frame)} bytes, expected {size}")
    if len(frame) > size:
        raise BadLength(f"{len(frame)} bytes, expected {size}")


def _decode(frame, kind: int, key: bytes) -> dict:
    if kind == Kind.COMMAND:
        need_key(key)  # before the frame, as in protocol.uplink.parse
    shape = _shape_of(frame, kind)
    _check_size(frame, shape.size)
    tag = None
    if shape.layout.tag_size:
        tag = bytes(frame[shape.body :])
        if not hmac.compare_digest(tag, hmac_sha256(key, bytes(frame[: shape.body]))):
            raise BadSignature("command tag does not match")
    return shape.to_dict(shape.struct.unpack_from(frame), tag)


def decode(frame, key: bytes = b"") -> tuple[Kind, dict]:
    """Any frame -> (Kind, dict equal to construct's container). Commands are verified with key."""
    kind = _check_header(frame, None)
    return Kind(kind), _decode(frame, kind, key)


def decode_kind(kind: Kind, frame, key: bytes = b"") -> dict:
    """A frame of a known kind -> dict equal to construct's container."""
    _check_header(frame, kind)
    return _decode(frame, kind, key)


def decode_telemetry(frame) -> dict:
    """Telemetry frame -> dict equal to protocol.uplink.parse(telemetry, frame)."""
    if len(frame) == TELEMETRY_SIZE and frame[:4] == _PREFIX[Kind.TELEMETRY]:
        return _TELEMETRY.to_dict(_TELEMETRY.struct.unpack_from(frame), None)
    return decode_kind(Kind.TELEMETRY, frame)  # slow path: finds the right error


def decode_telemetry_tuple(frame) -> tuple:
    """Telemetry frame -> flat tuple in TELEMETRY_FIELDS order (as the firmware codec returns)."""
    if len(frame) == TELEMETRY_SIZE and frame[:4] == _PREFIX[Kind.TELEMETRY]:
        return _TELEMETRY.struct.unpack_from(frame)
    decode_kind(Kind.TELEMETRY, frame)  # raises the right error
    raise AssertionError("unreachable")


def decode_telemetry_many(buffer) -> Iterator[tuple]:
    """Back-to-back telemetry frames -> iterator of flat tuples (TELEMETRY_FIELDS order).

    Every frame's header is checked before the first tuple is handed out; a bad frame raises the
    error decode_telemetry would, its message prefixed with the frame's index.
    """
    data = buffer if isinstance(buffer, bytes) else bytes(buffer)
    size = TELEMETRY_SIZE
    count, rest = divmod(len(data), size)
    prefix = _PREFIX[Kind.TELEMETRY]
    for offset in range(len(prefix)):
        if data[offset : count * size : size] != prefix[offset : offset + 1] * count:
            _raise_first_bad(data, count, size, prefix)
    if rest:
        _reraise(count, data[count * size :])
    return _TELEMETRY.struct.iter_unpack(data)


def telemetry_columns(buffer) -> dict:
    """Back-to-back telemetry frames -> {field name: tuple of values}, one column per field."""
    rows = list(decode_telemetry_many(buffer))
    if not rows:
        return {name: () for name in TELEMETRY_FIELDS}
    return dict(zip(TELEMETRY_FIELDS, zip(*rows, strict=True), strict=True))


def _raise_first_bad(data: bytes, count: int, size: int, prefix: bytes) -> None:
    for i in range(count):
        if data[i * size : i * size + len(prefix)] != prefix:
            _reraise(i, data[i * size : (i + 1) * size])


def _reraise(index: int, frame: bytes) -> None:
    try:
        decode_kind(Kind.TELEMETRY, frame)
    except UplinkError as err:
        raise type(err)(f"frame {index}: {err}") from err
    raise AssertionError("frame was expected to be bad")
