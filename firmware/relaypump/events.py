"""The agent's event ring: a fixed number of events waiting for the uplink, allocated once.

Rules:
- An event is (code, severity, subject, value, at_ms): code an EVENT_* of codes.py, severity a
  SEVERITY_*, subject 0 = station or 1..3 = pump number, value a signed 32-bit integer whose unit
  and scale depend on the code (protocol/uplink.py EVENT_VALUE), at_ms the tick it happened.
- ``push`` never allocates and never fails: when the ring is full the oldest event is overwritten
  and counted in ``dropped``. Values outside int32 are clamped, severity and subject are masked to a
  byte, at_ms is kept modulo 2**30 (a ticks value).
- The uplink reads the oldest event with ``peek_into`` (no allocation) or ``peek`` / ``pop``
  (a tuple), and removes it with ``discard`` once it has been published. ``peek_into(out, k)``
  reads the k-th oldest without removing anything (a recorder of the simulator).
"""

from array import array

_INT32_MAX = 0x7FFFFFFF
_INT32_MIN = -0x80000000
_TICKS_MASK = 0x3FFFFFFF


class EventRing:
    def __init__(self, capacity=32):
        if capacity < 1:
            raise ValueError("event ring capacity must be at least 1")
        self.capacity = capacity
        self._code = array("H", [0] * capacity)
        self._severity = bytearray(capacity)
        self._subject = bytearray(capacity)
        self._value = array("i", [0] * capacity)
        self._at = array("i", [0] * capacity)
        self._head = 0  # index of the oldest event
        self.count = 0  # events waiting
        self.dropped = 0  # events overwritten before the uplink took them
        self.pushed = 0  # events pushed since start (the uplink may use it as an event serial)

    def push(self, code, severity, subject, value, at_ms):
        cap = self.capacity
        if self.count == cap:
            self._head = (self._head + 1) % cap  # overwrite the oldest
            self.dropped += 1
        else:
            self.count += 1
        i = (self._head + self.count - 1) % cap
        if value > _INT32_MAX:
            value = _INT32_MAX
        elif value < _INT32_MIN:
            value = _INT32_MIN
        self._code[i] = code & 0xFFFF
        self._severity[i] = severity & 0xFF
        self._subject[i] = subject & 0xFF
        self._value[i] = value
        self._at[i] = at_ms & _TICKS_MASK
        self.pushed += 1

    def peek_into(self, out, index=0):
        """Copy the oldest event (or the index-th oldest waiting) into out[0..4] (a 5-slot
        list); False when there is no such event."""
        if not 0 <= index < self.count:
            return False
        i = (self._head + index) % self.capacity
        out[0] = self._code[i]
        out[1] = self._severity[i]
        out[2] = self._subject[i]
        out[3] = self._value[i]
        out[4] = self._at[i]
        return True

    def peek(self):
        """The oldest event as (code, severity, subject, value, at_ms), or None."""
        if not self.count:
            return None
        i = self._head
        return (self._code[i], self._severity[i], self._subject[i], self._value[i], self._at[i])

    def discard(self):
        """Remove the oldest event (after the uplink published it); False when empty."""
        if not self.count:
            return False
        self._head = (self._head + 1) % self.capacity
        self.count -= 1
        return True

    def pop(self):
        event = self.peek()
        if event is not None:
            self.discard()
        return event

    def clear(self):
        self._head = 0
        self.count = 0
