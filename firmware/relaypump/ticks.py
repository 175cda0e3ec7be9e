"""Millisecond ticks, as time.ticks_ms() gives them: a counter modulo 2**30 (small ints only).

Every module that measures time takes `now_ms` as such a ticks value and compares two of them only
through ticks_diff, so deadlines, delays and rates survive the wrap every 12.4 days (and virtual
clocks that wrap the same way).
"""

from micropython import const

TICKS_PERIOD = const(0x40000000)
TICKS_MASK = const(0x3FFFFFFF)
TICKS_HALF = const(0x20000000)


def ticks_diff(a, b):
    """a - b in ms, for ticks less than half a period apart (like time.ticks_diff)."""
    return ((a - b + TICKS_HALF) & TICKS_MASK) - TICKS_HALF
