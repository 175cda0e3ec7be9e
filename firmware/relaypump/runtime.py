"""The agent's one loop: the same code on a board, in the simulator, in the VM lockstep and on a
bench. UART bytes, the 3.5-character gap, the control tick, the watchdog and the state on flash;
all I/O and all time go through a board object.

The board
---------
On hardware boards/esp32.py and boards/rp2.py (machine.UART, time, machine.WDT, littlefs); in the
simulator and the VM lockstep host_tools/sim/vm_side/sim_board.py (virtual time, the simulated
RS-485 bus, a file system in memory or the VM's MEMFS); the virtual board of CI (boards/virtual.py:
the MicroPython VM behind ptys, real time); on a host bench a pyserial board behind a pty
(tests/host_tools/test_runtime_serial.py). What a board offers:

    ticks_ms() ticks_us() ticks_add(t, d) ticks_diff(a, b)
                        the clock, as MicroPython's time module (ticks wrap at 2**30)
    wait_us(us) -> bool block until bytes wait on the UART or ``us`` have passed, whichever is
                        first (select.poll on the UART; a board that cannot wait on its UART sleeps
                        at most 1 ms); returning early is always allowed. False ends ``run_forever``
                        (a simulator's board: the end of its time slice); a board returns True.
    open_bus(baud, parity)
                        the RS-485 UART, 8 data bits, parity "N"/"E"/"O"
    read_into(buf) -> int
                        bytes waiting on the UART (at most len(buf)), never blocks
    send(frame)         DE high, write, wait until the last bit has left the shift register, DE
                        low: returns when the frame is on the wire (its time has passed)
    feed()              the hardware watchdog; ``wdt_timeout_ms`` its timeout
    fs, open            an os-like module (rename, remove) and an open-like function
    reset_cause() -> str
                        why the board (re)started
    log(text)           one line to the console
    net_link(session, mqtt_cfg), ntp_link(clock, ntp_cfg)
                        optional, for the uplink: the broker link and the time source
                        (station_uplink.py says what they are and what a board without them gets)

The loop
--------
``run_forever()`` is ``while board.wait_us(step()): pass``. One ``step()``: the control tick when
``pid.period_ms`` has passed (then the watchdog is fed: only a completed tick feeds it, and the
state is saved when due), the bytes from the UART to ``fieldbus.receive``, ``fieldbus.poll`` while a
transaction is pending, and, once the line has been silent for ``fieldbus.gap_us`` (counted from
the last byte received or sent, in us), ``agent.next_request`` -> ``board.send``. It returns the us
the board may wait before the next step, never 0: until the transaction's deadline (bytes arriving
end the wait earlier), until the gap has passed, until the next poll cycle, and never past the next
tick (a frame on the wire at the tick's instant finishes first). Ticks are scheduled on the us
clock, one period after the other (no drift; after falling a whole period behind, one period from
then). A board in virtual time can therefore jump from event to event.

Start (``__init__``, or ``start()`` when constructed with start=False, and every retry): the
config file is loaded and validated (``load_config``), then the persistent state read (the newer
valid of two generations, storage.py), the agent built with it and the UART opened at the
config's baud (``build``). A host whose heap is collected only between its calls (the VM
lockstep) calls the two halves separately. Rules:
- A bad config (ConfigError, or any ValueError of building the agent, or a control period the
  watchdog cannot cover) is refused: the error naming the field is logged, nothing is sent on the
  bus (the UART is not even opened, the DE line stays low), the watchdog is kept fed (a reset would
  only read the same file again), and the file is read again every 10 s (_CONFIG_RETRY_MS), so a
  corrected file is picked up without a power cycle. Meanwhile the drives see no Modbus traffic
  and, after their own comm timeout, do what their comm-loss parameter says (station.json:
  safe_speed), which is the configured safe state of a station without a controller.
- The validator (relaypump.config, with relaypump.uplink_config for an uplink) is imported when a
  config is read; on MicroPython both are dropped again once a config is accepted (their code is
  RAM on a board without frozen modules).
- No pump slam after a reset: the agent decides nothing before its first complete poll cycle and
  adopts what runs (agent.py).
- State: saved at once when ``state.urgent`` (a lockout, an accepted command counter), else every
  save_period_ms while ``state.dirty`` (run time, starts, energy). Generation seq = loaded + 1, + 1
  per save. A failing save is logged and retried after 10 s (_SAVE_RETRY_MS); the loop goes on.
- An exception from the agent is not caught here: main.py logs it and resets the board.
The uplink (station_uplink.py; only with an "mqtt" section in the config): built after the agent
(by ``build``, or by ``start_uplink`` after ``build(uplink=False)``: main.py collects between the
two; a failure, such as a missing key file, is logged in ``uplink_error`` and the station runs
without it); ``sample`` after every tick; ``step`` (socket, commands, telemetry, outbox) as
often as it asks (its return: 50 ms) while no bus transaction is pending, so a slow flash write
delays the next request, never a response; the loop's waits end by then. A config change it accepted comes back as
``adopt_config``: the agent rebuilt with its state, as after a reset.
Allocation: the loop builds nothing per step; the received bytes go to the agent as a memoryview of
the receive buffer, one view per length, made the first time that length arrives.
"""

import sys

from micropython import const

from . import state as state_mod

CONFIG_PATH = "/station.json"
STATE_BASE = "/state"
SAVE_PERIOD_MS = const(600000)  # run time and energy: at most 10 min lost on a power cut
_SAVE_RETRY_MS = const(10000)
_CONFIG_RETRY_MS = const(10000)
_HOLD_WAIT_US = const(200000)  # loop period while a bad config is held
# one read of the UART: the agent's longest response is ~25 B (5 + 2 per register); more waits a step
_RX_SIZE = const(64)
_IDLE = const(0)  # fieldbus.IDLE (the fieldbus is imported with the agent, by build)
_MICROPYTHON = sys.implementation.name == "micropython"


def _load_config(path, opener):
    from .config import load_config_file

    return load_config_file(path, opener)


def _forget_config_module():
    """Drop the validator once a config is accepted (MicroPython: its code is heap there)."""
    if not _MICROPYTHON:
        return  # CPython: others hold the module (and its exception classes)
    package = sys.modules.get("relaypump")
    for name in ("config", "uplink_config"):
        sys.modules.pop("relaypump." + name, None)
        if package is not None and name in package.__dict__:
            delattr(package, name)


class Runtime:
    def __init__(
        self,
        board,
        config_path=CONFIG_PATH,
        state_base=STATE_BASE,
        save_period_ms=SAVE_PERIOD_MS,
        start=True,
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
        self._views = {}  # type: dict  # a view of the first n bytes, by n (the few lengths seen)
        self._waiting = False
        self._deadline_ms = 0  # of the pending transaction
        self._gap_us = 0
        self._line_us = board.ticks_us()  # last byte seen on the line (ours or a device's)
        now = board.ticks_ms()
        self._next_tick_us = self._line_us  # ticks run on the us clock: exact periods
        self._period_us = 1000000
        self._saved_ms = now
        self._save_retry_ms = now
        self._save_failed = False
        self._retry_ms = now
        self._config = None  # validated by load_config, not yet built
        self._uplink_config = None  # built by build(), its uplink not yet (start_uplink)
        self.uplink = None  # station_uplink.Uplink when the config has an uplink
        self.uplink_error = None
        self.adopted = 0  # config changes applied without a restart (adopt_config)
        self._uplink_ms = now
        board.log("runtime: start, reset cause %s" % board.reset_cause())
        if start:
            self.start()

    # -- start ------------------------------------------------------------------------------------

    def start(self):
        """Read the config and build the agent; False (logged, held) when the config is refused."""
        return self.load_config() and self.build()

    def load_config(self):
        """First half of ``start``: the config file read and validated, the validator dropped."""
        board = self.board
        self._retry_ms = board.ticks_add(board.ticks_ms(), _CONFIG_RETRY_MS)
        try:
            config = _load_config(self.config_path, board.open)
            period = config["pid"]["period_ms"]
            if 2 * period > board.wdt_timeout_ms:
                raise ValueError(
                    "pid.period_ms: %d ms, the watchdog (%d ms) needs at most %d"
                    % (period, board.wdt_timeout_ms, board.wdt_timeout_ms // 2)
                )
        except ValueError as err:  # ConfigError, the period
            return self._refused(err)
        _forget_config_module()
        self._config = config
        return True

    @property
    def uplink_configured(self):
        """The config loaded has an uplink not yet started (main.py's boot steps)."""
        if self._config is not None:
            return "mqtt" in self._config
        return self._uplink_config is not None

    def build(self, uplink=True):
        """Second half of ``start``: the persistent state, the agent and the UART (and the
        uplink, unless uplink=False: then ``start_uplink()`` builds it, a boot step later)."""
        from .agent import Agent  # here: a host may collect between the halves (the VM lockstep)

        board = self.board
        config = self._config
        assert config is not None, "build() after load_config()"
        self._config = None
        n = len(config["pumps"])
        try:
            state, seq = state_mod.load(board.fs, self.state_base, n, board.open)
            agent = Agent(config, state)
        except ValueError as err:  # FieldbusConfigError, ProfileError
            return self._refused(err)
        bus = config["bus"]
        board.open_bus(bus["baud"], bus["parity"])
        self.agent = agent
        self.error = None
        self.seq = seq
        self.starts += 1
        self._period_us = agent.period_ms * 1000
        self._gap_us = agent.fieldbus.gap_us
        now = board.ticks_ms()
        self._saved_ms = now
        self._line_us = board.ticks_us()
        self._next_tick_us = board.ticks_add(self._line_us, self._period_us)
        board.log(
            "runtime: agent of station %d running, state generation %d, %d pumps, %d baud"
            % (config["station"]["id"], seq, n, bus["baud"])
        )
        if "mqtt" in config:
            self._uplink_config = config
            if uplink:
                self.start_uplink()
        return True

    def start_uplink(self):
        """The uplink of the config ``build`` used (nothing without one)."""
        from .station_uplink import Uplink

        config = self._uplink_config
        self._uplink_config = None
        if config is None or self.agent is None:
            return
        now_ms = self.board.ticks_ms()
        try:
            self.uplink = Uplink(config, self, now_ms)
        except (ValueError, OSError) as err:  # a key file missing or bad: no uplink, pumps run
            self.uplink = None
            self.uplink_error = str(err)
            self.board.log("runtime: uplink not started: %s" % err)
            return
        self.uplink_error = None
        self._uplink_ms = now_ms
        self.board.log(
            "runtime: uplink to %s:%d" % (config["mqtt"]["host"], config["mqtt"]["port"])
        )

    def adopt_config(self, config, now_ms):
        """A config change the uplink accepted and stored: the agent rebuilt with the state it
        has (nothing is decided before its first poll cycle; running drives are adopted), the
        bus left open (its settings are not remotely settable). Returns the new agent."""
        from .agent import Agent

        old = self.agent
        assert old is not None, "adopt_config() of a running agent"
        agent = Agent(config, old.state)
        self.agent = agent
        self.adopted += 1
        self._waiting = False  # the old fieldbus's transaction: its reply goes to the new one
        self._period_us = agent.period_ms * 1000
        self._gap_us = agent.fieldbus.gap_us
        return agent

    def _refused(self, err):
        text = str(err)
        if text != self.error:
            self.board.log("runtime: config refused, pumps left to the drives: %s" % text)
        self.error = text
        return False

    # -- the loop ---------------------------------------------------------------------------------

    def run_forever(self):
        """The loop; returns only when the board's wait says so (a simulator's time slice)."""
        wait_us = self.board.wait_us
        step = self.step
        while wait_us(step()):
            pass

    def step(self):
        """One pass; returns the us the board may wait before the next (at least 1)."""
        agent = self.agent
        board = self.board
        now = board.ticks_ms()
        if agent is None:
            return self._hold(now)
        diff = board.ticks_diff
        now_us = board.ticks_us()
        late = diff(now_us, self._next_tick_us)
        if late >= 0:
            agent.tick(now)
            board.feed()  # only a completed tick feeds the watchdog
            if self.uplink is not None:
                self.uplink.sample(agent)
            self.feeds += 1
            if late >= self._period_us:  # fell behind by a whole period: do not catch up in a burst
                self._next_tick_us = board.ticks_add(now_us, self._period_us)
            else:
                self._next_tick_us = board.ticks_add(self._next_tick_us, self._period_us)
            self._maybe_save(agent, now)
            now_us = board.ticks_us()
        elif agent.state.urgent:
            self._maybe_save(agent, now)
            now_us = board.ticks_us()
        fb = agent.fieldbus
        n = board.read_into(self._rx)
        if n:
            now_us = self._line_us = board.ticks_us()
            view = self._views.get(n)
            if view is None:
                view = self._views[n] = memoryview(self._rx)[:n]
            fb.receive(view)  # (agent.receive without its call: every response)
        if self._waiting:
            if fb.poll(now) != _IDLE:  # bytes arriving end the wait earlier
                return self._wait_until(self._deadline_ms, now, now_us)
            self._waiting = False
            now_us = board.ticks_us()
        up = self.uplink
        if up is not None and diff(now, self._uplink_ms) >= 0:  # between transactions
            adopted = self.adopted
            self._uplink_ms = board.ticks_add(now, up.step(now))
            if self.adopted != adopted:  # a config change rebuilt the agent: step again
                return 1
            now_us = board.ticks_us()
        quiet = diff(now_us, self._line_us)
        if quiet < self._gap_us:
            return self._gap_us - quiet
        frame = agent.next_request(now)
        if frame is None:  # the bus rests until its next cycle (or the next tick)
            return self._wait_until(fb.next_cycle_ms(), now, now_us)
        self._deadline_ms = board.ticks_add(now, fb.master.timeout_ms)  # as the master armed it
        board.send(frame)
        now_us = self._line_us = board.ticks_us()
        self._waiting = True
        return self._wait_until(self._deadline_ms, board.ticks_ms(), now_us)

    def _wait_until(self, at_ms, now_ms, now_us):
        """us until at_ms (at least until the next ms: a wait counted from the ms tick ends at or
        after that ms has begun) or until the next tick, whichever is first; at least 1."""
        diff = self.board.ticks_diff
        due = diff(at_ms, now_ms) * 1000
        if due < 1000:
            due = 1000
        if self.uplink is not None:
            up = diff(self._uplink_ms, now_ms) * 1000
            if up < due:
                due = up if up >= 1000 else 1000
        tick = diff(self._next_tick_us, now_us)
        if tick < due:
            due = tick if tick > 0 else 1  # a frame sent across the tick's instant: tick now
        return due

    def _hold(self, now_ms):
        """A refused config: the watchdog fed, the bus silent, the file read again now and then."""
        board = self.board
        board.feed()
        self.feeds += 1
        if board.ticks_diff(now_ms, self._retry_ms) >= 0:
            self.start()
        return _HOLD_WAIT_US

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
            self._save_retry_ms = board.ticks_add(now_ms, _SAVE_RETRY_MS)
            board.log("runtime: state not saved (%s), retry in %d ms" % (err, _SAVE_RETRY_MS))
            return False
        self.seq += 1
        self.saves += 1
        self._save_failed = False
        self._saved_ms = now_ms
        return True
