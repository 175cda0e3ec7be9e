"""Poll cycle against the bus' physical limit: the firmware fieldbus over the simulated RS-485 bus.

The reference station's config (firmware/station.json: 3 drives in three profiles + the I/O
module, 19200 baud 8E1) runs against the simulator's devices (host_tools/sim: drives, I/O module,
RTU slaves, SimulatedBus) in virtual time. ``VirtualBusRunner`` is the runtime: it sends each frame
the fieldbus hands out after the Modbus silence of 3.5 characters, hands the response to the
master in two pieces as a UART FIFO would, and waits out deadlines in 1 ms steps.

Figures:
- ``poll_cycle_vs_wire``: virtual cycle duration / pure wire time of the cycle's frames, where the
  wire time is (request + response bytes) * 11 / baud + 2 * 3.5 characters per transaction (the
  silence before the response and before the next request). What remains is the devices'
  turnaround (the simulator's 3 ms) and anything the master adds. Target <= 1.25.
- ``poll_cycle_ms``, ``poll_cycle_transactions``, ``poll_cycle_bytes``: the cycle itself.
- ``poll_cycle_cpu_ms``: CPython time spent inside the fieldbus (next_request, receive, poll) per
  cycle, simulator excluded.
- ``poll_cycle_vm_cpu_ms``, ``poll_cycle_vm_alloc_bytes``: the same fieldbus inside the MicroPython
  VM, replaying the responses recorded on CPython: CPU per cycle and heap bytes allocated per cycle.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONFIG_PATH = ROOT / "firmware" / "station.json"


def _firmware_path() -> None:
    import sys

    path = str(ROOT / "firmware")
    if path not in sys.path:
        sys.path.insert(0, path)


class VirtualBusRunner:
    """The fieldbus' runtime on a SimulatedBus, in virtual seconds (``t``).

    ``step()`` runs one transaction (or idles 1 ms when nothing is due). Drives listed in
    ``drives`` are stepped along the virtual clock so their ramps and comm-loss timers run.
    ``on_send(frame, t)`` / ``on_response(data, t)`` observe the wire (for recording)."""

    def __init__(self, fieldbus, bus, drives=(), start_s: float = 0.0) -> None:
        _firmware_path()
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
    _firmware_path()
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
    _firmware_path()
    from relaypump.snapshot import CMD_RUN

    config, snapshot, _, fb, _, _, bus, runner = reference_station()
    for cmd in snapshot.commands:
        cmd.command = CMD_RUN
        cmd.speed_pct = 80.0
    runner.run_cycles(12)  # start sequences done; the aux rotation (4 blocks) at its start
    recorded: list[bytearray] = []  # the response of every transaction, for the VM replay
    runner.on_send = lambda frame, t: recorded.append(bytearray())
    runner.on_response = lambda data, t: recorded[-1].extend(data)
    start_cpu = runner.cpu_s
    first = len(runner.cycle_starts)
    attempts, tx, rx = fb.attempts, fb.tx_bytes, fb.rx_bytes
    runner.run_cycles(cycles)
    n = cycles
    # From the first request of the first cycle to when the next cycle's first request may go.
    duration = runner.quiet_until - runner.cycle_starts[first]
    fb_attempts = fb.attempts - attempts
    fb_bytes = fb.tx_bytes - tx + fb.rx_bytes - rx
    char_s = 11.0 / config["bus"]["baud"]
    wire = (fb_bytes + 7.0 * fb_attempts) * char_s
    return {
        "ratio": duration / wire,
        "cycle_ms": duration / n * 1000.0,
        "transactions": fb_attempts / n,
        "bytes": fb_bytes / n,
        "cpu_ms": (runner.cpu_s - start_cpu) / n * 1000.0,
        "failed": fb.failed,
        "recorded": [bytes(r) for r in recorded[: int(8 * fb_attempts / n)]],  # 8 cycles
        "cycles": n,
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
        fb.next_request(CLOCK[0])
        fb.receive(data)
        CLOCK[0] += 8
        fb.poll(CLOCK[0])
    return fb.cycles
"""


def _vm_figures(config: dict, responses: list[bytes]) -> tuple[float, float]:
    """CPU ms and heap bytes per cycle of the same fieldbus in the MicroPython VM, replaying the
    responses of 8 steady cycles (two turns of the aux rotation) recorded on CPython."""
    from host_tools.mpvm import MicroPythonVM

    with MicroPythonVM(heap_kib=192) as vm:
        vm.exec("CONFIG_JSON = " + repr(json.dumps(config)))
        vm.exec(VM_LOOP)
        vm.exec("FRAMES = [" + ",".join(f"bytes.fromhex({f.hex()!r})" for f in responses) + "]")
        vm.exec("run(FRAMES)")  # warm up: start sequences, caches
        if vm.eval("FB.failed"):
            raise RuntimeError("the replay does not match the fieldbus' requests")
        rounds = 25
        start = time.perf_counter()
        for _ in range(rounds):
            vm.exec("run(FRAMES)")
        cpu_ms = (time.perf_counter() - start) / (8 * rounds) * 1000.0
        alloc = vm.eval(
            "(lambda: (gc.collect(), gc.disable(), gc.mem_alloc(), run(FRAMES), gc.mem_alloc(),"
            " gc.enable(), FB.failed))()"
        )
        if alloc[6]:
            raise RuntimeError("the replay does not match the fieldbus' requests")
    return cpu_ms, (alloc[4] - alloc[2]) / 8.0


def run(report) -> None:
    figures = _measure()
    report("poll_cycle_vs_wire", figures["ratio"], "x")  # at 19200 baud
    report("poll_cycle_ms", figures["cycle_ms"], "ms")
    report("poll_cycle_transactions", figures["transactions"], "per cycle")
    report("poll_cycle_bytes", figures["bytes"], "bytes per cycle")
    report("poll_cycle_cpu_ms", figures["cpu_ms"], "ms per cycle (CPython)")
    try:
        config = load_config()
        config["bus"]["cycle_ms"] = 0  # as recorded: cycles back to back
        cpu_ms, alloc = _vm_figures(config, figures["recorded"])
    except Exception as e:  # the VM needs Node: report the absence, not a crash
        print(f"poll_cycle_vm: skipped ({e})")
        return
    report("poll_cycle_vm_cpu_ms", cpu_ms, "ms per cycle (MicroPython VM)")
    report("poll_cycle_vm_alloc_bytes", alloc, "bytes per cycle (MicroPython VM)")
