"""The RS-485 poll cycle: drives and the I/O module on one Modbus RTU bus, sans-IO.

The runtime does the I/O and the timing; this module decides what goes on the wire:

    frame = fb.next_request(now_ms)   # bytes to send now, or None (a transaction is pending)
    fb.receive(data)                  # bytes from the UART, in any split
    fb.poll(now_ms)                   # BUSY / IDLE: completes or times out the transaction
    fb.update_snapshot()              # once per control tick: results -> Snapshot

``next_request`` polls first, so a runtime loop is just "feed what arrived, ask for the next frame,
send it". The runtime must leave the Modbus inter-frame silence (3.5 character times, ``gap_us``)
between the last byte it received and the first byte it sends: at 19200 baud that is 2.0 ms, finer
than the millisecond ticks this module works with, so it is the UART layer's job (a board waits it
out with ticks_us; the simulator's runner schedules it in virtual time).

The cycle (built once from the config, ``plan`` below), per drive in config order:
- one read of the profile's fast block: status word, and the actual speed (and ABB's ACT2 power)
  when adjacent; Danfoss FC needs a second read for its main actual value;
- one write of control word + reference (fc16 when adjacent, else two fc06 writes, the reference
  first: a RUN word must never reach a drive whose reference is still the old one). The words
  come from the drive profile (drives.py), driven by the status read just before, from the
  Snapshot's DriveCommand of this pump. A reset request (DriveCommand.reset) is consumed (set back
  to False) once the reset edge has been written, or at once if the drive is not tripped;
then the I/O module: one read of the analog block (input registers, uA) and one of the discrete
inputs; then one slow ("aux") read that rotates over the drives' current/power registers, except
that a drive newly found tripped gets its fault register read first. NE43 status registers of the
module are not read: the status follows from the current, which sensors.py evaluates.
Before the aux read, one ramp-time transaction when a drive is due one (K_RAMP; skipped
otherwise; the control writes come earlier in the cycle and are never delayed by it). Commissioning a drive writes its ramp times
and its current limit (drives.py: ramp_blocks / ramp_values, one fc16 per block, the current
limit's the last), then reads every block back; it starts
at first contact, after a comm restore and after a fault-reset edge was written (a reset or power
cycle may have restored the drive's stored ramps), and the read-back is repeated every
_RAMP_CHECK_MS (someone may change them at the keypad). A read-back that differs, or an exception
answer (the drive refuses the value; it is there, so this is not a comm failure), rewrites at once;
when the second attempt in a row still differs, ``on_event(EVENT_DRIVE_RAMP_MISMATCH, pump,
now_ms)`` is called once (``ramp_seen_ds[pump]``: the time read back in 0.1 s, -1 = refused), or
EVENT_DRIVE_LIMIT_MISMATCH when the current limit is the block that differs or was refused
(``ramp_seen_ds[pump]`` then holds the limit read back in 0.1 % of the rated current), and
the drive is rewritten every _RAMP_CHECK_MS until a read-back matches (``ramp_ok[pump]``: ramp
times and current limit verified).
Pacing: bus.cycle_ms > 0 starts a cycle at most that often (the bus rests in between); 0 runs
cycles back to back at the wire's limit.
Timeouts: per request, (request + response bytes) * 11 bits / baud + 3.5 characters, rounded up
to ms, + bus.turnaround_ms (device reaction) + bus.timeout_margin_ms (runtime latency).
Late answers: RTU responses carry no address or transaction id, so after a timeout, CRC error or
unexpected frame the next request (the retry, or the next slot) waits until the line has been
silent for that transaction's timeout (bytes meanwhile are discarded and start the silence again;
modbus.py's ``ready``). Otherwise the failed request's late answer is taken for the answer to the
next read of the same unit, function and byte count at another address (seen on a loaded host:
Danfoss 0x3EE3 read as 0xC421's value). Bytes while nothing is pending are discarded
(``stray_bytes``). Cost: one more timeout's silence per failed attempt, none on a healthy cycle.
Errors: timeouts, CRC errors and unexpected frames are retried bus.retries times; an exception
response is not (the device is there and said no). A transaction that still fails counts one
failure for its device and skips the device's remaining transactions this cycle. A device is
lost when it has failed bus.lost_after_failures consecutive transactions AND has not answered well
for bus.lost_after_ms (counted from its last good answer; for a device never heard, from its first
failure). Time, not the count, is what tells a dead unit from bus noise: at 10 % of frames
corrupted, three failed transactions in a row happen a few times an hour per device (each one a
drive declared lost, replaced by staging and stopped when it answers a second later: a 70 s dip of
the DP), while the longest silence of a device in 4 h of such noise was 2.5 s. The default 5000
is half the drives' own comm timeout (10 s: only then do they change what they do, to their
comm-loss action), so the agent knows of a loss, and the standby is starting, before the lost
drive itself reacts; until then it runs on at its last command, as the agent assumes. The count
keeps a runtime that stalled for longer than lost_after_ms from losing a device on one failure.
On loss: PumpStatus.online = False (state
DRIVE_UNKNOWN), Snapshot.io_online = False for the I/O module, and for a drive
``on_event(EVENT_DRIVE_COMM_LOST, pump_index, now_ms)`` is called (pump_index 0-based). A lost
device is probed with its first read once every bus.lost_probe_ms, without retries, so a dead unit
costs one timeout per probe instead of its retries every cycle; the first good answer brings it
back (EVENT_DRIVE_COMM_RESTORED).
Allocation: the cycle stores register values as ints; floats (speed, current, power) are made in
``update_snapshot`` and only for values that changed. The reference float is converted when the
command's speed object changes. Errors allocate (exception objects); a healthy cycle does not,
apart from what RtuMaster itself allocates per request.
"""

from micropython import const

from relaypump import codes
from relaypump import modbus as mb
from relaypump.drives import make_profile
from relaypump.snapshot import DRIVE_TRIPPED, DRIVE_UNKNOWN
from relaypump.ticks import ticks_diff as _ticks_diff

IDLE = const(0)  # no transaction pending: next_request will hand out the next frame
BUSY = const(1)

# Kinds of transaction in the plan.
K_STATUS = const(0)
K_ACTUAL = const(1)
K_WRITE = const(2)  # fc16 control word + reference
K_WRITE_CONTROL = const(3)  # fc06
K_WRITE_REFERENCE = const(4)  # fc06
K_ANALOG = const(5)
K_INPUTS = const(6)
# AUX and RAMP come last: their request varies by cycle (the others' timeouts are kept per slot)
K_AUX = const(7)
K_RAMP = const(8)  # ramp-time write or read-back of the drive due one

# Why a device's last transaction failed.
ERR_NONE = const(0)
ERR_TIMEOUT = const(1)
ERR_CRC = const(2)
ERR_UNEXPECTED = const(3)
ERR_EXCEPTION = const(4)

_FAULT_BLOCK = const(255)  # aux target: the fault register
_FC_DISCRETE_INPUTS = const(2)  # modbus.READ_* (const: the name stays in this module)
_FC_HOLDING_REGISTERS = const(3)
_FC_INPUT_REGISTERS = const(4)
_BITS_PER_CHAR = const(11)
_RAMP_CHECK_MS = const(60000)  # ramp times read back this often; a refused drive retried as often
_RAMP_DONE = const(255)  # ramp step: verified, next read-back at _ramp_due_ms


class FieldbusConfigError(ValueError):
    """The config's bus / pumps / io section cannot drive a bus: names the field and the reason."""


def _int(section, key, default, low, high, where):
    value = section.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise FieldbusConfigError("%s.%s: need an integer %d..%d" % (where, key, low, high))
    return value


class Fieldbus:
    def __init__(self, config, snapshot, sensors=None, on_event=None):
        bus = config.get("bus", {})
        self.baud = _int(bus, "baud", 19200, 1200, 1000000, "bus")
        # device reaction + runtime latency, added to every transaction's wire time
        self._slack_ms = _int(bus, "turnaround_ms", 5, 0, 10000, "bus") + _int(
            bus, "timeout_margin_ms", 10, 0, 10000, "bus"
        )
        self.retries = _int(bus, "retries", 1, 0, 10, "bus")
        self.lost_after = _int(bus, "lost_after_failures", 3, 1, 1000, "bus")
        self.lost_after_ms = _int(bus, "lost_after_ms", 5000, 0, 3600000, "bus")
        self.lost_probe_ms = _int(bus, "lost_probe_ms", 1000, 0, 3600000, "bus")
        # Cycles start at most every cycle_ms (0: back to back, as fast as the wire allows).
        self.cycle_period_ms = _int(bus, "cycle_ms", 0, 0, 60000, "bus")
        # 3.5 characters of silence between frames; fixed 1750 us above 19200 baud (spec 2.5.1.1).
        if self.baud > 19200:
            self.gap_us = 1750
        else:
            self.gap_us = (38500000 + self.baud - 1) // self.baud

        pumps = config.get("pumps")
        if not isinstance(pumps, list) or not pumps:
            raise FieldbusConfigError("pumps: need a list of at least one drive")
        rated_kw = config.get("pump_model", {}).get("rated_kw", 0.0)
        ramp_s = 100.0 / config.get("speed", {}).get("slew_pct_per_s", 1.0)  # config.py's default
        io = config.get("io", {})
        self.snapshot = snapshot
        self.sensors = sensors
        self.on_event = on_event
        try:
            self.profiles = [make_profile(p, rated_kw, ramp_s) for p in pumps]
        except ValueError as e:
            raise FieldbusConfigError("pumps: %s" % e) from None
        n = len(pumps)
        if len(snapshot.pumps) != n:
            raise FieldbusConfigError(
                "pumps: %d in config, %d in snapshot" % (n, len(snapshot.pumps))
            )
        self.pump_count = n  # also the device index of the I/O module
        units = [_int(p, "unit", 0, 1, 247, "pumps[%d]" % i) for i, p in enumerate(pumps)]
        units.append(_int(io, "unit", 0, 1, 247, "io"))
        for i in range(len(units)):
            if units[i] in units[:i]:
                raise FieldbusConfigError("unit %d: used twice on the bus" % units[i])
        self.units = units

        registers = [
            _int(c, "register", 0, 0, 0xFFFF, "io.channels." + name)
            for name, c in io.get("channels", {}).items()
        ]
        inputs = [
            _int(io.get("inputs", {}), k, 0, 0, 0xFFFF, "io.inputs") for k in io.get("inputs", {})
        ]
        self.analog_address = min(registers) if registers else 0
        self.analog_count = max(registers) - self.analog_address + 1 if registers else 0
        self.input_count = max(inputs) + 1 if inputs else 0
        if self.analog_count > 125 or self.input_count > 2000:
            raise FieldbusConfigError("io: channels span more registers / inputs than one read")
        self.analog_ua = [0] * max(1, self.analog_count)  # uA, indexed from analog_address
        self.inputs = 0  # discrete inputs, bit i = input i

        devices = n + 1
        self.failures = [0] * devices  # consecutive failed transactions
        self.lost = [False] * devices
        self._good_ms = [0] * devices  # last good answer (never heard: first failure)
        self.heard = [False] * devices  # answered at least once
        self.last_error = [ERR_NONE] * devices
        self.lost_events = [0] * devices  # how often each device was declared lost
        self._probe_ms = [0] * devices
        self._skip = 0  # devices that failed this cycle (bit mask)
        # Per drive: raw registers of the last good reads.
        self.state = [DRIVE_UNKNOWN] * n
        self.status_word = [0] * n
        self.actual_raw = [0] * n
        self.current_raw = [0] * n
        self.power_raw = [0] * n
        self.fault_raw = [0] * n
        self.at_ms = [0] * n
        self._fault_read = 0  # tripped drives whose fault register was read (bit mask)
        self._published = [-1] * (3 * n)  # per drive: actual, current, power in the Snapshot
        self._ref_source = [None] * n  # speed float the cached reference was made from
        self._ref_raw = [0] * n  # also the reference word of this cycle's write
        self._control = [0] * n  # control words of this cycle's write (kept for retries)
        self._values = [0, 0]  # fc16 payload
        # Ramp commissioning per drive: step k < blocks writes block k, blocks <= k < 2 blocks reads
        # block k - blocks back, _RAMP_DONE waits for the next check; nothing is due before due_ms
        # (-1: due now).
        self._ramp_step = bytearray(n)
        self._ramp_due_ms = [-1] * n
        self._ramp_misses = bytearray(n)  # read-backs in a row that differed (or were refused)
        self._ramp_next = 0  # where the search for a drive due a ramp transaction starts
        self.ramp_ok = [False] * n  # read back equal to the config since the last (re)write
        # what a mismatching read-back gave: a ramp time in 0.1 s, a current limit in 0.1 % of the
        # rated current (the event says which); -1 refused
        self.ramp_seen_ds = [0] * n

        kinds = bytearray()
        devs = bytearray()
        aux_dev = bytearray()
        aux_block = bytearray()
        for i, p in enumerate(self.profiles):
            kinds.append(K_STATUS)
            devs.append(i)
            if p.ACTUAL_INDEX < 0 and p.ACTUAL_ADDRESS >= 0:
                kinds.append(K_ACTUAL)
                devs.append(i)
            if p.contiguous_write:
                kinds.append(K_WRITE)
                devs.append(i)
            else:
                kinds.extend(bytes((K_WRITE_REFERENCE, K_WRITE_CONTROL)))
                devs.extend(bytes((i, i)))
            for k in range(len(p.AUX_BLOCKS)):
                aux_dev.append(i)
                aux_block.append(k)
        if self.analog_count:
            kinds.append(K_ANALOG)
            devs.append(n)
        if self.input_count:
            kinds.append(K_INPUTS)
            devs.append(n)
        kinds.append(K_RAMP)
        devs.append(0)  # replaced by the chosen drive
        if len(aux_dev):
            kinds.append(K_AUX)
            devs.append(0)  # replaced by the chosen drive
        self.plan_kinds = kinds
        self.plan_devices = devs
        self._timeouts = [0] * len(kinds)  # per slot: its request's timeout (0: not yet / varies)
        # The master's buffers fit this plan: the longest request (an fc16 of the control word and
        # reference, or of a ramp block; reads and fc06 take 8 B) and twice the longest response
        # (at least 64 B: noise before a response is ruled out and dropped as the buffer fills).
        written = 2
        read = max(self.analog_count, (self.input_count + 15) >> 4)
        for p in self.profiles:
            read = max(read, p.STATUS_COUNT)
            for values in p.ramp_values:
                written = max(written, len(values))
                read = max(read, len(values))
            for block in p.AUX_BLOCKS:
                read = max(read, block[1])
        self.master = mb.RtuMaster(
            tx_size=9 + 2 * written, rx_size=max(64, 2 * (5 + 2 * read)), memo=len(kinds)
        )
        self._aux_dev = aux_dev
        self._aux_block = aux_block
        self._aux_next = 0
        self._chosen = 0  # the drive the AUX or the RAMP slot chose (one slot at a time)
        self._aux_target_block = 0

        self._slot = 0
        self._attempt = 0
        self._probing = False
        self._pending = False
        self._cycle_started = False
        self._cycle_done = False
        self._cycle_attempts = 0
        self._cycle_start_ms = 0
        # Counters for telemetry and the bench; they only grow (cycle_ms is the last cycle's).
        self.cycles = 0
        self.cycle_ms = 0
        self.transactions = 0  # completed (good) transactions
        self.attempts = 0  # requests sent, retries included
        self.retries_used = 0
        self.failed = 0  # transactions that failed after their retries
        self.stray_bytes = 0  # bytes received while nothing was pending

    # -- timing ---------------------------------------------------------------------------------

    def timeout_ms(self, request_len, response_len):
        """Deadline of one transaction, counted from handing out the request."""
        bits = (request_len + response_len) * _BITS_PER_CHAR + 39  # + 3.5 characters
        wire_ms = (bits * 1000 + self.baud - 1) // self.baud
        return wire_ms + self._slack_ms

    # -- the runtime's face ---------------------------------------------------------------------

    def next_request(self, now_ms):
        """The next frame to send (a memoryview, valid until the next call), or None while a
        transaction is pending or nothing is due (every device lost and no probe due)."""
        if self._pending and self.poll(now_ms) == BUSY:
            return None
        if not self.master.ready(now_ms):
            return None  # a failed transaction's answer may still come: the line settles first
        plan_len = len(self.plan_kinds)
        for _ in range(plan_len + 1):
            if not self._cycle_started:
                if (
                    self._cycle_done
                    and _ticks_diff(now_ms, self._cycle_start_ms) < self.cycle_period_ms
                ):
                    return None  # the cycle is paced: the next one starts on its period
                self._start_cycle(now_ms)
            frame = self._build(now_ms)
            if frame is not None:
                m = self.master
                slot = self._slot
                timeout = self._timeouts[slot]
                if not timeout:  # the first time, or an aux / ramp slot (their lengths vary)
                    timeout = self.timeout_ms(len(frame), m.response_length())
                    if self.plan_kinds[slot] < K_AUX:  # the same lengths every cycle: kept
                        self._timeouts[slot] = timeout
                m.timeout_ms = timeout
                m.poll(now_ms)  # arms the deadline
                self._pending = True
                self.attempts += 1
                return frame
            self._advance()
        return None

    def next_cycle_ms(self):
        """When a paced bus may start its next cycle (a runtime with nothing to send sleeps
        until then); the start of the present cycle when cycles run back to back; while the line
        settles after a failure, when it will have settled."""
        if self.master.settling():
            return self.master.settled_ms()
        return (self._cycle_start_ms + self.cycle_period_ms) & 0x3FFFFFFF

    def receive(self, data):
        """Feed bytes from the bus; returns how many the pending transaction took (none while
        nothing is pending: the master discards them, and a settling line starts its silence again)."""
        taken = self.master.receive(data)
        self.stray_bytes += len(data) - taken
        return taken

    def poll(self, now_ms):
        """Completes the pending transaction (response decoded, or its deadline passed)."""
        if not self._pending:
            return IDLE
        try:
            state = self.master.poll(now_ms)
        except mb.ModbusError as e:
            self._pending = False
            self._fail(e, now_ms)
            return IDLE
        if state != mb.DONE:
            return BUSY
        self._pending = False
        self._done(now_ms)
        return IDLE

    def update_snapshot(self):
        """Copy the latest drive data and link health into the Snapshot (call once per tick)."""
        snap = self.snapshot
        for i in range(self.pump_count):
            ps = snap.pumps[i]
            online = self.heard[i] and not self.lost[i]
            ps.online = online
            if not online:
                ps.state = DRIVE_UNKNOWN
                continue
            ps.state = self.state[i]
            ps.fault_code = self.fault_raw[i]
            ps.at_ms = self.at_ms[i]
            p = self.profiles[i]
            seen = self._published
            at = 3 * i
            raw = self.actual_raw[i]
            if raw != seen[at]:
                seen[at] = raw
                ps.speed_pct = p.speed_pct(raw)
            raw = self.current_raw[i]
            if raw != seen[at + 1]:
                seen[at + 1] = raw
                ps.current_a = raw * p.CURRENT_SCALE
            raw = self.power_raw[i]
            if raw != seen[at + 2]:
                seen[at + 2] = raw
                ps.power_kw = raw * p.power_scale
        io = self.pump_count  # the I/O module
        snap.io_online = self.heard[io] and not self.lost[io]

    def online(self, device):
        return self.heard[device] and not self.lost[device]

    def fault_meaning(self, pump):
        """FAULT_* (drives.py) of the pump's last fault code."""
        return self.profiles[pump].fault_meaning(self.fault_raw[pump])

    # -- the cycle ------------------------------------------------------------------------------

    def _start_cycle(self, now_ms):
        # A pass that sent nothing (every device lost, no probe due) is not a cycle.
        if self._cycle_done:
            self.cycle_ms = _ticks_diff(now_ms, self._cycle_start_ms)
        if self._cycle_done or not self.attempts:
            self._cycle_start_ms = now_ms
        self._cycle_done = False
        self._cycle_attempts = self.attempts
        self._cycle_started = True
        self._skip = 0

    def _advance(self):
        self._attempt = 0
        self._probing = False
        self._slot += 1
        if self._slot >= len(self.plan_kinds):
            self._slot = 0
            self._cycle_started = False
            if self.attempts != self._cycle_attempts:
                self.cycles += 1
                self._cycle_done = True

    def _build(self, now_ms):
        """The request of the current slot, or None when the slot is skipped."""
        slot = self._slot
        kind = self.plan_kinds[slot]
        dev = self.plan_devices[slot]
        if kind == K_AUX:
            if self._attempt == 0 and not self._choose_aux():
                return None
            dev = self._chosen
        elif kind == K_RAMP:
            if self._attempt == 0 and not self._choose_ramp(now_ms):
                return None
            dev = self._chosen
        if self._skip & (1 << dev):
            return None
        if self.lost[dev] and self._attempt == 0:
            # a lost device is probed with its first transaction of the cycle only (AUX and RAMP
            # never get here: they choose among the devices online)
            if slot and self.plan_devices[slot - 1] == dev:
                return None
            if _ticks_diff(now_ms, self._probe_ms[dev]) < self.lost_probe_ms:
                return None
            self._probe_ms[dev] = now_ms
            self._probing = True
        m = self.master
        unit = self.units[dev]
        # the slot is the memo of these reads: the same every cycle, their CRCs are made once
        if kind == K_ANALOG:
            return m.read(_FC_INPUT_REGISTERS, unit, self.analog_address, self.analog_count, slot)
        if kind == K_INPUTS:
            return m.read(_FC_DISCRETE_INPUTS, unit, 0, self.input_count, slot)
        p = self.profiles[dev]
        if kind == K_STATUS:
            return m.read(_FC_HOLDING_REGISTERS, unit, p.STATUS_ADDRESS, p.STATUS_COUNT, slot)
        if kind == K_ACTUAL:
            return m.read(_FC_HOLDING_REGISTERS, unit, p.ACTUAL_ADDRESS, 1, slot)
        if kind == K_AUX:
            block = self._aux_target_block
            if block == _FAULT_BLOCK:
                return m.read_holding_registers(unit, p.FAULT_ADDRESS, 1)
            address, count, _, _ = p.AUX_BLOCKS[block]
            return m.read_holding_registers(unit, address, count)
        if kind == K_RAMP:
            step = self._ramp_step[dev]
            blocks = len(p.ramp_blocks)
            if step < blocks:
                return m.write_registers(unit, p.ramp_blocks[step], p.ramp_values[step])
            step -= blocks
            return m.read_holding_registers(unit, p.ramp_blocks[step], len(p.ramp_values[step]))
        if self._attempt == 0 and kind != K_WRITE_CONTROL:  # the pair's words: made once
            self._make_command(dev)
        if kind == K_WRITE:
            values = self._values
            values[0] = self._control[dev]
            values[1] = self._ref_raw[dev]
            return m.write_registers(unit, p.CONTROL_ADDRESS, values)
        if kind == K_WRITE_CONTROL:
            return m.write_register(unit, p.CONTROL_ADDRESS, self._control[dev])
        return m.write_register(unit, p.REFERENCE_ADDRESS, self._ref_raw[dev])

    def _make_command(self, dev):
        cmd = self.snapshot.commands[dev]
        p = self.profiles[dev]
        self._control[dev] = p.control_word(cmd.command, cmd.reset)
        speed = cmd.speed_pct
        if speed is not self._ref_source[dev]:
            self._ref_source[dev] = speed
            self._ref_raw[dev] = p.reference(speed)

    def _choose_aux(self):
        """Fault register of a drive newly found tripped first, else the next block in turn."""
        for i in range(self.pump_count):
            if (
                self.state[i] == DRIVE_TRIPPED
                and not self._fault_read & (1 << i)
                and self.online(i)
            ):
                self._chosen = i
                self._aux_target_block = _FAULT_BLOCK
                return True
        count = len(self._aux_dev)
        for _ in range(count):
            k = self._aux_next
            self._aux_next = k + 1 if k + 1 < count else 0
            dev = self._aux_dev[k]
            if self.online(dev) and not self._skip & (1 << dev):
                self._chosen = dev
                self._aux_target_block = self._aux_block[k]
                return True
        return False

    def _choose_ramp(self, now_ms):
        """The next drive (in turn) whose ramp step is due; a verified one starts its read-back."""
        n = self.pump_count
        for k in range(n):
            dev = self._ramp_next + k
            if dev >= n:
                dev -= n
            if not self.online(dev) or self._skip & (1 << dev):
                continue
            due = self._ramp_due_ms[dev]
            if due >= 0 and _ticks_diff(now_ms, due) < 0:
                continue
            if self._ramp_step[dev] == _RAMP_DONE:
                self._ramp_step[dev] = len(self.profiles[dev].ramp_blocks)  # read back
            self._ramp_due_ms[dev] = -1
            self._chosen = dev
            self._ramp_next = dev + 1 if dev + 1 < n else 0
            return True
        return False

    def _recommission(self, dev):
        """Write the ramp times again from the first block, now."""
        self._ramp_step[dev] = 0
        self._ramp_due_ms[dev] = -1
        self._ramp_misses[dev] = 0
        self.ramp_ok[dev] = False

    def _ramp_done(self, dev, now_ms, refused):
        """A ramp write went through, or a block was read back (refused: an exception answer)."""
        p = self.profiles[dev]
        blocks = len(p.ramp_blocks)
        step = self._ramp_step[dev]
        if step < blocks and not refused:
            self._ramp_step[dev] = step + 1
            return
        block = step - blocks if step >= blocks else step
        limit = block == blocks - 1  # the current limit's block (drives.py: the last)
        seen = -1
        if not refused:
            m = self.master
            expected = p.ramp_values[block]
            for k in range(len(expected)):
                if m.register(k) != expected[k]:
                    if (p.LIMIT_WORDS if limit else p.RAMP_WORDS) == 2:  # one 32-bit value
                        high = m.register(0)
                        low = m.register(1)
                    else:
                        high = 0
                        low = m.register(k)
                    seen = p.limit_pct10(high, low) if limit else p.ramp_ds(high, low)
                    break
            else:
                if step + 1 < 2 * blocks:
                    self._ramp_step[dev] = step + 1
                    return
                self._ramp_step[dev] = _RAMP_DONE
                self._ramp_due_ms[dev] = (now_ms + _RAMP_CHECK_MS) & 0x3FFFFFFF
                self._ramp_misses[dev] = 0
                self.ramp_ok[dev] = True
                return
        # Differs or refused: rewrite now; from the second miss in a row on, alarm once and
        # retry only every check period (a drive that keeps refusing must not hog the slot).
        self.ramp_ok[dev] = False
        misses = self._ramp_misses[dev]
        if misses < 255:
            self._ramp_misses[dev] = misses + 1
        self._ramp_step[dev] = 0
        if misses >= 1:
            self._ramp_due_ms[dev] = (now_ms + _RAMP_CHECK_MS) & 0x3FFFFFFF
        if misses == 1:
            self.ramp_seen_ds[dev] = seen
            self._event(
                codes.EVENT_DRIVE_LIMIT_MISMATCH if limit else codes.EVENT_DRIVE_RAMP_MISMATCH,
                dev,
                now_ms,
            )

    def _target(self, kind, slot):
        if kind == K_AUX or kind == K_RAMP:
            return self._chosen
        return self.plan_devices[slot]

    def _done(self, now_ms):
        slot = self._slot
        kind = self.plan_kinds[slot]
        if kind == K_AUX or kind == K_RAMP:  # _target, inline: every transaction
            dev = self._chosen
        else:
            dev = self.plan_devices[slot]
        m = self.master
        if kind == K_STATUS:
            p = self.profiles[dev]
            word = m.register(0)
            self.status_word[dev] = word
            state = p.decode_status(word)
            self.state[dev] = state
            if state != DRIVE_TRIPPED:
                self.fault_raw[dev] = 0
                self._fault_read &= ~(1 << dev)
            if p.ACTUAL_INDEX >= 0:
                self.actual_raw[dev] = m.register(p.ACTUAL_INDEX)
            if p.POWER_INDEX >= 0:
                self.power_raw[dev] = m.register(p.POWER_INDEX)
            self.at_ms[dev] = now_ms
        elif kind == K_ACTUAL:
            self.actual_raw[dev] = m.register(0)
        elif kind == K_WRITE or kind == K_WRITE_CONTROL:
            cmd = self.snapshot.commands[dev]
            reset_sent = self.profiles[dev].reset_sent
            if cmd.reset and (reset_sent or self.state[dev] != DRIVE_TRIPPED):
                cmd.reset = False
            if reset_sent:
                self._recommission(dev)
        elif kind == K_ANALOG:
            ua = self.analog_ua
            for k in range(self.analog_count):
                ua[k] = m.register(k)
            if self.sensors is not None:
                self.sensors.sample_analog(now_ms, ua, self.analog_address)
        elif kind == K_INPUTS:
            bits = 0
            for k in range(self.input_count):
                if m.bit(k):
                    bits |= 1 << k
            self.inputs = bits
            if self.sensors is not None:
                self.sensors.sample_inputs(now_ms, bits)
        elif kind == K_AUX:
            block = self._aux_target_block
            if block == _FAULT_BLOCK:
                self.fault_raw[dev] = m.register(0)
                self._fault_read |= 1 << dev
            else:
                _, _, current_index, power_index = self.profiles[dev].AUX_BLOCKS[block]
                if current_index >= 0:
                    self.current_raw[dev] = m.register(current_index)
                if power_index >= 0:
                    self.power_raw[dev] = m.register(power_index)
        elif kind == K_RAMP:
            self._ramp_done(dev, now_ms, False)
        self.transactions += 1
        self.failures[dev] = 0
        self._good_ms[dev] = now_ms
        self.last_error[dev] = ERR_NONE
        self.heard[dev] = True
        if self.lost[dev]:
            self.lost[dev] = False
            if dev < self.pump_count:
                self._recommission(dev)
            self._event(codes.EVENT_DRIVE_COMM_RESTORED, dev, now_ms)
        self._advance()

    def _fail(self, error, now_ms):
        kind = self.plan_kinds[self._slot]
        dev = self._target(kind, self._slot)
        if isinstance(error, mb.ExceptionResponse):
            if kind == K_RAMP:  # the drive is there and refuses the value: not a comm failure
                self._ramp_done(dev, now_ms, True)
                self._advance()
                return
            code = ERR_EXCEPTION
        elif isinstance(error, mb.CrcError):
            code = ERR_CRC
        elif isinstance(error, mb.UnexpectedResponse):
            code = ERR_UNEXPECTED
        else:
            code = ERR_TIMEOUT
        self.last_error[dev] = code
        if code != ERR_EXCEPTION and not self._probing and self._attempt < self.retries:
            self._attempt += 1
            self.retries_used += 1
            return  # same slot again
        self.failed += 1
        if not self.failures[dev] and not self.heard[dev]:
            self._good_ms[dev] = now_ms  # never heard: its silence is counted from now
        self.failures[dev] += 1
        self._skip |= 1 << dev
        if (
            not self.lost[dev]
            and self.failures[dev] >= self.lost_after
            and _ticks_diff(now_ms, self._good_ms[dev]) >= self.lost_after_ms
        ):
            self.lost[dev] = True
            self._probe_ms[dev] = now_ms  # first probe one lost_probe_ms from now
            self.lost_events[dev] += 1
            self._event(codes.EVENT_DRIVE_COMM_LOST, dev, now_ms)
        self._advance()

    def _event(self, code, dev, now_ms):
        if dev < self.pump_count and self.on_event is not None:
            self.on_event(code, dev, now_ms)
