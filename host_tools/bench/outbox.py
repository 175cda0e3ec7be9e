"""Outbox, wall clock and command figures (issue 9).

In the MicroPython VM, the modules loaded from .mpy as a board loads them (not frozen):
- ``outbox_write_ms``: one telemetry frame appended to the outbox (seq, time, CRC, one slot
  written to a segment file and synced), per frame, the median of batches. The VM's file system
  is MEMFS (RAM): this is the CPU cost in the VM, not a flash write time; a littlefs block
  program and erase on a board add their own (RP2: ~45 ms erase + ~16 x 0.4 ms programs).
- ``outbox_take_ack_ms``: one frame read back for sending and acknowledged.
- ``command_verify_ms``: one signed setpoint command judged (HMAC-SHA256 included).
- ``vm_heap_import_<module>``: live heap added by importing each uplink module in dependency
  order (after a collection; config_keys is loaded only for a config change), and
  ``vm_heap_outbox_object`` for an outbox of the default size.
- ``vm_alloc_<call>``: bytes allocated by one call (append, take + acked, command handle).
On CPython, a day at the default cadence (telemetry every 10 s, each frame acknowledged within
the period, the ack mark saved by poll) on a file system that counts what it is asked to write:
- ``outbox_bytes_written_per_day`` and ``outbox_block_writes_per_day`` (writes into distinct
  4 KiB blocks of segment files, each a littlefs block copy; header saves are small inline files).
"""

import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FIRMWARE = REPO / "firmware"
HEAP_KIB = 192
BATCH = 50
BATCHES = 7
_MODULES = ("ticks", "codes", "storage", "uplink", "wallclock", "outbox", "commands", "config_keys")

_SETUP = """
import os, time, gc
from relaypump import outbox, uplink, commands, config
from relaypump.wallclock import WallClock
clock = WallClock()
clock.set_time(1767225600, 0)
try:
    os.mkdir("/ob")
except OSError:
    pass
box = outbox.Outbox(os, "/ob/ob", 7, clock, 0)
frame = bytearray(uplink.TELEMETRY_SIZE)
uplink.encode_telemetry(frame, [7, 0, 0, 1600, 0, 0, 0, 0, 8000, 1110, 1, 0, 0] + [0] * 18)
KEY = bytes(range(32))
with open("/firmware/station.json") as f:
    cfg = config.load_config(f.read())
cmds = commands.Commands(cfg["station"]["id"], KEY, cfg, clock)
cmd = bytearray(uplink.COMMAND_MAX_SIZE)
n = uplink.encode_command(cmd, [cfg["station"]["id"], 1, 1767225600, 5, 1767229200, 1, 1250], KEY)
cmd = bytes(cmd[:n])
assert cmds.handle(cmd, 0, 4, 1) == 0  # accepted: the figure is a full verification

def appends(count):
    t = time.ticks_ms()
    for _ in range(count):
        box.append(frame, 0)
    return time.ticks_diff(time.ticks_ms(), t)

def takes(count):
    t = time.ticks_ms()
    for _ in range(count):
        box.acked(box.take(0))
    return time.ticks_diff(time.ticks_ms(), t)

def verifies(count):
    t = time.ticks_ms()
    for _ in range(count):
        cmds.handle(cmd, 0, 4, 1)
    return time.ticks_diff(time.ticks_ms(), t)

def alloc(fn):
    gc.collect()
    before = gc.mem_alloc()
    fn()
    return gc.mem_alloc() - before
"""


def _mpy_tree(root: Path) -> Path:
    from host_tools.deploy.bundle import mpy_cross

    lib = root / "lib" / "relaypump"
    lib.mkdir(parents=True)
    for source in sorted((FIRMWARE / "relaypump").glob("*.py")):
        out = lib / (source.stem + ".mpy")
        cmd = [mpy_cross(), "-o", str(out), "-s", source.name, str(source)]
        subprocess.run(cmd, check=True)
    return root / "lib"


def _vm_figures(report) -> None:
    from host_tools.mpvm import MicroPythonVM

    with tempfile.TemporaryDirectory() as tmp:
        lib = _mpy_tree(Path(tmp))
        mounts = {lib: "/lib", FIRMWARE: "/firmware"}
        with MicroPythonVM(heap_kib=HEAP_KIB, mounts=mounts, paths=("/lib",)) as vm:
            vm.exec("import gc", gc=True)
            for name in _MODULES:
                before = vm.stats()["alloc"]
                vm.exec(f"import relaypump.{name}", gc=True)
                report(f"vm_heap_import_{name}", vm.stats()["alloc"] - before, "B")
            vm.exec(_SETUP, gc=True)
            before = vm.stats()["alloc"]
            vm.exec("box2 = outbox.Outbox(os, '/ob/size', 7, clock, 0)", gc=True)
            report("vm_heap_outbox_object", vm.stats()["alloc"] - before, "B")
            writes, takes, verifies = [], [], []
            for _ in range(BATCHES):
                writes.append(vm.eval(f"appends({BATCH})", gc=True) / BATCH)
                takes.append(vm.eval(f"takes({BATCH})", gc=True) / BATCH)
                verifies.append(vm.eval(f"verifies({BATCH})", gc=True) / BATCH)
            report("outbox_write_ms", statistics.median(writes), "ms/frame (VM, MEMFS)")
            report("outbox_take_ack_ms", statistics.median(takes), "ms/frame (VM)")
            report("command_verify_ms", statistics.median(verifies), "ms/command (VM)")
            report("vm_alloc_outbox_append", vm.eval("alloc(lambda: box.append(frame, 0))"), "B")
            report(
                "vm_alloc_outbox_take_acked",
                vm.eval("alloc(lambda: box.acked(box.take(0)))"),
                "B",
            )
            report(
                "vm_alloc_command_handle", vm.eval("alloc(lambda: cmds.handle(cmd, 0, 4, 1))"), "B"
            )


class _CountingFile:
    def __init__(self, fs, path):
        self.fs = fs
        self.path = path
        self.pos = 0

    def seek(self, pos, whence=0):
        self.pos = pos

    def write(self, data):
        n = len(data)
        self.fs.count(self.path, self.pos, n)
        buf = self.fs.files[self.path]
        if self.pos + n > len(buf):
            buf.extend(bytes(self.pos + n - len(buf)))
        buf[self.pos : self.pos + n] = data
        self.pos += n
        return n

    def read(self):
        return bytes(self.fs.files[self.path][self.pos :])

    def readinto(self, out):
        data = self.fs.files[self.path][self.pos : self.pos + len(out)]
        out[: len(data)] = data
        self.pos += len(data)
        return len(data)

    def flush(self):
        pass

    def close(self):
        pass


class _CountingFS:
    def __init__(self):
        self.files: dict[str, bytearray] = {}
        self.bytes = 0
        self.blocks = 0
        self.header_saves = 0

    def count(self, path, pos, n):
        self.bytes += n
        if path.endswith(".tmp"):
            self.header_saves += 1
        else:
            self.blocks += (pos + n - 1) // 4096 - pos // 4096 + 1

    def open(self, path, mode):
        if "w" in mode:
            self.files[path] = bytearray()
        elif path not in self.files:
            raise OSError(2, path)
        return _CountingFile(self, path)

    def rename(self, old, new):
        self.files[new] = self.files.pop(old)

    def remove(self, path):
        del self.files[path]


def _day_figures(report) -> None:
    sys.path.insert(0, str(FIRMWARE))
    from relaypump import outbox, uplink
    from relaypump.wallclock import WallClock

    fs = _CountingFS()
    clock = WallClock()
    clock.set_time(1767225600, 0)
    box = outbox.Outbox(fs, "/ob", 7, clock, 0, 12, fs.open)
    frame = bytearray(uplink.TELEMETRY_SIZE)
    uplink.encode_telemetry(frame, [7, 0, 0, 1600, 0, 0, 0, 0, 8000, 1110, 1, 0, 0] + [0] * 18)
    fs.bytes = fs.blocks = fs.header_saves = 0
    period_ms = 10000
    for k in range(86400 * 1000 // period_ms):
        now = (k * period_ms) & 0x3FFFFFFF
        box.append(frame, now)
        box.acked(box.take(now))
        box.poll(now)
    report("outbox_bytes_written_per_day", fs.bytes, "B (telemetry every 10 s)")
    report("outbox_block_writes_per_day", fs.blocks, "4 KiB segment blocks")
    report("outbox_header_saves_per_day", fs.header_saves, "saves")


def run(report) -> None:
    _day_figures(report)
    _vm_figures(report)


if __name__ == "__main__":
    from host_tools.bench.__main__ import report as _report

    run(_report)
