"""The bench's split of the heap into bytecode and data (host_tools/bench/vm_boot.py) on a module
whose data is known: what it attributes to data must be that data, within a few hundred bytes."""

from __future__ import annotations

import subprocess

from host_tools.bench.vm_boot import code_share
from host_tools.deploy.bundle import mpy_cross
from host_tools.mpvm import MicroPythonVM

SAMPLE = """
DATA = bytearray(10000)
NUMBERS = [3 * i for i in range(100)]


def scaled(x, k=2):
    return [k * v for v in x] + list(NUMBERS)


class Meter:
    UNIT = "kPa"

    def __init__(self, value):
        self.value = value

    def text(self):
        return "%s %s" % (self.value, self.UNIT)
"""


def test_known_data_is_counted_as_data_and_the_rest_as_code(tmp_path):
    flash = tmp_path / "flash"
    flash.mkdir()
    (tmp_path / "sample.py").write_text(SAMPLE)
    out = str(flash / "sample.mpy")
    subprocess.run([mpy_cross(), "-o", out, str(tmp_path / "sample.py")], check=True)
    with MicroPythonVM(heap_kib=128, mounts={flash: "/"}, paths=()) as vm:
        vm.exec("import gc", gc=True)
        before = vm.stats()["alloc"]
        vm.exec("import sample", gc=True)
        live = vm.stats()["alloc"] - before
    code = code_share(flash, ["sample"], tmp_path / "scratch")
    # data: the bytearray (10000 B + header), the list (100 slots + header), the module's dict,
    # two functions, a class with its dict and two more functions: about 11 KB, no more
    assert 10400 <= live - code <= 11600, (live, code)
    size = (flash / "sample.mpy").stat().st_size  # ~360 B
    assert size // 2 <= code <= 3 * size, (code, size)  # its bytecode, constants and names
