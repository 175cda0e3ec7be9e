"""The layout of a bytecode .mpy file (format 6, MicroPython >= 1.22) and its "code only" twin.

``code_only(data)`` returns the same .mpy with the module's own bytecode made to return at once:
importing it loads everything a module's code is (qstrs, constants, every function's and class
body's bytecode) and creates nothing the module body would (no functions, classes, tables,
imports). Nothing then refers to the loaded functions, so a collection frees them again: the
heap at the end of that import, before any collection, minus ``body_size`` (the module body's
own bytecode, garbage after any import) is the code's share; ``run_once`` lists the module body
and its class bodies, the code every import drops again. host_tools/bench/vm_boot.py weighs
it so, as what a board with the modules frozen into its firmware keeps in flash instead.

Layout (py/persistentcode.c): header ``M``, version 6, feature byte (0 for bytecode: no
architecture), small-int bits; varuint qstr count and object count; the qstr table; the object
table; the outer raw code: varuint ``len << 3 | has_children << 2 | kind``, the function data
(prelude, then opcodes), children count and children, recursively. Parsing must end exactly at
the end of the file (checked), so a misread layout fails instead of patching the wrong bytes.
"""

from __future__ import annotations

RETURN_NONE = bytes((0x51, 0x63))  # LOAD_CONST_NONE, RETURN_VALUE
_OBJ_SINGLETONS = (0, 1, 2, 3, 4)  # fun table, None, False, True, Ellipsis: no payload
_OBJ_STR, _OBJ_BYTES, _OBJ_TUPLE = 5, 6, 10


class MpyFormatError(ValueError):
    pass


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def byte(self) -> int:
        if self.pos >= len(self.data):
            raise MpyFormatError("truncated .mpy")
        b = self.data[self.pos]
        self.pos += 1
        return b

    def uint(self) -> int:
        value = 0
        while True:
            b = self.byte()
            value = (value << 7) | (b & 0x7F)
            if not b & 0x80:
                return value

    def skip(self, n: int) -> None:
        if self.pos + n > len(self.data):
            raise MpyFormatError("truncated .mpy")
        self.pos += n


def _skip_obj(r: _Reader) -> None:
    kind = r.byte()
    if kind in _OBJ_SINGLETONS:
        return
    n = r.uint()
    if kind == _OBJ_TUPLE:
        for _ in range(n):
            _skip_obj(r)
        return
    r.skip(n)
    if kind in (_OBJ_STR, _OBJ_BYTES):
        r.skip(1)  # NUL


def _opcodes_offset(fun: bytes) -> int:
    """Offset of the first opcode in a function's data (after the prelude)."""
    i = 0
    while fun[i] & 0x80:  # signature, continued while the top bit is set
        i += 1
    i += 1
    n_info = n_cell = shift = 0
    while True:  # size: xIIIIIIC per byte
        z = fun[i]
        i += 1
        n_cell |= (z & 1) << shift
        n_info |= ((z & 0x7E) >> 1) << (6 * shift)
        if not z & 0x80:
            break
        shift += 1
    return i + n_info + n_cell


def _raw_code(r: _Reader, into: list | None = None) -> None:
    """Skip one raw code and its children; with `into`, list its direct children as
    (offset, length, children count) of their function data."""
    kind_len = r.uint()
    if kind_len & 3:
        raise MpyFormatError("native code in the .mpy: only bytecode is handled")
    start = r.pos
    r.skip(kind_len >> 3)
    n_children = r.uint() if kind_len & 4 else 0
    if into is not None:
        into.append((start, kind_len >> 3, n_children))
    for _ in range(n_children):
        _raw_code(r)


def _layout(data: bytes) -> tuple[int, int, list[tuple[int, int, int]]]:
    """(offset, length) of the module body's function data and its direct children; the whole
    file is parsed."""
    r = _Reader(data)
    if r.byte() != ord("M") or r.byte() != 6:
        raise MpyFormatError("not an .mpy of format 6")
    if r.byte() != 0:
        raise MpyFormatError("an .mpy for a native architecture: only bytecode is handled")
    r.byte()  # small-int bits
    n_qstr, n_obj = r.uint(), r.uint()
    for _ in range(n_qstr):
        n = r.uint()
        if not n & 1:  # odd: a static qstr's index; even: length << 1, the text, NUL
            r.skip((n >> 1) + 1)
    for _ in range(n_obj):
        _skip_obj(r)
    kind_len = r.uint()
    if kind_len & 3:
        raise MpyFormatError("native code in the .mpy: only bytecode is handled")
    start = r.pos
    r.skip(kind_len >> 3)
    children: list[tuple[int, int, int]] = []
    for _ in range(r.uint() if kind_len & 4 else 0):
        _raw_code(r, children)
    if r.pos != len(data):
        raise MpyFormatError("unparsed bytes at the end of the .mpy")
    return start, kind_len >> 3, children


def body_size(data: bytes) -> int:
    """Bytes of the module body's own function data (prelude and opcodes)."""
    return _layout(data)[1]


def _is_class_body(fun: bytes) -> bool:
    """A class body begins __module__ = __name__; __qualname__ = "Name" (LOAD_NAME, STORE_NAME,
    LOAD_CONST_STRING, STORE_NAME, each with a varuint qstr index); a function never LOAD_NAMEs."""
    i = _opcodes_offset(fun)
    for opcode in (0x11, 0x16, 0x10, 0x16):
        if i >= len(fun) or fun[i] != opcode:
            return False
        i += 1
        while i < len(fun) and fun[i] & 0x80:
            i += 1
        i += 1
    return True


def run_once(data: bytes) -> list[tuple[int, int]]:
    """(function data length, children count) of the code an import runs once and then drops:
    the module body, then each class body it runs (its methods keep only their own code)."""
    start, size, children = _layout(data)
    bodies = [(size, len(children))]
    for child_start, child_size, n in children:
        if _is_class_body(data[child_start : child_start + child_size]):
            bodies.append((child_size, n))
    return bodies


def code_only(data: bytes) -> bytes:
    """The .mpy with its module body replaced by ``return None`` (same length, same children)."""
    start, size, _ = _layout(data)
    at = start + _opcodes_offset(data[start : start + size])
    if at + len(RETURN_NONE) > start + size:
        raise MpyFormatError("module body shorter than return None")
    return data[:at] + RETURN_NONE + data[at + len(RETURN_NONE) :]
