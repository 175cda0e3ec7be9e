"""The poll cycle's pure logic with frames built by hand: the plan, timeouts, retries, health,
the Snapshot round trip, allocation. (The end-to-end run against the simulator's devices is
tests/host_tools/test_fieldbus_sim.py.)
"""

from relaypump import fieldbus as fbm
from relaypump import modbus as mb
from relaypump.codes import (
    EVENT_DRIVE_COMM_LOST,
    EVENT_DRIVE_COMM_RESTORED,
    EVENT_DRIVE_LIMIT_MISMATCH,
    EVENT_DRIVE_RAMP_MISMATCH,
)
from relaypump.snapshot import (
    CMD_RUN,
    CMD_STOP,
    DRIVE_RUNNING,
    DRIVE_TRIPPED,
    DRIVE_UNKNOWN,
    Snapshot,
)
from support import ON_MICROPYTHON, bytes_allocated

VM_HEAP_KIB = 384  # one VM call per test: garbage is not collected until it returns (the
# commissioning tests run 30-40 cycles of requests)


def config(retries=1):
    return {
        "bus": {
            "baud": 19200,
            "turnaround_ms": 5,
            "retries": retries,
            "lost_after_failures": 3,
            "lost_after_ms": 0,  # the count alone (the time rule has its own test)
            "timeout_margin_ms": 10,
            "lost_probe_ms": 1000,
        },
        "pumps": [
            {"unit": 1, "profile": "abb", "ref_full_scale": 20000, "rated_current_a": 200.0},
            {"unit": 2, "profile": "danfoss"},
            {"unit": 3, "profile": "g120", "rated_current_a": 200.0},
        ],
        "pump_model": {"rated_kw": 110.0},
        "io": {
            "unit": 10,
            "channels": {
                "suction_kpa": {"register": 0, "low": 0.0, "high": 1000.0},
                "flow_m3h": {"register": 4, "low": 0.0, "high": 1200.0},
            },
            "inputs": {"source_running": 0, "bypass_open": 1},
        },
    }


def with_crc(body):
    crc = mb.crc16(body)
    return bytes(body) + bytes((crc & 0xFF, crc >> 8))


def registers_response(request, values):
    body = bytearray((request[0], request[1], 2 * len(values)))
    for v in values:
        body.append(v >> 8)
        body.append(v & 0xFF)
    return with_crc(body)


def bits_response(request, bits):
    return with_crc(bytes((request[0], request[1], 1, bits)))


def echo_response(request):
    return with_crc(bytes(request[:6]))


def word(request, at):
    return request[at] << 8 | request[at + 1]


class Drives:
    """Register values the hand-built responses carry, per unit and address; writes are kept.
    Ramp times start at the drives' factory values (ABB 20 s, Danfoss 3 s, G120 10 s), current
    limits at 110 % of 200 A."""

    def __init__(self):
        self.regs = {
            1: {3: 0x0737, 4: 16000, 5: 5000, 106: 1500, 400: 0, 2311: 200, 2312: 200, 3016: 2200},
            2: {
                50199: 0x0F07,
                50209: 0x3333,
                16099: 550,
                16139: 1490,
                15299: 0,
                3409: 0,
                3410: 300,
                3419: 0,
                3420: 300,
                4179: 0,
                4180: 1100,
            },
            3: {109: 0x0737, 110: 0x3333, 344: 15000, 345: 0, 346: 5600, 399: 0},
            10: {0: 8000, 1: 9000, 2: 10000, 3: 11000, 4: 12000},
        }
        self.regs[3].update({321: 1000, 322: 1000, 320: 2200})
        self.inputs = 0b01

    def answer(self, request):
        unit, fc = request[0], request[1]
        address = word(request, 2)
        if fc in (3, 4):
            count = word(request, 4)
            return registers_response(request, [self.regs[unit][address + k] for k in range(count)])
        if fc == 2:
            return bits_response(request, self.inputs)
        if fc == 6:
            self.regs[unit][address] = word(request, 4)
        elif fc == 16:
            for k in range(word(request, 4)):
                self.regs[unit][address + k] = word(request, 7 + 2 * k)
        return echo_response(request)


def transact(fb, now_ms, answer):
    """Send one request; answer(request) gives the response bytes or None (silence)."""
    request = fb.next_request(now_ms)
    if request is None:
        return None
    request = bytes(request)
    response = answer(request)
    if response is not None:
        fb.receive(response)
        fb.poll(now_ms + 20)
    else:
        fb.poll(now_ms + 1000)  # past any deadline
    return request


def one_cycle(fb, now_ms, drives):
    start = fb.cycles
    sent = []
    while fb.cycles == start:
        request = transact(fb, now_ms, drives.answer)
        assert request is not None
        sent.append(request)
    return sent


def answered_cycles(fb, now_ms, answer, count):
    """count poll cycles 100 ms apart, every request answered by answer(request); the next time."""
    for _ in range(count):
        start = fb.cycles
        while fb.cycles == start:
            transact(fb, now_ms, answer)
        now_ms += 100
    return now_ms


def commission(fb, now_ms, drives):
    """Cycles until every drive's ramp times and current limit are written and read back (at most
    16)."""
    for _ in range(16):
        if all(fb.ramp_ok):
            return
        one_cycle(fb, now_ms, drives)
    raise AssertionError("ramps not commissioned: %r" % (fb.ramp_ok,))


def test_the_plan_of_one_cycle():
    snap = Snapshot(3)
    fb = fbm.Fieldbus(config(), snap)
    sent = one_cycle(fb, 0, Drives())
    summary = [(r[0], r[1], word(r, 2)) for r in sent]
    assert summary == [
        (1, 3, 3),  # ABB status, ACT1, ACT2
        (1, 16, 0),  # control word + REF1
        (2, 3, 50199),  # Danfoss status word
        (2, 3, 50209),  # main actual value
        (2, 6, 50009),  # reference first: RUN never meets an old reference
        (2, 6, 49999),  # control word
        (3, 3, 109),  # G120 ZSW1 + HIW
        (3, 16, 99),  # STW1 + setpoint
        (10, 4, 0),  # analog block 0..4
        (10, 2, 0),  # discrete inputs 0..1
        (1, 16, 2311),  # first contact: ABB ramp times (23.12, 23.13)
        (1, 3, 106),  # aux rotation: ABB current first
    ]
    assert word(sent[8], 4) == 5 and word(sent[9], 4) == 2
    assert (word(sent[10], 7), word(sent[10], 9)) == (1000, 1000)  # 100 s, 10 = 1 s
    second = [(r[0], word(r, 2)) for r in one_cycle(fb, 100, Drives())]
    third = [(r[0], word(r, 2)) for r in one_cycle(fb, 200, Drives())]
    assert second[-1] == (2, 16099) and third[-1] == (2, 16139)  # the rotation goes on
    assert second[-2] == (2, 3409) and third[-2] == (3, 321)  # ramps: one drive per cycle
    assert fb.cycles == 3 and fb.failed == 0 and fb.transactions == 36


def test_timeouts_and_gap_follow_the_baud_rate():
    fb = fbm.Fieldbus(config(), Snapshot(3))
    # (8 + 11) bytes + 3.5 characters = 248 bits at 19200 baud = 12.9 ms -> 13, + 5 + 10.
    assert fb.timeout_ms(8, 11) == 28
    assert fb.gap_us == 2006
    cfg = config()
    cfg["bus"]["baud"] = 9600
    slow = fbm.Fieldbus(cfg, Snapshot(3))
    assert slow.timeout_ms(8, 11) == 26 + 15 and slow.gap_us == 4011
    cfg["bus"]["baud"] = 115200
    assert fbm.Fieldbus(cfg, Snapshot(3)).gap_us == 1750  # fixed above 19200 baud
    # The master's deadline is set from it when the request is handed out.
    request = fb.next_request(0)
    assert fb.master.timeout_ms == fb.timeout_ms(len(request), 11)
    assert fb.poll(27) == fbm.BUSY
    assert fb.poll(28) == fbm.IDLE  # timed out: the retry is next
    assert fb.retries_used == 1 and fb.last_error[0] == fbm.ERR_TIMEOUT
    # ... once the line has been silent for the timeout (a late answer could still come).
    assert fb.next_request(30) is None and fb.next_cycle_ms() == 56
    assert fb.next_request(55) is None
    assert bytes(fb.next_request(56)) == request


def test_commands_become_words_and_references():
    snap = Snapshot(3)
    fb = fbm.Fieldbus(config(), snap)
    for cmd in snap.commands:
        cmd.command = CMD_RUN
        cmd.speed_pct = 50.0
    sent = one_cycle(fb, 0, Drives())
    assert (word(sent[1], 7), word(sent[1], 9)) == (0x047F, 10000)  # ABB: running status
    assert word(sent[4], 4) == 0x2000 and word(sent[5], 4) == 0x047C  # Danfoss: reference, RUN
    assert (word(sent[7], 7), word(sent[7], 9)) == (0x047F, 0x2000)  # G120
    snap.commands[0].command = CMD_STOP
    snap.commands[0].speed_pct = 0.0
    sent = one_cycle(fb, 100, Drives())
    assert (word(sent[1], 7), word(sent[1], 9)) == (0x047E, 0)


def test_snapshot_gets_the_drive_values():
    snap = Snapshot(3)
    fb = fbm.Fieldbus(config(), snap)
    fb.update_snapshot()
    assert not snap.pumps[0].online and not snap.io_online
    for _ in range(4):  # the aux rotation reaches every block
        one_cycle(fb, 0, Drives())
    fb.update_snapshot()
    abb, danfoss, g120 = snap.pumps
    assert abb.online and abb.state == DRIVE_RUNNING and abb.speed_pct == 80.0
    assert abs(abb.power_kw - 55.0) < 1e-9 and abs(abb.current_a - 150.0) < 1e-9
    assert abs(danfoss.speed_pct - 79.998779296875) < 1e-9
    assert abs(danfoss.power_kw - 55.0) < 1e-9 and abs(danfoss.current_a - 149.0) < 1e-9
    assert abs(g120.current_a - 150.0) < 1e-9 and abs(g120.power_kw - 56.0) < 1e-9
    assert snap.io_online and fb.analog_ua[:5] == [8000, 9000, 10000, 11000, 12000]
    assert fb.inputs == 0b01


def test_a_trip_reads_the_fault_register_and_reset_is_consumed():
    snap = Snapshot(3)
    fb = fbm.Fieldbus(config(), snap)
    drives = Drives()
    commission(fb, 0, drives)
    drives.regs[3][109] = 0x0238  # G120 tripped
    drives.regs[3][399] = 30001
    sent = one_cycle(fb, 100, drives)
    assert (sent[-1][0], word(sent[-1], 2)) == (3, 399)  # fault first in the aux slot
    fb.update_snapshot()
    assert snap.pumps[2].state == DRIVE_TRIPPED and snap.pumps[2].fault_code == 30001
    assert fb.fault_meaning(2) == 1  # FAULT_OVERCURRENT
    sent = one_cycle(fb, 200, drives)
    assert word(sent[-1], 2) != 399  # read once per trip
    snap.commands[2].reset = True
    sent = one_cycle(fb, 300, drives)
    assert word(sent[7], 7) == 0x04F6 and not snap.commands[2].reset
    drives.regs[3][109] = 0x0231
    snap.commands[0].reset = True  # a healthy drive: consumed without an edge
    sent = one_cycle(fb, 400, drives)
    assert word(sent[1], 7) & 0x80 == 0 and not snap.commands[0].reset
    fb.update_snapshot()
    assert snap.pumps[2].fault_code == 0


def test_silent_device_is_retried_then_lost_then_probed_then_restored():
    snap = Snapshot(3)
    events = []
    cfg = config()
    cfg["bus"]["lost_probe_ms"] = 300  # (a short run: the VM runs the test in one heap)
    fb = fbm.Fieldbus(cfg, snap, on_event=lambda code, pump, at: events.append((code, pump, at)))
    drives = Drives()
    cut = [False]
    line = Line(fb, lambda r: None if cut[0] and r[0] == 2 else (8, drives.answer(r)))
    line.run_until(1000, cycles=1)
    cut[0] = True
    for n in range(3):
        first = len(line.sent)
        line.run_until(line.now + 1000, cycles=fb.cycles + 1)
        danfoss_requests = [r for _, r in line.sent[first:] if r[0] == 2]
        # Status read twice (retry), then the drive's other slots are skipped this cycle.
        assert len(danfoss_requests) == 2 and word(danfoss_requests[0], 2) == 50199
        assert fb.failures[1] == n + 1
    assert fb.lost[1] and events == [(EVENT_DRIVE_COMM_LOST, 1, events[0][2])]
    lost_at = events[0][2]
    fb.update_snapshot()
    assert not snap.pumps[1].online and snap.pumps[1].state == DRIVE_UNKNOWN
    assert snap.pumps[0].online
    # Lost: one probe (no retry) per lost_probe_ms, the others keep cycling.
    first = len(line.sent)
    line.run_until(lost_at + 750)
    probes = [t for t, r in line.sent[first:] if r[0] == 2]
    assert len(probes) == 2 and probes[0] - lost_at >= 300 and probes[1] - probes[0] >= 300
    assert sum(r[0] == 1 for _, r in line.sent[first:]) > 10
    cut[0] = False
    line.run_until(line.now + 400)
    assert fb.online(1) and events[-1][:2] == (EVENT_DRIVE_COMM_RESTORED, 1)
    fb.update_snapshot()
    assert snap.pumps[1].online


def test_a_device_is_lost_by_its_silence_not_by_a_few_unlucky_failures():
    cfg = config()
    cfg["bus"]["lost_after_ms"] = 2000
    cfg["bus"]["cycle_ms"] = 200
    events = []
    fb = fbm.Fieldbus(cfg, Snapshot(3), on_event=lambda code, pump, at: events.append((code, at)))
    drives = Drives()
    silent = [False]
    line = Line(fb, lambda r: None if silent[0] and r[0] == 2 else (8, drives.answer(r)))
    line.run_until(1000)
    # Bus noise: 1.5 s without a good answer, many failed transactions in a row: not lost.
    silent[0] = True
    line.run_until(2500)
    assert fb.failures[1] >= 5 and not fb.lost[1] and events == []
    silent[0] = False
    line.run_until(2800)  # one good answer: the silence starts over
    assert fb.failures[1] == 0 and fb.online(1)
    silent[0] = True
    cut_at = line.now
    last_good = max(t for t, r in line.sent if r[0] == 2) + 8  # (its answer's arrival)
    line.run_until(last_good + 1990)
    assert not fb.lost[1] and events == []
    line.run_until(last_good + 2500)
    assert fb.lost[1] and [c for c, _ in events] == [EVENT_DRIVE_COMM_LOST]
    assert 2000 <= events[0][1] - last_good <= 2000 + 200 + 100, (cut_at, events)  # a cycle + try
    # A runtime that stalled longer than lost_after_ms: one failure loses nothing (the count).
    fb = fbm.Fieldbus(cfg, Snapshot(3), on_event=lambda code, pump, at: events.append((code, at)))
    line = Line(fb, lambda r: None if silent[0] and r[0] == 2 else (8, drives.answer(r)))
    silent[0] = False
    line.run_until(1000)
    line.now = 9000
    silent[0] = True
    line.run_until(9150)
    assert fb.failures[1] == 1 and not fb.lost[1]
    line.run_until(10000)
    assert fb.lost[1] and fb.failures[1] >= 3


def test_everything_lost_sends_only_due_probes():
    cfg = config(retries=0)
    cfg["bus"]["lost_after_failures"] = 1
    fb = fbm.Fieldbus(cfg, Snapshot(3))
    line = Line(fb, lambda r: None)
    line.run_until(900)
    # Every device's first read failed once (each followed by the line's silence): all lost.
    assert [r[0] for _, r in line.sent] == [1, 2, 3, 10]
    assert fb.lost == [True, True, True, True] and fb.cycles == 1
    assert line.sent[-1][0] < 400  # nothing more was due until 900
    line.run_until(1900)
    probes = line.sent[4:]
    assert sorted(r[0] for _, r in probes) == [1, 2, 3, 10]  # one probe per device
    for k in range(4):
        assert probes[k][0] - line.sent[k][0] >= 1000  # a lost_probe_ms after its loss
    # Passes over the plan that send nothing are not cycles.
    cycles = fb.cycles
    assert fb.next_request(1901) is None and fb.next_request(1950) is None
    assert fb.cycles == cycles


def test_crc_error_and_unexpected_frames_are_retried():
    fb = fbm.Fieldbus(config(), Snapshot(3))
    drives = Drives()
    request = bytes(fb.next_request(0))
    bad = bytearray(drives.answer(request))
    bad[4] ^= 0x01
    fb.receive(bad)
    assert fb.poll(10) == fbm.BUSY
    assert fb.poll(40) == fbm.IDLE and fb.last_error[0] == fbm.ERR_CRC
    assert fb.next_request(60) is None  # the line settles: silent for the timeout (28 ms)
    fb.receive(b"\x00\x01")  # ... bytes meanwhile: discarded, the silence starts again
    assert fb.next_request(68) is None and fb.next_request(95) is None
    assert bytes(fb.next_request(96)) == request  # the retry
    other = with_crc(bytes((7, 3, 2, 0, 0)))  # another unit answers
    fb.receive(other)
    assert fb.poll(124) == fbm.IDLE and fb.last_error[0] == fbm.ERR_UNEXPECTED
    assert fb.failed == 1 and fb.failures[0] == 1 and fb.retries_used == 1


def test_exception_response_is_not_retried():
    fb = fbm.Fieldbus(config(), Snapshot(3))
    request = bytes(fb.next_request(0))
    fb.receive(with_crc(bytes((1, 0x83, 2))))
    assert fb.poll(1) == fbm.IDLE
    assert fb.last_error[0] == fbm.ERR_EXCEPTION and fb.retries_used == 0 and fb.failed == 1
    following = bytes(fb.next_request(1))
    assert following != request and following[0] == 2  # ABB skipped for the rest of the cycle


def test_bytes_outside_a_transaction_are_counted_not_taken():
    fb = fbm.Fieldbus(config(), Snapshot(3))
    assert fb.receive(b"\x01\x02\x03") == 0 and fb.stray_bytes == 3


class Line:
    """The RS-485 line in virtual time, run ms by ms as the runtime drives it: the bytes due are
    fed, the transaction polled, the next request sent. reply(request) -> (delay_ms, response)
    or None (silence): the device's answer arrives delay_ms after the request, even after the
    master's deadline."""

    def __init__(self, fb, reply):
        self.fb = fb
        self.reply = reply
        self.now = 0
        self.replies = []  # [at_ms, response bytes]
        self.sent = []  # (ms, request)
        self.arrived = []  # (ms, response bytes)

    def run_until(self, end_ms, cycles=0):
        """Run to end_ms, or until the fieldbus has completed ``cycles`` cycles (0: no limit)."""
        fb = self.fb
        while self.now < end_ms and not (cycles and fb.cycles >= cycles):
            now = self.now
            replies = self.replies
            k = 0
            while k < len(replies):  # (no list per ms: the VM runs the test in one heap)
                if replies[k][0] <= now:
                    data = replies.pop(k)[1]
                    self.arrived.append((now, data))
                    fb.receive(data)
                else:
                    k += 1
            fb.poll(now)
            frame = fb.next_request(now)
            if frame is not None:
                request = bytes(frame)
                self.sent.append((now, request))
                answer = self.reply(request)
                if answer is not None:
                    self.replies.append([now + answer[0], answer[1]])
            self.now = now + 1


def late_once(drives, late, reply_ms=8, late_ms=38):
    """Every request answered after reply_ms, the first for which late(request) after late_ms."""
    done = [False]

    def reply(request):
        if not done[0] and late(request):
            done[0] = True
            return late_ms, drives.answer(request)
        return reply_ms, drives.answer(request)

    return reply


def test_a_late_answer_is_not_taken_for_the_next_read_of_the_same_shape():
    # Danfoss status (0xC417) and main actual value (0xC421) are both fc03, one register: the
    # same response shape. The status read's answer comes after its deadline; whatever request is
    # on the line then must not take it (it did: the actual speed read the status word).
    fb = fbm.Fieldbus(config(), Snapshot(3))
    drives = Drives()
    line = Line(fb, late_once(drives, lambda r: r[0] == 2 and word(r, 2) == 50199, 8, 38))
    deadline = fb.timeout_ms(8, 7)
    assert 38 > deadline  # a timeout, then the answer: while the next read of unit 2 waits
    line.run_until(400, cycles=1)  # the next cycle would read the actual value again
    assert fb.actual_raw[1] == 0x3333, hex(fb.actual_raw[1])  # not the status word 0x0F07
    assert fb.status_word[1] == 0x0F07
    assert fb.cycles == 1 and fb.retries_used == 1 and fb.failed == 0
    # The late answer was discarded, and the retry waited for a silence of the timeout after it.
    late_at = [t for t, r in line.arrived if r == drives.answer(line.sent[2][1])][0]
    retry_at = [t for t, r in line.sent if r == line.sent[2][1]][1]
    assert retry_at - late_at >= deadline, (late_at, retry_at)
    assert fb.stray_bytes == 7


def test_a_healthy_line_sends_the_next_request_at_once():
    fb = fbm.Fieldbus(config(), Snapshot(3))
    drives = Drives()
    line = Line(fb, lambda r: (8, drives.answer(r)))
    line.run_until(200)
    gaps = [line.sent[k + 1][0] - line.sent[k][0] for k in range(len(line.sent) - 1)]
    assert fb.failed == 0 and fb.retries_used == 0 and gaps and max(gaps) == 8


def test_bad_config_is_refused_with_the_field():
    cases = []
    cfg = config()
    cfg["pumps"][1]["unit"] = 1
    cases.append((cfg, "unit 1"))
    cfg = config()
    cfg["pumps"][0]["profile"] = "vacon"
    cases.append((cfg, "profile"))
    cfg = config()
    cfg["bus"]["retries"] = -1
    cases.append((cfg, "bus.retries"))
    cfg = config()
    cfg["io"]["unit"] = 300
    cases.append((cfg, "io.unit"))
    cfg = config()
    cfg["pumps"] = []
    cases.append((cfg, "pumps"))
    for cfg, field in cases:
        try:
            fbm.Fieldbus(cfg, Snapshot(3))
        except fbm.FieldbusConfigError as e:
            assert field in str(e), (field, str(e))
            continue
        raise AssertionError("accepted a config with a bad " + field)


def test_a_healthy_cycle_allocates_nothing_beyond_the_codec():
    snap = Snapshot(3)
    fb = fbm.Fieldbus(config(), snap)
    drives = Drives()
    for cmd in snap.commands:
        cmd.command = CMD_RUN
        cmd.speed_pct = 80.0
    commission(fb, 0, drives)
    start = fb.cycles
    # Four cycles' requests and responses (the aux rotation's period), prepared beforehand.
    requests = []
    for _ in range(4):
        requests += one_cycle(fb, 0, drives)
    responses = [drives.answer(r) for r in requests]
    clock = [0]

    def four_cycles():
        for response in responses:
            fb.next_request(clock[0])
            fb.receive(response)
            fb.poll(clock[0])
        clock[0] += 1

    # The same transactions on a bare RtuMaster: what the codec itself allocates.
    m = mb.RtuMaster()
    calls = []
    for r in requests:
        unit, fc, address, count = r[0], r[1], word(r, 2), word(r, 4)
        if fc == 3:
            calls.append((m.read_holding_registers, unit, address, count))
        elif fc == 4:
            calls.append((m.read_input_registers, unit, address, count))
        elif fc == 2:
            calls.append((m.read_discrete_inputs, unit, address, count))
        elif fc == 6:
            calls.append((m.write_register, unit, address, count))
        else:
            calls.append((m.write_registers, unit, address, [word(r, 7), word(r, 9)]))

    def four_bare_cycles():
        for k in range(len(calls)):
            call = calls[k]
            call[0](call[1], call[2], call[3])
            m.poll(0)
            m.receive(responses[k])
            if m.poll(0) != mb.DONE:
                raise AssertionError("bare master: no response")

    four_cycles()
    four_bare_cycles()
    assert fb.failed == 0 and fb.cycles == start + 8
    per_cycle = bytes_allocated(four_cycles) // 4
    codec = bytes_allocated(four_bare_cycles) // 4
    assert fb.failed == 0 and fb.cycles == start + 12
    if ON_MICROPYTHON:
        assert per_cycle - codec <= 16, (per_cycle, codec)
    else:
        assert per_cycle <= 4000, per_cycle


def ramp_config():
    cfg = config()
    cfg["pumps"][1]["ramp_up_s"] = 120.0  # Danfoss: its own times, 32-bit
    cfg["pumps"][1]["ramp_down_s"] = 150.0
    return cfg


def ramp_requests(sent):
    ramp_addresses = (2311, 3409, 3419, 321, 3016, 4179, 320)
    return [(r[0], r[1], word(r, 2)) for r in sent if word(r, 2) in ramp_addresses]


def test_ramp_times_are_written_then_read_back_at_first_contact():
    fb = fbm.Fieldbus(ramp_config(), Snapshot(3))
    drives = Drives()
    sent = []
    for k in range(14):
        sent += one_cycle(fb, k * 100, drives)
    assert fb.ramp_ok == [True, True, True]
    assert ramp_requests(sent) == [
        (1, 16, 2311),  # ABB 23.12 + 23.13 in one write
        (2, 16, 3409),  # Danfoss 3-41 (two registers)
        (3, 16, 321),  # G120 p1120 + p1121
        (1, 16, 3016),  # ABB 30.17 maximum current
        (2, 16, 3419),  # Danfoss 3-42
        (3, 16, 320),  # G120 p0640 current limit
        (1, 3, 2311),  # read-backs
        (2, 16, 4179),  # Danfoss 4-18 current limit (two registers)
        (3, 3, 321),
        (1, 3, 3016),
        (2, 3, 3409),
        (3, 3, 320),
        (2, 3, 3419),
        (2, 3, 4179),
    ]
    assert (drives.regs[1][2311], drives.regs[1][2312]) == (1000, 1000)  # 100 s in 0.1 s
    assert (drives.regs[2][3409], drives.regs[2][3410]) == (0, 12000)  # 120 s in 0.01 s
    assert (drives.regs[2][3419], drives.regs[2][3420]) == (0, 15000)
    assert (drives.regs[3][321], drives.regs[3][322]) == (10000, 10000)
    assert drives.regs[1][3016] == 2000 and drives.regs[3][320] == 2000  # 200.0 A: 100 %
    assert (drives.regs[2][4179], drives.regs[2][4180]) == (0, 1000)  # 100.0 %
    more = ramp_requests(one_cycle(fb, 1400, drives) + one_cycle(fb, 59000, drives))
    assert more == []  # verified: quiet until the periodic check


def test_a_ramp_changed_at_the_keypad_is_found_and_rewritten():
    events = []
    fb = fbm.Fieldbus(config(), Snapshot(3), on_event=lambda *e: events.append(e))
    drives = Drives()
    commission(fb, 0, drives)
    drives.regs[3][322] = 500  # someone set 5 s ramp-down at the G120 panel
    sent = []
    for k in range(12):  # one drive's ramp step per cycle, in turn
        sent += one_cycle(fb, 60000 + k * 100, drives)
    assert (3, 3, 321) in ramp_requests(sent) and (3, 16, 321) in ramp_requests(sent)
    assert drives.regs[3][322] == 10000 and fb.ramp_ok[2] and events == []


def test_a_drive_that_keeps_other_ramps_raises_one_event():
    events = []
    fb = fbm.Fieldbus(config(), Snapshot(3), on_event=lambda *e: events.append(e))
    drives = Drives()

    def g120_ignores_ramp_writes(request):
        if request[0] == 3 and request[1] == 16 and word(request, 2) == 321:
            return echo_response(request)  # acknowledged, not applied (e.g. parameter locked)
        return drives.answer(request)

    now = answered_cycles(fb, 0, g120_ignores_ramp_writes, 30)
    assert events == [(EVENT_DRIVE_RAMP_MISMATCH, 2, events[0][2])]
    assert fb.ramp_seen_ds[2] == 100 and not fb.ramp_ok[2]  # read back 10 s
    assert fb.ramp_ok[0] and fb.ramp_ok[1] and not fb.lost[2] and fb.failed == 0
    # Retried once a check period, without a new event; a drive that takes it ends the alarm.
    before = fb.attempts
    for _ in range(10):
        one_cycle(fb, now, drives)
        now += 100
    assert not fb.ramp_ok[2] and fb.attempts - before == 10 * 11  # no ramp traffic meanwhile
    commission(fb, now + 60000, drives)
    assert fb.ramp_ok[2] and len(events) == 1


def test_a_drive_that_keeps_its_own_current_limit_raises_one_limit_event():
    events = []
    fb = fbm.Fieldbus(config(), Snapshot(3), on_event=lambda *e: events.append(e))
    drives = Drives()

    def danfoss_ignores_limit_writes(request):
        if request[0] == 2 and request[1] == 16 and word(request, 2) == 4179:
            return echo_response(request)  # acknowledged, not applied
        return drives.answer(request)

    now = answered_cycles(fb, 0, danfoss_ignores_limit_writes, 40)
    assert events == [(EVENT_DRIVE_LIMIT_MISMATCH, 1, events[0][2])]
    assert fb.ramp_seen_ds[1] == 1100 and not fb.ramp_ok[1]  # read back 110.0 %
    assert fb.ramp_ok[0] and fb.ramp_ok[2] and fb.failed == 0
    commission(fb, now + 60000, drives)  # a drive that takes it ends the alarm
    assert fb.ramp_ok[1] and len(events) == 1


def test_a_current_limit_read_back_in_amps_is_reported_in_percent():
    events = []
    fb = fbm.Fieldbus(config(), Snapshot(3), on_event=lambda *e: events.append(e))
    drives = Drives()

    def g120_keeps_180_a(request):
        if request[0] == 3 and request[1] == 16 and word(request, 2) == 320:
            drives.regs[3][320] = 1800
            return echo_response(request)
        return drives.answer(request)

    answered_cycles(fb, 0, g120_keeps_180_a, 40)
    assert events == [(EVENT_DRIVE_LIMIT_MISMATCH, 2, events[0][2])]
    assert fb.ramp_seen_ds[2] == 900  # 180.0 A of 200 A


def test_a_refused_current_limit_is_a_limit_event_not_a_comm_loss():
    events = []
    fb = fbm.Fieldbus(config(), Snapshot(3), on_event=lambda *e: events.append(e))
    drives = Drives()

    def abb_refuses_the_limit(request):
        if request[0] == 1 and word(request, 2) == 3016:
            return exception_response(request, 3)  # illegal data value
        return drives.answer(request)

    answered_cycles(fb, 0, abb_refuses_the_limit, 16)
    assert events == [(EVENT_DRIVE_LIMIT_MISMATCH, 0, events[0][2])]
    assert fb.ramp_seen_ds[0] == -1 and fb.failures[0] == 0 and fb.online(0)


def exception_response(request, code):
    return with_crc(bytes((request[0], request[1] | 0x80, code)))


def test_a_refused_ramp_write_is_an_event_not_a_comm_loss():
    events = []
    fb = fbm.Fieldbus(config(), Snapshot(3), on_event=lambda *e: events.append(e))
    drives = Drives()

    def abb_refuses(request):
        if request[0] == 1 and word(request, 2) == 2311:
            return exception_response(request, 3)  # illegal data value
        return drives.answer(request)

    answered_cycles(fb, 0, abb_refuses, 12)
    assert events == [(EVENT_DRIVE_RAMP_MISMATCH, 0, events[0][2])]
    assert fb.ramp_seen_ds[0] == -1 and fb.failures[0] == 0 and fb.online(0)


def test_ramps_are_written_again_after_a_comm_restore_and_a_reset():
    snap = Snapshot(3)
    fb = fbm.Fieldbus(config(), snap)
    drives = Drives()
    commission(fb, 0, drives)
    drives.regs[1][2311] = 200  # the drive was power cycled: its stored ramps are back
    fb.lost[0] = True  # (as _fail declares it) ... then the first good answer restores it
    fb._probe_ms[0] = -5000
    sent = []
    for k in range(3):
        sent += one_cycle(fb, 100 + k * 100, drives)
    assert (1, 16, 2311) in ramp_requests(sent) and drives.regs[1][2311] == 1000
    commission(fb, 1000, drives)
    drives.regs[3][109] = 0x0238  # G120 tripped; the reset edge re-commissions it
    one_cycle(fb, 2000, drives)
    snap.commands[2].reset = True
    drives.regs[3][321] = 1000
    sent = []
    for k in range(4):
        sent += one_cycle(fb, 2100 + k * 100, drives)
    assert not snap.commands[2].reset
    assert (3, 16, 321) in ramp_requests(sent) and drives.regs[3][321] == 10000
