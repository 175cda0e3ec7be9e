"""Benchmarks printed by `make bench`.

Each module in this package defines ``run(report)`` and calls ``report(name, value, unit)`` once per
figure; the runner prints each as one line ``name: value unit``. Figures are throughput or size, never
asserted: compare ratios within one run, these machines are noisy.
"""
