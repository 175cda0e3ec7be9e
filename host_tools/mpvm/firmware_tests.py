"""Find and run firmware tests (tests/firmware/test_*.py) inside the MicroPython VM.

Rules:
- Discovery never runs the VM or imports the module: the source is parsed with ast. A test is a
  top-level `def test_xxx():`; `VM_HEAP_KIB = <int>` at top level picks the module's heap.
- The test's directory is mounted at /tests, firmware/ at /firmware, protocol/vectors/ at /vectors,
  with /tests and /firmware first on sys.path, as on CPython.
- One test = one request (one top-level VM entry) after a forced collection, so its heap figures
  are its own: `before` is the live heap, `peak` the most it had allocated when it returned.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

from host_tools.mpvm.client import (
    DEFAULT_HEAP_KIB,
    DEFAULT_MOUNTS,
    REPO_ROOT,
    MemFigures,
    MicroPythonVM,
)

TEST_MOUNT = "/tests"
DEFAULT_TEST_TIMEOUT = 60.0


@dataclass(frozen=True)
class FirmwareTest:
    name: str
    lineno: int


@dataclass(frozen=True)
class FirmwareTestModule:
    path: Path
    tests: tuple[FirmwareTest, ...]
    heap_kib: int

    @property
    def module_name(self) -> str:
        return self.path.stem


def read_test_module(path: Path) -> FirmwareTestModule:
    """Parse a firmware test module: its test functions and VM_HEAP_KIB (no code is run)."""
    tree = ast.parse(path.read_bytes(), filename=str(path))
    tests = []
    heap_kib = DEFAULT_HEAP_KIB
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name.startswith("test"):
            tests.append(FirmwareTest(node.name, node.lineno))
        elif isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "VM_HEAP_KIB" for t in node.targets
        ):
            value = node.value
            if not (isinstance(value, ast.Constant) and type(value.value) is int):
                raise ValueError(f"{path}: VM_HEAP_KIB must be an integer literal")
            heap_kib = value.value
    return FirmwareTestModule(path.resolve(), tuple(tests), heap_kib)


def mounts_for(test_dir: Path) -> dict[Path, str]:
    """The standard mounts, with the test module's own directory at /tests."""
    mounts = {REPO_ROOT / host: vm for host, vm in DEFAULT_MOUNTS.items() if vm != TEST_MOUNT}
    mounts[test_dir.resolve()] = TEST_MOUNT
    return mounts


def start_vm_for(module: FirmwareTestModule, heap_kib: int | None = None) -> MicroPythonVM:
    """Start a VM with the module's heap and import the module in it (errors raise VMError)."""
    vm = MicroPythonVM(
        heap_kib=heap_kib or module.heap_kib,
        mounts=mounts_for(module.path.parent),
        timeout=DEFAULT_TEST_TIMEOUT,
    ).start()
    try:
        vm.exec(f"import {module.module_name}", gc=True)
    except BaseException:
        vm.close()
        raise
    return vm


def run_test(vm: MicroPythonVM, module: FirmwareTestModule, test: FirmwareTest) -> MemFigures:
    """Run one test function in `vm`; raise VMError if it fails. Returns its heap figures."""
    vm.call(f"{module.module_name}.{test.name}", gc=True, measure=True)
    assert vm.last_mem is not None
    return vm.last_mem


def host_paths(text: str, module: FirmwareTestModule) -> str:
    """Rewrite VM paths in a traceback to host paths (so editors can jump to them)."""
    for host, vm_dir in mounts_for(module.path.parent).items():
        text = text.replace(f'"{vm_dir}/', f'"{host}/')
    return text
