"""Scenario files: the shipped ones load; every malformed one is refused naming file, field, reason."""

import pytest

from host_tools.sim import scenario
from host_tools.sim.hardware import SimulatedStation

SHIPPED = sorted(scenario.SCENARIOS.glob("*.toml"))

BASE = """
name = "t"
[[drives]]
unit = 1
profile = "abb"
[[drives]]
unit = 2
profile = "danfoss"
"""


def load_text(tmp_path, text):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    return scenario.load(path)


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_scenarios_load_and_build(path):
    chosen = scenario.load(path)
    station = SimulatedStation(chosen)
    station.step(chosen.step_s)
    assert len(station.drives) == 3


def test_the_default_scenario_is_the_january_mean_day():
    chosen = scenario.load(scenario.DEFAULT_SCENARIO)
    assert chosen.mean_temp_c == -6.0 and chosen.date.month == 1 and chosen.faults == ()


def test_fault_schedule_is_parsed_in_time_order():
    chosen = scenario.load(scenario.SCENARIOS / "jia_faults.toml")
    kinds = [f.kind for f in chosen.faults]
    assert set(kinds) == set(scenario.FAULT_FIELDS)
    assert [f.at_s for f in chosen.faults] == sorted(f.at_s for f in chosen.faults)


@pytest.mark.parametrize(
    "extra, field, reason",
    [
        ("seed = -1", "seed", "outside"),
        ('hours = "a day"', "hours", "must be float"),
        ("colour = 3", "colour", "unknown key"),
        ('[day]\ndate = "2026-07-01"', "day.date", "heating season"),
        ('[day]\ndate = "15.01.2026"', "day.date", "YYYY-MM-DD"),
        ("[plant]\nstep_s = 5.0", "plant.step_s", "outside"),
        ("[bus]\nbaud = true", "bus.baud", "must be int"),
        ('[[faults]]\nkind = "meteor"\nat = "01:00"', "faults[0].kind", "not one of"),
        ('[[faults]]\nkind = "pump_trip"\nat = "1h"\npump = 1', "faults[0].at", "HH:MM"),
        (
            '[[faults]]\nkind = "pump_trip"\nat = "01:00"\npump = 3',
            "faults[0].pump",
            "outside 1..2",
        ),
        ('[[faults]]\nkind = "pump_trip"\nat = "01:00"', "faults[0].pump", "required"),
        (
            '[[faults]]\nkind = "crc_noise"\nat = "01:00"\nprobability = 0.1\npump = 1',
            "faults[0].pump",
            "does not apply",
        ),
        (
            '[[faults]]\nkind = "suction_dip"\nat = "30:00"\nkpa = 50',
            "faults[0].at",
            "after the end",
        ),
        (
            '[[faults]]\nkind = "sensor_wire_break"\nat = "01:00"\nsensor = "humidity"',
            "faults[0].sensor",
            "not one of",
        ),
    ],
)
def test_malformed_scenarios_name_the_field(tmp_path, extra, field, reason):
    head, _, drives = BASE.partition("[[drives]]")
    text = head + extra + "\n[[drives]]" + drives if not extra.startswith("[") else BASE + extra
    with pytest.raises(scenario.ScenarioError) as info:
        load_text(tmp_path, text)
    assert info.value.field == field
    assert reason in info.value.reason
    assert str(info.value).startswith(str(tmp_path / "bad.toml"))


def test_drive_errors_and_duplicate_units(tmp_path):
    with pytest.raises(scenario.ScenarioError, match=r"drives\[1\]\.profile: 'yaskawa'"):
        load_text(tmp_path, BASE.replace('"danfoss"', '"yaskawa"'))
    with pytest.raises(scenario.ScenarioError, match="unique"):
        load_text(tmp_path, BASE.replace("unit = 2", "unit = 1"))
    with pytest.raises(scenario.ScenarioError, match="drives: must be a list of 1..4"):
        load_text(tmp_path, 'name = "no pumps"')


def test_syntax_errors_and_missing_files_are_scenario_errors(tmp_path):
    with pytest.raises(scenario.ScenarioError, match="syntax"):
        load_text(tmp_path, "name = ")
    with pytest.raises(scenario.ScenarioError, match="file"):
        scenario.load(tmp_path / "missing.toml")


def test_faults_begin_and_end_on_schedule():
    chosen = scenario.load(scenario.SCENARIOS / "jia_faults.toml")
    station = SimulatedStation(chosen)
    by_kind = {f.kind: f for f in chosen.faults}

    def advance_to(t_s):
        station.t_s = t_s  # jump the clock: faults only look at the time
        station.step(0.2)

    advance_to(by_kind["pump_trip"].at_s)
    assert station.drives[0].tripped
    advance_to(by_kind["drive_comm_loss"].at_s)
    assert station.drives[1].unit in station.bus.cut_units
    advance_to(by_kind["drive_comm_loss"].end_s)
    assert not station.bus.cut_units
    advance_to(by_kind["sensor_wire_break"].at_s)
    assert station.io.current_ua("remote_dp_kpa") <= 3600
    advance_to(by_kind["crc_noise"].at_s)
    assert station.bus.noise_probability == 0.05
    advance_to(by_kind["suction_dip"].at_s)
    assert station.plant.suction_dip_kpa == 90
    advance_to(by_kind["source_pumps_stop"].at_s)
    assert station.plant.source_running is False
    advance_to(by_kind["source_pumps_stop"].end_s)
    assert station.plant.source_running is True
