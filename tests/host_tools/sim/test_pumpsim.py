"""pumpsim end to end: a short run writes the KPI table, the plot and a decodable telemetry log."""

import subprocess
import sys

from host_tools.sim import cli, scenario, telemetry_log


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
