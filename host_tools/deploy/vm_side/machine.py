"""The virtual board's stand-in for ``machine`` (the WebAssembly VM has none). Runs in the VM.

Only what the virtual board and mpremote use: ``reset()`` (mpremote's ``reset`` command execs
``machine.reset()``; main.py calls it after a fatal error), ``soft_reset()``, ``reset_cause()``
with the reset-cause constants (boards/virtual.py). A reset cannot
happen inside the VM: it raises VirtualReset, which the host (host_tools/deploy/virtual_board.py)
recognises by its name, and the host then restarts the VM from the board's flash. The host sets
``cause`` at every boot.
"""

PWRON_RESET = 1
HARD_RESET = 2
WDT_RESET = 3
DEEPSLEEP_RESET = 4
SOFT_RESET = 5

cause = PWRON_RESET


class VirtualReset(BaseException):
    """Not an Exception: main.py's ``except Exception`` must not catch a reset."""


def reset():
    raise VirtualReset("hard")


def soft_reset():
    raise VirtualReset("soft")


def reset_cause():
    return cause
