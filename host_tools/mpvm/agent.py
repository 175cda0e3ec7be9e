"""Request dispatcher that runs INSIDE the MicroPython VM (vm.mjs loads it; not firmware).

Rules:
- MicroPython only (no typing, no f-strings needed); allocate as little as possible per request.
- No exception may escape to the port's C glue: formatting an uncaught exception there allocates,
  and running out of heap at that point hangs the VM. Every entry point catches everything and
  returns an int (or a str that already exists), and a failure is described by a second entry,
  after the GC has had a chance to collect.
- Payload bytes come from /dev/mpvm_data and results go back through it; heap figures
  (gc.mem_alloc() before / after the user code, little-endian u32 each) go to /dev/mpvm_meta.
- Inside one entry the GC does not collect, so the "after" figure is the peak of that request.
"""

import gc
import io
import json
import struct
import sys

# The port's gc.mem_free() adds the size the split heap could still grow by (128 MiB). With the
# heap capped by vm.mjs that space does not exist, so the `gc` module seen by user code reports
# the real free heap, as on a board.
_SPLIT_HEADROOM = 128 * 1024 * 1024

OK = 0
FAILED = 1

_data = open("/dev/mpvm_data", "r+b")
_meta = open("/dev/mpvm_meta", "wb")
_figures = bytearray(8)
_failure = None
namespace = {"__name__": "__main__"}


def _true_free():
    free = gc.mem_free()
    return free - _SPLIT_HEADROOM if free >= _SPLIT_HEADROOM else free


def setup(paths):
    """Put `paths` first on sys.path and install the corrected `gc` view for user code."""
    for p in reversed(paths):
        sys.path.insert(0, p)
    sys.path.insert(0, "/.mpvm")
    try:
        import mpvm_gc

        mpvm_gc.mem_free = _true_free
        sys.modules["gc"] = mpvm_gc
    finally:
        sys.path.pop(0)


def _resolve(name):
    parts = name.split(".")
    if parts[0] in namespace:
        obj = namespace[parts[0]]
    else:
        obj = __import__(parts[0])
    for part in parts[1:]:
        obj = getattr(obj, part)
    return obj


def _run(op, n, with_data, fn_name):
    if op == 1:
        exec(compile(_data.read(n), "<exec>", "exec"), namespace)
        return None
    if op == 2:
        return eval(compile(_data.read(n), "<eval>", "eval"), namespace)
    if op == 3:
        fn = _resolve(fn_name)
        return fn(_data.read(n)) if with_data else fn()
    if op == 4:
        namespace.clear()
        namespace["__name__"] = "__main__"
        return None
    if op == 5:
        return None
    raise ValueError("unknown op")


def dispatch(op, n, with_data, fn_name, measure):
    """Serve one request; return OK or FAILED (then call describe())."""
    global _failure
    before = gc.mem_alloc() if measure else 0
    try:
        result = _run(op, n, with_data, fn_name)
        after = gc.mem_alloc() if measure else 0
        if op == 2:
            _data.write(json.dumps(result))
        elif op == 3 and result is not None:
            if not isinstance(result, (bytes, bytearray, memoryview)):
                raise TypeError("call target must return bytes-like or None")
            _data.write(result)
        elif op == 5:
            alloc = gc.mem_alloc()
            _data.write(json.dumps({"alloc": alloc, "free": _true_free()}))
    except BaseException as exc:  # noqa: B036 - everything must be caught here, see the docstring
        after = gc.mem_alloc() if measure else 0
        _failure = exc
        status = FAILED
    else:
        status = OK
    if measure:
        struct.pack_into("<II", _figures, 0, before, after)
        _meta.write(_figures)
    return status


def describe():
    """Return "<type>\\x04<traceback>" for the last failure, or just the type if that won't fit."""
    global _failure
    exc = _failure
    _failure = None
    if exc is None:
        return "RunnerError"
    try:
        buf = io.StringIO()
        sys.print_exception(exc, buf)
        return type(exc).__name__ + "\x04" + buf.getvalue()
    except BaseException:  # noqa: B036 - out of heap again: the type name needs no allocation
        return type(exc).__name__


def collect():
    """Schedule a collection; the port runs it when this entry returns to JS."""
    gc.collect()
    return 0
