"""Host-side tools (CPython): MicroPython VM runner, simulator, recorder, bench, deploy.

The firmware package (firmware/relaypump) is MicroPython code that also runs on CPython; host tools
use it as it is (the agent in the simulator, the generated uplink codec). It is installed with
them (pyproject.toml maps it from firmware/), together with a CPython ``micropython`` module
(host_tools/micropython_shim).
"""
