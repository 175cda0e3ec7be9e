"""The simulated devices on a serial port: `pumpsim serve` driven from outside through a socat pty
pair by independent masters (minimalmodbus 2.1.1, the firmware's master codec over pyserial,
hand-built frames), and its request framer.

A pty carries no parity: the masters here open their end with parity N (the bytes are the same).
"""

from __future__ import annotations

import contextlib
import select
import signal
import subprocess
import sys
import threading
import time

import minimalmodbus
import pytest
import serial
from ptys import SocatPair
from relaypump import modbus as mb

from host_tools.sim import scenario
from host_tools.sim.agent_controller import REPO
from host_tools.sim.hardware import SimulatedStation
from host_tools.sim.rtu_slave import with_crc
from host_tools.sim.serial_port import RequestFramer, SerialServer, open_port
from protocol import modbus as proto

CHAR_S = 11 / 19200
SILENCE_S = 3.5 * CHAR_S


def scenario_with(tmp_path, faults: str):
    """The default scenario with `faults` (TOML [[faults]] tables) as its fault schedule."""
    text = scenario.DEFAULT_SCENARIO.read_text()
    path = tmp_path / "served.toml"
    path.write_text(text + "\n" + faults)
    return path


@contextlib.contextmanager
def pumpsim_serve(port: str, scenario_path):
    """`pumpsim serve` in a process of its own; stopped with Ctrl-C (SIGINT) at the end."""
    process = subprocess.Popen(
        [sys.executable, "-m", "host_tools.sim.cli", "serve", "--port", port]
        + ["--scenario", str(scenario_path)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        ready = select.select([process.stdout], [], [], 30)[0]
        line = process.stdout.readline() if ready else ""
        assert "answering on" in line, (line, process.poll())
        yield process
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    assert process.returncode == 0, process.stderr.read()


def master_port(path: str) -> serial.Serial:
    return serial.Serial(path, baudrate=19200, parity=serial.PARITY_NONE, timeout=0.3)


def instrument(port: serial.Serial, unit: int) -> minimalmodbus.Instrument:
    device = minimalmodbus.Instrument(port, unit)
    device.clear_buffers_before_each_transaction = True
    return device


def ask(port: serial.Serial, request: bytes, expect: int) -> bytes:
    """Write a hand-built request; the reply once `expect` bytes came (or what came in 1 s)."""
    port.reset_input_buffer()
    port.write(request)
    reply = b""
    deadline = time.monotonic() + 1.0
    while len(reply) < expect and time.monotonic() < deadline:
        reply += port.read(expect - len(reply))
    return reply


# -- pumpsim serve, from outside ------------------------------------------------------------------

COMM_LOSS_OF_UNIT_3 = """
[[faults]]
kind = "drive_comm_loss"
at = "00:00"
pump = 3
"""


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """`pumpsim serve` on one end of a socat pair, the drive of pump 3 cut off from the start;
    the other end opened by the masters."""
    tmp = tmp_path_factory.mktemp("serve")
    with SocatPair(tmp) as (station_end, master_end):
        with pumpsim_serve(station_end, scenario_with(tmp, COMM_LOSS_OF_UNIT_3)):
            port = master_port(master_end)
            time.sleep(0.5)  # the cut begins at the first plant step
            try:
                yield port
            finally:
                port.close()


def test_minimalmodbus_reads_the_drives_and_the_io_module(served):
    abb, danfoss, io = (instrument(served, unit) for unit in (1, 2, 10))
    status = abb.read_registers(0, 6, functioncode=3)
    assert len(status) == 6
    assert len(danfoss.read_registers(49999, 1, functioncode=3)) == 1  # FC control word
    currents = io.read_registers(0, 5, functioncode=4)
    assert all(3800 <= ua <= 20500 for ua in currents)  # NE43 measuring range
    assert io.read_bits(0, 2, functioncode=2)[0] == 1  # the source pumps run
    with pytest.raises(minimalmodbus.IllegalRequestError):
        abb.read_registers(4000, 2, functioncode=3)  # exception 02: no such register


def test_a_drive_cut_off_by_the_scenario_stays_silent(served):
    g120, abb = instrument(served, 3), instrument(served, 1)
    for _ in range(3):
        with pytest.raises(minimalmodbus.NoResponseError):
            g120.read_registers(109, 2, functioncode=3)
        assert len(abb.read_registers(0, 2, functioncode=3)) == 2  # the others answer on


def test_the_firmware_master_codec_over_the_pty(served):
    master = mb.RtuMaster(timeout_ms=500)

    def transact(frame) -> None:
        served.reset_input_buffer()
        served.write(bytes(frame))
        start = time.monotonic()
        while True:
            master.receive(served.read(served.in_waiting or 1))
            if master.poll(int((time.monotonic() - start) * 1000)) == mb.DONE:
                return

    transact(master.read_holding_registers(1, 3, 2))  # ABB status word, actual speed
    assert master.register(0) & 0x0040  # switching on inhibited, as after power-up
    transact(master.read_input_registers(10, 0, 5))
    assert 3800 <= master.register(0) <= 20500
    transact(master.write_register(2, 49999, 0x043C))  # Danfoss: stop word, echoed


@pytest.mark.parametrize("stray", [0x00, 0x01, 0x05, 0x0A, 0x10, 0xFF])
def test_a_lone_stray_byte_after_silence_does_not_cost_the_next_request(served, stray):
    request = proto.build_request(10, 4, address=0, count=5)
    served.reset_input_buffer()
    served.write(bytes([stray]))
    time.sleep(0.02)  # a silence, far over 3.5 characters
    reply = ask(served, request, 5 + 2 * 5)
    assert proto.parse_response(4, reply, 5)["unit"] == 10, reply.hex()


@pytest.mark.parametrize(
    "unit, function, code",
    [
        (1, 1, 1),  # read coils, count 0: a drive has no coils -> 01 before 03
        (1, 15, 1),  # write coils, byte count wrong: no coils either -> 01
        (10, 3, 1),  # read holding registers, count 0: the I/O module has none -> 01
        (1, 3, 3),  # read holding registers, count 0: the drive has them -> 03
        (10, 4, 3),  # read input registers, count 0: the I/O module has them -> 03
    ],
)
def test_a_function_the_device_lacks_is_refused_with_01_before_03(served, unit, function, code):
    if function == 15:
        body = bytes((unit, 15, 0, 0, 0, 8, 2, 0xFF, 0))  # 8 coils need 1 byte, not 2
    else:
        body = bytes((unit, function, 0, 0, 0, 0))
    reply = ask(served, with_crc(body), 5)
    assert reply == with_crc(bytes((unit, function | 0x80, code))), reply.hex()


CRC_NOISE = """
[[faults]]
kind = "crc_noise"
at = "00:00"
probability = 0.3
"""


def test_crc_noise_of_the_scenario_corrupts_requests_and_responses(tmp_path):
    with SocatPair(tmp_path) as (station_end, master_end):
        with pumpsim_serve(station_end, scenario_with(tmp_path, CRC_NOISE)):
            port = master_port(master_end)
            try:
                time.sleep(0.5)
                io = instrument(port, 10)
                io.serial.timeout = 0.15
                outcomes = []
                for _ in range(40):
                    try:
                        io.read_registers(0, 5, functioncode=4)
                        outcomes.append("ok")
                    except minimalmodbus.NoResponseError:
                        outcomes.append("silent")  # the request was corrupted
                    except minimalmodbus.InvalidResponseError:
                        outcomes.append("bad crc")  # the response was corrupted
            finally:
                port.close()
    assert {"ok", "silent", "bad crc"} <= set(outcomes), outcomes
    assert outcomes.count("ok") >= 10, outcomes


def test_serve_started_twice_on_the_same_pty_answers_and_a_concurrent_one_is_refused(tmp_path):
    plain = scenario.DEFAULT_SCENARIO
    with SocatPair(tmp_path) as (station_end, master_end):
        port = master_port(master_end)
        try:
            for _ in range(2):  # the second start finds the pty configured by the first
                # and without CLOCAL (peers.md: a second open of a socat pty may then block)
                subprocess.run(["stty", "-F", station_end, "-clocal"], check=True)
                with pumpsim_serve(station_end, plain):
                    assert len(instrument(port, 1).read_registers(0, 2, functioncode=3)) == 2
                    second = subprocess.run(
                        [sys.executable, "-m", "host_tools.sim.cli", "serve"]
                        + ["--port", station_end, "--hours", "0.001"],
                        cwd=REPO,
                        capture_output=True,
                        text=True,
                        timeout=60,
                    )
                    assert second.returncode == 2
                    assert second.stderr.strip() == (
                        f"pumpsim: --port {station_end}: in use by another program "
                        "(another pumpsim serve?)"
                    )
        finally:
            port.close()


# -- in-process: the served plant moves -----------------------------------------------------------


def test_an_abb_drive_started_over_the_pty_runs_up(tmp_path):
    chosen = scenario.load(scenario.DEFAULT_SCENARIO)
    station = SimulatedStation(chosen)
    with SocatPair(tmp_path) as (station_end, master_end):
        server = SerialServer(open_port(station_end, chosen.baud), station.bus, chosen.baud)
        stop = threading.Event()

        def serve() -> None:
            start = time.monotonic()
            while not stop.is_set():
                now = time.monotonic() - start
                server.poll(now)
                while station.t_s + 0.2 <= now * 50:  # the plant runs 50x faster than real time
                    station.step(0.2)
                time.sleep(0.0005)

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        port = master_port(master_end)
        try:
            abb = instrument(port, 1)
            for word in (0x0476, 0x0477):
                abb.write_register(0, word, functioncode=6)
            abb.write_registers(0, [0x047F, 16000])  # run at 80 %
            deadline = time.monotonic() + 10
            while station.drives[0].speed_pct < 55 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert station.drives[0].speed_pct >= 55
        finally:
            stop.set()
            thread.join(2)
            port.close()
            server.port.close()


# -- the framer -----------------------------------------------------------------------------------


def feed_bytes(framer: RequestFramer, data: bytes, start_s: float) -> tuple[list[bytes], float]:
    """Bytes one character time apart, as a UART delivers a frame; the frames and the end time."""
    frames = []
    for i, byte in enumerate(data):
        frames += framer.feed(bytes([byte]), start_s + i * CHAR_S)
    return frames, start_s + len(data) * CHAR_S


def test_framer_resynchronises_after_garbage_and_split_frames():
    framer = RequestFramer(19200)
    request = proto.build_request(1, 3, address=0, count=6)
    write = proto.build_request(3, 16, address=99, registers=[0x047F, 0x2000])
    frames, _ = feed_bytes(framer, b"\x01\x03\xff" + request + write, 0.0)
    assert frames == [request, write]
    assert framer.discarded == 3


def test_framer_hands_over_unknown_functions_after_silence():
    framer = RequestFramer(19200)
    odd = bytes([1, 0x2B, 0x0E, 1, 0])
    assert framer.feed(odd, 0.0) == []
    assert framer.feed(b"", 0.001) == []
    assert framer.feed(b"", 0.01) == [odd]


@pytest.mark.parametrize("stray", [b"\x00", b"\x01", b"\x0a", b"\x2b", b"\x01\x10", b"\x0a\x10"])
@pytest.mark.parametrize("at_once", [True, False])
def test_framer_drops_bytes_before_a_silence_that_make_no_request(stray, at_once):
    framer = RequestFramer(19200)
    request = proto.build_request(10, 4, address=0, count=5)
    frames, end = feed_bytes(framer, stray, 0.0)
    assert frames == [] and framer.feed(b"", end + 0.05) == []
    if at_once:  # the request in one chunk (a pty), or byte by byte (a UART)
        frames = framer.feed(request, end + 0.1)
    else:
        frames, _ = feed_bytes(framer, request, end + 0.1)
    assert frames == [request]
    assert framer.discarded == len(stray)
    # and the next one, straight after
    assert feed_bytes(framer, request, 1.0)[0] == [request]


def test_framer_keeps_a_request_split_by_a_usb_packet_gap():
    framer = RequestFramer(19200)
    request = proto.build_request(1, 16, address=0, registers=[0x047F, 16000])
    assert framer.feed(request[:5], 0.0) == []
    assert framer.feed(request[5:], 0.016) == [request]  # 16 ms later: an FTDI latency timer
    assert framer.discarded == 0


def test_framer_drops_a_cut_frame_once_a_whole_request_follows_the_silence():
    framer = RequestFramer(19200)
    cut = proto.build_request(1, 16, address=0, registers=[0x047F, 16000])[:9]
    request = proto.build_request(2, 3, address=49999, count=1)
    assert framer.feed(cut, 0.0) == []
    assert framer.feed(request, 0.05) == [request]
    assert framer.discarded == len(cut)
