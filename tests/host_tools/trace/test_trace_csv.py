"""Sensor traces read from CSV and telemetry files (host_tools/sim/trace.py): every refusal names
the file, the line and the column; what is read is what the file says."""

import datetime as dt

import pytest

from host_tools.sim import cli, trace
from host_tools.sim.agent_controller import REPO
from host_tools.sim.trace import Current, TraceError
from host_tools.uplink import pumplog

NAMES = trace.sensor_names(agent_config=REPO / "firmware" / "station.json")


def read_text(tmp_path, text):
    path = tmp_path / "trace.csv"
    path.write_text(text)
    return path, trace.read(path, NAMES)


@pytest.mark.parametrize(
    "text, where, why",
    [
        ("t_s,suction_kpa\n0,300\n1,abc\n", ":3, column suction_kpa (2):", "not a number"),
        (
            "t_s,flow_m3h\n0,nan\n",
            ":2, column flow_m3h (2):",
            "not a finite number: 'nan' (an empty",
        ),
        ("t_s,suction_kpa\n0,300\n0,301\n", ":3, column t_s (1):", "not after the row before"),
        ("time,suction_kpa\n2026-01-15T00:00:00,3\nyesterday,1\n", ":3, column time (1):", "ISO"),
        ("t_s,suction_kpa\n0,300\n1,300,5\n", ":3:", "3 cells, the header has 2"),
        ("t_s,source_running\n0,maybe\n", ":2, column source_running (2):", "digital"),
        ("t_s,suction_kpa\n0,30mA\n", ":2, column suction_kpa (2):", "outside 0..24 mA"),
        ("suction_kpa,t_s\n300,0\n", ":1, column suction_kpa (1):", "first column is the time"),
        ("t_s,outdoor_c\n0,1\n", ":1:", "no column names a sensor"),
        ("t_s,suction_kpa,suction_kpa\n0,1,1\n", ":1, column suction_kpa (3):", "also column 2"),
        (
            "t_s,source_running,source_pumps_running\n0,1,1\n",
            ":1, column source_pumps_running (3):",
            "the same sensor as column source_running",
        ),
        ("", "", "no header row"),
        ("t_s,suction_kpa\n", "", "a header and no rows"),
    ],
)
def test_a_bad_csv_is_refused_naming_line_and_column(tmp_path, text, where, why):
    path = tmp_path / "trace.csv"
    path.write_text(text)
    with pytest.raises(TraceError) as caught:
        trace.read(path, NAMES)
    message = str(caught.value)
    assert message.startswith(f"{path}{where}"), message
    assert why in message, message


def test_a_csv_is_read_as_written(tmp_path):
    _, got = read_text(
        tmp_path,
        "time,suction_kpa,remote_dp_kpa,source_running,note\n"
        "2026-01-15T14:00:00+08:00,300.5,,1,a\n"
        "2026-01-15T06:00:10Z,0mA,111,off,b\n"
        "2026-01-15 06:00:12,3.6mA,112,true,c\n",
    )
    assert got.start_utc == dt.datetime(2026, 1, 15, 6, 0, tzinfo=dt.UTC)
    assert got.times == [0.0, 10.0, 12.0]
    assert got.cells["suction_kpa"] == [300.5, Current(0), Current(3600)]
    assert got.cells["remote_dp_kpa"] == [None, 111.0, 112.0]
    # the agent config's name for DI 0 is the I/O module's source_pumps_running
    assert got.cells["source_pumps_running"] == [True, False, True]
    assert got.ignored == ["note"]
    assert got.channels() == ["suction_kpa", "remote_dp_kpa", "source_pumps_running"]


def test_a_recorded_trace_reads_back(tmp_path):
    """pumpsim run --record-trace writes what the card read; it reads back as a trace with every
    channel, one row a second."""
    out = tmp_path / "run"
    assert cli.main(["--hours", "0.02", "--out", str(out), "--record-trace"]) == 0
    got = trace.read(out / "trace.csv", NAMES)
    assert len(got.times) == 72 and got.times[:3] == [0.0, 1.0, 2.0]
    assert set(got.channels()) == {
        "suction_kpa",
        "discharge_kpa",
        "remote_dp_kpa",
        "supply_temp_c",
        "flow_m3h",
        "source_pumps_running",
        "bypass_open",
    }
    assert 250 < got.cells["suction_kpa"][-1] < 320
    assert 115 < got.cells["supply_temp_c"][-1] < 125


def test_telemetry_frames_and_logs_are_traces(tmp_path):
    out = tmp_path / "run"
    assert cli.main(["--hours", "0.05", "--out", str(out)]) == 0
    frames = trace.read(out / "telemetry.bin")
    assert frames.times[:3] == [0.0, 10.0, 20.0] and len(frames.times) == 18
    assert frames.start_utc.date() == dt.date(2026, 1, 15)  # the scenario's day
    assert frames.cells["supply_temp_c"][0] == 120.0
    log = tmp_path / "run.rplog"
    args = ["import", str(out / "telemetry.bin"), "--site", "jia", "--station", "relay1"]
    assert pumplog.main([*args, "-o", str(log)]) == 0
    logged = trace.read(log)
    assert logged.times == frames.times and logged.cells == frames.cells
    assert trace.read(log, station=("jia", "relay1")).times == frames.times
    with pytest.raises(TraceError, match="no telemetry of jia/other"):
        trace.read(log, station=("jia", "other"))
