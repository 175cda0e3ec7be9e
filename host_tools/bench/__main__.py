"""Run every benchmark module (or the ones named on the command line) and print its figures."""

import importlib
import math
import pkgutil
import sys

import host_tools.bench as package


def report(name: str, value: object, unit: str) -> None:
    """One figure as `name: value unit`; a value that is not a finite number (a figure that
    could not be computed, e.g. host_tools.sim.kpis.NotComputed) prints as its text: n/a (why)."""
    if isinstance(value, (int, float)) and math.isfinite(value):
        shown = f"{value:.0f}" if abs(value) >= 100 else f"{value:.4g}"
        print(f"{name}: {shown} {unit}".rstrip(), flush=True)
    else:
        text = str(value) if not isinstance(value, float) else "n/a (not a finite number)"
        print(f"{name}: {text}", flush=True)


def main(argv: list[str]) -> int:
    names = argv or [
        m.name for m in pkgutil.iter_modules(package.__path__) if not m.name.startswith("_")
    ]
    for name in sorted(names):
        importlib.import_module(f"host_tools.bench.{name}").run(report)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
