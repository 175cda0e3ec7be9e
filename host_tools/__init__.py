"""Host-side tools (CPython): MicroPython VM runner, simulator, recorder, bench, deploy."""
