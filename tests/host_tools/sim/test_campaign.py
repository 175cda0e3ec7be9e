"""The fault campaign bench (host_tools/bench/campaign.py): its days load through scenario.py with
every fault kind, and a short campaign computes every figure (finite, or n/a with a reason).
Goals are not asserted here: the campaign measures them."""

import math

import pytest

from host_tools.bench import campaign
from host_tools.sim import scenario
from host_tools.sim.kpis import NotComputed


def test_the_days_cover_every_fault_kind_and_mode_and_load_without_dropping_anything():
    kinds, modes, noise = set(), set(), []
    temps = []
    for k in range(campaign.FAULT_DAYS):
        chosen, notes = campaign.load(campaign.fault_day(k, campaign.FAULT_DAYS))
        assert notes == [], notes  # the simulator knows every key the campaign writes
        temps.append(chosen.mean_temp_c)
        for f in chosen.faults:
            kinds.add(f.kind)
            if "sensor" in f.kind:
                modes.add(f.mode)
            if f.kind == "crc_noise":
                noise.append(f.probability)
    assert {
        "pump_trip",
        "drive_comm_loss",
        "crc_noise",
        "suction_dip",
        "source_pumps_stop",
    } <= kinds
    assert set(scenario.SENSOR_MODES) <= modes
    assert max(noise) >= 0.10
    assert min(temps) == campaign.COLD_C and max(temps) == campaign.WARM_C
    for worn in (False, True):
        chosen, notes = campaign.load(campaign.season_day(0, 3, worn))
        assert notes == [] and chosen.faults == ()
        assert chosen.pump_spread == "none"
        factors = [p.head_factor for p in chosen.pumps]
        assert all(0.95 <= f <= 1.05 for f in factors) if worn else factors == []


def test_a_key_the_simulator_does_not_know_is_dropped_with_a_note():
    doc = campaign.fault_day(0, 2, hours=1.0)
    doc["plant"]["impeller_colour"] = "blue"
    doc["faults"].append({"kind": "meteor_strike", "at": "00:30"})
    chosen, notes = campaign.load(doc)
    assert len(notes) == 2
    assert any("impeller_colour" in n for n in notes)
    assert "meteor_strike" not in {f.kind for f in chosen.faults}


@pytest.fixture(scope="module")
def short_campaign():
    plan = campaign.Plan(fault_days=2, season_days=1, hours=0.75, workers=2)
    return campaign.campaign(plan)


def test_a_short_campaign_computes_every_figure(short_campaign):
    lines = campaign.figures(short_campaign)
    names = [name for name, _, _ in lines]
    for wanted in (
        "fault_campaign_dp_in_band",
        "fault_campaign_unserved_min",
        "fault_campaign_dp_in_band_all",
        "fault_campaign_unserved_min_all",
        "fault_campaign_band_unreachable_pct",
        "fault_campaign_band_unreachable_over_pct",
        "fault_campaign_band_unreachable_under_pct",
        "fault_campaign_unservable_min",
        "spurious_station_stops",
        "max_pump_power_vs_rated",
        "stuck_sensor_detect_s",
        "energy_vs_bound_season",
        "energy_vs_bound_season_worn",
    ):
        assert wanted in names
    for name, value, _ in lines:
        if isinstance(value, NotComputed):
            assert value.reason, name
        else:
            assert math.isfinite(value), name
    figures = {name: value for name, value, _ in lines}
    assert 0.0 <= figures["fault_campaign_dp_in_band"] <= 100.0
    assert figures["energy_vs_bound_season"] > 0.0
    assert figures["campaign_days"] == 4
    for day in short_campaign:
        if day["kind"] == "fault":
            left = day["samples_unreachable_over"] + day["samples_unreachable_under"]
            assert day["samples_counted"] + left == day["samples_outside_source"]
            assert day["unserved_min"] <= day["unserved_all_min"]


def fault_day_figures(**given):
    day = {
        "kind": "fault",
        "samples": 1000,
        "samples_outside_source": 1000,
        "samples_in_source": 0,
        "samples_counted": 1000,
        "samples_unreachable_over": 0,
        "samples_unreachable_under": 0,
        "dp_in_band_pct": 100.0,
        "dp_in_band_all_pct": 100.0,
        "dp_in_band_in_source_pct": NotComputed("no source stop"),
        "unserved_min": 0.0,
        "unserved_all_min": 0.0,
        "unservable_min": 0.0,
        "hours": 1.0,
        "spurious_station_stops": 0,
        "station_stops": 0,
        "max_power_vs_rated": 0.5,
        "stuck": [],
        "recoveries": [],
        "wall_s": 1.0,
    }
    day.update(given)
    return day


def test_the_campaign_band_leaves_out_what_the_field_cannot_reach_and_says_how_much():
    """Two days of 1000 samples: the second has 400 at which one pump at its minimum speed
    over-delivers (left out: 100 % of its other 600 in band) and 100 unservable ones, 30 min
    unserved in all of which 20 min fall where the field could not serve."""
    plain = fault_day_figures()
    warm = fault_day_figures(
        samples_counted=500,
        samples_unreachable_over=400,
        samples_unreachable_under=100,
        dp_in_band_pct=100.0,
        dp_in_band_all_pct=50.0,
        unserved_min=10.0,
        unserved_all_min=30.0,
        unservable_min=20.0,
    )
    figures = {name: value for name, value, _ in campaign.figures([plain, warm])}
    assert figures["fault_campaign_dp_in_band"] == pytest.approx(100.0)
    assert figures["fault_campaign_dp_in_band_all"] == pytest.approx(75.0)
    assert figures["fault_campaign_band_unreachable_pct"] == pytest.approx(25.0)
    assert figures["fault_campaign_band_unreachable_over_pct"] == pytest.approx(20.0)
    assert figures["fault_campaign_band_unreachable_under_pct"] == pytest.approx(5.0)
    assert figures["fault_campaign_unserved_min"] == pytest.approx(5.0)
    assert figures["fault_campaign_unserved_min_all"] == pytest.approx(15.0)
    assert figures["fault_campaign_unservable_min"] == pytest.approx(10.0)
    # a day where the band was reachable but missed is charged in full
    missed = fault_day_figures(dp_in_band_pct=50.0, dp_in_band_all_pct=50.0)
    figures = {name: value for name, value, _ in campaign.figures([plain, missed])}
    assert figures["fault_campaign_dp_in_band"] == pytest.approx(75.0)
    assert figures["fault_campaign_band_unreachable_pct"] == 0.0


def test_each_day_says_where_its_worst_pump_power_happened(short_campaign, capsys):
    for day in short_campaign:
        at = day["max_power_at"]
        assert 1 <= at["pump"] <= 3
        assert 0.0 < at["t_s"] <= day["hours"] * 3600.0
        assert at["speed_pct"] > 0.0 and at["flow_m3h"] > 0.0 and at["running"] >= 1
    campaign.print_days(short_campaign)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == len(short_campaign)
    assert all(
        f"(pump {d['max_power_at']['pump']} at " in line
        for d, line in zip(short_campaign, lines, strict=True)
    )


def test_the_bench_lines_are_name_value_unit(short_campaign, capsys):
    from host_tools.bench.__main__ import report

    for name, value, unit in campaign.figures(short_campaign):
        report(name, value, unit)
    printed = capsys.readouterr().out.splitlines()
    assert printed and all(": " in line for line in printed)
    assert not any("nan" in line or "inf" in line.split(": ", 1)[1] for line in printed)


def test_a_day_written_as_a_scenario_file_reads_back_the_same(tmp_path):
    import tomllib

    for doc in (campaign.fault_day(3, 12), campaign.season_day(1, 6, True)):
        text = campaign.to_toml(doc)
        assert tomllib.loads(text) == doc
        path = tmp_path / "day.toml"
        path.write_text(text)
        assert scenario.load(path).faults == campaign.load(doc)[0].faults


def test_a_demand_step_the_run_is_too_short_for_is_dropped_whole():
    doc = campaign.fault_day(5, 12)  # its times lie across 24 h
    doc["hours"] = 3.0
    doc["faults"] = []
    chosen, notes = campaign.load(doc)
    assert chosen.demand_steps == () and chosen.demand_ramps == ()
    assert any("demand.steps[0]" in n for n in notes)
