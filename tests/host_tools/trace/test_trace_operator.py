"""pumpsim trace / diff as an operator meets them: CSV files as spreadsheets write them, a
multi-station export, a trace longer or shorter than the run, the same folder twice, Ctrl-C.
Each gives the right result, or one line and a documented exit status (cli.py)."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from host_tools.sim import cli, trace, trace_cli, trace_diff
from host_tools.sim.agent_controller import REPO

NAMES = trace.sensor_names(agent_config=REPO / "firmware" / "station.json")
COMMA = "t_s,suction_kpa,flow_m3h\r\n0,300.5,500.25\r\n1.5,301,501\r\n"
WAIT_S = 30.0  # a loaded CI host's bound; a passing test does not wait for it


def read(tmp_path, data: bytes | str, **kw):
    path = tmp_path / "trace.csv"
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return trace.read(path, NAMES, **kw)


@pytest.mark.parametrize(
    "data",
    [
        "\ufeff" + COMMA,  # Excel's "CSV UTF-8": a byte order mark
        COMMA.replace(",", ";").replace("300.5", "300,5").replace("500.25", "500,25"),
        COMMA.replace(",", "\t").replace("1.5", "1,5"),
    ],
    ids=["bom", "semicolon-decimal-comma", "tab"],
)
def test_spreadsheet_csv_reads_as_the_plain_one(tmp_path, data):
    plain = read(tmp_path, COMMA)
    got = read(tmp_path, data)
    assert got.times == plain.times == [0.0, 1.5]
    assert got.cells == plain.cells == {"suction_kpa": [300.5, 301.0], "flow_m3h": [500.25, 501.0]}


def test_decimal_commas_between_commas_are_named(tmp_path):
    with pytest.raises(trace.TraceError, match=r":2: 4 cells, the header has 3 \(decimal commas"):
        read(tmp_path, "t_s,suction_kpa,flow_m3h\n0,300,5,500\n")


EXPORT = (
    "time_utc,site,station,suction_kpa\n"
    "2026-01-15T00:00:00Z,jia,relay1,300\n"
    "2026-01-15T00:00:00Z,jia,relay2,200\n"
    "2026-01-15T00:00:10Z,jia,relay1,301\n"
    "2026-01-15T00:00:10Z,jia,relay2,201\n"
)


def test_an_export_of_two_stations_takes_the_one_named(tmp_path):
    with pytest.raises(trace.TraceError, match=r":3: rows of more than one station .*--station"):
        read(tmp_path, EXPORT)
    got = read(tmp_path, EXPORT, station=("jia", "relay2"))
    assert got.times == [0.0, 10.0] and got.cells["suction_kpa"] == [200.0, 201.0]
    with pytest.raises(trace.TraceError, match="no rows of jia/relay9"):
        read(tmp_path, EXPORT, station=("jia", "relay9"))


def run_cli(args, capsys):
    code = cli.main(args)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_a_trace_past_the_season_asks_for_hours_it_was_not_given(tmp_path, capsys):
    path = tmp_path / "long.csv"
    path.write_text("t_s,suction_kpa\n0,300\n100000000,301\n")
    out = tmp_path / "out"
    code, _, err = run_cli(["trace", str(path), "--out", str(out)], capsys)
    assert code == cli.EXIT_REFUSED and not out.exists()
    assert err.startswith(f"pumpsim: {path}: spans 27777.8 h, past the end of the heating season")
    assert err.rstrip().endswith("give --hours") and err.count("\n") == 1


def test_columns_not_replayed_and_the_trace_end_are_said(tmp_path, capsys):
    path = tmp_path / "typo.csv"
    path.write_text("t_s,suction,flow_m3h\n0,300,500\n30,300,500\n")
    args = ["trace", str(path), "--hours", "0.02", "--out", str(tmp_path / "out")]
    code, out, _ = run_cli(args, capsys)
    assert code == 0
    assert "  columns not replayed (no sensor of that name): suction\n" in out
    assert "  the trace ends at 0.00833333 h: after it every channel is simulated\n" in out


def test_a_broken_config_is_named(tmp_path, capsys):
    path = tmp_path / "t.csv"
    path.write_text("t_s,suction_kpa\n0,300\n30,300\n")
    config = tmp_path / "station.json"
    config.write_text("{not json")
    out = tmp_path / "out"
    code, _, err = run_cli(["trace", str(path), "--config", str(config), "--out", str(out)], capsys)
    assert code == cli.EXIT_REFUSED and err.startswith(f"pumpsim: {config}: ") and not out.exists()


def test_a_checkout_is_taken_for_its_firmware_and_the_same_folder_twice_refused(tmp_path, capsys):
    assert trace_cli.check_firmware(str(REPO), "--old") == REPO / "firmware"
    path = tmp_path / "t.csv"
    path.write_text("t_s,suction_kpa\n0,300\n30,300\n")
    out = tmp_path / "out"
    args = ["diff", str(path), "--old", str(REPO), "--new", str(REPO / "firmware"), "--out"]
    code, _, err = run_cli([*args, str(out)], capsys)
    assert code == cli.EXIT_REFUSED and not out.exists()
    assert (
        err
        == f"pumpsim: --old and --new are the same folder ({REPO / 'firmware'}): nothing to compare\n"
    )
    code, _, err = run_cli([*args[:3], str(REPO), "--new", "/x", "--tolerance-s", "-1"], capsys)
    assert code == cli.EXIT_REFUSED and "--tolerance-s must be a number >= 0" in err


# ---- Ctrl-C -------------------------------------------------------------------------------------


@pytest.fixture
def day_trace(tmp_path):
    """A day: long enough that SIGINT comes mid-run."""
    path = tmp_path / "day.csv"
    path.write_text("t_s,suction_kpa\n0,300\n86400,300\n")
    return path


def start(argv, **kw):
    return subprocess.Popen(
        [sys.executable, *argv], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, start_new_session=True, **kw,
    )  # fmt: skip


def interrupt_when_running(proc, ready, stream="stdout") -> tuple[str, str]:
    """SIGINT to the process alone once ready(a line of stream) says the run is under way."""
    line = getattr(proc, stream).readline()
    assert ready(line), line + proc.stderr.read()
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=WAIT_S)
    return (out, line + err) if stream == "stderr" else (line + out, err)


def test_ctrl_c_keeps_what_was_simulated_and_exits_130(tmp_path, day_trace):
    out = tmp_path / "out"
    argv = ["-m", "host_tools.sim.cli", "trace", str(day_trace), "--out", str(out)]
    proc = start(argv)
    _, err = interrupt_when_running(proc, lambda s: "%" in s, "stderr")  # the progress bar's 0 %
    assert proc.returncode == cli.EXIT_INTERRUPTED, err
    summary = json.loads((out / "decisions.jsonl").read_text().splitlines()[-1])
    assert 0 < summary["hours"] < 24 and (out / "kpi.txt").exists()
    assert "pumpsim: interrupted after " in err and "Traceback" not in err


def test_ctrl_c_of_a_diff_leaves_no_worker_running(tmp_path, day_trace):
    out = tmp_path / "out"
    old = tmp_path / "old"
    (old / "relaypump").mkdir(parents=True)
    for f in (REPO / "firmware" / "relaypump").glob("*.py"):
        (old / "relaypump" / f.name).write_bytes(f.read_bytes())
    # a whole firmware folder: without its station.json the worker stopped on its own, at
    # times before the Ctrl-C came (exit 1, not 130)
    (old / "station.json").write_bytes((REPO / "firmware" / "station.json").read_bytes())
    argv = ["-m", "host_tools.sim.cli", "diff", str(day_trace), "--old", str(old), "--new"]
    proc = start([*argv, str(REPO / "firmware"), "--out", str(out)])
    try:
        _, err = interrupt_when_running(proc, lambda s: s.startswith("pumpsim diff:"))
        assert proc.returncode == cli.EXIT_INTERRUPTED, err
        assert err == "pumpsim: interrupted\n" and not out.exists()
        deadline = time.monotonic() + WAIT_S
        with pytest.raises(ProcessLookupError):  # the workers share the session's group
            while time.monotonic() < deadline:
                os.killpg(proc.pid, 0)
                time.sleep(0.1)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_an_interrupted_worker_is_not_a_result(tmp_path, day_trace):
    job = {
        "firmware": str(REPO / "firmware"),
        "scenario": str(REPO / "host_tools/sim/scenarios/jia_january.toml"),
        "seed": None, "trace": str(day_trace), "station": None, "channels": None,
        "between": "hold", "max_hold_s": 60.0, "hours": 24.0, "config": None,
        "decisions": str(tmp_path / "d.jsonl"),
    }  # fmt: skip
    (tmp_path / "job.json").write_text(json.dumps(job))
    code = (  # what the worker imports, imported before it says go: SIGINT comes in its run
        "import sys; from host_tools.sim import trace_replay, trace_worker; print('go', "
        "flush=True); sys.exit(trace_worker.main([sys.argv[1]]))"
    )
    proc = start(["-c", code, str(tmp_path / "job.json")])
    _, err = interrupt_when_running(proc, lambda s: s == "go\n")
    assert proc.returncode == cli.EXIT_INTERRUPTED and "trace_worker: interrupted" in err, err
    with pytest.raises(KeyboardInterrupt):  # the parent reports no diff of it
        trace_cli.finish_worker(subprocess.Popen([sys.executable, "-c", "exit(130)"]), "--old x")


def test_a_trace_csv_that_cannot_be_written_is_refused(tmp_path, capsys):
    out = tmp_path / "out"
    (out / "trace.csv").mkdir(parents=True)
    code, _, err = run_cli(["--hours", "0.01", "--out", str(out), "--record-trace"], capsys)
    assert code == cli.EXIT_REFUSED
    assert err == f"pumpsim: {out / 'trace.csv'}: cannot write the trace (Is a directory)\n"


def test_every_option_of_trace_and_diff_says_its_default(capsys):
    (commands,) = [a for a in cli.parser()._actions if a.dest == "command"]
    for parser in (commands.choices["trace"], commands.choices["diff"]):
        parser.format_help()  # a stray % in a help text breaks it
        for action in parser._actions:
            if action.option_strings and action.dest != "help" and not action.required:
                assert action.help and "default" in action.help, (parser.prog, action.dest)
    with pytest.raises(SystemExit):
        trace_diff.main(["--help"])
    text = capsys.readouterr().out
    assert "(default 1)" in text and "(default 2)" in text


def test_a_trailing_separator_is_no_column(tmp_path):
    got = read(tmp_path, "t_s,suction_kpa,\n0,300,\n1,301,\n")
    assert got.ignored == [] and got.cells == {"suction_kpa": [300.0, 301.0]}
