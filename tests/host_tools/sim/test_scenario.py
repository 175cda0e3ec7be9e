"""Scenario files: the shipped ones load; every malformed one is refused naming file, field, reason."""

import dataclasses

import pytest

from host_tools.sim import ConstantDemand, Plant, scenario
from host_tools.sim.demand import DailyWindow, DemandRamp, DemandStep
from host_tools.sim.hardware import SimulatedStation, pump_deviations
from host_tools.sim.pump import PumpDeviation, draw_iso9906_2b

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
        ('hours = "a day"', "hours", "must be a number, not the text 'a day'"),
        ("colour = 3", "colour", "unknown key"),
        ('[day]\ndate = "2026-07-01"', "day.date", "heating season"),
        ('[day]\ndate = "15.01.2026"', "day.date", "YYYY-MM-DD"),
        ("[plant]\nstep_s = 5.0", "plant.step_s", "outside"),
        ("[bus]\nbaud = true", "bus.baud", "must be a whole number, not true"),
        ('[bus]\nbaud = "19200"', "bus.baud", "not the text '19200' (no quotes around a number)"),
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


# --- real pumps and demand shaping ---------------------------------------------------------------


def test_pumps_default_to_the_2b_draw_of_the_seed_and_none_is_the_datasheet(tmp_path):
    chosen = load_text(tmp_path, BASE.replace('name = "t"', 'name = "t"\nseed = 7'))
    assert chosen.pump_spread == "iso9906_2b"
    station = SimulatedStation(chosen)
    assert station.pump_deviations == draw_iso9906_2b(7, 2)
    assert [m.deviation for m in station.plant.pumps] == list(station.pump_deviations)
    assert SimulatedStation(chosen).pump_deviations == station.pump_deviations  # reproducible
    plain = load_text(tmp_path, BASE + '[plant]\npump_spread = "none"\n')
    assert pump_deviations(plain) == (PumpDeviation(), PumpDeviation())


def test_pump_tables_override_the_draw_key_by_key(tmp_path):
    text = BASE + "[[pumps]]\nwear = 0.2\nhead_factor = 0.9\n[[pumps]]\nflow_factor = 1.1\n"
    chosen = load_text(tmp_path, text)
    drawn = draw_iso9906_2b(chosen.seed, 2)
    first, second = pump_deviations(chosen)
    assert (first.wear, first.head_factor) == (0.2, 0.9)
    assert (first.flow_factor, first.efficiency_factor) == (
        drawn[0].flow_factor,
        drawn[0].efficiency_factor,
    )
    assert second == dataclasses.replace(drawn[1], flow_factor=1.1)
    none = load_text(tmp_path, text + '[plant]\npump_spread = "none"\n')
    assert pump_deviations(none)[1] == PumpDeviation(flow_factor=1.1)
    # the plant runs the worn pump
    station = SimulatedStation(chosen)
    assert station.plant.pumps[0].head_m(450.0, 1.0) < station.plant.pumps[1].head_m(450.0, 1.0)


def test_demand_keys_shape_the_stations_demand(tmp_path):
    text = BASE + (
        "[day]\nmean_temp_c = 14.0\nflow_noise = 0.0\n"
        "[demand]\nfloor_m3h = 60.0\n"
        'night_setback = { start = "22:00", end = "05:00", factor = 0.5 }\n'
        'morning_boost = { start = "05:00", end = "07:30", factor = 1.4, ramp_min = 0 }\n'
        '[[demand.steps]]\nat = "10:00"\nfactor = 0.8\n'
        '[[demand.ramps]]\nat = "12:00"\nduration_min = 30\nfactor = 1.5\n'
    )
    chosen = load_text(tmp_path, text)
    assert chosen.demand_floor_m3h == 60.0
    assert chosen.night_setback == DailyWindow(22 * 3600.0, 5 * 3600.0, 0.5, 120.0)
    assert chosen.morning_boost == DailyWindow(5 * 3600.0, 7.5 * 3600.0, 1.4, 0.0)
    assert chosen.demand_steps == (DemandStep(10 * 3600.0, 0.8),)
    assert chosen.demand_ramps == (DemandRamp(12 * 3600.0, 1800.0, 1.5),)
    shape = chosen.demand_shape
    assert shape.multiplier(3 * 3600.0) == pytest.approx(0.5)
    assert shape.multiplier(6 * 3600.0) == pytest.approx(1.4)
    assert shape.multiplier(11 * 3600.0) == pytest.approx(0.8)
    assert shape.multiplier(12.25 * 3600.0) == pytest.approx(0.8 * 1.25)
    demand = SimulatedStation(chosen).plant.demand
    assert demand.floor_m3h == 60.0 and demand.shape is not None
    plain = SimulatedStation(load_text(tmp_path, BASE)).plant.demand
    assert plain.floor_m3h == pytest.approx(240.0) and plain.shape is None


def test_the_warm_shaped_day_reaches_one_pumps_minimum_flow_region():
    chosen = scenario.load(scenario.SCENARIOS / "jia_warm_shaped.toml")
    assert chosen.mean_temp_c == 14.0 and chosen.pump_spread == "iso9906_2b"
    assert chosen.night_setback is not None and chosen.morning_boost is not None
    plant = SimulatedStation(chosen).plant
    flows = [plant.demand.step(60.0) for _ in range(24 * 60)]
    assert min(flows) == pytest.approx(chosen.demand_floor_m3h)
    assert max(flows) > 450.0  # and the morning boost needs a second pump
    # each pump alone at the agent's 50 % minimum speed against the floor demand, settled:
    # below 0.3 x its BEP flow at that speed
    for i, pump in enumerate(plant.pumps):
        one = Plant(plant.params, ConstantDemand(chosen.demand_floor_m3h), plant.pumps)
        one.set_pump(i, 0.5, True)
        one.settle()
        assert one.pump_flow_m3h[i] < 0.3 * pump.q_bep * 0.5


@pytest.mark.parametrize(
    "extra, field, reason",
    [
        ('[plant]\npump_spread = "gaussian"', "plant.pump_spread", "not one of"),
        ("[[pumps]]\nhead_factor = 1.3", "pumps[0].head_factor", "outside 0.8..1.2"),
        ("[[pumps]]\n[[pumps]]\nflow_factor = 0.7", "pumps[1].flow_factor", "outside"),
        ("[[pumps]]\nefficiency_factor = 1.2", "pumps[0].efficiency_factor", "outside"),
        ("[[pumps]]\nwear = 0.5", "pumps[0].wear", "outside 0..0.3"),
        ('[[pumps]]\nwear = "some"', "pumps[0].wear", "must be a number"),
        ("[[pumps]]\nimpeller_mm = 300", "pumps[0].impeller_mm", "unknown key"),
        ("[[pumps]]\n[[pumps]]\n[[pumps]]", "pumps", "3 [[pumps]] tables for 2 drives"),
        ("pumps = 3", "pumps", "must be a list"),
        ("[demand]\nfloor_m3h = 5.0", "demand.floor_m3h", "outside 10..840"),
        ("[demand]\nfloor_m3h = 900", "demand.floor_m3h", "outside"),
        ("[demand]\nceiling_m3h = 900", "demand.ceiling_m3h", "unknown key"),
        (
            '[demand]\nnight_setback = { start = "22:00", end = "05:00", factor = 1.2 }',
            "demand.night_setback.factor",
            "outside 0.2..1",
        ),
        (
            '[demand]\nnight_setback = { start = "22:00", factor = 0.7 }',
            "demand.night_setback.end",
            "required",
        ),
        (
            '[demand]\nnight_setback = { start = "25:00", end = "05:00", factor = 0.7 }',
            "demand.night_setback.start",
            "below 24:00",
        ),
        (
            '[demand]\nmorning_boost = { start = "5", end = "08:00", factor = 1.2 }',
            "demand.morning_boost.start",
            "HH:MM",
        ),
        (
            '[demand]\nmorning_boost = { start = "05:00", end = "05:00", factor = 1.2 }',
            "demand.morning_boost.end",
            "same as start",
        ),
        (
            '[demand]\nmorning_boost = { start = "05:00", end = "08:00", factor = 0.8 }',
            "demand.morning_boost.factor",
            "outside 1..2",
        ),
        (
            '[demand]\nmorning_boost = { start = "05:00", end = "08:00", factor = 1.2, ramp_min = 200 }',
            "demand.morning_boost.ramp_min",
            "outside 0..120",
        ),
        (
            '[demand]\nmorning_boost = { start = "05:00", end = "08:00", factor = 1.2, slope = 1 }',
            "demand.morning_boost.slope",
            "unknown key",
        ),
        ("[demand]\nnight_setback = 0.7", "demand.night_setback", "must be a table"),
        ('[[demand.steps]]\nat = "01:00"', "demand.steps[0].factor", "required"),
        ('[[demand.steps]]\nat = "30:00"\nfactor = 0.5', "demand.steps[0].at", "after the end"),
        ('[[demand.steps]]\nat = "01:00"\nfactor = 4.0', "demand.steps[0].factor", "outside"),
        (
            '[[demand.steps]]\nat = "01:00"\nfactor = 0.5\nduration_min = 3',
            "demand.steps[0].duration_min",
            "unknown key",
        ),
        (
            '[[demand.ramps]]\nat = "01:00"\nfactor = 0.5',
            "demand.ramps[0].duration_min",
            "required",
        ),
        (
            '[[demand.ramps]]\nat = "01:00"\nduration_min = 0\nfactor = 0.5',
            "demand.ramps[0].duration_min",
            "outside",
        ),
        ("[demand]\nsteps = 2", "demand.steps", "must be a list"),
    ],
)
def test_malformed_pump_and_demand_keys_name_the_field(tmp_path, extra, field, reason):
    head, _, drives = BASE.partition("[[drives]]")
    text = head + extra + "\n[[drives]]" + drives if not extra.startswith("[") else BASE + extra
    with pytest.raises(scenario.ScenarioError) as info:
        load_text(tmp_path, text)
    assert info.value.field == field
    assert reason in info.value.reason
    assert str(info.value).startswith(str(tmp_path / "bad.toml"))
