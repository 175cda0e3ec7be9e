"""The board runtime (relaypump/runtime.py) with the real agent on a test board.

The board's hardware is replaced at its boundary only: a clock the test advances (the runtime
sleeps by advancing it) and a UART byte pipe on which this module plays the RS-485 bus with
hand-built Modbus RTU responses (register maps per unit, CRC from relaypump.modbus.crc16), with
wire timing from the baud rate. The agent, its config file and the state files are real: the
reference station.json, and a temporary directory (CPython) or the VM's MEMFS.
"""

import json
import os

from relaypump import state as state_mod
from relaypump.modbus import crc16
from relaypump.runtime import Runtime
from support import STATION_JSON

VM_HEAP_KIB = 2048  # one VM call per test: its garbage (the bus double's frames, the agent's floats) stays until it returns

MASK = 0x3FFFFFFF
TURNAROUND_US = 1500
LOOP_US = 200  # what one pass of the loop costs on the test board
PERIOD_MS = 1000  # station.json pid.period_ms


# Status words: PROFIdrive/ABB operation enabled + remote; Danfoss FC ready + bus control + running.
PD_RUNNING = 0x0237
PD_READY = 0x0231
FC_RUNNING = 0x0A03
ABB_RUN, ABB_STOP = 0x047F, 0x047E
FC_RUN, FC_STOP = 0x047C, 0x043C


class Bus:
    """The drives and the I/O module as register maps answering real RTU frames."""

    def __init__(self, running=True):
        self.holding = {1: {}, 2: {}, 3: {}}
        self.input_registers = {10: {}}
        self.inputs = {10: 0b01}  # source pumps running, bypass closed
        self.writes = []  # (unit, address, values) in wire order
        self.requests = 0
        abb, fc, g120 = self.holding[1], self.holding[2], self.holding[3]
        if running:
            abb[3], abb[4], abb[5] = PD_RUNNING, 16000, 4000  # 80 % of 20000, ACT2 power
            fc[50199], fc[50209] = FC_RUNNING, 13107  # 80 % of 0x4000
        else:
            abb[3], fc[50199] = PD_READY, 0x0203
        g120[109], g120[110] = PD_READY, 0
        # Loop currents (uA) of suction 300 kPa, discharge 700 kPa, remote DP 111 kPa,
        # supply 90 degC, flow 400 m3/h (station.json ranges).
        for register, ua in enumerate((8800, 11000, 8440, 13600, 9333)):
            self.input_registers[10][register] = ua

    def answer(self, frame):
        frame = bytes(frame)
        assert crc16(frame[:-2]) == frame[-2] | frame[-1] << 8, "bad CRC from the master"
        self.requests += 1
        unit, function = frame[0], frame[1]
        address = frame[2] << 8 | frame[3]
        if function in (3, 4):
            count = frame[4] << 8 | frame[5]
            table = self.holding[unit] if function == 3 else self.input_registers[unit]
            body = bytearray((unit, function, 2 * count))
            for k in range(count):
                value = table.get(address + k, 0)
                body.append(value >> 8)
                body.append(value & 0xFF)
        elif function == 2:
            count = frame[4] << 8 | frame[5]
            bits = self.inputs[unit] & ((1 << count) - 1)
            size = (count + 7) // 8
            body = bytearray((unit, function, size))
            for k in range(size):
                body.append((bits >> (8 * k)) & 0xFF)
        elif function == 6:
            value = frame[4] << 8 | frame[5]
            self.writes.append((unit, address, [value]))
            body = bytearray(frame[:6])
        elif function == 16:
            count = frame[4] << 8 | frame[5]
            values = [frame[7 + 2 * k] << 8 | frame[8 + 2 * k] for k in range(count)]
            self.writes.append((unit, address, values))
            body = bytearray(frame[:6])
        else:
            return None
        crc = crc16(body)
        body.append(crc & 0xFF)
        body.append(crc >> 8)
        return bytes(body)

    def control_words(self, unit, address):
        return [values[0] for u, a, values in self.writes if u == unit and a == address]


class WireBoard:
    """The hardware boundary: a microsecond clock the test advances and a UART byte pipe whose
    bytes arrive one character time apart (a waiting loop wakes at each)."""

    wdt_timeout_ms = 8000

    def __init__(self, bus, start_us=0):
        self.bus = bus
        self.us = start_us
        self.fs = os
        self.open = open
        self.baud = None
        self.parity = None
        self.char_us = 573
        self.sent = []  # (first bit us, last bit us, frame)
        self.incoming = []  # [arrival us, byte] not yet read
        self.line_us = []  # arrival of every byte received
        self.feeds = []  # ms ticks of every watchdog feed
        self.logs = []

    def ticks_ms(self):
        return (self.us // 1000) & MASK

    def ticks_us(self):
        return self.us & MASK

    def ticks_add(self, t, delta):
        return (t + delta) & MASK

    def ticks_diff(self, a, b):
        return ((a - b + 0x20000000) & MASK) - 0x20000000

    def wait_us(self, us):
        """Until the next byte arrives or us have passed; then the loop's own pass costs LOOP_US."""
        until = self.us + us
        if self.incoming and self.incoming[0][0] < until:
            until = max(self.incoming[0][0], self.us)
        self.us = until + LOOP_US
        return True

    def open_bus(self, baud, parity):
        self.baud = baud
        self.parity = parity
        self.char_us = (11 * 1000000 + baud - 1) // baud

    def read_into(self, buf):
        n = 0
        while self.incoming and self.incoming[0][0] <= self.us and n < len(buf):
            at, byte = self.incoming.pop(0)
            buf[n] = byte
            self.line_us.append(at)
            n += 1
        return n

    def send(self, frame):
        assert self.baud is not None, "sent on a bus that was never opened"
        start = self.us
        self.us += len(frame) * self.char_us  # send blocks until the last bit has left
        self.sent.append((start, self.us, bytes(frame)))
        response = self.bus.answer(frame)
        if response is not None:
            at = self.us + 35 * self.char_us // 10 + TURNAROUND_US
            for byte in response:
                at += self.char_us
                self.incoming.append([at, byte])

    def feed(self):
        self.feeds.append(self.ticks_ms())

    def reset_cause(self):
        return "power-on"

    def log(self, text):
        self.logs.append(text)


def run(runtime, board, ms):
    end = board.us + ms * 1000
    while board.us < end:
        wait = runtime.step()
        assert wait > 0  # a loop in virtual time must move on
        board.wait_us(wait)


_serial = [0]


def make_dir():
    try:
        import tempfile

        return tempfile.mkdtemp()
    except ImportError:  # MicroPython
        _serial[0] += 1
        path = "/rt_test_%d" % _serial[0]
        os.mkdir(path)
        return path


def remove_dir(path):
    for name in os.listdir(path):
        os.remove(path + "/" + name)
    os.rmdir(path)


def write_config(directory, change=None):
    with open(STATION_JSON) as f:
        doc = json.load(f)
    if change is not None:
        change(doc)
    path = directory + "/station.json"
    with open(path, "w") as f:
        json.dump(doc, f)
    return path


def start(directory, bus, start_us=0, save_period_ms=600000):
    board = WireBoard(bus, start_us)
    runtime = Runtime(board, write_config(directory), directory + "/state", save_period_ms)
    return runtime, board


def test_the_watchdog_is_fed_only_when_a_tick_completes():
    directory = make_dir()
    try:
        runtime, board = start(directory, Bus())
        agent = runtime.agent
        assert agent is not None and board.baud == 19200 and board.parity == "E"
        ticks = []
        tick = agent.tick

        def counted(now_ms):
            tick(now_ms)
            ticks.append(now_ms)

        agent.tick = counted
        run(runtime, board, 10500)
        assert len(ticks) == 10
        assert board.feeds == ticks  # every feed right after a tick, none elsewhere
        for k in range(1, len(ticks)):
            assert board.ticks_diff(ticks[k], ticks[k - 1]) == PERIOD_MS
        assert agent.primed and len(board.sent) > 100  # the bus ran between the ticks
    finally:
        remove_dir(directory)


def test_the_silence_between_frames_is_never_shorter_than_three_and_a_half_characters():
    directory = make_dir()
    try:
        runtime, board = start(directory, Bus())
        gap_us = runtime.agent.fieldbus.gap_us
        assert gap_us == 2006  # 38.5 bit times at 19200 baud
        run(runtime, board, 3000)
        assert len(board.sent) > 40
        line = board.line_us
        shortest = None
        for k in range(1, len(board.sent)):
            start_us = board.sent[k][0]
            last = board.sent[k - 1][1]  # our previous frame's last bit...
            for at in line:  # ...or the last byte a device sent before this frame
                if last < at <= start_us:
                    last = at
            silence = start_us - last
            if shortest is None or silence < shortest:
                shortest = silence
        assert shortest is not None and gap_us <= shortest < gap_us + 2 * LOOP_US + 1000
    finally:
        remove_dir(directory)


def test_state_is_saved_at_once_when_urgent_and_periodically_when_dirty():
    directory = make_dir()
    try:
        runtime, board = start(directory, Bus(), save_period_ms=4000)
        base = directory + "/state"
        run(runtime, board, 2500)  # primed; run time counted but not yet due for a save
        assert runtime.saves == 0 and runtime.agent.state.dirty
        assert runtime.agent.state.accept_command(42)  # what the uplink does on a command
        runtime.step()
        assert runtime.saves == 1 and runtime.seq == 1
        saved, seq = state_mod.load(os, base, 3, open)
        assert seq == 1 and saved.command_counter == 42
        run(runtime, board, 9000)  # periodic saves every 4 s of run time
        assert runtime.saves == 3 and runtime.save_errors == 0
        saved, seq = state_mod.load(os, base, 3, open)
        assert seq == 3
        assert saved.run_s[0] >= 9 and saved.run_s[1] >= 9 and saved.run_s[2] == 0
        assert saved.command_counter == 42
    finally:
        remove_dir(directory)


def test_a_failing_flash_write_is_logged_and_retried_without_stopping_the_loop():
    directory = make_dir()
    try:
        runtime, board = start(directory, Bus())
        run(runtime, board, 2500)
        runtime.state_base = directory + "/missing/state"  # a directory that does not exist
        runtime.agent.state.accept_command(7)
        run(runtime, board, 3000)
        assert runtime.save_errors == 1  # one retry every 10 s, not one per tick
        assert [t for t in board.logs if "state not saved" in t]
        ticks = len(board.feeds)
        run(runtime, board, 2000)
        assert len(board.feeds) == ticks + 2  # still ticking and feeding
        runtime.state_base = directory + "/state"
        run(runtime, board, 9000)
        assert runtime.saves == 1 and runtime.save_errors == 1
        saved, seq = state_mod.load(os, directory + "/state", 3, open)
        assert seq == 1 and saved.command_counter == 7
    finally:
        remove_dir(directory)


def _drive_words(bus):
    return bus.control_words(1, 0), bus.control_words(2, 49999)


def test_a_restart_keeps_the_counters_and_resumes_running_pumps_without_a_stop():
    directory = make_dir()
    try:
        bus = Bus(running=True)
        # ticks_ms wraps 3 s into the run
        runtime, board = start(directory, bus, start_us=(MASK - 3000) * 1000)
        run(runtime, board, 8000)
        runtime.agent.state.accept_command(9)
        runtime.step()
        before = runtime.agent.state
        run_s = list(before.run_s)
        starts = list(before.starts)
        assert run_s[0] >= 6 and run_s[1] >= 6
        assert starts[:2] == [0, 0]  # found running at boot: adopted, not started
        abb, fc = _drive_words(bus)
        assert ABB_STOP not in abb and FC_STOP not in fc

        # Reset: a new runtime and agent on the same flash, the drives still running.
        bus.writes = []
        runtime, board = start(directory, bus, start_us=board.us + 2000000)
        state = runtime.agent.state
        assert runtime.seq >= 1 and state.command_counter == 9
        assert state.run_s[0] >= run_s[0] and state.run_s[1] >= run_s[1]
        assert state.starts[:2] == starts[:2]  # adopted after the restart, not started again
        run(runtime, board, 4000)
        assert runtime.agent.primed
        abb, fc = _drive_words(bus)
        assert abb and fc
        assert set(abb) == {ABB_RUN} and set(fc) == {FC_RUN}  # never a stop word
        references = bus.control_words(2, 50009)
        first = [values for unit, address, values in bus.writes if unit == 1][0]
        assert abs(first[1] - 16000) <= 20  # held at its actual 80 %, not slewed from 0
        assert abs(references[0] - 13107) <= 20
        g120 = bus.control_words(3, 99)
        assert 0x047F not in g120  # the stopped pump was not started before the agent decided
    finally:
        remove_dir(directory)


def _bad_profile(doc):
    doc["pumps"][1]["profile"] = "vacon"


def test_a_bad_config_commands_nothing_keeps_the_watchdog_fed_and_is_read_again():
    directory = make_dir()
    try:
        bus = Bus()
        board = WireBoard(bus)
        path = write_config(directory, _bad_profile)
        runtime = Runtime(board, path, directory + "/state")
        assert runtime.agent is None and "pumps[1].profile" in runtime.error
        run(runtime, board, 25000)
        assert board.baud is None and board.sent == [] and bus.requests == 0
        refused = [t for t in board.logs if "config refused" in t]
        assert len(refused) == 1 and "pumps[1].profile" in refused[0]  # logged once, not per retry
        for k in range(1, len(board.feeds)):  # fed all along, well inside the 8 s timeout
            assert board.ticks_diff(board.feeds[k], board.feeds[k - 1]) <= 1000
        assert len(board.feeds) >= 25
        write_config(directory)  # the operator uploads a good file
        run(runtime, board, 12000)
        assert runtime.agent is not None and runtime.error is None
        assert board.baud == 19200 and bus.requests > 50 and runtime.agent.primed
    finally:
        remove_dir(directory)


def _slow_tick(doc):
    doc["pid"]["period_ms"] = 5000


def test_a_control_period_the_watchdog_cannot_cover_is_refused():
    directory = make_dir()
    try:
        board = WireBoard(Bus())
        runtime = Runtime(board, write_config(directory, _slow_tick), directory + "/state")
        assert runtime.agent is None and runtime.error.startswith("pid.period_ms")
        run(runtime, board, 2000)
        assert board.sent == [] and len(board.feeds) >= 2
    finally:
        remove_dir(directory)


def test_a_missing_config_file_is_refused_like_a_bad_one():
    directory = make_dir()
    try:
        board = WireBoard(Bus())
        runtime = Runtime(board, directory + "/nothing.json", directory + "/state")
        assert runtime.agent is None and runtime.error.startswith("config: cannot read")
        run(runtime, board, 1000)
        assert board.sent == [] and board.feeds
    finally:
        remove_dir(directory)
