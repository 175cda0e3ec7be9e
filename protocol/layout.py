"""Flat layouts of the uplink frames, derived by walking the construct schema in protocol/uplink.py.

The generated firmware codec and the fast host decoder both start from these layouts, so neither
restates a field. A layout is one fixed-size frame shape: one per kind, and one per command type
(a command's arguments depend on its type). The walker knows only the construct pieces the schema
uses (Struct, Renamed, Const, FormatField, Array, Switch, Tell, Padding, Pointer, Terminated) and
refuses anything else, so a schema change it cannot express fails loudly instead of drifting.
"""

import struct
from dataclasses import dataclass

from construct import (
    Array,
    Const,
    FormatField,
    Padded,
    Pass,
    Pointer,
    Renamed,
    Struct,
    Switch,
    Tell,
    Terminated,
)

from protocol import uplink

# struct code -> (lowest, highest) value it holds
CODE_RANGES = {
    "B": (0, 0xFF),
    "H": (0, 0xFFFF),
    "I": (0, 0xFFFFFFFF),
    "b": (-0x80, 0x7F),
    "h": (-0x8000, 0x7FFF),
    "i": (-0x80000000, 0x7FFFFFFF),
}


@dataclass(frozen=True)
class Field:
    path: tuple  # where construct puts the value: ("pumps", 0, "speed_pct_x100")
    code: str  # struct code, big-endian implied: "h", "I", "2s" ...
    doc: str = ""
    const: object = None  # fixed value (magic, version, kind), not part of the decoded values

    @property
    def flat_name(self) -> str:
        """Name in flat tuples: pumps[0].speed_pct_x100 -> pump1_speed_pct_x100; args. dropped."""
        parts: list[str] = []
        for i, part in enumerate(self.path):
            if isinstance(part, int):
                parts[-1] = parts[-1].rstrip("s") + str(part + 1)
            elif not (part == "args" and i == 0):
                parts.append(part)
        return "_".join(parts)


@dataclass(frozen=True)
class Layout:
    name: str  # "telemetry", "command_setpoint" ...
    kind: int
    command_type: int | None
    fields: tuple  # every field in frame order, constants included
    tag_size: int  # HMAC tag after the fields (commands), else 0

    @property
    def values(self) -> tuple:
        """The fields a decoder returns and an encoder takes (constants left out)."""
        return tuple(f for f in self.fields if f.const is None)

    @property
    def const_prefix(self) -> bytes:
        """The header bytes every frame of this layout starts with (magic, version, kind)."""
        consts = []
        for f in self.fields:
            if f.const is None:
                break
            consts.append(f)
        return struct.pack(">" + "".join(f.code for f in consts), *(f.const for f in consts))

    @property
    def build_format(self) -> str:
        """struct format of everything before the tag, constants included."""
        return ">" + "".join(f.code for f in self.fields)

    @property
    def decode_format(self) -> str:
        """struct format that skips the constant prefix and the tag: yields exactly .values."""
        skip = len(self.const_prefix)
        rest = "".join(f.code for f in self.fields[len(self.fields) - len(self.values) :])
        return f">{skip}x{rest}" + (f"{self.tag_size}x" if self.tag_size else "")

    @property
    def size(self) -> int:
        return struct.calcsize(self.build_format) + self.tag_size


def _walk(con, path: tuple, doc: str, out: list, tag: list) -> None:
    if isinstance(con, Renamed):
        name = con.name
        inner_doc = getattr(con, "docs", "") or doc
        # `"x" / Int8ub * "doc"` nests two Renamed of one name: take the name once
        if isinstance(con.subcon, Renamed) and con.subcon.name == name:
            name = None
        _walk(con.subcon, path + (name,) if name else path, inner_doc, out, tag)
    elif isinstance(con, Struct):
        for sub in con.subcons:
            _walk(sub, path, "", out, tag)
    elif isinstance(con, Const):
        if isinstance(con.value, bytes):
            out.append(Field(path, f"{len(con.value)}s", doc, con.value))
        else:
            out.append(Field(path, _code(con.subcon), doc, con.value))
    elif isinstance(con, FormatField):
        out.append(Field(path, _code(con), doc))
    elif isinstance(con, Array):
        for i in range(con.count):
            _walk(con.subcon, path + (i,), doc, out, tag)
    elif isinstance(con, Padded) and con.subcon is Pass:
        tag.append(con.length)  # Padding(n): the command tag's place
    elif con is Tell or con is Terminated or isinstance(con, Pointer):
        pass  # positions, the tag's checksum (verified separately) and the no-trailing-bytes rule
    else:
        raise TypeError(f"layout walker cannot express {con!r} at {path}")


def _code(con) -> str:
    fmt = con.fmtstr
    code = {"L": "I", "l": "i"}.get(fmt[1:], fmt[1:])  # construct spells 32-bit as L/l
    if fmt[0] != ">" or code not in CODE_RANGES:
        raise TypeError(f"unsupported field format {fmt!r}")
    return code


def _layouts_of(name: str, kind: int, frame: Struct) -> list:
    """One layout, or one per case when the frame holds a Switch (command arguments)."""
    subcons = frame.subcons
    for i, sub in enumerate(subcons):
        if isinstance(sub, Renamed) and isinstance(sub.subcon, Switch):
            cases = sub.subcon.cases
            return [
                _layout(
                    f"{name}_{uplink.CommandType(ctype).name.lower()}",
                    kind,
                    int(ctype),
                    subcons[:i] + [sub.name / cases[ctype]] + subcons[i + 1 :],
                )
                for ctype in sorted(cases)
            ]
    return [_layout(name, kind, None, subcons)]


def _layout(name: str, kind: int, command_type, subcons) -> Layout:
    fields: list = []
    tag: list = []
    for sub in subcons:
        _walk(sub, (), "", fields, tag)
    return Layout(name, kind, command_type, tuple(fields), sum(tag))


def layouts() -> list:
    """Every fixed-size frame shape of the uplink protocol, in kind then command-type order."""
    result = []
    for kind, frame in uplink.FRAMES.items():
        result += _layouts_of(kind.name.lower(), int(kind), frame)
    return result


def layout(name: str) -> Layout:
    for lay in layouts():
        if lay.name == name:
            return lay
    raise KeyError(name)


def command_layouts() -> dict:
    return {lay.command_type: lay for lay in layouts() if lay.command_type is not None}


def to_container(lay: Layout, values) -> dict:
    """Flat values (decoder order) -> the nested dict construct builds from and parses to."""
    root: dict = {}
    for f, v in zip(lay.fields, _with_consts(lay, values), strict=True):
        _put(root, f.path, v)
    return root


def from_container(lay: Layout, container) -> tuple:
    """Nested construct container -> flat values in decoder order."""
    out = []
    for f in lay.values:
        node = container
        for part in f.path:
            node = node[part]
        out.append(node)
    return tuple(out)


def _with_consts(lay: Layout, values):
    it = iter(values)
    return [f.const if f.const is not None else next(it) for f in lay.fields]


def _put(root: dict, path: tuple, value) -> None:
    node = root
    for part, nxt in zip(path, path[1:], strict=False):
        if isinstance(nxt, int):
            node = node.setdefault(part, [])
        elif isinstance(part, int):
            while len(node) <= part:
                node.append({})
            node = node[part]
        else:
            node = node.setdefault(part, {})
    last = path[-1]
    if isinstance(last, int):
        while len(node) <= last:
            node.append(None)
        node[last] = value
    else:
        node[last] = value
