"""Run code in the real MicroPython VM (WebAssembly port under Node) from CPython.

See README.md beside this file. Public API: MicroPythonVM, VMError (VMTimeout, VMCrashed),
MemFigures.
"""

from host_tools.mpvm.client import (
    DEFAULT_HEAP_KIB,
    ROMFS_PACKAGE,
    MemFigures,
    MicroPythonVM,
    VMCrashed,
    VMError,
    VMTimeout,
)

__all__ = [
    "DEFAULT_HEAP_KIB",
    "ROMFS_PACKAGE",
    "MemFigures",
    "MicroPythonVM",
    "VMCrashed",
    "VMError",
    "VMTimeout",
]
