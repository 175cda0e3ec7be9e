"""The virtual board of CI: the agent's runtime in the MicroPython WebAssembly VM, run by a host.

host_tools/deploy/virtual_board.py runs the VM behind a pty that serves the REPL (mpremote deploys
to it as to a board) and a second pty that is the board's RS-485 UART. It boots main.py from the
board's "flash" (a host directory copied into the VM's file system), and main.py picks this file
for sys.platform "webassembly". What differs from boards/rs485.py and why:

- The loop: ``run(runtime)`` does not loop. In this VM memory is collected only when control
  returns to JavaScript, and ``time.sleep_us`` busy-waits, so the host calls ``step(rx)`` again
  and again: one ``runtime.step()`` with the bytes its bus pty received since the last call; it
  writes the frame ``send`` queued to the pty and waits the us the step returned, or until a
  byte arrives (which is what ``wait_us`` means; the host does it, so ``wait_us`` here is only
  the interface's busy-wait for a caller of ``runtime.run_forever``).
- UART: ``read_into`` hands out the bytes of the current step, ``send`` queues a frame. DE and the
  frame time do not exist: the host writes the frame at once. Parity is recorded, not applied (a
  pty carries none).
- Clock: time.ticks_ms / ticks_us of the VM, real time (ticks_us has 1 ms resolution there).
- Watchdog: ``feed`` counts; the host resets the VM when ``wdt_timeout_ms`` passes without a feed
  once the board exists (it cannot be stopped, as on hardware; a hard reset stops it).
- Reset and reset cause: the host's ``machine`` stand-in (host_tools/deploy/vm_side/machine.py).
- Storage: the VM's file system; the host copies it back to its flash directory before a reset.

``step`` returns ``<I wait_us><B flags>`` + the frame; flags: 1 the watchdog was fed, 2 the runtime
raised (the exception is in ``failure``; the host hands it to main.py's ``fatal``).
"""

import os
import struct
import time

WDT_TIMEOUT_MS = 8000
FED = 1
FAILED = 2
_PARITIES = ("N", "E", "O")

board = None  # the one board of this VM, and the runtime main.py handed over
runtime = None
failure = None


class Board:
    NAME = "virtual"

    def __init__(self, wdt_timeout_ms=WDT_TIMEOUT_MS):
        global board
        self.wdt_timeout_ms = wdt_timeout_ms
        self.fs = os
        self.open = open
        self.ticks_ms = time.ticks_ms
        self.ticks_us = time.ticks_us
        self.ticks_add = time.ticks_add
        self.ticks_diff = time.ticks_diff
        self.feeds = 0
        self.baud = 0
        self.parity = ""
        self.tx = bytearray()
        self._rx = b""
        self._rx_pos = 0
        board = self

    def wait_us(self, us):
        time.sleep_us(us)
        return True

    def open_bus(self, baud, parity):
        if parity not in _PARITIES:
            raise ValueError("bus.parity: %r is not N, E or O" % parity)
        self.baud = baud
        self.parity = parity

    def read_into(self, buf):
        if not self.baud:
            return 0
        pos = self._rx_pos
        n = len(self._rx) - pos
        if n > len(buf):
            n = len(buf)
        if n <= 0:
            return 0
        buf[:n] = self._rx[pos : pos + n]
        self._rx_pos = pos + n
        return n

    def send(self, frame):
        if self.baud:
            self.tx.extend(frame)

    def feed(self):
        self.feeds += 1

    def reset_cause(self):
        import machine

        cause = machine.reset_cause()
        for code, name in (
            (machine.PWRON_RESET, "power-on"),
            (machine.HARD_RESET, "hard"),
            (machine.WDT_RESET, "watchdog"),
            (machine.SOFT_RESET, "soft"),
        ):
            if cause == code:
                return name
        return "code %d" % cause

    def log(self, text):
        print(text)

    def reset(self):
        import machine

        machine.reset()

    def run(self, rt):
        """Hand the runtime to the host, which steps it (see the module docstring)."""
        global runtime
        runtime = rt


def step(rx):
    """One host call: the bytes received since the last call -> wait, flags and the frame to send."""
    global failure
    b = board
    rt = runtime
    if b is None or rt is None:
        return struct.pack("<IB", 1000000, 0)
    if b._rx_pos < len(b._rx):  # a UART keeps what was not read yet
        rx = b._rx[b._rx_pos :] + rx
    b._rx = rx
    b._rx_pos = 0
    feeds = b.feeds
    flags = 0
    wait = 0
    try:
        wait = rt.step()
    except Exception as err:
        failure = err
        flags = FAILED
    if b.feeds != feeds:
        flags |= FED
    out = struct.pack("<IB", wait, flags)
    if b.tx:
        out += b.tx
        b.tx = bytearray()
    return out
