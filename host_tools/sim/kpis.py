"""KPI computations on a run's 1 s samples: pure functions of plain sequences, no plant, no agent.

Rules (every figure counts the fault windows unless a caller passes windows to skip):
- In band: |remote DP - setpoint| <= 0.5 m of water. Unserved: remote DP more than 2 m below the
  setpoint. Both are judged per sample against the setpoint the controller held at that sample.
- What the field makes impossible (host_tools/sim/feasible.py judges each sample by the plant's
  own curves, drive speed limits and true suction limit, at steady state) is left out where a
  caller passes its mask: a sample at which no pump set at any allowed speeds holds the DP in
  band (every set that reaches the band's low edge over-delivers, or the best the field allows
  is below it) is left out of the band share; a sample at which even the best the field allows
  is more than 2 m low is left out of the unserved minutes. Only steady-state impossibility is
  excused: a sample the field can serve counts, however the plant got there (ramps after a
  restart, the water column), so an agent that over-delivers where the band is reachable is
  charged. Callers also report the figure with nothing left out.
- A figure that cannot be computed is a NotComputed carrying the reason (never nan or inf), e.g.
  the band share of a run with no sample outside its fault windows.
- Station start: a sample with at least one pump running after one with none; station stop: a
  sample with none running after one with at least one (``running`` = the drive modulates).
- Recovery of a fault: the fault's effect horizon is from its start to 10 min after its end (or
  to the end of the run, whichever is first; the next fault's start cuts it short so that an
  excursion is charged to the fault that was active when it began). If the remote DP never left
  the band in the horizon the recovery is 0 s; otherwise it is the time from the fault's start to
  the first sample after the horizon's last out-of-band sample from which the DP stays in band
  for 60 s. Not back in band and staying by the end of the run: NotComputed.
- Pump power against rating: the sliding 10 s mean of each pump's electrical power over that
  pump's rated electrical input (rated shaft power / motor and drive efficiency at full load).
- Spurious station stop: a station stop at time t (pumps R were running one sample before) that
  none of these demanded:
    1. a source_pumps_stop fault was active at t (start <= t <= end);
    2. the true suction pressure was below its limit (suction margin < 0) at some sample in
       [t - 60 s, t]: the condition the suction trip exists for;
    3. every pump of R was stopped by its own drive: a pump_trip fault of that pump began in
       [t - 5 s, t], or a drive_comm_loss of that pump was active at t while its drive is set to
       trip on comm loss (comm_loss_action "fault").
  A stop the agent commanded, a drive's overload trip (the agent overloaded it) and a stop after a
  source stop has ended are spurious. (No fault kind raises the true discharge pressure, so a
  discharge trip is never a demanded stop here.)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

RECOVERY_HOLD_S = 60.0
RECOVERY_AFTER_END_S = 600.0
TRIP_STOP_S = 5.0  # a drive that trips stops its pump within this (pulses off)
SUCTION_LOOKBACK_S = 60.0
POWER_WINDOW_S = 10.0


@dataclass(frozen=True)
class NotComputed:
    """A figure that has no value in this run, and why."""

    reason: str

    def __str__(self) -> str:
        return f"n/a ({self.reason})"


Figure = float | NotComputed


@dataclass(frozen=True)
class Window:
    """A fault window [start_s, end_s] (end_s may be inf: the fault stays) and its fault kind."""

    start_s: float
    end_s: float
    kind: str = ""
    pump: int = 0  # 1-based, for drive faults


def fmt(value: Figure, unit: str = "", digits: int = 2) -> str:
    """A figure as text: the number with its unit, or "n/a (reason)"."""
    if isinstance(value, NotComputed):
        return str(value)
    if not math.isfinite(value):  # a guard: callers should have produced a NotComputed
        return "n/a (not a finite number)"
    return f"{value:.{digits}f}{' ' + unit if unit else ''}"


def inside(t: float, windows: Sequence[Window]) -> bool:
    return any(w.start_s <= t <= w.end_s for w in windows)


def dp_in_band_pct(
    t: Sequence[float],
    dp: Sequence[float],
    setpoint: Sequence[float],
    band_kpa: float,
    skip: Sequence[Window] = (),
    what: str = "sample",
    left_out: Sequence[bool] = (),
) -> Figure:
    """% of the samples (outside `skip`, and not left_out[i]) with the remote DP within band_kpa
    of the setpoint."""
    counted = in_band = 0
    for i in range(len(t)):
        if (skip and inside(t[i], skip)) or (left_out and left_out[i]):
            continue
        counted += 1
        if abs(dp[i] - setpoint[i]) <= band_kpa:
            in_band += 1
    if not counted:
        return NotComputed(f"no {what}")
    return 100.0 * in_band / counted


def unserved_min(
    t: Sequence[float],
    dp: Sequence[float],
    setpoint: Sequence[float],
    low_kpa: float,
    sample_s: float,
    skip: Sequence[Window] = (),
    left_out: Sequence[bool] = (),
) -> float:
    """Minutes (outside `skip`, and not left_out[i]) with the remote DP more than low_kpa below
    the setpoint."""
    low = 0
    for i in range(len(t)):
        if (skip and inside(t[i], skip)) or (left_out and left_out[i]):
            continue
        if dp[i] < setpoint[i] - low_kpa:
            low += 1
    return low * sample_s / 60.0


def station_transitions(running: Sequence[Sequence[int]]) -> tuple[list[int], list[int]]:
    """Sample indices of station starts and station stops (see module docstring)."""
    samples = len(running[0]) if running else 0
    starts: list[int] = []
    stops: list[int] = []
    was = any(r[0] for r in running) if samples else False
    for i in range(1, samples):
        now = any(r[i] for r in running)
        if now and not was:
            starts.append(i)
        elif was and not now:
            stops.append(i)
        was = now
    return starts, stops


def recovery_s(
    t: Sequence[float],
    dp: Sequence[float],
    setpoint: Sequence[float],
    band_kpa: float,
    start_s: float,
    horizon_s: float,
    hold_s: float = RECOVERY_HOLD_S,
) -> Figure:
    """Seconds from start_s until the DP is back in band for good (module docstring)."""
    n = len(t)
    first = next((i for i in range(n) if t[i] >= start_s), n)
    if first == n:
        return NotComputed("the fault starts after the last sample")
    last_out = -1
    for i in range(first, n):
        if t[i] > horizon_s:
            break
        if abs(dp[i] - setpoint[i]) > band_kpa:
            last_out = i
    if last_out < 0:
        return 0.0
    run_start = -1
    for i in range(last_out + 1, n):
        if abs(dp[i] - setpoint[i]) > band_kpa:
            run_start = -1
            continue
        if run_start < 0:
            run_start = i
        if t[i] - t[run_start] >= hold_s:
            return t[run_start] - start_s
    return NotComputed(f"not back in band for {hold_s:g} s by the end of the run")


def fault_recoveries(
    t: Sequence[float],
    dp: Sequence[float],
    setpoint: Sequence[float],
    band_kpa: float,
    faults: Sequence[Window],
) -> list[Figure]:
    """recovery_s of each fault (in the given order) with its horizon (module docstring)."""
    end_of_run = t[-1] if len(t) else 0.0
    starts = sorted(w.start_s for w in faults)
    figures: list[Figure] = []
    for w in faults:
        horizon = min(w.end_s + RECOVERY_AFTER_END_S, end_of_run)
        later = [s for s in starts if s > w.start_s]
        if later:
            horizon = min(horizon, later[0])
        figures.append(recovery_s(t, dp, setpoint, band_kpa, w.start_s, horizon))
    return figures


def max_mean_power_ratio(
    t: Sequence[float],
    power_kw: Sequence[Sequence[float]],
    rated_input_kw: Sequence[float],
    window_s: float = POWER_WINDOW_S,
) -> tuple[Figure, int, float]:
    """Worst sliding-window mean electrical power over rated input: (ratio, pump 1-based, t_s).

    The window holds the samples of the last window_s seconds (t[i] - t[j] < window_s).
    """
    worst: Figure = NotComputed("no sample")
    worst_pump, worst_t = 0, 0.0
    spacing = t[1] - t[0] if len(t) > 1 else window_s
    full = max(1, round(window_s / spacing))  # samples in a full window
    for p, (series, rated) in enumerate(zip(power_kw, rated_input_kw, strict=True)):
        if not rated > 0.0:
            return NotComputed(f"pump {p + 1} has no rating"), p + 1, 0.0
        total = 0.0
        j = 0
        for i in range(len(series)):
            total += series[i]
            while t[i] - t[j] >= window_s - 1e-6:
                total -= series[j]
                j += 1
            if i - j + 1 < full and i + 1 < len(series):
                continue  # the first window is not full yet (a shorter run: its whole mean)
            ratio = total / (i - j + 1) / rated
            if isinstance(worst, NotComputed) or ratio > worst:
                worst, worst_pump, worst_t = ratio, p + 1, t[i]
    return worst, worst_pump, worst_t


def stop_cause(
    t: Sequence[float],
    index: int,
    running: Sequence[Sequence[int]],
    suction_margin_kpa: Sequence[float],
    faults: Sequence[Window],
    trips_on_comm_loss: Sequence[bool],
) -> str:
    """What demanded the station stop at sample `index`, or "" if nothing did (a spurious stop)."""
    ts = t[index]
    for w in faults:
        if w.kind == "source_pumps_stop" and w.start_s <= ts <= w.end_s:
            return "source pumps stopped"
    i = index
    while i >= 0 and t[i] >= ts - SUCTION_LOOKBACK_S:
        if suction_margin_kpa[i] < 0.0:
            return "suction below its limit"
        i -= 1
    was_running = [p for p in range(len(running)) if running[p][index - 1]]
    if was_running and all(
        _stopped_by_drive(ts, p + 1, faults, trips_on_comm_loss[p]) for p in was_running
    ):
        return "drive tripped"
    return ""


def _stopped_by_drive(ts: float, pump: int, faults: Sequence[Window], trips: bool) -> bool:
    for w in faults:
        if w.pump != pump:
            continue
        if w.kind == "pump_trip" and w.start_s <= ts <= w.start_s + TRIP_STOP_S:
            return True
        if w.kind == "drive_comm_loss" and trips and w.start_s <= ts <= w.end_s:
            return True
    return False
