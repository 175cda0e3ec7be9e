"""The heap a board needs: the agent booted in the MicroPython VM the way a board boots it.

The virtual board's bundle (make firmware: .mpy files, main.py as source, the shipped
station.json) is the VM's file system. Then main.py's boot, one VM request per step so that the
VM collects between them as main.py's gc.collect() does on a board (in this VM nothing is
collected inside a request): main.py loaded, ``make_board()``, then every step of main.boot (the
runtime, the config read and validated and its validator dropped, each module of main.STAGES, the
agent built). Then STEPS_S of the runtime's own loop (``boards.virtual.step``, real time, nobody
on the bus: poll requests, timeouts, ticks with comm loss), each step measured. The boot runs
twice: with main.py compiled from source, as a board without frozen modules runs it (for
vm_heap_boot), and with main.py as bytecode, the form it is frozen in (for vm_heap_data; compiled
from source it leaves ~2.5 KiB more behind).

Figures (KiB; the VM runner's own ~4 KiB, which a board does not have, left out, and so are the
VM port's modules the boot imports that are Python files in this port but built into the firmware
of ESP32 and RP2 boards: binascii, os, time and the virtual board's machine.py, ~3.5 KiB, weighed
in a fresh VM, ``port_modules``):
- ``vm_heap_boot``: the most the heap held at once: the highest request of the boot (garbage of
  that request included, as nothing is collected inside it) or the live heap after the boot plus
  the largest step. What a board that loads the modules from .mpy (not frozen) must have free.
- ``vm_heap_data``: live heap after the boot minus the bytecode's share, plus the largest step:
  what a board with the agent frozen in (manifest.py) needs, the code being in flash there. The
  share is weighed in a second VM that imports, in the boot's order, a "code only" twin of every
  module alive after the boot and of main.py (host_tools/deploy/mpyfile.py: the module body
  returns at once, so the import loads the qstrs, constants and every function's bytecode and
  creates no function, class or table): what each such import allocated, less the code any import
  runs once and drops (the module body and its class bodies, estimated from the .mpy layout:
  ``_dropped``), less what importing an empty module costs (module object and dict, which stay in
  RAM when frozen too, and the file reader's leftovers). The config validator (with an uplink,
  also uplink_config.py), which the boot loads and drops again, counts with the qstrs it leaves
  behind (imported where the boot loads it, dropped, the heap kept after a collection: ~0.7
  KiB; frozen, they are in flash). Module objects, their dicts, functions, classes and
  everything the agent builds are data. Good to about +-1.5 KiB: the raw-code record
  (_RAW_CODE_RECORD) is an estimate, and a module name's qstrs go with the empty module's.
- ``vm_heap_boot_romfs``: vm_heap_boot for a board that imports the bundle from a ROMFS partition
  (MicroPython >= 1.25), measured: the same boot in the ROMFS-capable VM (host_tools/mpvm,
  ``romfs=``, MicroPython 1.29), the bundle's .mpy files in a ROMFS image built by the pinned
  mpremote (``romfs build``) and mounted at /rom, main.py, station.json and the state files on
  the file system. There the .mpy files run in place: their bytecode, qstr texts and str/bytes
  constants stay in the image (wasm memory outside the GC heap, a board's flash); main.py is
  compiled into RAM as a board does. A module of ours imported from anywhere but /rom fails the
  measurement (its bytecode would be in the heap).
- ``vm_heap_boot_romfs_vm``: vm_heap_boot (.mpy on the file system) measured in that same VM, so
  that the ROMFS figure is compared with the .mpy one in one VM version.
Goals (issue 8): data <= 32 KiB, boot (.mpy or ROMFS) <= 96 KiB.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
import tempfile
import time
from pathlib import Path

from host_tools.mpvm import ROMFS_PACKAGE

HEAP_KIB = 256  # large enough not to fail where a board would have collected mid-request
STEPS_S = 3.0
GOAL_DATA_KIB = 32
GOAL_BOOT_KIB = 96
_RAW_CODE_RECORD = 32
# The config validator (and its uplink sections, with an uplink): runtime.load_config imports it
# and drops it again (its code is heap on a board that loads .mpy files), but the qstrs it
# interned stay: RAM from .mpy, flash when frozen.
DROPPED_AT_BOOT = ("relaypump.config", "relaypump.uplink_config")

_OURS = "[m for m in __import__('sys').modules if m.split('.')[0] in ('relaypump', 'boards')]"
_ALL = "list(__import__('sys').modules)"
_FILES = "{m: getattr(__import__('sys').modules[m], '__file__', '') for m in " + _OURS + "}"
# main.py as a board without frozen modules runs it (compiled from source), or as bytecode: the
# form it has when frozen (main_code.mpy, made by _flash).
_LOAD_MAIN = {
    "source": "_main = {'__name__': 'main'}\n"
    "exec(compile(open('/main.py').read(), '/main.py', 'exec'), _main)",
    "bytecode": "import main_code\n_main = main_code.__dict__",
}


def _flash(root: Path) -> Path:
    from host_tools.deploy.bundle import FIRMWARE, build, mpy_cross

    bundle = build("virtual", root / "bundles")
    flash = root / "flash"
    shutil.copytree(bundle, flash)
    shutil.copyfile(FIRMWARE / "station.json", flash / "station.json")
    main_code = ["-o", str(flash / "main_code.mpy"), "-s", "main.py", str(flash / "main.py")]
    subprocess.run([mpy_cross(), *main_code], check=True)
    return flash


def romfs_board(flash: Path, root: Path) -> tuple[Path, Path]:
    """A board with a ROMFS partition: its file system (main.py, station.json and whatever else
    `flash` holds at the top but the bundle's packages and main_code.mpy) and its ROMFS image
    (the bundle's packages, built with the pinned mpremote as `romfs deploy` would)."""
    from host_tools.deploy.flash import romfs_image

    files, tree = root / "rom_fs", root / "rom_tree"
    files.mkdir()
    for entry in flash.iterdir():
        if entry.is_dir():
            shutil.copytree(entry, tree / entry.name)
        elif entry.name != "main_code.mpy":
            shutil.copyfile(entry, files / entry.name)
    return files, romfs_image(tree, root / "rom.img")


def _boot(flash: Path, main: str, **vm_kind) -> dict:
    """The staged boot; `vm_kind`: MicroPythonVM's package= / romfs= (the VM and its image)."""
    from host_tools.deploy.virtual_board import VM_SIDE
    from host_tools.mpvm import MicroPythonVM

    with MicroPythonVM(
        heap_kib=HEAP_KIB,
        mounts={flash: "/", VM_SIDE: "/.vboard"},
        paths=("/.vboard",),
        **vm_kind,
    ) as vm:
        base = vm.stats()["alloc"]
        at_base = set(vm.eval(_ALL))
        peaks = []

        loaded: list[str] = []  # ours, in the order the boot loaded them

        def request(src: str) -> None:
            vm.exec(src, gc=True)
            assert vm.last_mem is not None
            peaks.append(vm.last_mem.peak)
            for name in vm.eval(_OURS):
                if name not in loaded:
                    loaded.append(name)

        request(_LOAD_MAIN[main])
        request("board = _main['make_board']()")
        request("_steps = _main['boot'](board)")
        request("rt = next(_steps)")  # main.boot's first step: the runtime
        at = len(loaded)  # the second (load_config) loads the validator and drops it again
        while True:  # main.boot: one step per request, as main() collects between them
            request("rt = next(_steps)")
            if vm.eval("rt is not None"):
                break
        request("del _steps\nboard.run(rt)")
        live = vm.stats()["alloc"]
        files = vm.eval(_FILES)
        alive = vm.eval(_OURS)
        modules = [name for name in loaded if name in alive]
        port = [
            m for m in vm.eval(_ALL) if m not in at_base and m not in alive and m != "main_code"
        ]
        uplink = "relaypump.mqtt" in loaded  # then the validator loaded the uplink's sections
        loaded[at:at] = DROPPED_AT_BOOT if uplink else DROPPED_AT_BOOT[:1]
        vm.exec("import gc\ngc.threshold(gc.mem_free() // 3)")
        step_max = 0
        ends = time.monotonic() + STEPS_S
        while time.monotonic() < ends:
            reply = vm.call("boards.virtual.step", b"", measure=True)
            assert vm.last_mem is not None
            step_max = max(step_max, vm.last_mem.used)
            time.sleep(min(struct.unpack_from("<I", reply)[0], 50000) / 1e6)
        return {
            "base": base,
            "peak": max(peaks),
            "live": live,
            "modules": modules,
            "loaded": loaded,
            "step": step_max,
            "port": port,
            "files": files,
        }


def port_modules(flash: Path, names: list[str], **vm_kind) -> int:
    """Heap the VM port's own modules that the boot imported keep (binascii, os, time as Python
    files in this port, the virtual board's machine.py): built into the firmware of ESP32 and
    RP2 boards, so no heap there; weighed in a fresh VM, left out like the runner's own."""
    from host_tools.deploy.virtual_board import VM_SIDE
    from host_tools.mpvm import MicroPythonVM

    with MicroPythonVM(
        heap_kib=HEAP_KIB,
        mounts={flash: "/", VM_SIDE: "/.vboard"},
        paths=("/.vboard",),
        **vm_kind,
    ) as vm:
        before = vm.stats()["alloc"]
        for name in names:
            vm.exec(f"import {name}")
        return vm.stats()["alloc"] - before


def _dropped(data: bytes) -> int:
    """Heap of the code an import runs once and drops (module and class bodies), estimated from
    the .mpy: each raw code's record, its function data and its children table, in 16-byte GC
    blocks. The record: ~32 B (a code-only import grows by ~60 B per one-line function: 16 of
    function data, 4 of child slot, ~8 of name)."""
    from host_tools.deploy.mpyfile import run_once

    def blocks(n: int) -> int:
        return (n + 15) // 16 * 16

    return sum(_RAW_CODE_RECORD + blocks(size) + blocks(4 * n) for size, n in run_once(data))


def code_share(
    flash: Path, modules: list[str], root: Path, dropped: tuple[str, ...] = DROPPED_AT_BOOT
) -> int:
    """Bytes of heap the bytecode of `modules` (imported in this order from the .mpy files in
    `flash`) takes, as the module docstring describes; `root` is a scratch directory. A module
    the boot drops again (in `dropped`, listed where the boot loaded it) counts with the qstrs it
    leaves behind: imported, dropped, what the heap kept after a collection."""
    from host_tools.deploy.bundle import mpy_cross
    from host_tools.deploy.mpyfile import code_only
    from host_tools.mpvm import MicroPythonVM

    twins = root / "code_only"
    shutil.copytree(flash, twins)
    (root / "empty.py").write_text("")
    empty = ["-o", str(twins / "empty_module.mpy"), "-s", "empty.py", str(root / "empty.py")]
    subprocess.run([mpy_cross(), *empty], check=True)
    run_once = {}
    for mpy in twins.rglob("*.mpy"):
        data = mpy.read_bytes()
        name = mpy.relative_to(twins).with_suffix("").as_posix().replace("/", ".")
        run_once[name.removesuffix(".__init__")] = _dropped(data)
        mpy.write_bytes(code_only(data))
    code = 0
    with MicroPythonVM(heap_kib=HEAP_KIB, mounts={twins: "/"}, paths=()) as vm:
        # Any import's own cost, code or not: the module object and its dict (data, in RAM when
        # frozen too), the file reader's leftovers. Weighed on an empty module, taken off each.
        vm.exec("import empty_module", gc=True)
        assert vm.last_mem is not None
        each = vm.last_mem.used - run_once["empty_module"]
        for name in modules:
            if name in dropped:
                before = vm.stats()["alloc"]
                forget = f"__import__('sys').modules.pop('{name}')"
                if "." in name:
                    package, short = name.rsplit(".", 1)
                    forget += f"\ndelattr(__import__('sys').modules['{package}'], '{short}')"
                else:
                    forget += f"\ndel {name}"
                vm.exec(f"import {name}\n{forget}")
                code += vm.stats()["alloc"] - before  # collected: its qstrs are what stays
                continue
            vm.exec(f"import {name}", gc=True)  # collected before; nothing collected inside
            assert vm.last_mem is not None
            code += vm.last_mem.used - run_once.get(name, 0) - each
    return code


def figures(flash: Path, root: Path) -> dict:
    """The figures of the bundle in `flash` (its station.json decides the uplink); `root` is a
    scratch directory. Bytes; modules: the agent's modules alive after the boot."""
    boot = _boot(flash, "source")  # a board that loads the bundle
    frozen = _boot(flash, "bytecode")  # main.py in the form it is frozen in
    # a module the boot loads and drops again (the validator, the uplink's builder) leaves its
    # qstrs only: weighed as DROPPED_AT_BOOT are, whether named there or seen between two steps
    gone = tuple(m for m in frozen["loaded"] if m not in frozen["modules"])
    dropped = DROPPED_AT_BOOT + tuple(m for m in gone if m not in DROPPED_AT_BOOT)
    code = code_share(flash, ["main_code", *frozen["loaded"]], root, dropped)  # main.py's first
    port = port_modules(flash, frozen["port"])
    live = boot["live"] - boot["base"] - port
    # the same boot in the ROMFS VM: from .mpy files, and with the bundle in a ROMFS image
    romvm = {"package": ROMFS_PACKAGE}
    mpy = _boot(flash, "source", **romvm)
    files, image = romfs_board(flash, root)
    rom = _boot(files, "source", romfs=image)
    outside = [m for m, where in rom["files"].items() if not where.startswith("/rom/")]
    if outside:  # a module from the file system would carry its bytecode into the heap
        raise RuntimeError(f"ROMFS boot: {', '.join(outside)} not imported from /rom")
    rom_port = port_modules(files, rom["port"], romfs=image)
    return {
        "boot": _most(boot, port),
        "live": live,
        "code": code,
        "step": frozen["step"],
        "data": frozen["live"] - frozen["base"] - port - code + frozen["step"],
        "modules": frozen["modules"],
        "port": port,
        "boot_romfs_vm": _most(mpy, port_modules(flash, mpy["port"], **romvm)),
        "boot_romfs": _most(rom, rom_port),
        "live_romfs": rom["live"] - rom["base"] - rom_port,
        "romfs_bytes": image.stat().st_size,
        "port_names": frozen["port"],
    }


def _most(boot: dict, port: int) -> int:
    """The most the heap held at once in `boot` (see vm_heap_boot), without the port's modules."""
    live = boot["live"] - boot["base"] - port
    return max(boot["peak"] - boot["base"] - port, live + boot["step"])


def measure() -> dict:
    with tempfile.TemporaryDirectory(prefix="vm_boot_") as tmp:
        root = Path(tmp)
        return figures(_flash(root), root)


def run(report) -> None:
    try:
        fig = measure()
    except Exception as e:  # the VM needs Node: report the absence, not a crash
        print(f"vm_boot: skipped ({e})")
        return
    kib = 1024
    report(
        "vm_heap_boot",
        fig["boot"] / kib,
        f"KiB (goal <= {GOAL_BOOT_KIB}; booted from .mpy as main.py does, in stages; live after "
        f"boot {fig['live'] / kib:.1f} KiB, of it bytecode {fig['code'] / kib:.1f} KiB; the VM "
        f"port's {', '.join(fig['port_names'])} left out: {fig['port'] / kib:.1f} KiB, built "
        f"in on a board)",
    )
    report(
        "vm_heap_data",
        fig["data"] / kib,
        f"KiB (goal <= {GOAL_DATA_KIB}; live after boot without the bytecode of "
        f"{len(fig['modules'])} "
        f"modules, plus the largest step {fig['step']} B: what a frozen board needs)",
    )
    report(
        "vm_heap_boot_romfs",
        fig["boot_romfs"] / kib,
        f"KiB (goal <= {GOAL_BOOT_KIB}, as vm_heap_boot; measured: the same boot with the bundle "
        f"in a ROMFS image ({fig['romfs_bytes']} B, mpremote romfs build) at /rom, every module "
        f"from there, in the ROMFS VM (MicroPython 1.29); live after boot "
        f"{fig['live_romfs'] / kib:.1f} KiB)",
    )
    report(
        "vm_heap_boot_romfs_vm",
        fig["boot_romfs_vm"] / kib,
        "KiB (vm_heap_boot, .mpy files on the file system, in the ROMFS VM (MicroPython 1.29): "
        "the figure vm_heap_boot_romfs compares with in one VM)",
    )
