"""Pump staging: how many pumps run and which (config "staging", pump curves from pumpmodel).

Inputs per tick: now_ms, station flow (m3/h) and whether it is usable, the head the pumps must make
(m; the setpoint's required head at this flow is the steady target; or a function of the flow
giving it, called only on a tick that begins a count evaluation: floats are heap objects on
MicroPython), the available pumps (online, not tripped, not locked out, enabled: a bitmask), the
pumps whose drives run (bitmask), run seconds per pump (ints), whether the station may run at
all, and whether a running pump is overloaded (beyond its run-out limit or its motor rating, as
protection and control judge it). The flow is what the pumps staging controls must carry: a lost
drive running on at its comm-loss speed is neither available nor counted, and the agent takes
its estimated flow off the station flow. Output: the bitmask of pumps that should
run, `exercise_mask` (a pump run at min speed for its exercise), and the tick's events in
preallocated arrays (event_code / event_pump (1-based) / event_reason, event_count).

Rules:
- Count: every eval_period_s, with usable flow and no change within settle_s (a stopped station
  does not wait: its first pump starts as soon as a pump may start), the electrical power
  of n = 1..min(max_running, available) pumps sharing the flow equally is computed (pumpmodel).
  A candidate count must lie inside the allowed window shrunk by feasibility_margin (so a switch
  does not land on the window's edge and bounce back). The count changes, one pump at a time, when
  the present count is outside the allowed window, or when the best candidate saves more than
  `hysteresis` (a fraction) of the present power. If no count fits, the one least outside the
  window is taken (too much flow -> more pumps, too little -> fewer). With no pump running the
  station starts a pump at once (any count starts with its first pump; no power is computed).
- Restart: a station stop (station off: the source pumps stopped, a trip) remembers how many pumps
  ran. When the station may run again, with restart_as_before (default true) it starts that many
  (at most max_running and the available ones) in the same tick, without waiting for settle_s:
  while the network refills there is no flow to judge a count by, and one pump alone runs out
  and past its motor rating before a second one would be judged (then it still needs its ramp
  to minimum speed). Together, not one per eval_period_s: the first pump's reference waits at
  min speed for the last one's drive anyway (control's follow band), so a stagger only delayed
  the whole refill by it; the flow still rises at one slew for all. Starts per hour and
  min_stop_s hold as for any demand start; the
  next regular evaluation (settle_s after the last start) corrects a count the demand no longer
  needs. While no pump may start (protection blocks starts, min_stop_s) the restart waits; it ends
  when its count runs, or settle_s after its last start (the regular evaluation takes over).
- Spread evaluation (floats are heap objects on MicroPython; one candidate's power is up to 32 of
  them, and the whole agent may allocate 1 KiB a tick): the tick an evaluation begins takes the
  flow, the head, the present count and the count range n_max and computes nothing else; then
  each candidate n = 1..n_max in turn takes one tick for its operating point and shaft power
  (about 21 floats) and, if it lies in its window, one more for its electrical power (about 11);
  the tick after the last candidate decides (and starts or stops a pump: the joining pump's
  feedforward in control costs floats of its own, so that tick computes no power). The decision
  thus comes at most 2 n_max + 1 ticks after the evaluation began, harmless against
  eval_period_s and settle_s. ``busy`` is True after a tick of an evaluation in progress (the
  agent keeps the other concerns' optional float work off such ticks). The evaluation is
  dropped (the next one comes eval_period_s after it began) when meanwhile the flow became
  unusable, the wanted pumps or the count range changed (failover, unavailable pump, station
  off), or a rotation began.
- Overload: while a running pump is overloaded the count evaluation does not wait for settle_s
  (eval_period_s still spaces evaluations): the model judges whether one more pump brings every
  pump back into its window, and a start it decides ignores min_stop_s (like failover; starts per
  hour still hold). This starts the second pump of a cold start as soon as the first one runs out
  instead of settle_s later, and relieves a survivor after a trip if failover could not.
- Which: a start takes the available idle pump with the fewest run seconds that may start; a demand
  stop takes the running pump with the most run seconds that has run min_run_s.
- A pump may start only min_stop_s after it stopped and only if it started fewer than
  max_starts_per_hour times in the last 3600 s (a ring of start times per pump). Starts for
  exercise and rotation count too.
- Failover: a wanted pump that becomes unavailable (trip, lost drive, lockout, disabled) leaves the
  mask at once and an available idle pump starts in the same tick. Failover ignores min_stop_s of
  the standby (holding the network pressure matters more than the rest period; the motor's thermal
  limit is the starts-per-hour limit, which failover respects).
- Rotation: every rotation_hours, if an idle pump has fewer run seconds than the running pump with
  the most, the idle one starts first; the other stops after the incoming pump's drive has run for
  handover_s (start-then-stop: the DP never drops). Abandoned if the incoming pump does not run
  within 4 x handover_s.
- Head at the floor: one pump running alone (no rotation, restart or exercise in progress)
  whose control sits at min speed with the remote DP more than 2 % above its setpoint
  (``at_floor``: control's PI wants less than min_pct; the agent passes it only while no lost
  drive, run-out or overload is active) for FLOOR_S makes more head than the network needs. An
  available idle pump that may start (min_stop_s, starts per hour) whose fitted head factor
  (``head_factor``, the calibration's lists, taken only after FLOOR_SAMPLES accepted
  observations of both pumps) is lower by more than FLOOR_FACTOR_GAP takes over with the
  rotation's start-then-stop handover (its start reason HEAD, the outgoing pump's stop reason
  ROTATION; a count evaluation in progress delays it), the one with the lowest factor. At most one
  such swap per FLOOR_GAP_S (it cannot oscillate), none settle_s after any change and none while
  a pump that left for unavailability (trip, lost drive, lockout) is still unavailable. Without
  a candidate it looks again FLOOR_S later (a look builds one float).
- Exercise: an available pump idle for exercise_idle_hours (counted from agent start or its last
  stop) runs exercise_s at min speed (exercise_mask) once the station is stable (no change within
  settle_s, no rotation in progress); one pump at a time. Demand may take over an exercising pump.
- Station off (protection, interlock, mode off): every pump leaves the mask (soft stop by control).
Long durations use an internal seconds clock accumulated from wrap-safe tick differences (ticks_ms
wraps after 12.4 days; rotation spans a week). All state is preallocated ints (and references to
the evaluation's floats); a tick that evaluates a candidate builds that candidate's floats only
(or the head, on the tick that begins the evaluation), other ticks allocate nothing.
"""

from micropython import const

from .codes import EVENT_PUMP_STARTED, EVENT_PUMP_STOPPED
from .pumpmodel import PumpModel
from .ticks import ticks_diff

REASON_DEMAND = const(1)
REASON_FAILOVER = const(2)
REASON_ROTATION = const(3)
REASON_EXERCISE = const(4)
REASON_UNAVAILABLE = const(5)
REASON_STATION_OFF = const(6)
REASON_OVERLOAD = const(7)
REASON_HEAD = const(8)  # a weaker pump takes over at the min-speed floor (rule "Head at the floor")

FLOOR_S = const(300)  # at the floor this long before a swap
FLOOR_GAP_S = const(4 * 3600)  # at most one such swap per this span
FLOOR_SAMPLES = const(6)  # the calibration's accepted head observations before a factor counts
FLOOR_FACTOR_GAP = 0.01  # the incoming pump's head factor lower by more than this

_NEVER = const(-0x10000000)  # "long ago" on the internal seconds clock (clock starts at 0)
_HOUR_S = const(3600)
_MAX_EVENTS = const(12)


def popcount(mask):
    n = 0
    while mask:
        n += mask & 1
        mask >>= 1
    return n


class CountChoice:
    """The count decision folded one candidate at a time (so staging can spread it over ticks):
    reset(), add(n) for n = 1..n_max in order, then result(). The rule is the module's "Count".
    add(n) in two halves, one per tick: point(n) (the pumps' operating point and shaft power:
    True when the candidate lies in its window) and, if so, power(n)."""

    def __init__(self, model, margin, hysteresis):
        self.model = model
        self.margin = margin
        self.keep = 1.0 - hysteresis  # a switch must cost less than keep x the present power
        self.reset(0, 0, 0.0, 0.0)

    def reset(self, n_now, n_max, flow_m3h, head_m):
        self.n_now = n_now
        self.n_max = n_max
        self.flow = flow_m3h
        self.head = head_m
        self.best = 0  # least power inside the (shrunk) window
        self.best_kw = 0.0
        self.now_kw = -1.0  # the present count's power, in its own window (margin 0)
        self.least = 0  # least outside the window, while no candidate fits
        self.least_v = 0.0
        self.shaft_kw = -1.0  # per pump, of the candidate whose point() came last

    def add(self, n):
        if self.point(n):
            self.power(n)

    def point(self, n):
        model = self.model
        flow = self.flow
        margin = 0.0 if n == self.n_now else self.margin
        self.shaft_kw = model.station_shaft_kw(n, flow, self.head, margin)
        if self.shaft_kw > 0.0:
            return True
        if n == self.n_now:
            self.now_kw = -1.0
        if self.best == 0:  # needed only if no candidate fits
            head = self.head
            q = flow / n if flow > 0.0 else 0.0
            v = model.range_violation(q, model.speed_for(q, head if head > 0.0 else 0.0))
            if self.least == 0 or v < self.least_v:
                self.least = n
                self.least_v = v
        return False

    def power(self, n):
        kw = self.model.station_kw_of(n, self.shaft_kw)
        if n == self.n_now:
            self.now_kw = kw
        if self.best == 0 or kw < self.best_kw:
            self.best = n
            self.best_kw = kw

    def result(self):
        """The count to head for (0 = none available)."""
        best = self.best
        n_now = self.n_now
        if best == 0:  # nothing fits: the count least outside the window
            return self.least
        if n_now < 1 or n_now > self.n_max or best == n_now:
            return best
        if self.now_kw <= 0.0:  # present count outside the allowed window
            return best
        return best if self.best_kw < self.now_kw * self.keep else n_now


class Staging:
    def __init__(self, config, model=None):
        st = config["staging"]
        self.model = model if model is not None else PumpModel(config)
        n = len(config["pumps"])
        self.pump_count = n
        self.all_mask = (1 << n) - 1
        self.min_run_s = int(st["min_run_s"])
        self.min_stop_s = int(st["min_stop_s"])
        self.max_starts = int(st["max_starts_per_hour"])
        self.hysteresis = float(st["hysteresis"])
        self.rotation_s = int(float(st["rotation_hours"]) * 3600)
        self.exercise_idle_s = int(float(st["exercise_idle_hours"]) * 3600)
        self.exercise_s = int(st["exercise_s"])
        # the defaults here, not in a dict: constants stay with the code (in flash, frozen)
        self.eval_period_s = int(st.get("eval_period_s", 10))
        self.settle_s = int(st.get("settle_s", 120))
        self.margin = float(st.get("feasibility_margin", 0.03))
        self.handover_s = int(st.get("handover_s", 90))
        self.max_running = int(st.get("max_running", n - 1 if n > 1 else 1))
        self.restart_as_before = bool(st.get("restart_as_before", True))
        # state (ints only)
        self.mask = 0
        self.exercise_mask = 0
        self.now_s = 0
        self._ms_rest = 0
        self._last_ms = 0
        self._started = False
        self._last_change_s = _NEVER
        self._last_eval_s = _NEVER
        self._last_rotation_s = 0
        self.last_start_s = [_NEVER] * n
        self.last_stop_s = [_NEVER] * n
        self.idle_since_s = [0] * n
        self._starts = [_NEVER] * (n * self.max_starts)
        self._start_slot = [0] * n
        self._swap_in = -1
        self._swap_out = -1
        self._swap_since_s = 0
        self._swap_run_s = _NEVER
        self._exercise = -1
        self._exercise_since_s = 0
        self._exercise_run_s = _NEVER
        self.wanted_count = 0  # the count the last evaluation chose (telemetry, tests)
        self._urgent = False  # the evaluation in progress began on an overload
        self._restart_count = 0  # pumps to run again after a station stop (0: no restart)
        # rule "Head at the floor": the agent rebinds these to the calibration's own lists
        self.head_factor = [1.0] * n
        self.head_samples = [0] * n
        self._floor_since_s = _NEVER
        self._last_floor_swap_s = _NEVER
        self._lost = 0  # pumps that left for unavailability and are still unavailable
        # the count evaluation in progress, one candidate per tick (see "Spread evaluation")
        self._choice = CountChoice(self.model, self.margin, self.hysteresis)
        if self.margin > 0.0:
            self.model.use_margin(self.margin)
        self._next_n = 0  # the next candidate; 0 = no evaluation in progress
        self._power_next = False  # its point is taken, its power comes next
        self.busy = False  # this tick's update built floats (an evaluation in progress)
        self._eval_mask = 0  # the wanted pumps when it began
        # a byte each: staging's two event codes, a pump number, a REASON_*
        self.event_code = bytearray(_MAX_EVENTS)
        self.event_pump = bytearray(_MAX_EVENTS)
        self.event_reason = bytearray(_MAX_EVENTS)
        self.event_count = 0

    # --- helpers -------------------------------------------------------------------------------
    def _event(self, code, i, reason):
        k = self.event_count
        if k < _MAX_EVENTS:
            self.event_code[k] = code
            self.event_pump[k] = i + 1
            self.event_reason[k] = reason
            self.event_count = k + 1

    def starts_in_last_hour(self, i):
        m = self.max_starts
        n = 0
        for k in range(i * m, i * m + m):
            if self.now_s - self._starts[k] < _HOUR_S:
                n += 1
        return n

    def may_start(self, i, ignore_min_stop=False):
        m = self.max_starts
        if m <= 0:
            return False
        # the slot to be overwritten next holds the oldest of the last m starts
        if self.now_s - self._starts[i * m + self._start_slot[i]] < _HOUR_S:
            return False
        return ignore_min_stop or self.now_s - self.last_stop_s[i] >= self.min_stop_s

    def _record_start(self, i):
        m = self.max_starts
        self._starts[i * m + self._start_slot[i]] = self.now_s
        self._start_slot[i] = (self._start_slot[i] + 1) % m
        self.last_start_s[i] = self.now_s

    def _start(self, i, reason):
        self.mask |= 1 << i
        if i == self._exercise:  # demand takes over the exercised pump: already started
            self._exercise = -1
            self.exercise_mask = 0
            self.last_start_s[i] = self.now_s
        else:
            self._record_start(i)
            self._event(EVENT_PUMP_STARTED, i, reason)

    def _stop(self, i, reason):
        self.mask &= ~(1 << i)
        self.last_stop_s[i] = self.now_s
        self.idle_since_s[i] = self.now_s
        self._event(EVENT_PUMP_STOPPED, i, reason)

    def _pick_start(self, available, run_s, ignore_min_stop):
        best = -1
        for i in range(self.pump_count):
            bit = 1 << i
            if available & bit and not self.mask & bit and self.may_start(i, ignore_min_stop):
                if best < 0 or run_s[i] < run_s[best]:
                    best = i
        return best

    def _pick_stop(self, run_s):
        best = -1
        for i in range(self.pump_count):
            if self.mask & (1 << i) and i != self._swap_in:
                if self.now_s - self.last_start_s[i] >= self.min_run_s:
                    if best < 0 or run_s[i] > run_s[best]:
                        best = i
        return best

    def resume(self, running_mask, available_mask):
        """After an agent reset: keep the pumps that still run (they count as long started)."""
        self.mask = running_mask & available_mask & self.all_mask
        self._next_n = 0
        self._restart_count = 0  # (a stop called off: the count is judged as usual)

    # --- per tick ------------------------------------------------------------------------------
    def update(
        self,
        now_ms,
        flow_m3h,
        flow_ok,
        head_m,
        available,
        running,
        run_s,
        station_on=True,
        overloaded=False,
        at_floor=False,
    ):
        if self._started:
            dt = ticks_diff(now_ms, self._last_ms)
            if dt > 0:
                dt += self._ms_rest
                self.now_s += dt // 1000
                self._ms_rest = dt % 1000
        else:
            self._started = True
        self._last_ms = now_ms
        self.event_count = 0
        available &= self.all_mask
        now = self.now_s

        if not station_on and self.mask and self.restart_as_before:
            self._restart_count = popcount(self.mask)  # (before the unavailable ones leave)
        # pumps that are gone leave at once; count them for failover
        lost = 0
        gone = self.mask & ~available
        self._lost = (self._lost | gone) & ~available
        if gone:
            for i in range(self.pump_count):
                if gone & (1 << i):
                    self._stop(i, REASON_UNAVAILABLE)
                    if i != self._swap_in and i != self._swap_out:
                        lost += 1  # (a lost outgoing pump is replaced by the incoming one)
                    if i == self._swap_in or i == self._swap_out:
                        self._swap_in = self._swap_out = -1
        if self._exercise >= 0 and not available & (1 << self._exercise):
            self._end_exercise(False)

        if not station_on:
            for i in range(self.pump_count):
                if self.mask & (1 << i):
                    self._stop(i, REASON_STATION_OFF)
            self._swap_in = self._swap_out = -1
            if self._exercise >= 0:
                self._end_exercise(True)
            self._last_change_s = now
            self._next_n = 0
            self.busy = False
            return self.mask

        # failover: replace at once, whatever min_stop_s says; starts per hour still hold
        while lost:
            lost -= 1
            i = self._pick_start(available, run_s, True)
            if i < 0:
                break
            self._start(i, REASON_FAILOVER)
            self._last_change_s = now

        self._rotation(available, running, run_s)
        self._floor_swap(available, running, at_floor)

        if self._restart_count and self.mask and now - self._last_change_s >= self.settle_s:
            self._restart_count = 0  # (a restart that could not complete: the count is judged)
        if self._next_n:
            self._evaluate_next(flow_ok, available, run_s)
        elif (
            now - self._last_eval_s >= self.eval_period_s
            # settle_s spaces count changes of a running station; a stopped one starts its
            # first pump as soon as it may (the network has no pressure meanwhile), an
            # overloaded one is judged at once
            and (
                now - self._last_change_s >= self.settle_s
                or not self.mask
                or overloaded
                or self._restart_count
            )
            and self._swap_in < 0
        ):
            self._last_eval_s = now
            if self._restart_count:
                self._restart_next(available, run_s)
            elif not self.mask:
                self._first_start(available, run_s)
            elif flow_ok:
                if callable(head_m):
                    head_m = head_m(flow_m3h)
                n_max = self._count_range(available)
                self._choice.reset(popcount(self.mask), n_max, flow_m3h, head_m)
                self._eval_mask = self.mask
                self._urgent = overloaded
                self._next_n = 1  # the candidates follow, one half per tick
                self._power_next = False

        self._exercise_step(available, running)
        self.busy = self._next_n != 0
        return self.mask

    # --- count ---------------------------------------------------------------------------------
    def _count_range(self, available):
        n_max = popcount(available)
        return n_max if n_max < self.max_running else self.max_running

    def choose_count(self, flow_m3h, head_m, n_now, n_max):
        """The count to head for (0 = none available), all candidates at once. Pure: no state
        changes (builds its own CountChoice)."""
        choice = CountChoice(self.model, self.margin, self.hysteresis)
        choice.reset(n_now, n_max, flow_m3h, head_m)
        for n in range(1, n_max + 1):
            choice.add(n)
        return choice.result()

    def _first_start(self, available, run_s):
        """No pump runs: every count begins with one pump, so start it without computing power."""
        if self._count_range(available) < 1:
            self.wanted_count = 0
            return
        self.wanted_count = 1
        i = self._pick_start(available, run_s, False)
        if i >= 0:
            self._start(i, REASON_DEMAND)
            self._last_change_s = self.now_s

    def _restart_next(self, available, run_s):
        """The restart's pumps that may start now, all in this tick (module rule "Restart"),
        or its end."""
        want = self._restart_count
        n_max = self._count_range(available)
        if want > n_max:
            want = n_max
        if popcount(self.mask) >= want:
            self._restart_count = 0
            return
        while popcount(self.mask) < want:
            i = self._pick_start(available, run_s, False)
            if i < 0:
                break
            self.wanted_count = want
            self._start(i, REASON_DEMAND)
            self._last_change_s = self.now_s

    def _evaluate_next(self, flow_ok, available, run_s):
        """One candidate of the evaluation in progress, or its decision after the last one."""
        choice = self._choice
        if (
            not flow_ok
            or self.mask != self._eval_mask
            or self._swap_in >= 0
            or self._count_range(available) != choice.n_max
        ):
            self._next_n = 0  # its premises changed: drop it
            return
        n = self._next_n
        if n <= choice.n_max:
            if self._power_next:  # the second half of candidate n
                choice.power(n)
                self._power_next = False
                self._next_n = n + 1
            elif choice.point(n):
                self._power_next = True
            else:  # outside its window: no power to compute
                self._next_n = n + 1
            return
        self._next_n = 0
        want = choice.result()
        self.wanted_count = want
        n_now = choice.n_now
        if want > n_now:
            urgent = self._urgent
            i = self._pick_start(available, run_s, urgent)
            if i >= 0:
                self._start(i, REASON_OVERLOAD if urgent else REASON_DEMAND)
                self._last_change_s = self.now_s
        elif want < n_now and not self._urgent:  # (never a stop on an overload)
            i = self._pick_stop(run_s)
            if i >= 0:
                self._stop(i, REASON_DEMAND)
                self._last_change_s = self.now_s

    # --- rotation ------------------------------------------------------------------------------
    def _rotation(self, available, running, run_s):
        now = self.now_s
        if self._swap_in >= 0:
            i = self._swap_in
            if running & (1 << i):
                if self._swap_run_s == _NEVER:
                    self._swap_run_s = now
                if now - self._swap_run_s >= self.handover_s:
                    if self.mask & (1 << self._swap_out):
                        self._stop(self._swap_out, REASON_ROTATION)
                    self._swap_in = self._swap_out = -1
                    self._last_change_s = now
            elif now - self._swap_since_s >= 4 * self.handover_s:
                self._stop(i, REASON_ROTATION)  # the incoming pump never ran: give up
                self._swap_in = self._swap_out = -1
            return
        if self.rotation_s <= 0 or now - self._last_rotation_s < self.rotation_s:
            return
        if now - self._last_change_s < self.settle_s or self._exercise >= 0 or not self.mask:
            return
        self._last_rotation_s = now
        out = -1
        for i in range(self.pump_count):
            if self.mask & (1 << i) and (out < 0 or run_s[i] > run_s[out]):
                out = i
        i = self._pick_start(available, run_s, False)
        if out < 0 or i < 0 or run_s[i] >= run_s[out]:
            return
        self._start(i, REASON_ROTATION)
        self._swap_in = i
        self._swap_out = out
        self._swap_since_s = now
        self._swap_run_s = _NEVER
        self._last_change_s = now

    def _floor_swap(self, available, running, at_floor):
        """The module rule "Head at the floor"."""
        now = self.now_s
        mask = self.mask
        if (
            not at_floor
            or popcount(mask) != 1
            or not running & mask
            or self._swap_in >= 0
            or self._restart_count
            or self._exercise >= 0
            or self._lost
        ):
            self._floor_since_s = _NEVER
            return
        if self._floor_since_s == _NEVER:
            self._floor_since_s = now
        if (
            now - self._floor_since_s < FLOOR_S
            or now - self._last_floor_swap_s < FLOOR_GAP_S
            or now - self._last_change_s < self.settle_s
            or self._next_n  # (a count evaluation in progress: its premises hold)
        ):
            return
        self._floor_since_s = now  # without a candidate: the next look FLOOR_S later
        out = 0
        while not mask & (1 << out):
            out += 1
        samples = self.head_samples
        factor = self.head_factor
        if samples[out] < FLOOR_SAMPLES:
            return
        limit = factor[out] - FLOOR_FACTOR_GAP
        best = -1
        for i in range(self.pump_count):
            if (
                available & (1 << i)
                and i != out
                and samples[i] >= FLOOR_SAMPLES
                and factor[i] < limit
                and (best < 0 or factor[i] < factor[best])
                and self.may_start(i)
            ):
                best = i
        if best < 0:
            return
        self._last_floor_swap_s = now
        self._start(best, REASON_HEAD)
        self._swap_in = best
        self._swap_out = out
        self._swap_since_s = now
        self._swap_run_s = _NEVER
        self._last_change_s = now

    # --- exercise ------------------------------------------------------------------------------
    def _end_exercise(self, event):
        i = self._exercise
        self._exercise = -1
        self.exercise_mask = 0
        self.idle_since_s[i] = self.now_s
        self.last_stop_s[i] = self.now_s
        if event:
            self._event(EVENT_PUMP_STOPPED, i, REASON_EXERCISE)

    def _exercise_step(self, available, running):
        now = self.now_s
        i = self._exercise
        if i >= 0:
            if running & (1 << i):
                if self._exercise_run_s == _NEVER:
                    self._exercise_run_s = now
                if now - self._exercise_run_s >= self.exercise_s:
                    self._end_exercise(True)
            elif now - self._exercise_since_s >= 4 * (self.exercise_s + 60):
                self._end_exercise(True)
            return
        if self.exercise_idle_s <= 0 or self._swap_in >= 0:
            return
        if now - self._last_change_s < self.settle_s:
            return
        for i in range(self.pump_count):
            bit = 1 << i
            if (
                available & bit
                and not self.mask & bit
                and now - self.idle_since_s[i] >= self.exercise_idle_s
                and self.may_start(i)
            ):
                self._record_start(i)
                self._exercise = i
                self.exercise_mask = bit
                self._exercise_since_s = now
                self._exercise_run_s = _NEVER
                self._event(EVENT_PUMP_STARTED, i, REASON_EXERCISE)
                return
