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


GONE = """
def checked(doc):
    if doc.get("zeta_unique_key_one") != doc.get("zeta_unique_key_two"):
        raise ValueError("zeta_unique_key_one and zeta_unique_key_two differ")
    return {"zeta_unique_result": doc}
"""


def test_a_module_the_boot_drops_counts_with_the_qstrs_it_leaves(tmp_path):
    flash = tmp_path / "flash"
    flash.mkdir()
    for name, text in (("sample", SAMPLE), ("gone", GONE)):
        (tmp_path / f"{name}.py").write_text(text)
        out = str(flash / f"{name}.mpy")
        subprocess.run([mpy_cross(), "-o", out, str(tmp_path / f"{name}.py")], check=True)
    with MicroPythonVM(heap_kib=128, mounts={flash: "/"}, paths=()) as vm:
        vm.exec("import gc", gc=True)
        before = vm.stats()["alloc"]
        vm.exec("import gone\n__import__('sys').modules.pop('gone')\ndel gone", gc=True)
        left = vm.stats()["alloc"] - before  # its qstrs: a board that froze it has them in flash
    sample = code_share(flash, ["sample"], tmp_path / "a", dropped=())
    both = code_share(flash, ["gone", "sample"], tmp_path / "b", dropped=("gone",))
    assert left > 0
    assert abs(both - sample - left) <= 64, (both, sample, left)
