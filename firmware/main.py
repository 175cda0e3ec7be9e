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
- Ctrl-C (mpremote, REPL): the loop stops without a reset, but the watchdog cannot be stopped and
  resets the board 8 s later. To work on the board, create the file /no_agent (e.g.
  ``mpremote fs touch :/no_agent`` right after a reset), then this file starts nothing.
"""

import sys
import time

CONFIG_PATH = "/station.json"
STATE_BASE = "/state"
NO_AGENT_FLAG = "/no_agent"
RESET_DELAY_MS = 5000


def make_board():
    platform = sys.platform  # a plain name: mypy would judge sys.platform by the host's
    if platform == "esp32":
        from boards.esp32 import Board
    elif platform == "rp2":
        from boards.rp2 import Board  # type: ignore[assignment]
    else:
        raise OSError("no board file for platform %s" % platform)
    return Board()


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
    board = make_board()
    from relaypump.runtime import Runtime

    Runtime(board, CONFIG_PATH, STATE_BASE).run_forever()


try:
    main()
except KeyboardInterrupt:
    print("main: stopped; the watchdog resets the board in 8 s (create %s to stay)" % NO_AGENT_FLAG)
except Exception as err:
    print("main: fatal error, reset in %d ms" % RESET_DELAY_MS)
    sys.print_exception(err)
    time.sleep_ms(RESET_DELAY_MS)
    import machine

    machine.reset()
