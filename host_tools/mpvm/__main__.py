"""Run firmware tests in the MicroPython VM by hand, or a snippet of code.

    python -m host_tools.mpvm tests/firmware/test_x.py::test_y [--heap-kib N]
    python -m host_tools.mpvm tests/firmware/test_x.py          # every test in the module
    python -m host_tools.mpvm -c "import struct; print(struct.calcsize('<I'))"

Prints one line per test (PASS/FAIL, heap figures in bytes) and the MicroPython traceback of a
failure; exits 1 if anything failed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from host_tools.mpvm.client import DEFAULT_HEAP_KIB, MicroPythonVM, VMError
from host_tools.mpvm.firmware_tests import host_paths, read_test_module, run_test, start_vm_for


def run_tests(target: str, heap_kib: int | None) -> int:
    path_text, _, only = target.partition("::")
    module = read_test_module(Path(path_text))
    tests = [t for t in module.tests if not only or t.name == only]
    if not tests:
        print(f"no test {only or 'test_*'} in {path_text}", file=sys.stderr)
        return 2
    failed = 0
    try:
        vm = start_vm_for(module, heap_kib)
    except VMError as exc:
        print(f"IMPORT FAILED {module.module_name}\n{host_paths(exc.traceback, module)}")
        return 1
    with vm:
        print(f"# {module.path.name}: {vm.heap_kib} KiB heap, VM start {vm.start_seconds:.3f} s")
        for test in tests:
            if not vm.alive:
                vm = start_vm_for(module, heap_kib)
            try:
                run_test(vm, module, test)
                verdict = "PASS"
            except VMError as exc:
                verdict = "FAIL"
                failed += 1
                detail = host_paths(exc.traceback, module)
            mem = vm.last_mem
            figures = f"before={mem.before} peak={mem.peak} used={mem.used}" if mem else ""
            print(f"{verdict} {test.name}  {figures}")
            if vm.last_out:
                print(vm.last_out, end="")
            if verdict == "FAIL":
                print(detail)
    return 1 if failed else 0


def run_code(code: str, heap_kib: int | None) -> int:
    with MicroPythonVM(heap_kib=heap_kib or DEFAULT_HEAP_KIB) as vm:
        try:
            vm.exec(code)
        except VMError as exc:
            print(exc.out + exc.traceback, end="")
            return 1
        print(vm.last_out, end="")
        mem = vm.last_mem
        if mem:
            print(f"# heap before={mem.before} peak={mem.peak} used={mem.used}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m host_tools.mpvm", description=__doc__.split("\n")[0]
    )
    parser.add_argument("target", nargs="?", help="tests/firmware/test_x.py[::test_name]")
    parser.add_argument("-c", dest="code", help="run this code in the VM instead")
    parser.add_argument("--heap-kib", type=int, default=None, help="override VM_HEAP_KIB")
    args = parser.parse_args(argv)
    if args.code is not None:
        return run_code(args.code, args.heap_kib)
    if not args.target:
        parser.error("give a test target or -c CODE")
    return run_tests(args.target, args.heap_kib)


if __name__ == "__main__":
    sys.exit(main())
