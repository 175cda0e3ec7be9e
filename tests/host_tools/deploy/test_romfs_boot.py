"""A board with a ROMFS partition, in the ROMFS VM: main.py and station.json on the file system,
the bundle in a ROMFS image (the pinned mpremote's `romfs build`) at /rom. The agent boots as
main.py boots it, runs its loop, and every module of ours comes from /rom."""

from __future__ import annotations

import struct
import time

from host_tools.bench.vm_boot import _LOAD_MAIN, _flash, romfs_board
from host_tools.deploy.virtual_board import VM_SIDE
from host_tools.mpvm import MicroPythonVM

RUN_S = 3.0  # real time: the loop's first ticks wait for the drives' poll timeouts
FED = 1  # boards/virtual.py: the step fed the watchdog


def test_the_agent_boots_from_a_romfs_image_and_runs_its_loop(tmp_path):
    files, image = romfs_board(_flash(tmp_path), tmp_path)
    assert sorted(p.name for p in files.iterdir()) == ["main.py", "station.json"]
    mounts = {files: "/", VM_SIDE: "/.vboard"}
    with MicroPythonVM(heap_kib=192, mounts=mounts, paths=("/.vboard",), romfs=image) as vm:
        assert vm.eval("__import__('os').listdir('/rom')") == ["boards", "relaypump"]
        vm.exec(_LOAD_MAIN["source"])  # main.py from the file system, as a board runs it
        vm.exec("board = _main['make_board']()\n_steps = _main['boot'](board)\nrt = None")
        for _ in range(100):  # main.boot: one stage per request, as main() collects between them
            if vm.eval("rt is not None"):
                break
            vm.exec("rt = next(_steps)", gc=True)
        vm.exec("del _steps\nboard.run(rt)")
        flags = sent = 0
        ends = time.monotonic() + RUN_S
        while time.monotonic() < ends:
            reply = vm.call("boards.virtual.step", b"")
            flags |= reply[4]
            sent += len(reply) > 5
            wait_us = struct.unpack_from("<I", reply)[0]
            assert wait_us < 1_000_000
            time.sleep(min(wait_us, 50_000) / 1e6)  # the board waits as the step asked
        assert flags == FED  # fed the watchdog, never failed
        assert sent > 0  # polled its drives on the bus (nobody answers)
        where = vm.eval(
            "{m: getattr(v, '__file__', '') for m, v in __import__('sys').modules.items() "
            "if m.split('.')[0] in ('relaypump', 'boards')}"
        )
    assert "relaypump.agent" in where and "boards.virtual" in where
    assert {m: f for m, f in where.items() if not f.startswith("/rom/")} == {}
