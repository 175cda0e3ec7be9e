"""The safety invariants of DESIGN.md (rule 6), held over every closed-loop run of
test_closed_loop.py (the runs are simulated once per session and shared):

- every RUN command's speed reference lies in speed.min_pct..max_pct and under the protection cap;
  no drive is ever told to coast or quick-stop (stops go through the drives' ramps);
- references move no faster than speed.slew_pct_per_s, and so does the actual speed of a drive the
  agent commands to run, inside its operating range (>= the drive's minimum speed, pulses on, as
  run.max_slew measures it; a ramp stop or a lost drive's own action is not a commanded speed);
- no pump starts more than staging.max_starts_per_hour times within any hour;
- outside the fault windows (+10 min) suction stays above its vaporization + NPSH limit.
"""

import pytest
from relaypump.snapshot import CMD_COAST, CMD_QUICK_STOP, CMD_RUN, DRIVE_TRIPPED
from test_closed_loop import RUNS, SCHEDULE, outcome

from host_tools.sim import scenario as scenarios
from host_tools.sim.run import SAMPLE_S

SLEW_TOLERANCE_PCT_S = 0.02  # the drives' reference resolution (g120: 100 % = 16384)
COMMAND_WINDOW_S = 3  # ticks before a sample whose command the drive may still be following

START_RAMP_BUG = (
    "known bug: a started pump's reference climbs from min_pct while its drive is still on its own "
    "0->min start ramp (control follow_band_pct lets it lead by 2 %), so the drive passes min speed "
    "at its 1.67 %/s ramp: 1.33 %/s on the standby's failover start, pump 3 at t=933 s"
)


def _runs(xfail_slew=False):
    marks = {"pump_trip": pytest.mark.xfail(strict=True, reason=START_RAMP_BUG)}
    return [pytest.param(n, marks=marks.get(n, ()) if xfail_slew else ()) for n in RUNS]


def test_every_fault_kind_of_the_schedule_has_a_closed_loop_run():
    kinds = {f.kind for f in scenarios.load(SCHEDULE).faults}
    covered = {f.kind for faults, _, _ in RUNS.values() for f in faults}
    assert kinds <= covered


@pytest.mark.parametrize("name", _runs())
def test_commands_stay_in_the_speed_envelope(name):
    o = outcome(name)
    speed = o.config["speed"]
    for k in o.rec.log:
        for pump, (command, ref) in enumerate(zip(k.commands, k.refs, strict=True)):
            if command == CMD_RUN:
                assert speed["min_pct"] <= ref <= min(speed["max_pct"], k.cap_pct) + 1e-9, k
            assert command not in (CMD_COAST, CMD_QUICK_STOP) or k.states[pump] == DRIVE_TRIPPED
    # what the drives hold: the last RUN reference written (at most one poll cycle old)
    last = o.rec.log[-1]
    for drive, command, ref in zip(o.station.drives, last.commands, last.refs, strict=True):
        if command == CMD_RUN:
            assert abs(drive.reference_pct - ref) <= speed["slew_pct_per_s"] + 0.01


@pytest.mark.parametrize("name", _runs())
def test_speed_references_move_at_most_at_the_slew_limit(name):
    o = outcome(name)
    slew = o.config["speed"]["slew_pct_per_s"]
    log = o.rec.log
    for a, b in zip(log, log[1:]):
        for pump in range(len(b.refs)):
            if a.commands[pump] == CMD_RUN and b.commands[pump] == CMD_RUN:
                assert abs(b.refs[pump] - a.refs[pump]) <= slew * (b.t_s - a.t_s) + 1e-6, (a, b)


@pytest.mark.parametrize("name", _runs(xfail_slew=True))
def test_commanded_drive_speeds_move_at_most_at_the_slew_limit(name):
    o = outcome(name)
    limit = o.config["speed"]["slew_pct_per_s"] + SLEW_TOLERANCE_PCT_S
    by_tick = {round(k.t_s): k for k in o.rec.log}
    worst = (0.0, None)
    for pump, (drive, speeds, running) in enumerate(
        zip(o.station.drives, o.result.speeds, o.result.running, strict=True)
    ):
        floor = drive.config.min_speed_pct - 0.01
        for i in range(1, len(speeds)):
            ticks = [by_tick.get(round(o.t[i]) - d) for d in range(1, COMMAND_WINDOW_S + 1)]
            if not all(k and k.commands[pump] == CMD_RUN and k.online[pump] for k in ticks):
                continue
            if running[i] and running[i - 1] and min(speeds[i], speeds[i - 1]) >= floor:
                slew = abs(speeds[i] - speeds[i - 1]) / SAMPLE_S
                worst = max(worst, (slew, (pump + 1, o.t[i])), key=lambda w: w[0])
    assert worst[0] <= limit, f"{name}: {worst[0]:.3f} %/s at (pump, t) {worst[1]}"


@pytest.mark.parametrize("name", _runs())
def test_no_pump_starts_more_often_than_allowed_per_hour(name):
    o = outcome(name)
    allowed = o.config["staging"]["max_starts_per_hour"]
    t = o.t
    for pump, running in enumerate(o.result.running):
        # rounded: the virtual clock accumulates 0.2 s steps (1e-9 s drift per hour)
        starts = [round(t[i], 3) for i in range(1, len(running)) if running[i] and not running[i - 1]]
        for i, start in enumerate(starts):
            within = [s for s in starts[: i + 1] if start - s < 3600.0]
            assert len(within) <= allowed, (name, pump + 1, within)


@pytest.mark.parametrize("name", _runs())
def test_suction_stays_above_its_limit_outside_the_fault_windows(name):
    o = outcome(name)
    assert o.result.kpis["min_suction_margin_outside_faults_kpa"] > 0.0
