"""``micropython`` for CPython: the firmware's MicroPython-only names, so it imports unchanged.

Installed as the top-level package ``micropython`` (pyproject.toml maps it from here; CPython
only: MicroPython has the built-in module, and mypy reads its stubs). What each does on CPython:
``const(x)`` is x; the code emitters ``native``, ``viper`` and ``bytecode`` leave the function as
it is; ``heap_lock`` / ``heap_unlock`` / ``heap_locked`` count a lock depth and lock nothing;
``mem_info``, ``qstr_info`` and ``stack_use`` report nothing meaningful (0, empty lines);
``opt_level`` keeps a level; ``alloc_emergency_exception_buf`` and ``kbd_intr`` do nothing;
``schedule(f, arg)`` calls f(arg) at once (there are no interrupts to wait for).
"""

_heap_lock_depth = 0
_opt_level = 0


def const(x):
    return x


def native(f):
    return f


def viper(f):
    return f


def bytecode(f):
    return f


def heap_lock():
    global _heap_lock_depth
    _heap_lock_depth += 1
    return _heap_lock_depth - 1


def heap_unlock():
    global _heap_lock_depth
    if _heap_lock_depth:
        _heap_lock_depth -= 1
    return _heap_lock_depth


def heap_locked():
    return _heap_lock_depth


def mem_info(verbose=None):
    print("mem: CPython, no MicroPython heap")


def qstr_info(verbose=None):
    print("qstr: CPython, no qstr pool")


def stack_use():
    return 0


def opt_level(level=None):
    global _opt_level
    if level is None:
        return _opt_level
    _opt_level = level
    return None


def alloc_emergency_exception_buf(size):
    return None


def kbd_intr(chr):
    return None


def schedule(func, arg):
    func(arg)
