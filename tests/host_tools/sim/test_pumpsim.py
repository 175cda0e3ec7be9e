"""pumpsim end to end: a short run writes the KPI table, the plot and a decodable telemetry log."""

import signal
import subprocess
import sys
import time
from array import array

import pytest

from host_tools.sim import cli, report, scenario, telemetry_log
from host_tools.sim import run as run_mod
from host_tools.sim.agent_controller import REPO

REPO_STATION = REPO / "firmware" / "station.json"


def test_a_short_run_writes_the_kpis_the_plot_and_the_log(tmp_path, capsys):
    assert cli.main(["--hours", "0.25", "--seed", "3", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "remote DP within ±0.5 m of setpoint" in printed
    assert "real-time factor" in printed
    kpi = (tmp_path / "kpi.txt").read_text()
    assert "energy" in kpi and "starts per pump" in kpi
    png = (tmp_path / "day.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
    frames = telemetry_log.read_telemetry(tmp_path / "telemetry.bin")
    assert len(frames) == 90  # one every 10 s for 15 min
    assert [f["seq"] for f in frames] == list(range(90))
    last = frames[-1]
    assert 900 <= last["remote_dp_kpa_x10"] <= 1300  # the agent holds ~111 kPa
    running = [p for p in last["pumps"] if p["state"] == 4]  # PumpState.RUNNING
    assert len(running) == 2 and all(5000 <= p["speed_pct_x100"] <= 10000 for p in running)


def test_runs_are_reproducible_from_the_seed(tmp_path):
    for name in ("a", "b"):
        assert cli.main(["--hours", "0.05", "--seed", "7", "--out", str(tmp_path / name)]) == 0
    assert (tmp_path / "a" / "telemetry.bin").read_bytes() == (
        tmp_path / "b" / "telemetry.bin"
    ).read_bytes()


def test_a_malformed_scenario_is_refused_with_file_field_and_reason(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(
        scenario.DEFAULT_SCENARIO.read_text().replace('profile = "danfoss"', 'profile = "vacon"')
    )
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "host_tools.sim.cli",
            "--scenario",
            str(bad),
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert f"{bad}: drives[1].profile: 'vacon' is not one of abb, danfoss, g120" in done.stderr


def test_a_scenario_whose_bus_does_not_match_the_agent_config_is_refused(tmp_path, capsys):
    bad = tmp_path / "other_units.toml"
    bad.write_text(scenario.DEFAULT_SCENARIO.read_text().replace("unit = 3", "unit = 7"))
    assert cli.main(["--scenario", str(bad), "--hours", "0.01", "--out", str(tmp_path)]) == 2
    assert "station.json has pumps" in capsys.readouterr().err


# -- the command line, tried as a new user would: one clear line and exit 2, nothing created ------


def refusal(args, capsys, tmp_path):
    out = tmp_path / "out"
    code = cli.main([*args, "--out", str(out)] if "serve" not in args else args)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and err.startswith("pumpsim: "), err
    assert not out.exists()  # a refused run leaves no folder behind
    return err


@pytest.mark.parametrize(
    ("hours", "expected"),
    [
        ("0", "--hours must be more than 0, got 0"),
        ("-2", "--hours must be more than 0, got -2"),
        ("nan", "--hours must be a finite number of hours, got nan"),
        ("inf", "--hours must be a finite number of hours, got inf"),
        ("2000", "--hours 2000 runs past the end of the heating season (31 Mar): from 2026-01-15"),
        ("1e-5", "--hours 1e-05 is shorter than one plant step (0.2 s = 5.6e-05 h)"),
    ],
)
def test_bad_hours_are_refused(hours, expected, capsys, tmp_path):
    assert expected in refusal(["--hours", hours], capsys, tmp_path)


def test_hours_that_are_not_a_number_are_refused_by_the_parser(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--hours", "two"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err == (
        "pumpsim run: argument --hours: not a number: 'two' (pumpsim run --help lists the options)\n"
    )  # one line, as every refusal: not argparse's usage first


@pytest.mark.parametrize("seed", ["-1", str(2**31)])
def test_a_seed_outside_the_scenario_range_is_refused(seed, capsys, tmp_path):
    assert f"--seed must be 0..2147483647, got {seed}" in refusal(
        ["--seed", seed], capsys, tmp_path
    )


def test_an_out_that_is_a_file_or_under_a_file_is_refused(capsys, tmp_path):
    a_file = tmp_path / "taken"
    a_file.write_text("x")
    assert cli.main(["--out", str(a_file)]) == 2
    assert "exists and is not a folder" in capsys.readouterr().err
    assert cli.main(["--out", str(a_file / "sub")]) == 2
    assert f"{a_file} is not a folder" in capsys.readouterr().err
    assert a_file.read_text() == "x"


@pytest.mark.parametrize("command", [[], ["trace", str(REPO_STATION)]])
def test_an_empty_out_is_refused_not_taken_for_the_current_folder(
    command, capsys, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        cli.main([*command, "--hours", "0.01", "--out", ""])
    assert exit_.value.code == 2
    assert "--out: must name a folder, got ''" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_an_out_that_cannot_be_created_is_refused_before_the_run(capsys):
    assert cli.main(["--hours", "0.01", "--out", "/proc/pumpsim-out/run"]) == 2
    err = capsys.readouterr().err
    assert "pumpsim: --out /proc/pumpsim-out/run: cannot create" in err
    assert "real-time factor" not in err


@pytest.mark.parametrize("command", [[], ["serve", "--port", "/dev/null"]])
def test_an_empty_scenario_path_is_refused_by_name(command, capsys, tmp_path):
    err = refusal([*command, "--scenario", ""], capsys, tmp_path)
    assert err == "pumpsim: --scenario must name a TOML file, got ''"


def test_a_scenario_that_is_not_utf8_is_refused(capsys, tmp_path):
    bad = tmp_path / "latin1.toml"
    bad.write_bytes(scenario.DEFAULT_SCENARIO.read_bytes().replace(b"Jia", b"J\xefa", 1))
    err = refusal(["--scenario", str(bad)], capsys, tmp_path)
    assert f"{bad}: (file): not UTF-8 text (byte 0xef at" in err


def test_a_config_error_names_the_config_file(capsys, tmp_path):
    config = tmp_path / "station.json"
    config.write_text(REPO_STATION.read_text().replace('"baud": 19200', '"baud": "19200"'))
    bad = tmp_path / "scenario.toml"
    text = scenario.DEFAULT_SCENARIO.read_text()
    bad.write_text(text.replace('name = "', f'agent_config = "{config}"\nname = "', 1))
    err = refusal(["--scenario", str(bad)], capsys, tmp_path)
    assert err.startswith(f"pumpsim: {config}: bus.baud: must be one of"), err


@pytest.mark.parametrize(
    ("port", "expected"),
    [
        ("/dev/no-such-port", "--port /dev/no-such-port: No such file or directory"),
        ("/dev/null", "--port /dev/null: is not a serial port (not a tty)"),
        ("/tmp", "--port /tmp: is a folder, not a serial port"),
    ],
)
def test_serve_refuses_what_is_not_a_serial_port(port, expected, capsys, tmp_path):
    assert expected in refusal(["serve", "--port", port, "--hours", "0.001"], capsys, tmp_path)


@pytest.mark.parametrize("baud", ["0", "-9600", "9601", "250000"])
def test_serve_refuses_a_baud_rate_no_agent_can_use(baud, capsys, tmp_path):
    err = refusal(["serve", "--port", "/dev/null", "--baud", baud], capsys, tmp_path)
    assert (
        f"--baud must be one of 1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200, got {baud}"
        in err
    )


def test_serve_refuses_a_scenario_baud_rate_no_agent_can_use(capsys, tmp_path):
    odd = tmp_path / "odd_baud.toml"
    odd.write_text(scenario.DEFAULT_SCENARIO.read_text().replace("baud = 19200", "baud = 9601"))
    err = refusal(["serve", "--port", "/dev/null", "--scenario", str(odd)], capsys, tmp_path)
    assert f"pumpsim: {odd}: bus.baud 9601 is not a rate a board's agent can use" in err


def test_help_lists_serve_and_every_option_with_its_default(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    top = capsys.readouterr().out
    assert "serve" in top and "run" in top and "--controller" not in top
    with pytest.raises(SystemExit):
        cli.main(["run", "--help"])
    run_help = capsys.readouterr().out
    for option in ("--scenario", "--hours", "--seed", "--out"):
        assert option in run_help
    assert run_help.count("(default:") == 4
    with pytest.raises(SystemExit):
        cli.main(["serve", "--help"])
    serve_help = " ".join(capsys.readouterr().out.split())
    assert "8E1" in serve_help and "unit id" in serve_help and "real time" in serve_help
    assert serve_help.count("(default:") == 3


def test_help_names_the_default_scenario_without_climbing_out_of_another_folder(
    capsys, monkeypatch, tmp_path
):
    monkeypatch.chdir(tmp_path)  # outside the checkout: relpath would be ../../..
    with pytest.raises(SystemExit):
        cli.main(["run", "--help"])
    run_help = " ".join(capsys.readouterr().out.split())
    assert f"(default: {scenario.DEFAULT_SCENARIO})" in run_help


def test_the_progress_bar_prints_lines_into_a_pipe_not_redraws(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "host_tools.sim.cli", "--hours", "0.05", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "\r" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if "%" in line]
    assert 2 <= len(lines) <= 11, done.stderr


def test_ctrl_c_stops_the_run_and_keeps_what_was_simulated(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "host_tools.sim.cli", "--hours", "6", "--out", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # wait for the run to be under way
        line = proc.stdout.readline()
        if line.startswith("pumpsim:"):
            break
    time.sleep(3.0)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "pumpsim: interrupted after" in err
    assert "Traceback" not in err
    assert (tmp_path / "kpi.txt").exists() and (tmp_path / "day.png").exists()
    frames = telemetry_log.read_telemetry(tmp_path / "telemetry.bin")
    assert 0 < len(frames) < 6 * 360


def test_the_plot_leaves_out_faults_after_the_end_of_a_shortened_run():
    chosen = scenario.load(scenario.SCENARIOS / "jia_faults.toml")
    result = run_mod.RunResult(chosen)
    result.samples = {"t_s": array("d", [0.0, 3.0 * 3600.0])}
    assert report._fault_spans(result) == [(2 * 3600.0, 2 * 3600.0 + 20 * 60.0)]
