"""The code-only twin of an .mpy (the bench's measure of bytecode): parsed whole, body skipped."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from host_tools.deploy.bundle import FIRMWARE, mpy_cross
from host_tools.deploy.mpyfile import (
    RETURN_NONE,
    MpyFormatError,
    body_size,
    code_only,
    run_once,
)
from host_tools.mpvm import MicroPythonVM

SOURCE = """
print("body ran")
TABLE = (1.5, b"ab", "text", 10 ** 30, None, ...)


def twice(x):
    return 2 * x


class Counter:
    def __init__(self):
        self.n = 0
"""


def compile_mpy(tmp_path: Path, source: str, name: str = "sample") -> bytes:
    src = tmp_path / f"{name}.py"
    src.write_text(source)
    subprocess.run([mpy_cross(), "-o", str(tmp_path / f"{name}.mpy"), str(src)], check=True)
    return (tmp_path / f"{name}.mpy").read_bytes()


def test_every_firmware_module_parses_and_keeps_its_length(tmp_path):
    for py in sorted(FIRMWARE.rglob("*.py")):
        data = compile_mpy(tmp_path, py.read_text(), "m")
        twin = code_only(data)
        assert len(twin) == len(data)
        assert RETURN_NONE in twin
        assert 0 < body_size(data) < len(data)


def test_the_twin_loads_the_code_and_runs_no_body(tmp_path):
    (tmp_path / "vm").mkdir()
    data = compile_mpy(tmp_path, SOURCE)
    (tmp_path / "vm" / "sample.mpy").write_bytes(data)
    (tmp_path / "vm" / "twin.mpy").write_bytes(code_only(data))
    with MicroPythonVM(heap_kib=128, mounts={tmp_path / "vm": "/"}, paths=()) as vm:
        vm.exec("import sample")
        assert vm.last_out == "body ran\n"
        assert vm.eval("sample.twice(21)") == 42
        vm.exec("import twin", gc=True)
        assert vm.last_out == ""
        assert vm.last_mem is not None and vm.last_mem.used > body_size(data)
        assert vm.eval("sorted(k for k in dir(twin) if not k.startswith('__'))") == []


def test_run_once_is_the_module_body_and_its_class_bodies(tmp_path):
    data = compile_mpy(tmp_path, SOURCE + "\n\nclass Empty:\n    pass\n")
    bodies = run_once(data)
    assert len(bodies) == 3  # the module, Counter, Empty; not the functions twice and __init__
    assert bodies[0] == (body_size(data), 3)  # the module body makes twice, Counter and Empty
    assert bodies[1][1] == 1 and bodies[2][1] == 0  # Counter has __init__, Empty nothing


def test_a_damaged_file_is_refused(tmp_path):
    data = compile_mpy(tmp_path, SOURCE)
    with pytest.raises(MpyFormatError):
        code_only(data[:-3])
    with pytest.raises(MpyFormatError):
        code_only(data + b"\x00")
    with pytest.raises(MpyFormatError):
        code_only(b"X" + data[1:])
