"""The board of the simulator: relaypump/runtime.py's board (see there) in virtual time.

MicroPython code: the same class runs in CPython (host_tools/sim/agent_controller.py) and inside
the MicroPython VM (host_tools/sim/vm_controller.py, vm_side/lockstep.py), so both runs make the
same runtime steps at the same virtual instants. Not firmware: no board ships it.

Rules:
- Clock: virtual time as whole ms (``ms``) plus the us within that ms (``sub``), and a us ticks
  counter (``us``, wraps at 2**30 as a board's). Small ints only: the VM's small ints hold 30 bits
  (a day in us does not fit), so the clock allocates nothing.
- Time slices: the host lets the loop run up to a slice end (``due(end_ms, end_sub)``, then
  ``runtime.run_forever()``); ``wait_us`` returns False (the loop pauses) when the wait would reach
  the slice end, keeping the wake time (``wake_ms``, ``wake_sub``) for the next slice. A wait ends
  early when a response becomes readable.
- UART: ``send`` takes the frame's wire time (11 bits a character, rounded up to us). With a
  ``wire`` (CPython) the frame goes on the simulated bus at once; without one (the VM) it is kept
  in ``out`` and the loop pauses until the host has carried it (``carried``). Either way the host
  gives back the response with the instant its last byte has arrived (``respond``): the response is
  readable from then on, whole (a UART's receive timeout hands a frame over when the line falls
  silent), never before, never in parts.
- Watchdog: ``feed`` notes the time; a jump of the clock past ``wdt_timeout_ms`` since the last
  feed raises WatchdogExpired, as the hardware would reset the board.
- Storage: the ``fs`` and ``open`` given (an in-memory file system in CPython, the VM's MEMFS).
- Uplink (optional; station_uplink.py): ``net_link`` and ``ntp_link`` hand out what the host put
  in ``network`` (a function of the session and the mqtt section giving a link, e.g. netio.Link
  to a test's Mosquitto: real sockets stepped at virtual instants) and ``time_source`` (a
  function of the wall clock giving an object with step(now_ms), e.g. the virtual wall time);
  None: no network, no time (the VM).
"""

import sys

MASK = 0x3FFFFFFF
HALF = 0x20000000
WDT_TIMEOUT_MS = 8000
_BUF = 256
_CPYTHON = sys.implementation.name != "micropython"


def ticks_add(t, delta):
    return (t + delta) & MASK


def ticks_diff(a, b):
    d = a - b
    if -HALF <= d < HALF:  # the wrap leaves it as it is: no arithmetic (the loop's every step)
        return d
    return ((d + HALF) & MASK) - HALF


class WatchdogExpired(Exception):
    """No watchdog feed for longer than its timeout: a board would have been reset."""


class SimBoard:
    def __init__(self, fs, opener, wire=None, wdt_timeout_ms=WDT_TIMEOUT_MS):
        self.fs = fs
        self.open = opener
        self.wire = wire
        self.wdt_timeout_ms = wdt_timeout_ms
        self.ticks_add = ticks_add  # plain functions, as a board binds time.ticks_add
        self.ticks_diff = ticks_diff
        self.ms = 0
        self.sub = 0
        self.us = 0
        self.wake_ms = 0
        self.wake_sub = 0
        self.end_ms = 0
        self.end_sub = 0
        self.baud = 0
        self.parity = ""
        self.rx = bytearray(_BUF)  # the response waiting in the UART
        self.rx_len = 0
        self.rx_pos = 0
        self.rx_ms = -1  # readable from (rx_ms, rx_sub); -1: nothing coming
        self.rx_sub = 0
        self.out = bytearray(_BUF)  # the frame waiting for the host (no wire)
        self.out_len = 0
        self.out_ms = 0  # its first bit
        self.out_sub = 0
        self.fed_ms = 0
        self.feeds = 0
        self.frames = 0
        self.logs = []
        self.network = None  # the uplink's link and time source (module rules)
        self.time_source = None

    # -- clock ------------------------------------------------------------------------------------

    def ticks_ms(self):
        return self.ms & MASK

    def ticks_us(self):
        return self.us

    def _go(self, ms, sub):
        """Move the clock forward to (ms, sub)."""
        self.us = (self.us + (ms - self.ms) * 1000 + sub - self.sub) & MASK
        self.ms = ms
        self.sub = sub
        if ms - self.fed_ms > self.wdt_timeout_ms:
            raise WatchdogExpired(f"no watchdog feed since {self.fed_ms} ms, now {ms} ms")

    def due(self, end_ms, end_sub):
        """Start a slice that ends at (end_ms, end_sub): True when the loop has something to do
        before; the clock then stands at its wake time (its own, or a response's arrival)."""
        self.end_ms = end_ms
        self.end_sub = end_sub
        ms = self.wake_ms
        sub = self.wake_sub
        if self.rx_ms >= 0 and (self.rx_ms < ms or (self.rx_ms == ms and self.rx_sub < sub)):
            ms = self.rx_ms
            sub = self.rx_sub
        self.wake_ms = ms
        self.wake_sub = sub
        if ms > end_ms or (ms == end_ms and sub >= end_sub):
            return False
        self._go(ms, sub)
        return True

    def wait_us(self, us):
        sub = self.sub + us
        ms = self.ms + sub // 1000
        sub %= 1000
        rx_ms = self.rx_ms
        if rx_ms >= 0 and (rx_ms < ms or (rx_ms == ms and self.rx_sub < sub)):
            ms = rx_ms
            sub = self.rx_sub
        if self.out_len or ms > self.end_ms or (ms == self.end_ms and sub >= self.end_sub):
            self.wake_ms = ms  # the slice is over, or a frame waits for the host
            self.wake_sub = sub
            return False
        # _go(ms, sub), inline: this is the loop's every step
        self.us = (self.us + (ms - self.ms) * 1000 + sub - self.sub) & MASK
        self.ms = ms
        self.sub = sub
        if ms - self.fed_ms > self.wdt_timeout_ms:
            raise WatchdogExpired(f"no watchdog feed since {self.fed_ms} ms, now {ms} ms")
        return True

    # -- UART -------------------------------------------------------------------------------------

    def open_bus(self, baud, parity):
        self.baud = baud
        self.parity = parity

    def send(self, frame):
        n = len(frame)
        start_ms = self.ms
        start_sub = self.sub
        sub = start_sub + (n * 11000000 + self.baud - 1) // self.baud
        ms = start_ms + sub // 1000
        sub %= 1000
        # _go(ms, sub), inline: every frame
        self.us = (self.us + (ms - start_ms) * 1000 + sub - start_sub) & MASK
        self.ms = ms
        self.sub = sub
        if ms - self.fed_ms > self.wdt_timeout_ms:
            raise WatchdogExpired(f"no watchdog feed since {self.fed_ms} ms, now {ms} ms")
        self.frames += 1
        self.rx_len = 0
        self.rx_ms = -1
        if self.wire is not None:
            self.wire(self, frame, start_ms, start_sub)
            return
        out = self.out
        for i in range(n):
            out[i] = frame[i]
        self.out_len = n
        self.out_ms = start_ms
        self.out_sub = start_sub

    def carried(self):
        """The host has put the waiting frame on its bus."""
        self.out_len = 0

    def respond(self, data, start, n, ms, sub):
        """The response data[start:start + n] is readable from (ms, sub) on."""
        if _CPYTHON:
            self.rx[:n] = data if start == 0 and n == len(data) else data[start : start + n]
        else:  # no slice objects in the VM
            rx = self.rx
            for i in range(n):
                rx[i] = data[start + i]
        self.rx_len = n
        self.rx_pos = 0
        self.rx_ms = ms
        self.rx_sub = sub

    def read_into(self, buf):
        if (
            self.rx_ms < 0
            or self.rx_ms > self.ms
            or (self.rx_ms == self.ms and self.rx_sub > self.sub)
        ):
            return 0
        pos = self.rx_pos
        n = self.rx_len - pos
        if n > len(buf):
            n = len(buf)
        if _CPYTHON:
            buf[:n] = self.rx[pos : pos + n]
        else:  # no slice objects in the VM
            rx = self.rx
            for i in range(n):
                buf[i] = rx[pos + i]
        pos += n
        self.rx_pos = pos
        if pos >= self.rx_len:
            self.rx_ms = -1
        return n

    # -- the rest of a board ----------------------------------------------------------------------

    def feed(self):
        self.fed_ms = self.ms
        self.feeds += 1

    def reset_cause(self):
        return "power-on"

    def log(self, text):
        self.logs.append(text)

    def net_link(self, session, cfg):
        return None if self.network is None else self.network(session, cfg)

    def ntp_link(self, clock, cfg):
        return None if self.time_source is None else self.time_source(clock)
