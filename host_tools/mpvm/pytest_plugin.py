"""pytest hooks that run each firmware test a second time inside the MicroPython VM.

tests/firmware/conftest.py imports `pytest_collect_file` from here. For every test_*.py it sees,
pytest's own Python collector still makes the CPython items (`test_xxx`); this adds a second
collector for the same file whose items are `test_xxx[vm]`, marked `vm`.

Rules:
- Collection parses the file (ast) and never starts the VM.
- One VM per test module, started when its first [vm] item runs and closed after its last; it is
  restarted (and the module re-imported) after a test that killed it (timeout or crash).
- A failure shows the MicroPython traceback with host paths. Heap figures go to user_properties:
  vm_heap_kib, vm_heap_before, vm_heap_peak, vm_heap_used (bytes).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from host_tools.mpvm.client import MicroPythonVM, VMError
from host_tools.mpvm.firmware_tests import (
    FirmwareTest,
    host_paths,
    read_test_module,
    run_test,
    start_vm_for,
)


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if file_path.suffix == ".py" and file_path.name.startswith("test_"):
        return VMModule.from_parent(parent, path=file_path)
    return None


class VMModule(pytest.File):
    """The [vm] twin of a firmware test module."""

    vm: MicroPythonVM | None = None

    def collect(self) -> Iterator[pytest.Item]:
        self.module = read_test_module(self.path)
        for test in self.module.tests:
            yield VMItem.from_parent(self, name=f"{test.name}[vm]", test=test)

    def ensure_vm(self) -> MicroPythonVM:
        if self.vm is None or not self.vm.alive:
            self.vm = start_vm_for(self.module)
        return self.vm

    def teardown(self) -> None:
        if self.vm is not None:
            self.vm.close()
            self.vm = None


class VMItem(pytest.Item):
    def __init__(self, *, test: FirmwareTest, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.test = test
        self.add_marker("vm")

    @property
    def vm_module(self) -> VMModule:
        assert isinstance(self.parent, VMModule)
        return self.parent

    def runtest(self) -> None:
        parent = self.vm_module
        vm = parent.ensure_vm()
        self.user_properties.append(("vm_heap_kib", vm.heap_kib))
        try:
            run_test(vm, parent.module, self.test)
        finally:
            # Figures are recorded for failing tests too: a MemoryError's peak is the point.
            if vm.last_mem is not None:
                self.user_properties += [
                    ("vm_heap_before", vm.last_mem.before),
                    ("vm_heap_peak", vm.last_mem.peak),
                    ("vm_heap_used", vm.last_mem.used),
                ]
            if vm.last_out:
                self.add_report_section("call", "stdout (MicroPython)", vm.last_out)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> Any:
        exc = excinfo.value
        if not isinstance(exc, VMError):
            return super().repr_failure(excinfo, style)
        module = self.vm_module.module
        text = f"in the MicroPython VM ({module.heap_kib} KiB heap): {exc.type}\n"
        text += host_paths(exc.traceback, module)
        figures = dict(self.user_properties)
        if exc.type == "MemoryError" and "vm_heap_used" in figures:
            text += (
                f"\nheap: {figures['vm_heap_before']} B live before the test, "
                f"{figures['vm_heap_used']} B allocated by it when it failed.\n"
                "The VM collects garbage only between tests (this port cannot collect while Python "
                "code runs), so everything one test allocates, garbage included, must fit in the "
                "heap; on a board the GC would reclaim garbage mid-test. Allocate less per test "
                "(e.g. keep integers below 2**30: larger ones are heap objects) or raise "
                "VM_HEAP_KIB.\n"
            )
        return text

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, self.test.lineno - 1, self.name
