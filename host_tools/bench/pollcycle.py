"""Poll cycle against the bus' physical limit: the firmware fieldbus over the simulated RS-485 bus.

The reference station's config (firmware/station.json: 3 drives in three profiles + the I/O
module, 19200 baud 8E1, bus.cycle_ms 0: cycles back to back) runs against the simulator's devices
(host_tools/sim: drives, I/O module, RTU slaves, SimulatedBus) in virtual time, mastered by what a
board runs: relaypump/runtime.py with its agent, on the simulator's board (SimBoard: the Modbus
silence of 3.5 characters, the deadlines and the control tick as on hardware). The agent decides
the drives' commands itself (the station's readings are fixed).
``VirtualBusRunner`` below is not a board loop: it drives a bare fieldbus (no agent, no runtime)
for tests/host_tools/test_fieldbus_sim.py, which commands the drives itself.

Figures:
- ``poll_cycle_vs_wire``: virtual cycle duration / pure wire time of the cycle's frames, where the
  wire time is (request + response bytes) * 11 / baud + 2 * 3.5 characters per transaction (the
  silence before the response and before the next request). What remains is the devices'
  turnaround (the simulator's 3 ms) and anything the master adds. Target <= 1.25.
- ``poll_cycle_ms``, ``poll_cycle_transactions``, ``poll_cycle_bytes``: the cycle itself.
- ``poll_cycle_cpu_ms``: CPython time spent inside the fieldbus (next_request, receive, poll) per
  cycle, simulator excluded: the fieldbus alone replaying the recorded responses (below) in this
  process, its CPU time (time.process_time, so other work on the machine does not count), the
  least of twenty batches of two passes through the cycles.
- ``poll_cycle_vm_cpu_ms``, ``poll_cycle_vm_alloc_bytes``: the same replay inside the MicroPython
  VM: CPU time per cycle of the VM's process (Node, read from /proc, over 120 passes; where there
  is no /proc, the wall time of the VM calls, the least of twenty batches of two passes) and heap
  bytes allocated per cycle. The replay starts where the recording did, at the first frame:
  the start-up cycles (the drives' ramp-time commissioning: writes, then read-backs) bring the VM's
  fieldbus to the state of the measured cycles, which are then replayed over and over (their
  transactions repeat: two turns of the aux rotation, nothing commissioning). The VM's commands are
  its own (every pump run at 80 %), so a single-register write (fc 05/06), whose answer echoes the
  value, is answered with the VM's own request, as a device echoes it; every other recorded
  answer is replayed as it was (a multiple write's echo carries only address and count). The
  replay's clock moves 4 ms per transaction; a whole replay stays inside the 60 s after which the
  fieldbus reads the ramp times back (a transaction the recording does not have).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONFIG_PATH = ROOT / "firmware" / "station.json"


class VirtualBusRunner:
    """A bare fieldbus (no agent) on a SimulatedBus, in virtual seconds (``t``): the test driver
    of tests/host_tools/test_fieldbus_sim.py (the bench runs the board's runtime).

    ``step()`` runs one transaction (or idles 1 ms when nothing is due). Drives listed in
    ``drives`` are stepped along the virtual clock so their ramps and comm-loss timers run.
    ``on_send(frame, t)`` / ``on_response(data, t)`` observe the wire (for recording)."""

    def __init__(self, fieldbus, bus, drives=(), start_s: float = 0.0) -> None:
        from relaypump import fieldbus as fbmod

        self._busy = fbmod.BUSY
        self.fb = fieldbus
        self.bus = bus
        self.drives = list(drives)
        self.t = start_s
        self._stepped_s = start_s
        self.gap_s = fieldbus.gap_us / 1e6
        self.quiet_until = start_s
        self.cpu_s = 0.0  # real time spent inside the fieldbus
        self.cycle_starts: list[float] = []
        self._cycles_seen = fieldbus.cycles
        self.on_send = None
        self.on_response = None

    def now_ms(self) -> int:
        return int(self.t * 1000.0 + 1e-6) & 0x3FFFFFFF

    def advance(self, t: float) -> None:
        if t <= self.t:
            return
        self.t = t
        dt = t - self._stepped_s
        if dt >= 0.01 or not self.drives:
            for d in self.drives:
                d.step(t, dt)
            self._stepped_s = t

    def _fb(self, method, *args):
        start = time.perf_counter()
        result = method(*args)
        self.cpu_s += time.perf_counter() - start
        return result

    def step(self) -> None:
        fb = self.fb
        bus = self.bus
        request = self._fb(fb.next_request, self.now_ms())
        if request is None:
            self.advance(self.t + 0.001)
            return
        frame = bytes(request)
        send_at = max(self.t, self.quiet_until, bus.busy_until_s)
        self.advance(send_at)
        if fb.cycles != self._cycles_seen or not self.cycle_starts:
            self._cycles_seen = fb.cycles
            self.cycle_starts.append(send_at)
        if self.on_send is not None:
            self.on_send(frame, send_at)
        sent = bus.send(frame, send_at)
        complete = bus.response_complete_at()
        if complete is not None:
            for at in ((sent + complete) / 2.0, complete):
                self.advance(at)
                data = bus.receive(at)
                if data:
                    if self.on_response is not None:
                        self.on_response(data, at)
                    self._fb(fb.receive, data)
            if self._fb(fb.poll, self.now_ms()) != self._busy:
                self.quiet_until = complete + self.gap_s
                return
        while self._fb(fb.poll, self.now_ms()) == self._busy:
            self.advance(self.t + 0.001)
            data = bus.receive(self.t)
            if data:
                if self.on_response is not None:
                    self.on_response(data, self.t)
                self._fb(fb.receive, data)
        self.quiet_until = max(self.t, bus.busy_until_s) + self.gap_s

    def run_cycles(self, n: int, limit_s: float = 3600.0) -> None:
        target = self.fb.cycles + n
        end = self.t + limit_s
        while self.fb.cycles < target and self.t < end:
            self.step()

    def run_for(self, seconds: float) -> None:
        end = self.t + seconds
        while self.t < end:
            self.step()


def load_config() -> dict:
    return json.loads(CONFIG_PATH.read_text())


def reference_station(config: dict | None = None, baud: int | None = None, seed: int = 0):
    """(config, snapshot, sensors, fieldbus, drives, io, bus, runner) of the reference station."""
    from relaypump.fieldbus import Fieldbus
    from relaypump.sensors import Sensors
    from relaypump.snapshot import Snapshot

    from host_tools.sim.bus import SimulatedBus
    from host_tools.sim.drives import DriveConfig, make_drive
    from host_tools.sim.iomodule import IoModule
    from host_tools.sim.rtu_slave import RtuSlaves

    config = config or load_config()
    config["bus"]["cycle_ms"] = 0  # cycles back to back: the wire's limit is what is measured
    if baud is not None:
        config["bus"]["baud"] = baud
    drives = [
        make_drive(p["profile"], p["unit"], DriveConfig(comm_loss_action=p["comm_loss_action"]))
        for p in config["pumps"]
    ]
    io = IoModule(config["io"]["unit"])
    for name, value in (
        ("suction_kpa", 250.0),
        ("discharge_kpa", 700.0),
        ("remote_dp_kpa", 111.0),
        ("supply_temp_c", 118.0),
        ("flow_m3h", 640.0),
    ):
        io.set_value(name, value)
    io.set_input("source_pumps_running", True)
    devices = {d.unit: d for d in drives}
    devices[io.unit] = io
    bus = SimulatedBus(RtuSlaves(devices), baud=config["bus"]["baud"], seed=seed)
    snapshot = Snapshot(len(config["pumps"]))
    sensors = Sensors(config["io"], snapshot)
    fieldbus = Fieldbus(config, snapshot, sensors)
    runner = VirtualBusRunner(fieldbus, bus, drives)
    return config, snapshot, sensors, fieldbus, drives, io, bus, runner


def _measure(cycles: int = 200):
    """The board's runtime (relaypump/runtime.py on the simulator's board) with the agent of the
    reference station masters its devices, cycles back to back; every request is noted with its
    first bit's instant, its cycle, its bytes and the fieldbus' CPU time so far."""
    from relaypump.runtime import CONFIG_PATH, Runtime

    from host_tools.sim.agent_controller import MemoryFiles, carry, config_file
    from host_tools.sim.vm_side.sim_board import SimBoard

    config, _, _, _, drives, _, bus, _ = reference_station()
    files = MemoryFiles({CONFIG_PATH: config_file(config)})
    frames: list[tuple[float, int, int]] = []  # (first bit s, cycle, bytes)
    recorded: list[bytes | None] = []  # the response of every request, for the replays

    def wire(board, frame, start_ms, start_sub):
        response = carry(bus, frame, start_ms, start_sub)
        data = b"" if response is None else response[0]
        at_s = (start_ms * 1000 + start_sub) / 1e6
        frames.append((at_s, fb.cycles, len(frame) + len(data)))
        echo = frame[1] in (5, 6) and data == bytes(frame)
        recorded.append(None if echo else data)  # None: the replay's own request is the answer
        if response is not None:
            board.respond(data, 0, len(data), response[1] // 1000, response[1] % 1000)

    board = SimBoard(files, files.open, wire)
    runtime = Runtime(board)
    agent = runtime.agent
    assert agent is not None, runtime.error
    fb = agent.fieldbus
    t = 0.0
    step_s = 0.01  # the drives' ramps and timers move in 10 ms steps

    def run_until_cycle(target: int) -> None:
        nonlocal t
        while not frames or frames[-1][1] < target:
            t += step_s
            end = round(t * 1e6)
            if board.due(end // 1000, end % 1000):
                runtime.run_forever()
            for d in drives:
                d.step(t, step_s)

    warm = 12  # start sequences and ramp commissioning done, the aux rotation at its start
    run_until_cycle(warm + cycles)
    first = next(k for k, f in enumerate(frames) if f[1] == warm)
    end = next(k for k, f in enumerate(frames) if f[1] == warm + cycles)
    # the replay's 8 cycles end where the 9th begins (not 8 times the mean transactions per
    # cycle: a cycle of the window with one transaction more or less would shift the cut)
    end_8 = next(k for k, f in enumerate(frames) if f[1] == warm + 8)
    measured = frames[first:end]
    # From the first request of the first cycle to the first request of the next cycle.
    duration = frames[end][0] - frames[first][0]
    attempts = len(measured)
    wire_bytes = sum(f[2] for f in measured)
    wire_s = (wire_bytes + 7.0 * attempts) * 11.0 / config["bus"]["baud"]
    return {
        "ratio": duration / wire_s,
        "cycle_ms": duration / cycles * 1000.0,
        "transactions": attempts / cycles,
        "bytes": wire_bytes / cycles,
        "failed": fb.failed,
        "start_up": recorded[:first],  # from the first frame: commissioning, start sequences
        "recorded": recorded[first:end_8],  # 8 cycles
        "warm_cycles": warm,
        "cycles": cycles,
    }


VM_LOOP = """
import gc, time, json
from relaypump.snapshot import Snapshot, CMD_RUN
from relaypump.sensors import Sensors
from relaypump.fieldbus import Fieldbus

CONFIG = json.loads(CONFIG_JSON)
SNAP = Snapshot(len(CONFIG['pumps']))
SENSORS = Sensors(CONFIG['io'], SNAP)
FB = Fieldbus(CONFIG, SNAP, SENSORS)
for c in SNAP.commands:
    c.command = CMD_RUN
    c.speed_pct = 80.0
CLOCK = [0]

def run(frames):
    fb = FB
    for data in frames:
        request = fb.next_request(CLOCK[0])
        fb.receive(request if data is None else data)  # None: a device's echo of the request
        CLOCK[0] += 4
        fb.poll(CLOCK[0])
    return fb.cycles
"""


def _frames(responses: list[bytes | None]) -> str:
    return "[" + ",".join("None" if f is None else f"{f.hex()!r}" for f in responses) + "]"


class _Here:
    """The replay in this process (CPython), with the VM client's exec and eval."""

    def __init__(self) -> None:
        self.names: dict = {}

    def exec(self, code: str) -> None:
        exec(code, self.names)

    def eval(self, code: str):
        return eval(code, self.names)


def _replay(vm, config: dict, figures: dict, clock, batches: int, rounds: int) -> float:
    """ms per cycle of the fieldbus in ``vm`` (the VM client or _Here) by ``clock``: the start-up
    replayed once, then the 8 measured cycles (two turns of the aux rotation) over and over, in
    ``batches`` of ``rounds`` passes; the least batch. Raises when the replay does not match the
    fieldbus' requests."""

    def check(cycles: int) -> None:
        failed, done = vm.eval("(FB.failed, FB.cycles)")
        if failed or done != cycles:
            raise RuntimeError(
                f"the replay does not match the fieldbus' requests ({failed} failed, "
                f"{done} cycles of {cycles})"
            )

    vm.exec("CONFIG_JSON = " + repr(json.dumps(config)))
    vm.exec(VM_LOOP)
    for name, frames in (("START_UP", figures["start_up"]), ("FRAMES", figures["recorded"])):
        vm.exec(f"{name} = [None if f is None else bytes.fromhex(f) for f in {_frames(frames)}]")
    cycles = figures["warm_cycles"]
    vm.exec("run(START_UP)")  # ramp commissioning, start sequences
    check(cycles)
    vm.exec("run(FRAMES)")  # warm up: the first pass through the measured cycles
    cycles += 8
    check(cycles)
    best = float("inf")
    for _ in range(batches):
        start = clock()
        vm.exec(f"for _ in range({rounds}): run(FRAMES)")
        best = min(best, clock() - start)
    check(cycles + 8 * batches * rounds)
    return best / (8 * rounds) * 1000.0


def children_cpu_s() -> float:
    """CPU seconds (user + system) of this process' running children (the VM's Node) from /proc;
    raises OSError where there is no /proc."""
    me = str(os.getpid())
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        if fields[1] == me:  # ppid; utime and stime follow at 11, 12
            total += int(fields[11]) + int(fields[12])
    return total / tick


def _vm_figures(config: dict, figures: dict) -> tuple[float, float]:
    """ms and heap bytes per cycle of the same replay in the MicroPython VM."""
    from host_tools.mpvm import MicroPythonVM

    with MicroPythonVM(heap_kib=192) as vm:
        try:
            children_cpu_s()
        except OSError:  # wall time: short batches, one of them likely runs undisturbed
            ms = _replay(vm, config, figures, time.perf_counter, 20, 2)
        else:  # CPU time in clock ticks (10 ms): one long batch
            ms = _replay(vm, config, figures, children_cpu_s, 1, 120)
        before = vm.eval("FB.cycles")
        alloc = vm.eval(
            "(lambda: (gc.collect(), gc.disable(), gc.mem_alloc(), run(FRAMES), gc.mem_alloc(),"
            " gc.enable(), FB.failed, FB.cycles))()"
        )
        if alloc[6] or alloc[7] != before + 8:
            raise RuntimeError("the replay does not match the fieldbus' requests")
    return ms, (alloc[4] - alloc[2]) / 8.0


def run(report) -> None:
    figures = _measure()
    report("poll_cycle_vs_wire", figures["ratio"], "x")  # at 19200 baud
    report("poll_cycle_ms", figures["cycle_ms"], "ms")
    report("poll_cycle_transactions", figures["transactions"], "per cycle")
    report("poll_cycle_bytes", figures["bytes"], "bytes per cycle")
    config = load_config()
    config["bus"]["cycle_ms"] = 0  # as recorded: cycles back to back
    cpu_ms = _replay(_Here(), config, figures, time.process_time, 20, 2)
    report("poll_cycle_cpu_ms", cpu_ms, "ms per cycle (CPython)")
    try:
        cpu_ms, alloc = _vm_figures(config, figures)
    except Exception as e:  # the VM needs Node: report the absence, not a crash
        print(f"poll_cycle_vm: skipped ({e})")
        return
    report("poll_cycle_vm_cpu_ms", cpu_ms, "ms per cycle (MicroPython VM)")
    report("poll_cycle_vm_alloc_bytes", alloc, "bytes per cycle (MicroPython VM)")
