"""A trace drives the simulated I/O module (the agent reads it as Modbus bytes); the channels it
is silent on stay simulated; the agent's decisions are logged."""

import json

import pytest

from host_tools.sim import cli, scenario, trace
from host_tools.sim.agent_controller import REPO
from host_tools.sim.hardware import SimulatedStation
from host_tools.sim.trace_replay import replay, write_decisions

NAMES = trace.sensor_names(agent_config=REPO / "firmware" / "station.json")


def csv_trace(tmp_path, header, rows):
    path = tmp_path / "trace.csv"
    path.write_text(header + "\n" + "\n".join(",".join(map(str, r)) for r in rows) + "\n")
    return trace.read(path, NAMES)


def ua(channel, value):
    return round(4000 + 16000 * (value - channel.lo) / (channel.hi - channel.lo))


def stepped(station, inputs, until_s):
    """The station stepped as run.run steps it, the trace applied before every step."""
    dt = station.scenario.step_s
    while station.t_s < until_s - 1e-9:
        inputs.apply(station.io, station.t_s)
        station.step(dt)
    inputs.apply(station.io, station.t_s)


def test_traced_channels_are_set_silent_ones_stay_simulated(tmp_path):
    chosen = scenario.load(scenario.DEFAULT_SCENARIO)
    station = SimulatedStation(chosen)
    io = station.io
    got = csv_trace(
        tmp_path,
        "t_s,suction_kpa,remote_dp_kpa,source_running",
        [
            (0, 250, 100, 0),
            (10, 200, "", 0),
            (20, "3.6mA", 90, 1),
            (100, 300, 80, 1),
            (101, 1, 1, 1),
        ],
    )
    inputs = trace.TraceInputs(got, io, max_hold_s=30.0)
    suction, dp = io.analog["suction_kpa"], io.analog["remote_dp_kpa"]
    stepped(station, inputs, 5.0)
    assert io.current_ua("suction_kpa") == ua(suction, 250)
    assert io.current_ua("remote_dp_kpa") == ua(dp, 100)
    assert io.read_discrete_inputs(0, 1) == [False]  # the plant's source pumps run
    assert station.plant.source_running
    # a channel nobody traced is the simulated transmitter's reading of the plant
    assert io.current_ua("discharge_kpa") == station.transmitters["discharge_kpa"].ua
    stepped(station, inputs, 15.0)
    assert io.current_ua("suction_kpa") == ua(suction, 200)
    # an empty cell: remote DP is silent, the transmitter's again
    assert io.current_ua("remote_dp_kpa") == station.transmitters["remote_dp_kpa"].ua
    assert io.current_ua("remote_dp_kpa") != ua(dp, 100)
    stepped(station, inputs, 25.0)
    assert io.current_ua("suction_kpa") == 3600  # a current is replayed as it is
    assert io.read_discrete_inputs(0, 1) == [True]
    stepped(station, inputs, 60.0)  # 40 s after the 20 s row: beyond the 30 s hold
    assert io.current_ua("suction_kpa") == station.transmitters["suction_kpa"].ua


def test_linear_interpolates_between_neighbouring_values(tmp_path):
    chosen = scenario.load(scenario.DEFAULT_SCENARIO)
    station = SimulatedStation(chosen)
    got = csv_trace(tmp_path, "t_s,flow_m3h", [(0, 100), (10, 200), (11, 200)])
    inputs = trace.TraceInputs(got, station.io, between="linear")
    stepped(station, inputs, 5.0)
    assert station.io.current_ua("flow_m3h") == ua(station.io.analog["flow_m3h"], 150)


def test_a_suction_dip_in_the_trace_makes_the_agent_protect_the_pumps(tmp_path):
    """The simulated plant's suction stays healthy; only the trace dips. The agent acts on what
    its transmitter said: the slowdown warning, then the trip and a station stop."""
    rows = [(t, 300 if t < 120 else max(150, 300 - 1.5 * (t - 120))) for t in range(241)]
    got = csv_trace(tmp_path, "t_s,suction_kpa", rows)
    chosen = scenario.load(scenario.DEFAULT_SCENARIO)
    done = replay(chosen, got)
    assert done.header["channels"] == ["suction_kpa"]
    # the plant's own suction only falls by the upstream loss at two pumps' flow (to ~239 kPa):
    # far above the agent's slowdown band (limit ~159 + 30 kPa) throughout
    assert min(done.result.samples["suction_kpa"]) > 230
    events = [(r["t"], r["code"]) for r in done.records if r["kind"] == "event"]
    low = [t for t, code in events if code == "SUCTION_LOW"]
    trip = [t for t, code in events if code == "SUCTION_TRIP"]
    # the margin falls under the slowdown band (30 kPa above ~159 kPa) at about 2:41
    assert low and 150 <= low[0] <= 175, events
    assert trip and low[0] < trip[0] <= 230, events
    stops = [r for r in done.records if r["kind"] == "stop"]
    assert stops and all(r["by"] == "agent" and r["t"] >= trip[0] for r in stops)
    path = tmp_path / "decisions.jsonl"
    write_decisions(path, done)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines[0]["kind"] == "header" and lines[-1]["kind"] == "summary"
    assert lines[-1]["counts"]["event SUCTION_TRIP"] == len(trip)
    assert sum(1 for r in lines if r["kind"] == "speeds") == 4  # at 0, 1, 2, 3 min of 4


def test_without_the_trace_the_same_run_does_not_protect(tmp_path):
    got = csv_trace(tmp_path, "t_s,supply_temp_c", [(0, 120), (240, 120)])
    done = replay(scenario.load(scenario.DEFAULT_SCENARIO), got)
    codes = {r["code"] for r in done.records if r["kind"] == "event"}
    assert "SUCTION_TRIP" not in codes and not [r for r in done.records if r["kind"] == "stop"]


@pytest.mark.parametrize(
    "extra, says",
    [
        ([], "column suction_kpa (2): not a number"),
        (["--channels", "flow_m3h"], "no readings of 'flow_m3h'"),
        (["--firmware", "/nonexistent"], "no such folder"),
    ],
)
def test_pumpsim_trace_refusals_are_one_line(tmp_path, capsys, extra, says):
    path = tmp_path / "trace.csv"
    path.write_text("t_s,suction_kpa\n0,300\n1,x\n" if not extra else "t_s,suction_kpa\n0,3\n9,3\n")
    out = tmp_path / "out"
    assert cli.main(["trace", str(path), "--out", str(out), *extra]) == cli.EXIT_REFUSED
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("pumpsim: ") and says in err, err
    assert not out.exists()


@pytest.mark.parametrize("hold", ["0", "-1", "nan", "inf"])
def test_a_max_hold_that_is_not_a_duration_is_refused_by_its_option_name(tmp_path, capsys, hold):
    path = tmp_path / "trace.csv"
    path.write_text("t_s,suction_kpa\n0,3\n9,3\n")
    with pytest.raises(SystemExit) as exit_:
        cli.main(["trace", str(path), "--out", str(tmp_path / "out"), "--max-hold", hold])
    assert exit_.value.code == cli.EXIT_REFUSED
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "argument --max-hold: must be a number > 0" in err, err


def test_an_agent_without_the_board_runtime_is_driven_directly(tmp_path, monkeypatch):
    """Firmware before runtime.py's board interface (older than a49b304) is driven as the
    simulator drove it then; the present agent still offers that face, so it shows the driver
    works: the same dip, the same protection."""
    from host_tools.sim import trace_replay

    monkeypatch.setattr(trace_replay, "agent_controller", trace_replay.DirectAgentController)
    rows = [(t, 300 if t < 120 else max(150, 300 - 1.5 * (t - 120))) for t in range(241)]
    done = replay(
        scenario.load(scenario.DEFAULT_SCENARIO), csv_trace(tmp_path, "t_s,suction_kpa", rows)
    )
    codes = [r["code"] for r in done.records if r["kind"] == "event"]
    assert codes[0] == "AGENT_STARTED" and "SUCTION_TRIP" in codes, codes
    assert [r["pump"] for r in done.records if r["kind"] == "start"][:1] == [1]


def test_a_telemetry_file_drives_the_agent(tmp_path):
    """pumpsim's telemetry.bin (10 s frames) as the trace: its five analog channels replayed."""
    out = tmp_path / "run"
    assert cli.main(["--hours", "0.05", "--out", str(out)]) == 0
    got = trace.read(out / "telemetry.bin")
    done = replay(scenario.load(scenario.DEFAULT_SCENARIO), got)
    assert done.header["channels"] == [
        "suction_kpa",
        "discharge_kpa",
        "remote_dp_kpa",
        "supply_temp_c",
        "flow_m3h",
    ]
    assert done.header["trace_start_utc"].startswith("2026-01-15T00:00")
    assert [r["pump"] for r in done.records if r["kind"] == "start"][:1] == [1]
