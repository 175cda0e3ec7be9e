"""The MicroPython VM runner (host_tools/mpvm): channel, errors, heap cap, reclaim, timeouts, pytest.

Every test here starts real Node + WebAssembly VMs; each takes ~0.2 s to start.
"""

import os
import subprocess
import sys
import textwrap
import time
import xml.etree.ElementTree as ET

import pytest

from host_tools.mpvm import MicroPythonVM, VMCrashed, VMError, VMTimeout
from host_tools.mpvm.client import REPO_ROOT


@pytest.fixture(scope="module")
def vm():
    with MicroPythonVM(heap_kib=128) as machine:
        yield machine


def test_call_round_trips_every_byte_value(vm):
    vm.exec("def mirror(b):\n    return bytes(reversed(b))")
    payload = bytes(range(256))
    assert vm.call("mirror", payload) == payload[::-1]
    assert vm.call("mirror", b"") == b""


def test_call_without_data_and_dotted_names(vm):
    vm.exec("import binascii\ndef nothing():\n    return None")
    assert vm.call("nothing") == b""
    assert vm.call("binascii.unhexlify", b"00ff") == b"\x00\xff"


def test_eval_returns_json_values_and_exec_keeps_state(vm):
    vm.exec("state = {'n': 1}\nstate['n'] += 41")
    assert vm.eval("state") == {"n": 42}
    assert vm.eval("[1, 2.5, 'x', None, True]") == [1, 2.5, "x", None, True]
    assert vm.eval("__import__('sys').implementation.name") == "micropython"


def test_print_output_is_returned_per_request_not_on_the_channel(vm):
    vm.exec("print('hello from the VM')")
    assert vm.last_out == "hello from the VM\n"
    assert vm.eval("7") == 7
    assert vm.last_out == ""


def test_python_exception_becomes_vm_error_with_traceback(vm):
    vm.exec("def boom(b):\n    x = len(b)\n    raise ValueError('bad frame %d' % x)")
    with pytest.raises(VMError) as info:
        vm.call("boom", b"abc")
    assert info.value.type == "ValueError"
    assert "ValueError: bad frame 3" in info.value.traceback
    assert 'File "<exec>", line 3, in boom' in info.value.traceback
    assert "mpvm_agent" not in info.value.traceback  # the dispatcher's frames are left out
    with pytest.raises(VMError) as info:
        vm.eval("undefined_name")
    assert info.value.type == "NameError"
    with pytest.raises(VMError) as info:
        vm.exec("def broken(:")
    assert info.value.type == "SyntaxError"
    assert vm.eval("1 + 1") == 2  # still usable


def test_call_result_must_be_bytes_like(vm):
    vm.exec("def wrong(b):\n    return 5")
    with pytest.raises(VMError) as info:
        vm.call("wrong", b"")
    assert info.value.type == "TypeError"


@pytest.mark.parametrize("heap_kib", [96, 128, 192])
def test_heap_is_capped_with_a_real_memory_error(heap_kib):
    with MicroPythonVM(heap_kib=heap_kib) as vm:
        cap = heap_kib * 1024
        total = vm.eval("__import__('gc').mem_free() + __import__('gc').mem_alloc()")
        assert 0.97 * cap <= total <= cap  # the GC's own tables take the rest
        with pytest.raises(VMError) as info:
            vm.exec("hoard = []\nwhile True:\n    hoard.append(bytearray(1000))")
        assert info.value.type == "MemoryError"
        assert vm.last_mem is not None
        assert 0.9 * cap <= vm.last_mem.peak <= cap  # nearly all of it was usable, no more
        with pytest.raises(VMError) as info:
            vm.exec(f"big = bytearray({cap})")
        assert info.value.type == "MemoryError"
        vm.reset()  # drops `hoard` without compiling anything (the heap is full)
        assert vm.eval("sum(range(100))") == 4950
        stats = vm.stats()
        assert stats["alloc"] + stats["free"] == pytest.approx(total, abs=256)
        assert stats["free"] > cap * 0.8


def test_memory_is_reclaimed_between_calls():
    with MicroPythonVM(heap_kib=96) as vm:
        vm.exec("def churn(b):\n    junk = [bytearray(100) for _ in range(60)]\n    return b[:1]")
        baseline = vm.stats()["alloc"]
        for _ in range(300):  # ~2 MB of garbage in all, twenty times the heap
            assert vm.call("churn", b"xy") == b"x"
        vm.call("churn", b"xy", measure=True)
        assert vm.last_mem is not None and vm.last_mem.used > 6000  # each call does allocate
        assert vm.stats()["alloc"] <= baseline + 2048


def test_timeout_kills_a_hung_vm_and_restart_recovers():
    vm = MicroPythonVM(heap_kib=96, timeout=10).start()
    try:
        started = time.monotonic()
        with pytest.raises(VMTimeout):
            vm.exec("while True:\n    pass", timeout=1.0)
        assert time.monotonic() - started < 5
        assert not vm.alive
        with pytest.raises(VMCrashed):
            vm.eval("1")
        vm.restart()
        assert vm.eval("2 * 21") == 42
    finally:
        vm.close()


def test_default_mounts_and_sys_path():
    with MicroPythonVM(heap_kib=96) as vm:
        assert vm.eval("__import__('sys').path[:2]") == ["/tests", "/firmware"]
        vm.exec("import os")
        assert "relaypump" in vm.eval("os.listdir('/firmware')")
        assert "conftest.py" in vm.eval("os.listdir('/tests')")


FIRMWARE_TESTS = """
import sys

VM_HEAP_KIB = 96


def test_passes_everywhere():
    assert 1 + 1 == 2


def test_fails_only_in_the_vm():
    assert sys.implementation.name != "micropython", "running in MicroPython"


def test_fails_everywhere():
    values = [1, 2]
    assert values == [1, 3]
"""


def _run_pytest(tmp_path, *args):
    (tmp_path / "conftest.py").write_text(
        "from host_tools.mpvm.pytest_plugin import pytest_collect_file  # noqa: F401\n"
    )
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers =\n    vm: in the VM\n")
    (tmp_path / "test_sample.py").write_text(textwrap.dedent(FIRMWARE_TESTS))
    report = tmp_path / "report.xml"
    cmd = [sys.executable, "-m", "pytest", str(tmp_path), "-p", "no:cacheprovider"]
    done = subprocess.run(
        [*cmd, f"--junitxml={report}", *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    outcomes = {}
    for case in ET.parse(report).iter("testcase"):
        failed = case.find("failure") is not None or case.find("error") is not None
        props = {p.get("name"): p.get("value") for p in case.iter("property")}
        outcomes[case.get("name")] = ("failed" if failed else "passed", props)
    return done, outcomes


def test_firmware_tests_become_vm_items_that_fail_with_the_micropython_traceback(tmp_path):
    done, outcomes = _run_pytest(tmp_path)
    verdicts = {name: verdict for name, (verdict, _) in outcomes.items()}
    assert verdicts == {
        "test_passes_everywhere": "passed",
        "test_fails_only_in_the_vm": "passed",
        "test_fails_everywhere": "failed",
        "test_passes_everywhere[vm]": "passed",
        "test_fails_only_in_the_vm[vm]": "failed",
        "test_fails_everywhere[vm]": "failed",
    }, done.stdout
    assert "in the MicroPython VM (96 KiB heap): AssertionError" in done.stdout
    assert "AssertionError: running in MicroPython" in done.stdout
    assert f'File "{tmp_path.resolve()}/test_sample.py", line 12' in done.stdout
    props = outcomes["test_passes_everywhere[vm]"][1]
    assert props["vm_heap_kib"] == "96"
    assert int(props["vm_heap_peak"]) >= int(props["vm_heap_before"]) > 0


def test_marker_selects_vm_items(tmp_path):
    _, only_vm = _run_pytest(tmp_path, "-m", "vm")
    assert sorted(only_vm) == sorted(
        ["test_passes_everywhere[vm]", "test_fails_only_in_the_vm[vm]", "test_fails_everywhere[vm]"]
    )
    _, no_vm = _run_pytest(tmp_path, "-m", "not vm")
    assert all(not name.endswith("[vm]") for name in no_vm) and len(no_vm) == 3


def test_cli_runs_one_firmware_test(tmp_path):
    (tmp_path / "test_cli.py").write_text("def test_ok():\n    assert 2 + 2 == 4\n")
    done = subprocess.run(
        [sys.executable, "-m", "host_tools.mpvm", f"{tmp_path}/test_cli.py::test_ok"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "PASS test_ok" in done.stdout


def test_vm_rejects_a_heap_too_small_to_cap():
    with pytest.raises(VMCrashed):
        MicroPythonVM(heap_kib=16).start()


def test_sync_mirrors_a_vm_directory_onto_the_host(tmp_path):
    """The virtual board's flash: what the VM wrote, changed or removed reaches the host dir."""
    flash = tmp_path / "flash"
    (flash / "pkg").mkdir(parents=True)
    (flash / "pkg" / "kept.py").write_text("x = 1\n")
    (flash / "gone.txt").write_text("old")
    with MicroPythonVM(heap_kib=128, mounts={flash: "/"}, paths=()) as vm:
        vm.exec(
            "import os\nos.remove('/gone.txt')\nos.mkdir('/new')\n"
            "open('/new/data.bin', 'wb').write(bytes(range(256)))\n"
            "open('/pkg/kept.py', 'w').write('x = 2\\n')"
        )
        vm.sync("/", flash, skip=["tmp", "home", "dev", "proc", ".mpvm"])
    assert sorted(p.relative_to(flash).as_posix() for p in flash.rglob("*")) == [
        "new", "new/data.bin", "pkg", "pkg/kept.py"
    ]  # fmt: skip
    assert (flash / "new" / "data.bin").read_bytes() == bytes(range(256))
    assert (flash / "pkg" / "kept.py").read_text() == "x = 2\n"


def _romfs_image(source, image):
    """`mpremote romfs build` (the pinned mpremote) of the directory `source` into `image`."""
    argv = [sys.executable, "-m", "mpremote", "romfs", "--no-mpy", "-o", str(image)]
    subprocess.run([*argv, "build", str(source)], check=True, capture_output=True)
    return image


def test_romfs_image_is_mounted_at_rom_and_its_bytecode_stays_out_of_the_heap(tmp_path):
    """--romfs: the ROMFS VM mounts the image at /rom as a board does; a module imported from
    it keeps far less heap than the same .mpy imported from the file system (MEMFS), which
    copies its bytecode into the heap."""
    from host_tools.deploy.bundle import mpy_cross

    body = "".join(
        f"def f{i}(a, b):\n    x = a * {i} + b\n    return [x, a, b] if x > 9 else x - a // 3\n"
        for i in range(150)
    )
    (tmp_path / "bigmod.py").write_text(body)
    fs, rom = tmp_path / "fs", tmp_path / "rom" / "lib"
    fs.mkdir()
    rom.mkdir(parents=True)
    subprocess.run([mpy_cross(), "-o", str(fs / "bigmod.mpy"), str(tmp_path / "bigmod.py")])
    mpy = (fs / "bigmod.mpy").read_bytes()
    (rom / "bigmod.mpy").write_bytes(mpy)
    image = _romfs_image(tmp_path / "rom", tmp_path / "rom.img")
    kept = {}
    with MicroPythonVM(heap_kib=128, mounts={fs: "/fs"}, paths=(), romfs=image) as vm:
        assert vm.eval("hasattr(__import__('vfs'), 'rom_ioctl')")
        assert vm.eval("__import__('os').listdir('/rom/lib')") == ["bigmod.mpy"]
        assert "/rom/lib" in vm.eval("__import__('sys').path")
        # twice each, the second kept: the first import from a directory interns its names
        for where in ("/rom/lib", "/fs") * 2:
            vm.exec(f"import sys\nsys.path.insert(0, {where!r})")  # first on the path
            before = vm.stats()["alloc"]
            vm.exec("import bigmod\nresult = bigmod.f7(2, 1)")
            assert vm.eval("result") == [15, 2, 1]
            assert vm.eval("bigmod.__file__") == where + "/bigmod.mpy"
            kept[where] = vm.stats()["alloc"] - before
            vm.exec("del bigmod\nsys.modules.pop('bigmod')\nsys.path.pop(0)")
    assert kept["/fs"] - kept["/rom/lib"] > len(mpy) // 2, kept  # the bytecode: ~7 of 8 KB
    assert kept["/rom/lib"] < kept["/fs"] // 2, kept  # measured: 4.1 against 11.3 KB


def test_romfs_needs_a_package_that_has_it(tmp_path):
    """The pinned 1.27 package has no ROMFS: --romfs there is refused, not silently ignored."""
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "x.py").write_text("X = 1\n")
    image = _romfs_image(tmp_path / "src", tmp_path / "x.img")
    default = "@micropython/micropython-webassembly-pyscript"
    with pytest.raises(VMCrashed, match="has no ROMFS"):
        MicroPythonVM(heap_kib=128, mounts={}, paths=(), romfs=image, package=default).start()
