"""Firmware tests run twice: on CPython (plain pytest items) and in the MicroPython VM ([vm] items).

Each `def test_xxx():` in tests/firmware/test_*.py also becomes `test_xxx[vm]` (marker `vm`), run
inside the real MicroPython WebAssembly VM by host_tools/mpvm; `-m "not vm"` skips those, `-m vm`
selects only them. A module sets `VM_HEAP_KIB = 96` to choose its VM heap (default 192).
"""

from host_tools.mpvm.pytest_plugin import pytest_collect_file

__all__ = ["pytest_collect_file"]
