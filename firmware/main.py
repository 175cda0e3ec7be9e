"""Boot entry of the station agent on a board: MicroPython runs this file after boot.py.

What happens:
- Boot / reset: the board file for ``sys.platform`` ("esp32" -> boards/esp32.py, "rp2" ->
  boards/rp2.py) drives DE low and starts the 8 s watchdog; relaypump.runtime.Runtime logs the
  reset cause, loads /station.json and the persistent state (/state.a, /state.b: run hours,
  starts, energy, lockouts, command counter), builds the agent and runs it forever. After any
  reset the pumps are resumed, not restarted: nothing is decided before the first complete poll
  cycle, running drives are adopted at their actual speed (runtime.py, agent.py).
- Bad config: the runtime logs the error naming the field, keeps the bus silent (the drives fall
  back to their own comm-loss action, safe_speed in station.json) and the watchdog fed, and reads
  the file again every 10 s; no reset loop, no pump command.
- An unexpected exception: printed, then machine.reset() after RESET_DELAY_MS (the console gets
  the traceback; a crash loop does not hammer the bus and flash). Until the agent is back (delay
  + boot, a few seconds) the drives see no traffic and, after their comm timeout, apply their own
  comm-loss action, which keeps the pumps safe; the state on flash is at most one save period old
  and never torn (two generations). A hang instead of an exception is the watchdog's: no tick,
  no feed, reset after 8 s.
- The boot runs in steps (``boot``), a collection after each: the runtime, the config read and
  validated (the validator's code is dropped again before the agent's modules come), each module
  of STAGES (leaves first), then the agent built; with an uplink in the config (station_uplink.py)
  its module is a step before the agent is built, and the uplink itself a step after. Loading a
  module from .mpy leaves garbage, and the validator is big: in one go they would add up to a
  peak well above the heap the running agent needs. Frozen into the firmware (manifest.py) the modules cost no heap for their code.
- Ctrl-C (mpremote, REPL): the loop stops without a reset, but the watchdog cannot be stopped and
  resets the board 8 s later. To work on the board, create the file /no_agent (e.g.
  ``mpremote fs touch :/no_agent`` right after a reset), then this file starts nothing and the
  watchdog is never started. ``make flash`` does exactly that around the copy.
- The virtual board (boards/virtual.py, sys.platform "webassembly") runs this same file; its
  ``board.run`` hands the runtime to the host, which steps it and calls ``interrupted()`` /
  ``fatal(err)`` where this file's handlers would run.
"""

import gc
import sys
import time

CONFIG_PATH = "/station.json"
STATE_BASE = "/state"
NO_AGENT_FLAG = "/no_agent"
RESET_DELAY_MS = 5000

# The agent's modules, leaves first: one boot step each. The runtime and what it imports come
# before the config is read; the config validator is not among them (the runtime loads and
# drops it).
STAGES = (
    "relaypump.ticks",
    "relaypump.codes",
    "relaypump.snapshot",
    "relaypump.events",
    "relaypump.modbus",
    "relaypump.drives",
    "relaypump.plausibility",
    "relaypump.sensors",
    "relaypump.fieldbus",
    "relaypump.pumpmodel",
    "relaypump.pid",
    "relaypump.setpoint",
    "relaypump.control",
    "relaypump.staging",
    "relaypump.protection",
    "relaypump.agent",
)
BOARDS = {"esp32": "boards.esp32", "rp2": "boards.rp2", "webassembly": "boards.virtual"}


def boot(board):
    """The boot, one step per iteration; the last yields the runtime. main() collects between the
    steps; a host whose heap is collected only between its own calls (the VM) runs one per call."""
    from relaypump.runtime import Runtime

    runtime = Runtime(board, CONFIG_PATH, STATE_BASE, start=False)
    yield None
    accepted = runtime.load_config()  # a refused config is logged; the runtime retries it
    yield None
    for name in STAGES:
        __import__(name)
        yield None
    if accepted and runtime.uplink_configured:  # the uplink's own module, a step of its own
        __import__("relaypump.station_uplink")
        yield None
    if accepted:
        runtime.build(uplink=False)  # the uplink a step later: their garbage does not add up
        if runtime.uplink_configured:
            yield None
            runtime.start_uplink()
    yield runtime


def make_board():
    platform = sys.platform  # a plain name: mypy would judge sys.platform by the host's
    name = BOARDS.get(platform)
    if name is None:
        raise OSError("no board file for platform %s" % platform)
    module = __import__(name, None, None, ("Board",))
    gc.collect()
    return module.Board()


def agent_disabled():
    import os

    try:
        os.stat(NO_AGENT_FLAG)
    except OSError:
        return False
    return True


def main():
    if agent_disabled():
        print("main: %s exists, the agent is not started" % NO_AGENT_FLAG)
        return
    board = make_board()  # first: it drives DE low (the bus stays free) and starts the watchdog
    steps = boot(board)
    runtime = None
    while runtime is None:  # the last step gives the runtime
        runtime = next(steps)
        gc.collect()
    board.run(runtime)


def interrupted():
    print("main: stopped; the watchdog resets the board in 8 s (create %s to stay)" % NO_AGENT_FLAG)


def fatal(err):
    print("main: fatal error, reset in %d ms" % RESET_DELAY_MS)
    sys.print_exception(err)
    time.sleep_ms(RESET_DELAY_MS)
    import machine

    machine.reset()


def run():
    try:
        main()
    except KeyboardInterrupt:
        interrupted()
    except Exception as err:
        fatal(err)


if __name__ == "__main__":
    run()
