"""The simulated devices on a real serial port (pyserial): a board on a bench controls the plant.

The plant runs in real time; the drives and the I/O module answer on the port as they do on the
in-process bus (same RtuSlaves). A USB-RS-485 adapter on a bench, a pty in the tests.

Cutting requests out of the byte stream (a UART gives no frame boundaries):
- Functions 01-06 have 8-byte requests; 15/16 have 9 + the byte count in their 7th byte.
- A candidate whose CRC fails is not a request: drop its first byte and look again (resync).
- A burst that starts (after 3.5 character times of silence, or right after a good request) with
  an unknown function is held until the line is silent again, then handed over as one frame: the
  slaves answer exception 01 when its CRC is right and stay silent when it is not, like a real
  device. In the middle of a resync an unknown function byte is just dropped.
"""

from __future__ import annotations

import sys
import time

from host_tools.sim.bus import BITS_PER_CHAR
from host_tools.sim.hardware import SimulatedStation
from host_tools.sim.rtu_slave import RtuSlaves
from host_tools.sim.scenario import Scenario
from protocol.modbus import crc16

_FIXED = {1, 2, 3, 4, 5, 6}
_COUNTED = {15, 16}


class RequestFramer:
    def __init__(self, baud: int) -> None:
        self.silence_s = 3.5 * BITS_PER_CHAR / baud
        self.buffer = bytearray()
        self.last_byte_s = float("-inf")
        self.at_frame_start = True
        self.discarded = 0

    def feed(self, data: bytes, now_s: float) -> list[bytes]:
        if data:
            if not self.buffer and now_s - self.last_byte_s >= self.silence_s:
                self.at_frame_start = True
            self.buffer += data
            self.last_byte_s = now_s
        frames = []
        while len(self.buffer) >= 2:
            function = self.buffer[1]
            if function in _FIXED:
                size = 8
            elif function in _COUNTED:
                if len(self.buffer) < 7:
                    break
                size = 9 + self.buffer[6]
            elif not self.at_frame_start:
                del self.buffer[0]
                self.discarded += 1
                continue
            else:
                if now_s - self.last_byte_s < self.silence_s:
                    break
                frames.append(bytes(self.buffer))  # unknown function: one frame up to the silence
                self.buffer.clear()
                break
            if len(self.buffer) < size:
                if data or now_s - self.last_byte_s < self.silence_s:
                    break
                self.discarded += len(self.buffer)  # a cut frame followed by silence
                self.buffer.clear()
                break
            candidate = bytes(self.buffer[:size])
            if crc16(candidate[:-2]) == candidate[-2] | candidate[-1] << 8:
                frames.append(candidate)
                del self.buffer[:size]
                self.at_frame_start = True
            else:
                del self.buffer[0]
                self.discarded += 1
                self.at_frame_start = False
        return frames


class SerialServer:
    """Answers requests from a serial port for the station's devices; call poll() often."""

    def __init__(self, port, slaves: RtuSlaves, baud: int) -> None:
        self.port = port
        self.slaves = slaves
        self.framer = RequestFramer(baud)
        self.requests = 0
        self.responses = 0

    def poll(self, now_s: float) -> None:
        waiting = self.port.in_waiting
        data = self.port.read(waiting) if waiting else b""
        for frame in self.framer.feed(data, now_s):
            self.requests += 1
            response = self.slaves.answer(frame, now_s)
            if response is not None:
                self.port.write(response)
                self.responses += 1


def open_port(device: str, baud: int):
    import serial

    return serial.Serial(
        device, baudrate=baud, bytesize=8, parity=serial.PARITY_EVEN, stopbits=1, timeout=0
    )


def serve_forever(scenario: Scenario, device: str, baud: int | None, hours: float | None) -> int:
    """Real-time plant, devices answering on `device`, until `hours` pass or Ctrl-C."""
    baud = baud or scenario.baud
    station = SimulatedStation(scenario)
    server = SerialServer(open_port(device, baud), station.slaves, baud)
    dt = scenario.step_s
    start = time.monotonic()
    end = None if hours is None else hours * 3600.0
    next_report = 10.0
    print(f"pumpsim: devices of '{scenario.name}' answering on {device} at {baud} baud")
    try:
        while end is None or station.t_s < end:
            now = time.monotonic() - start
            server.poll(now)
            if now >= station.t_s + dt:
                station.step(dt)
            if now >= next_report:
                plant = station.plant
                print(
                    f"t={now:7.0f} s  requests {server.requests}  flow {plant.flow_m3h:6.1f} m3/h  "
                    f"remote DP {plant.remote_dp_kpa:6.1f} kPa  "
                    f"speeds {[round(d.speed_pct, 1) for d in station.drives]}",
                    file=sys.stderr,
                )
                next_report += 10.0
            time.sleep(0.0005)
    except KeyboardInterrupt:
        pass
    return 0
