"""The agent's loop on a board: UART bytes, the 3.5-character gap, the control tick, the watchdog
and the state on flash. Board-independent: all I/O and all time go through a board object.

The board (boards/esp32.py, boards/rp2.py on hardware; a test double of the UART and the clock in
tests; pyserial on a host bench) offers:

    ticks_ms() ticks_us() ticks_add(t, d) ticks_diff(a, b) the clock (ticks wrap, as MicroPython's)
    sleep_ms(ms)
    open_bus(baud, parity)                                 the RS-485 UART, 8 data bits, "N"/"E"/"O"
    read_into(buf) -> int                                  bytes waiting on the UART, never blocks
    send(frame)                                            DE high, write, wait until the last bit
                                                           has left the shift register, DE low
    feed()                                                 the hardware watchdog
    wdt_timeout_ms                                         its timeout
    fs, open                                               an os-like module and an open-like function
    reset_cause() -> str                                   why the board (re)started
    log(text)                                              one line to the console

One ``step()`` makes the calls the simulator's runner makes (host_tools/sim/agent_controller.py),
in the same order, with real time: the control tick when ``pid.period_ms`` has passed (then the
watchdog is fed: only a completed tick feeds it), bytes from the UART to ``agent.receive``,
``fieldbus.poll``, and when the bus is idle and the line has been silent for ``fieldbus.gap_us``
(counted from the last byte received or sent) ``agent.next_request`` -> ``board.send``. It returns
how many ms the caller may sleep; ``run_forever`` does that.

Start (``__init__`` and every retry): the config file is loaded and validated, the persistent
state read (the newer valid of two generations, storage.py), the agent built with it and the UART
opened at the config's baud. Rules:
- A bad config (ConfigError, or any ValueError of building the agent, or a control period the
  watchdog cannot cover) is refused: the error naming the field is logged, nothing is sent on the
  bus (the UART is not even opened, the DE line stays low), the watchdog is kept fed (a reset would
  only read the same file again), and the file is read again every CONFIG_RETRY_MS, so a corrected
  file is picked up without a power cycle. Meanwhile the drives see no Modbus traffic and, after
  their own comm timeout, do what their comm-loss parameter says (station.json: safe_speed), which
  is the configured safe state of a station without a controller.
- No pump slam after a reset: the agent decides nothing before its first complete poll cycle and
  then adopts what runs (agent.py). Until then the fieldbus would still write the snapshot's
  default command (STOP) to every drive in that first cycle; the runtime therefore mirrors, before
  each request until the agent is primed, a drive it has just read RUNNING at or above
  speed.min_pct into its command (RUN at its actual speed), the same adoption control.resume
  makes. A drive that is not running keeps STOP: nothing is started before the agent decides.
- State: saved at once when ``state.urgent`` (a lockout, an accepted command counter), else every
  save_period_ms while ``state.dirty`` (run time, starts, energy). Generation seq = loaded + 1, + 1
  per save. A failing save is logged and retried after SAVE_RETRY_MS; the loop goes on.
- An exception from the agent is not caught here: main.py logs it and resets the board.
Allocation: the loop itself builds nothing per step but the memoryview slice of received bytes
(the agent's own per-tick allocation is the agent's budget); not yet measured in the VM.
"""

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):  # type: ignore[misc,no-redef]
        return x


from . import state as state_mod
from .agent import Agent
from .config import load_config_file
from .fieldbus import IDLE

CONFIG_PATH = "/station.json"
STATE_BASE = "/state"
SAVE_PERIOD_MS = const(600000)  # run time and energy: at most 10 min lost on a power cut
SAVE_RETRY_MS = const(10000)
CONFIG_RETRY_MS = const(10000)
HOLD_SLEEP_MS = const(200)  # loop period while a bad config is held
WAIT_SLEEP_MS = const(1)  # how often the UART is looked at while a response is pending
MAX_SLEEP_MS = const(50)
_RX_SIZE = const(256)


class Runtime:
    def __init__(
        self,
        board,
        config_path=CONFIG_PATH,
        state_base=STATE_BASE,
        save_period_ms=SAVE_PERIOD_MS,
    ):
        self.board = board
        self.config_path = config_path
        self.state_base = state_base
        self.save_period_ms = save_period_ms
        self.agent = None  # None while the config is refused
        self.error = None  # text of the refused config's error
        self.seq = 0  # generation of the last state saved or loaded
        self.saves = 0
        self.save_errors = 0
        self.feeds = 0
        self.starts = 0
        self._rx = bytearray(_RX_SIZE)
        self._rx_view = memoryview(self._rx)
        self._waiting = False
        self._line_us = board.ticks_us()  # last byte seen on the line (ours or a device's)
        now = board.ticks_ms()
        self._next_tick_ms = now
        self._period_ms = 1000
        self._saved_ms = now
        self._save_retry_ms = now
        self._save_failed = False
        self._retry_ms = now
        board.log("runtime: start, reset cause %s" % board.reset_cause())
        self._start(now)

    # -- start ------------------------------------------------------------------------------------

    def _start(self, now_ms):
        board = self.board
        self._retry_ms = board.ticks_add(board.ticks_ms(), CONFIG_RETRY_MS)
        try:
            config = load_config_file(self.config_path, board.open)
            period = config["pid"]["period_ms"]
            if 2 * period > board.wdt_timeout_ms:
                raise ValueError(
                    "pid.period_ms: %d ms, the watchdog (%d ms) needs at most %d"
                    % (period, board.wdt_timeout_ms, board.wdt_timeout_ms // 2)
                )
            n = len(config["pumps"])
            state, seq = state_mod.load(board.fs, self.state_base, n, board.open)
            agent = Agent(config, state)
        except ValueError as err:  # ConfigError, FieldbusConfigError, ProfileError, the period
            text = str(err)
            if text != self.error:
                board.log("runtime: config refused, pumps left to the drives: %s" % text)
            self.error = text
            return False
        bus = config["bus"]
        board.open_bus(bus["baud"], bus["parity"])
        self.agent = agent
        self.error = None
        self.seq = seq
        self.starts += 1
        self._period_ms = agent.period_ms
        now = board.ticks_ms()
        self._next_tick_ms = board.ticks_add(now, agent.period_ms)
        self._saved_ms = now
        self._line_us = board.ticks_us()
        board.log(
            "runtime: agent of station %d running, state generation %d, %d pumps, %d baud"
            % (config["station"]["id"], seq, n, bus["baud"])
        )
        return True

    # -- the loop ---------------------------------------------------------------------------------

    def run_forever(self):
        board = self.board
        while True:
            wait = self.step()
            if wait > 0:
                board.sleep_ms(wait)

    def step(self):
        """One pass; returns the ms the caller may sleep before the next."""
        board = self.board
        agent = self.agent
        now = board.ticks_ms()
        if agent is None:
            return self._hold(now)
        diff = board.ticks_diff
        if diff(now, self._next_tick_ms) >= 0:
            agent.tick(now)
            board.feed()  # only a completed tick feeds the watchdog
            self.feeds += 1
            late = diff(now, self._next_tick_ms)
            if late >= self._period_ms:  # fell behind by a whole period: do not catch up in a burst
                self._next_tick_ms = board.ticks_add(now, self._period_ms)
            else:
                self._next_tick_ms = board.ticks_add(self._next_tick_ms, self._period_ms)
            self._maybe_save(agent, now)
        elif agent.state.urgent:
            self._maybe_save(agent, now)
        fb = agent.fieldbus
        n = board.read_into(self._rx)
        if n:
            self._line_us = board.ticks_us()
            agent.receive(self._rx_view[:n])
        if self._waiting:
            if fb.poll(now) != IDLE:
                return WAIT_SLEEP_MS
            self._waiting = False
        if diff(board.ticks_us(), self._line_us) < fb.gap_us:
            return 0  # the 3.5-character silence is shorter than a ms: spin it out
        frame = agent.next_request(now)
        if frame is None:  # the bus rests until its next cycle, or the next tick
            due = diff(fb.next_cycle_ms(), now)
            tick = diff(self._next_tick_ms, now)
            if tick < due:
                due = tick
            if due < 1:
                return 1
            return due if due < MAX_SLEEP_MS else MAX_SLEEP_MS
        board.send(frame)
        self._line_us = board.ticks_us()
        self._waiting = True
        return 0

    def _hold(self, now_ms):
        """A refused config: the watchdog fed, the bus silent, the file read again now and then."""
        board = self.board
        board.feed()
        self.feeds += 1
        if board.ticks_diff(now_ms, self._retry_ms) >= 0:
            self._start(now_ms)
        return HOLD_SLEEP_MS

    def _maybe_save(self, agent, now_ms):
        state = agent.state
        diff = self.board.ticks_diff
        if self._save_failed and diff(now_ms, self._save_retry_ms) < 0:
            return
        if state.urgent or (state.dirty and diff(now_ms, self._saved_ms) >= self.save_period_ms):
            self.save(agent, now_ms)

    def save(self, agent, now_ms):
        """Write the state as the next generation; False (logged) when the file system fails."""
        board = self.board
        try:
            state_mod.save(board.fs, self.state_base, agent.state, self.seq + 1, board.open)
        except OSError as err:
            self.save_errors += 1
            self._save_failed = True
            self._save_retry_ms = board.ticks_add(now_ms, SAVE_RETRY_MS)
            board.log("runtime: state not saved (%s), retry in %d ms" % (err, SAVE_RETRY_MS))
            return False
        self.seq += 1
        self.saves += 1
        self._save_failed = False
        self._saved_ms = now_ms
        return True
