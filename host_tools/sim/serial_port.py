"""The simulated devices on a real serial port (pyserial): a board on a bench controls the plant.

The plant runs in real time; the drives and the I/O module answer on the port through the
station's bus (bus.SimulatedBus.exchange), the same RtuSlaves and the same faults as in-process:
a unit cut off (drive_comm_loss) stays silent, CRC noise corrupts a request or a response at the
scenario's probability. A USB-RS-485 adapter on a bench, a pty in the tests.

Cutting requests out of the byte stream (RequestFramer; a UART gives no frame boundaries):
- RTU ends a frame with a silence of 3.5 character times. The bytes are read in chunks stamped
  with their arrival; a gap of at least that silence between two chunks is a boundary.
- At a frame start the request's size comes from its function: 8 bytes for 01-06, 9 + the byte
  count (7th byte) for 15/16. A candidate whose CRC is right is a request.
- Bytes before a boundary that do not make a request with what follows it (its CRC fails, or the
  bytes after the boundary already make one) are dropped as a whole: a lone stray byte or a cut
  frame is a frame of its own that nobody answers, and the next request is framed from the
  boundary. A request that spans a boundary with a right CRC is kept: a USB adapter can deliver
  one frame in two packets (its latency timer), which looks like a silence on the host.
- Without a boundary, a candidate whose CRC fails is not a request: drop its first byte and look
  again (resync); in the middle of a resync an unknown function byte is just dropped.
- A burst that starts at a frame start with an unknown function is held until the line is silent
  (or the next boundary), then handed over as one frame: the slaves answer exception 01 when its
  CRC is right and stay silent when it is not, like a real device.

Answering (SerialServer): a response leaves 3.5 character times plus the scenario's turnaround
after the request's last byte arrived, as a device answers (bus.py), never earlier: a board's
transceiver may still be driving the line right after its last byte.

The port (open_port): 8E1 at the scenario's baud, opened exclusively (a second ``pumpsim serve``
on the same device is refused instead of answering twice). A pty carries no parity and refuses
even parity once it has been configured (EINVAL: a second start on the same socat pty); on a pty
the server then uses N, the bytes are the same. Input left in the port from before is dropped.
"""

from __future__ import annotations

import errno
import os
import select
import sys
import termios
import time
from collections.abc import Callable

from host_tools.sim.bus import BITS_PER_CHAR, SimulatedBus
from host_tools.sim.hardware import SimulatedStation
from host_tools.sim.rtu_slave import RtuSlaves
from host_tools.sim.scenario import Scenario
from protocol.modbus import crc16

_FIXED = {1, 2, 3, 4, 5, 6}
_COUNTED = {15, 16}
MIN_FRAME = 4  # unit, function, CRC: anything shorter is noise, not a frame to answer
PTY_MAJORS = range(136, 144)  # Linux Unix98 pty slaves (/dev/pts/N)
MAX_WAIT_S = 0.005  # the longest the loop sleeps without a byte: it also steps the plant


class RequestFramer:
    def __init__(self, baud: int) -> None:
        self.silence_s = 3.5 * BITS_PER_CHAR / baud
        self.buffer = bytearray()
        self.last_byte_s = float("-inf")
        self.at_frame_start = True
        self.boundary = 0  # index in buffer of the first byte after a silence; 0: none
        self.discarded = 0

    def feed(self, data: bytes, now_s: float) -> list[bytes]:
        if data:
            if not self.buffer:
                if now_s - self.last_byte_s >= self.silence_s:
                    self.at_frame_start = True
            elif now_s - self.last_byte_s >= self.silence_s:
                if self.boundary:  # an older boundary still open: what came before it is given up
                    self._drop(self.boundary)
                self.boundary = len(self.buffer)
            self.buffer += data
            self.last_byte_s = now_s
        silent = now_s - self.last_byte_s >= self.silence_s
        frames: list[bytes] = []
        while self.buffer:
            size = self._size(0)
            b = self.boundary
            if size is None:  # too few bytes to know the size yet
                if b and self._request_at(b):
                    self._drop(b)
                    continue
                break
            if size < 0:  # unknown function
                if not self.at_frame_start:
                    self._drop(1)
                    continue
                end = b or (len(self.buffer) if silent else 0)
                if not end:
                    break
                if end < MIN_FRAME:
                    self._drop(end)
                else:
                    frames.append(bytes(self.buffer[:end]))
                    self._consume(end)
                continue
            if size <= len(self.buffer):
                if self._crc_ok(0, size):
                    frames.append(bytes(self.buffer[:size]))
                    self._consume(size)
                elif b and size > b:  # the bytes before the silence joined nothing
                    self._drop(b)
                else:
                    self._drop(1)
                continue
            if b and self._request_at(b):  # incomplete, but a request starts at the boundary
                self._drop(b)
                continue
            break
        return frames

    def _size(self, start: int) -> int | None:
        """Size of the request starting at `start`; None: not known yet; -1: unknown function."""
        buf = self.buffer
        if len(buf) - start < 2:
            return None
        function = buf[start + 1]
        if function in _FIXED:
            return 8
        if function in _COUNTED:
            return 9 + buf[start + 6] if len(buf) - start >= 7 else None
        return -1

    def _crc_ok(self, start: int, size: int) -> bool:
        buf = self.buffer
        end = start + size
        return crc16(buf[start : end - 2]) == buf[end - 2] | buf[end - 1] << 8

    def _request_at(self, start: int) -> bool:
        size = self._size(start)
        return (
            size is not None and 0 < size <= len(self.buffer) - start and self._crc_ok(start, size)
        )

    def _consume(self, n: int) -> None:
        del self.buffer[:n]
        self.boundary = max(0, self.boundary - n)
        self.at_frame_start = True

    def _drop(self, n: int) -> None:
        """Drop n bytes that are no request; the next byte starts a frame only after a silence."""
        del self.buffer[:n]
        self.discarded += n
        self.at_frame_start = self.boundary == n
        self.boundary = max(0, self.boundary - n)


class SerialServer:
    """Answers requests from a serial port for the station's devices; call poll() often.

    ``bus``: the station's SimulatedBus (its faults apply); plain RtuSlaves get a bus of their own
    without faults."""

    def __init__(self, port, bus: SimulatedBus | RtuSlaves, baud: int) -> None:
        self.port = port
        self.bus = bus if isinstance(bus, SimulatedBus) else SimulatedBus(bus, baud)
        self.framer = RequestFramer(baud)
        self.delay_s = 3.5 * BITS_PER_CHAR / baud + self.bus.turnaround_s
        self.pending: list[tuple[float, bytes]] = []  # (when it leaves, response)
        self.requests = 0
        self.responses = 0
        self.last_request_s: float | None = None
        self.longest_gap_s = 0.0  # between two requests: how long the master left the bus silent

    def poll(self, now_s: float) -> None:
        waiting = self.port.in_waiting
        data = self.port.read(waiting) if waiting else b""
        for frame in self.framer.feed(data, now_s):
            self.requests += 1
            if self.last_request_s is not None:
                self.longest_gap_s = max(self.longest_gap_s, now_s - self.last_request_s)
            self.last_request_s = now_s
            response = self.bus.exchange(frame, now_s)
            if response is not None:
                self.pending.append((now_s + self.delay_s, response))
        while self.pending and self.pending[0][0] <= now_s:
            self.port.write(self.pending.pop(0)[1])
            self.responses += 1

    def next_due_s(self, now_s: float) -> float:
        """When poll() has something to do without a new byte: a response due, a silence."""
        due = now_s + MAX_WAIT_S
        if self.pending:
            due = min(due, self.pending[0][0])
        if self.framer.buffer:
            due = min(due, self.framer.last_byte_s + self.framer.silence_s)
        return due


def is_pty(device: str) -> bool:
    try:
        return os.major(os.stat(device).st_rdev) in PTY_MAJORS
    except OSError:
        return False


def open_port(device: str, baud: int, parity: str = "E"):
    """The port at `baud` 8-`parity`-1, exclusively; a pty that refuses the parity gets N."""
    import serial

    def opened(parity: str):
        return serial.Serial(
            device, baudrate=baud, bytesize=8, parity=parity, stopbits=1, timeout=0, exclusive=True
        )

    try:
        try:
            port = opened(parity)
        except termios.error as exc:
            if parity == "N" or exc.args[0] != errno.EINVAL or not is_pty(device):
                raise
            port = opened("N")
    except serial.SerialException as exc:
        if "exclusively lock" in str(exc):
            raise OSError(
                errno.EBUSY, "in use by another program (another pumpsim serve?)"
            ) from exc
        raise
    port.reset_input_buffer()
    return port


def run_real_time(
    station: SimulatedStation,
    server: SerialServer,
    seconds: float | None = None,
    on_step: Callable[[], None] | None = None,
) -> None:
    """Serve and step the plant on the wall clock (station.t_s follows it) for `seconds` (None:
    until interrupted); on_step() after every plant step."""
    dt = station.scenario.step_s
    start = time.monotonic()
    fileno = server.port.fileno()
    while True:
        now = time.monotonic() - start
        if seconds is not None and now >= seconds:
            return
        server.poll(now)
        while station.t_s + dt <= now:
            station.step(dt)
            if on_step is not None:
                on_step()
        wait = min(server.next_due_s(now), station.t_s + dt) - (time.monotonic() - start)
        if wait > 0:
            select.select([fileno], [], [], wait)


def serve_forever(scenario: Scenario, device: str, baud: int | None, hours: float | None) -> int:
    """Real-time plant, devices answering on `device`, until `hours` pass or Ctrl-C."""
    baud = baud or scenario.baud
    station = SimulatedStation(scenario)
    port = open_port(device, baud)
    server = SerialServer(port, station.bus, baud)
    parity = "8E1" if port.parity == "E" else "8N1 (a pty carries no parity)"
    print(
        f"pumpsim: devices of '{scenario.name}' answering on {device} at {baud} baud {parity}",
        flush=True,
    )
    next_report = [10.0]

    def report() -> None:
        if station.t_s < next_report[0]:
            return
        next_report[0] += 10.0
        plant = station.plant
        print(
            f"t={station.t_s:7.0f} s  requests {server.requests} (longest silence "
            f"{server.longest_gap_s:.2f} s)  flow {plant.flow_m3h:6.1f} m3/h  "
            f"remote DP {plant.remote_dp_kpa:6.1f} kPa  "
            f"speeds {[round(d.speed_pct, 1) for d in station.drives]}",
            file=sys.stderr,
            flush=True,
        )

    try:
        run_real_time(station, server, None if hours is None else hours * 3600.0, report)
    except KeyboardInterrupt:
        pass
    finally:
        port.close()
    return 0
