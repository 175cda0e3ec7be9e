"""RS-485 boards (ESP32, RP2): the hardware under the runtime (relaypump/runtime.py).

``Rs485Board`` holds what ESP32 and RP2 share; boards/esp32.py and boards/rp2.py only name the
UART and the pins. Nothing here is testable off the board (it needs ``machine``), so it stays thin:
every decision lives in the runtime, which tests drive with a test double of this interface:

    ticks_ms() ticks_us() ticks_add(t, d) ticks_diff(a, b)    time module
    wait_us(us) -> True      until a byte waits on the UART or us have passed (select.poll on the
                             UART, ms resolution; below 1 ms, or with no UART open, time.sleep_us)
    open_bus(baud, parity)   machine.UART, 8 data bits, parity "N"/"E"/"O" (Modbus RTU keeps 11 bits
                             a character: no parity -> 2 stop bits), non-blocking reads
    read_into(buf) -> int    what the UART holds, at most len(buf) bytes, 0 when nothing
    send(frame)              RS-485 half duplex: DE high, write, wait until the last stop bit has
                             left the shift register (uart.flush() + uart.txdone(), else the frame
                             time from the baud), DE low. Blocks for the frame time (7 ms for 13
                             bytes at 19200 baud); the devices answer only after 3.5 characters.
    feed(), wdt_timeout_ms   machine.WDT, started in __init__ (it cannot be stopped again)
    fs, open                 the os module and the builtin open (littlefs on both boards)
    reset_cause() -> str     "power-on", "watchdog", "hard", "soft", "deep-sleep"
    log(text), reset()       console line; machine.reset()
    run(runtime)             main.py's last call: runtime.run_forever()

Wiring: the transceiver's DE and /RE are tied together to the DE pin, so the board does not hear
its own frames; DE is driven low from construction on (the bus stays free while no config is
accepted). Neither port exposes the UART's hardware RS-485 mode to MicroPython, hence the GPIO.
The watchdog timeout is 8 s: below RP2's maximum (8388 ms), above the control period (the runtime
refuses a pid.period_ms over half of it) plus the longest blocking step (a state save).
"""

import os
import select
import time

import machine

WDT_TIMEOUT_MS = 8000
RX_BUFFER = 512  # the UART's ring buffer: a whole response waits there between two steps
_BITS_PER_CHAR = 11
_PARITY = {"N": None, "E": 0, "O": 1}
_RESET_CAUSES = (
    (machine.PWRON_RESET, "power-on"),
    (machine.HARD_RESET, "hard"),
    (machine.WDT_RESET, "watchdog"),
    (machine.DEEPSLEEP_RESET, "deep-sleep"),
    (machine.SOFT_RESET, "soft"),
)


class Rs485Board:
    NAME = ""
    UART_ID = 0
    TX = 0
    RX = 1
    DE = 2

    def __init__(self, wdt_timeout_ms=WDT_TIMEOUT_MS):
        self.de_pin = machine.Pin(self.DE, machine.Pin.OUT, value=0)
        self.uart = None
        self.wdt_timeout_ms = wdt_timeout_ms
        self.wdt = machine.WDT(timeout=wdt_timeout_ms)
        self.fs = os
        self.open = open
        self.ticks_ms = time.ticks_ms
        self.ticks_us = time.ticks_us
        self.ticks_add = time.ticks_add
        self.ticks_diff = time.ticks_diff
        self._poll = select.poll()
        self._char_us = 573

    def open_bus(self, baud, parity):
        if parity not in _PARITY:
            raise ValueError("bus.parity: %r is not N, E or O" % parity)
        self.uart = machine.UART(
            self.UART_ID,
            baudrate=baud,
            bits=8,
            parity=_PARITY[parity],
            stop=2 if parity == "N" else 1,
            tx=machine.Pin(self.TX),
            rx=machine.Pin(self.RX),
            rxbuf=RX_BUFFER,
            timeout=0,
            timeout_char=0,
        )
        self._char_us = (_BITS_PER_CHAR * 1000000 + baud - 1) // baud
        self._poll.register(self.uart, select.POLLIN)

    def wait_us(self, us):
        if us < 1000 or self.uart is None:  # below poll's resolution, or no UART to wake us
            time.sleep_us(us)
        else:
            self._poll.poll(us // 1000)  # returns early when a byte arrives
        return True

    def read_into(self, buf):
        uart = self.uart
        if uart is None:
            return 0
        waiting = uart.any()
        if not waiting:
            return 0
        n = uart.readinto(buf, waiting if waiting < len(buf) else len(buf))
        return n or 0

    def send(self, frame):
        uart = self.uart
        if uart is None:
            return
        frame_us = len(frame) * self._char_us
        self.de_pin.value(1)
        start = time.ticks_us()
        uart.write(frame)
        uart.flush()  # until the software and hardware FIFOs are empty
        # txdone: also the shift register (the last stop bit); bounded by twice the frame time.
        while not uart.txdone():
            if time.ticks_diff(time.ticks_us(), start) > 2 * frame_us + self._char_us:
                break
        self.de_pin.value(0)

    def feed(self):
        self.wdt.feed()

    def reset_cause(self):
        cause = machine.reset_cause()
        for code, name in _RESET_CAUSES:
            if cause == code:
                return name
        return "code %d" % cause

    def log(self, text):
        print(text)

    def reset(self):
        machine.reset()

    def run(self, runtime):
        """main.py's last call: the runtime's loop, for ever (Ctrl-C or an exception ends it)."""
        runtime.run_forever()
