"""The simulated devices on a real serial port: a pty pair per side, bridged, and real masters.

Frames built by the construct definition and by our firmware's master codec travel over pyserial
and real tty devices to the simulated drives and I/O module.
"""

import os
import select
import threading
import time

import pytest
import serial
from relaypump import modbus as mb

from host_tools.sim import scenario
from host_tools.sim.hardware import SimulatedStation
from host_tools.sim.serial_port import RequestFramer, SerialServer, open_port
from protocol import modbus as proto


class PtyBridge:
    """Two pty pairs whose master ends are cross-connected: like a null-modem cable."""

    def __init__(self) -> None:
        self.a_master, a_slave = os.openpty()
        self.b_master, b_slave = os.openpty()
        self.paths = (os.ttyname(a_slave), os.ttyname(b_slave))
        self._slaves = (a_slave, b_slave)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._copy, daemon=True)
        self._thread.start()

    def _copy(self) -> None:
        pairs = {self.a_master: self.b_master, self.b_master: self.a_master}
        while not self._stop.is_set():
            ready, _, _ = select.select(list(pairs), [], [], 0.02)
            for fd in ready:
                try:
                    os.write(pairs[fd], os.read(fd, 4096))
                except OSError:
                    return

    def close(self) -> None:
        self._stop.set()
        self._thread.join(1)
        for fd in (self.a_master, self.b_master, *self._slaves):
            os.close(fd)


@pytest.fixture
def served_station():
    """The default scenario's devices answering on one end of a pty bridge, in real time."""
    chosen = scenario.load(scenario.DEFAULT_SCENARIO)
    station = SimulatedStation(chosen)
    bridge = PtyBridge()
    port = open_port(bridge.paths[0], chosen.baud)
    server = SerialServer(port, station.slaves, chosen.baud)
    stop = threading.Event()

    def serve() -> None:
        start = time.monotonic()
        while not stop.is_set():
            now = time.monotonic() - start
            server.poll(now)
            while station.t_s + 0.2 <= now * 50:  # the plant runs 50x faster than the wall clock
                station.step(0.2)
            time.sleep(0.0005)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield station, server, bridge.paths[1]
    stop.set()
    thread.join(2)
    port.close()
    bridge.close()


def exchange(port, request: bytes, function: int, count: int | None = None) -> dict:
    """One request over the tty, built and parsed by the construct definition (protocol/)."""
    port.write(request)
    reply = b""
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        reply += port.read(256)
        try:
            return proto.parse_response(function, reply, count)
        except proto.ModbusFrameError:
            time.sleep(0.005)
    raise AssertionError(f"no valid response, got {reply.hex()}")


def test_an_abb_drive_started_and_the_io_module_read_over_a_tty(served_station):
    # pymodbus' serial client cannot drive a pty (pyserial's tcsetattr for its inter-byte timeout
    # gives EINVAL there), so this master is pyserial + the construct frames of protocol/.
    station, server, path = served_station
    port = serial.Serial(path, baudrate=19200, parity=serial.PARITY_EVEN, timeout=0)
    try:
        status = exchange(port, proto.build_request(1, 3, address=0, count=6), 3, 6)
        assert len(status["registers"]) == 6
        for word in (0x0476, 0x0477):
            exchange(port, proto.build_request(1, 6, address=0, value=word), 6)
        start = proto.build_request(1, 16, address=0, registers=[0x047F, 16000])  # 80 %
        assert exchange(port, start, 16) == {"unit": 1, "function": 16, "address": 0, "count": 2}
        deadline = time.monotonic() + 10
        while station.drives[0].speed_pct < 55 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert station.drives[0].speed_pct >= 55
        currents = exchange(port, proto.build_request(10, 4, address=0, count=5), 4, 5)
        assert all(4000 <= ua <= 20000 for ua in currents["registers"])
        inputs = exchange(port, proto.build_request(10, 2, address=0, count=2), 2, 2)
        assert inputs["bits"][0] is True  # the source pumps run
        refused = exchange(port, proto.build_request(1, 3, address=4000, count=2), 3, 2)
        assert refused["exception_code"] == 2
    finally:
        port.close()


def test_firmware_master_codec_over_pyserial(served_station):
    station, server, path = served_station
    port = serial.Serial(path, baudrate=19200, parity=serial.PARITY_EVEN, timeout=0)
    master = mb.RtuMaster(timeout_ms=500)

    def transact(frame) -> int:
        port.write(bytes(frame))
        start = time.monotonic()
        while True:
            master.receive(port.read(256))
            status = master.poll(int((time.monotonic() - start) * 1000))
            if status == mb.DONE:
                return status

    try:
        transact(master.read_holding_registers(3, 109, 2))  # G120 ZSW1 + actual speed
        assert master.register(0) & 0x0040  # switching on inhibited, as after power-up
        transact(master.read_input_registers(10, 0, 5))
        suction_ua = master.register(0)
        assert abs((suction_ua - 4000) / 16000 * 1000 - station.plant.suction_kpa) < 5
        transact(master.write_register(2, 49999, 0x043C))  # Danfoss: stop word
    finally:
        port.close()
    assert server.requests >= 3


def test_framer_resynchronises_after_garbage_and_split_frames():
    framer = RequestFramer(19200)
    request = proto.build_request(1, 3, address=0, count=6)
    write = proto.build_request(3, 16, address=99, registers=[0x047F, 0x2000])
    data = b"\x01\x03\xff" + request + write
    frames = []
    for i, byte in enumerate(data):
        frames += framer.feed(bytes([byte]), i * 0.0006)
    assert frames == [request, write]
    assert framer.discarded == 3


def test_framer_hands_over_unknown_functions_after_silence():
    framer = RequestFramer(19200)
    odd = bytes([1, 0x2B, 0x0E, 1, 0])
    assert framer.feed(odd, 0.0) == []
    assert framer.feed(b"", 0.001) == []
    assert framer.feed(b"", 0.01) == [odd]
