"""Firmware tests run twice: on CPython (plain pytest items) and in the MicroPython VM ([vm] items).

Each `def test_xxx():` in tests/firmware/test_*.py also becomes `test_xxx[vm]` (marker `vm`), run
inside the real MicroPython WebAssembly VM by host_tools/mpvm; `-m "not vm"` skips those, `-m vm`
selects only them. A module sets `VM_HEAP_KIB = 96` to choose its VM heap (default 192).
"""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
for _path in (HERE.parents[1] / "firmware", HERE):  # firmware/ and tests/firmware/, as in the VM
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from host_tools.mpvm.pytest_plugin import pytest_collect_file  # noqa: E402

__all__ = ["pytest_collect_file"]
