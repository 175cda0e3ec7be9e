"""The plant on virtual time: steady states, water column, surge, suction side, energy, seeding;
real pumps, each with its own curve."""

import datetime as dt

import pytest

from host_tools.sim import (
    REFERENCE,
    ConstantDemand,
    Plant,
    PumpModel,
    SimInputError,
    WeatherDemand,
)
from host_tools.sim.pump import PumpDeviation, draw_iso9906_2b
from host_tools.sim.surge import SurgeEstimator

DESIGN_SPEED = 0.9479963833565731  # 2 pumps, 800 m3/h against 55.0 m
RHO_A_KPA = REFERENCE.rho_kg_m3 * REFERENCE.wave_speed_m_s / 1000.0


def design_plant(demand=800.0):
    plant = Plant(demand=ConstantDemand(demand))
    plant.set_pump(0, DESIGN_SPEED, True)
    plant.set_pump(1, DESIGN_SPEED, True)
    plant.settle()
    return plant


def run(plant, seconds, dt_s=0.1):
    for _ in range(int(round(seconds / dt_s))):
        plant.step(dt_s)


def test_design_steady_state():
    plant = design_plant()
    assert plant.flow_m3h == pytest.approx(800.0, abs=0.01)
    assert plant.station_head_m == pytest.approx(55.0, abs=0.01)
    assert plant.remote_dp_m == pytest.approx(12.0, abs=0.01)
    assert plant.remote_dp_kpa == pytest.approx(111.0, abs=0.1)
    assert plant.suction_kpa == pytest.approx(220.0, abs=0.01)  # 300 static - 80 upstream loss
    assert plant.discharge_kpa == pytest.approx(220.0 + 55.008 * REFERENCE.kpa_per_m, abs=0.1)
    assert plant.total_power_kw == pytest.approx(146.75, abs=0.01)
    assert plant.pump_flow_m3h == pytest.approx([400.0, 400.0, 0.0], abs=0.01)
    assert plant.pump_shaft_kw[0] == pytest.approx(67.65, abs=0.01)
    assert plant.pump_shaft_kw[2] == 0.0
    run(plant, 30.0)  # and it stays there when stepped
    assert plant.flow_m3h == pytest.approx(800.0, abs=0.01)


def test_water_column_time_constant():
    assert REFERENCE.water_column_time_constant_s() == pytest.approx(17.0, abs=0.2)
    # From rest, a net head equal to the design head accelerates the column at design flow / 17 s.
    plant = Plant(demand=ConstantDemand(800.0))
    speed = (REFERENCE.system_head_m(800.0) / REFERENCE.shutoff_head_m) ** 0.5
    plant.set_pump(0, speed, True)
    plant.set_pump(1, speed, True)
    plant.step(0.01)
    rate = plant.flow_m3h / 0.01
    assert 800.0 / rate == pytest.approx(REFERENCE.water_column_time_constant_s(), rel=0.01)


def test_step_size_up_to_half_a_second_is_stable_and_accurate():
    results = []
    for dt_s in (0.02, 0.5):
        plant = design_plant()
        for i in range(2):
            plant.set_pump(i, 0.75, True)
        trace = []
        for _ in range(int(round(90.0 / dt_s))):
            plant.step(dt_s)
            trace.append(plant.flow_m3h)
        # the flow falls monotonically to the new steady state, no overshoot or ringing
        assert all(b <= a + 1e-9 for a, b in zip(trace, trace[1:], strict=False))
        results.append((plant.flow_m3h, trace[int(round(10.0 / dt_s)) - 1]))
    (fine_end, fine_10s), (coarse_end, coarse_10s) = results
    assert coarse_end == pytest.approx(fine_end, rel=1e-3)
    assert coarse_10s == pytest.approx(fine_10s, rel=0.01)
    plant.settle()
    assert fine_end == pytest.approx(plant.flow_m3h, rel=1e-3)


def test_sudden_trip_of_all_pumps_gives_joukowsky_surge():
    plant = design_plant()
    run(plant, 10.0)
    v = REFERENCE.velocity_m_s(800.0)
    assert v == pytest.approx(1.77, abs=0.01)
    plant.set_pump(0, 0.0, False)
    plant.set_pump(1, 0.0, False)
    run(plant, 20.0)
    assert plant.surge_peak_kpa == pytest.approx(RHO_A_KPA * v, rel=0.02)
    assert plant.surge_peak_kpa == pytest.approx(2000.0, rel=0.02)
    # the column coasts on through the check-valved bypass, discharge just below suction
    assert plant.bypass_flow_m3h == pytest.approx(plant.flow_m3h)
    assert 0.0 < plant.flow_m3h < 500.0
    assert -1.0 < plant.station_head_m < 0.0
    assert plant.total_power_kw == 0.0


def surge_of_ramp(ramp_s, dt_s=0.1):
    plant = design_plant()
    steps = int(round(ramp_s / dt_s))
    for k in range(steps + int(30.0 / dt_s)):
        s = DESIGN_SPEED * max(0.0, 1.0 - (k + 1) / steps)
        plant.set_pump(0, s, s > 0.0)
        plant.set_pump(1, s, s > 0.0)
        plant.step(dt_s)
    return plant.surge_peak_kpa


def test_slower_stops_give_smaller_surges():
    joukowsky = RHO_A_KPA * REFERENCE.velocity_m_s(800.0)
    peaks = [surge_of_ramp(t) for t in (10.0, 30.0, 60.0, 120.0)]
    assert peaks == sorted(peaks, reverse=True)
    assert peaks[0] < joukowsky
    # Beyond 2L/a the surge falls as 1/ramp time (Michaud) ...
    assert peaks[3] / peaks[2] == pytest.approx(0.5, abs=0.05)
    # ... but a linear *speed* ramp is not a linear *flow* ramp: the pumps' flow collapses over
    # the last third of the ramp, when their shut-off head falls below the header's, so a 60 s
    # ramp gives about 3x the Michaud figure of a linear flow ramp.
    michaud_60 = joukowsky * REFERENCE.reflection_time_s / 60.0
    assert 1.5 * michaud_60 < peaks[2] < 4.0 * michaud_60


def test_surge_estimator_is_joukowsky_then_michaud():
    t_r = REFERENCE.reflection_time_s
    for ramp_s, expected in ((0.1, 1.77), (60.0, 1.77 * t_r / 60.0)):
        est = SurgeEstimator(REFERENCE.rho_kg_m3, REFERENCE.wave_speed_m_s, t_r)
        t = 0.0
        while t < ramp_s + 20.0:
            v = 1.77 * max(0.0, 1.0 - t / ramp_s)
            est.update(t, v)
            t += 0.05
        assert est.peak_kpa == pytest.approx(RHO_A_KPA * expected, rel=0.01)


def test_suction_margin_and_its_faults():
    plant = design_plant()
    assert plant.suction_limit_kpa == pytest.approx(158.0, abs=2.0)
    assert plant.suction_margin_kpa == pytest.approx(62.0, abs=2.0)
    low_flow = design_plant(demand=500.0)
    for i in range(2):
        low_flow.set_pump(i, 0.8, True)
    run(low_flow, 60.0)
    assert low_flow.suction_kpa > plant.suction_kpa  # less upstream loss at lower flow
    # a suction dip fault pulls the upstream pressure down with its own time constant
    plant.set_conditions(suction_dip_kpa=100.0)
    run(plant, 5.0)
    assert plant.suction_margin_kpa > 0.0
    run(plant, 120.0)
    assert plant.suction_margin_kpa == pytest.approx(-38.0, abs=2.0)
    # hotter supply water raises the vapour pressure and the limit with it
    hot = design_plant()
    hot.set_conditions(supply_temp_c=130.0)
    hot.step(0.1)
    assert hot.suction_limit_kpa - plant.suction_limit_kpa == pytest.approx(71.6, abs=1.0)


def test_source_pumps_stopping_collapses_flow_and_suction():
    plant = design_plant()
    plant.set_conditions(source_running=False)
    run(plant, 120.0)
    assert plant.flow_m3h < 0.75 * 800.0
    assert plant.suction_margin_kpa < 0.0
    assert plant.suction_kpa >= plant.saturation_kpa_abs - REFERENCE.atm_kpa_abs
    plant.set_conditions(source_running=True)
    run(plant, 180.0)
    assert plant.flow_m3h == pytest.approx(800.0, rel=0.01)
    assert plant.suction_margin_kpa > 50.0


def test_pumps_off_upstream_pressure_drives_flow_through_bypass():
    plant = Plant(demand=ConstantDemand(500.0))
    plant.settle()
    assert plant.flow_m3h == 0.0  # nothing drives the loop with no upstream assist
    plant.set_conditions(upstream_assist_m=3.0)
    run(plant, 120.0)
    assert plant.flow_m3h > 100.0
    assert plant.bypass_flow_m3h == pytest.approx(plant.flow_m3h)


def test_energy_is_power_integrated_over_virtual_time():
    plant = design_plant()
    run(plant, 3600.0, dt_s=0.5)
    assert plant.total_energy_kwh == pytest.approx(146.75, rel=1e-4)
    assert plant.pump_energy_kwh[2] == 0.0


def test_deadheaded_running_pump_draws_power():
    plant = design_plant()
    plant.set_pump(2, 0.5, True)  # shut-off 17.5 m, far below the 55 m header
    run(plant, 5.0)
    assert plant.pump_flow_m3h[2] == 0.0
    assert plant.pump_power_kw[2] > 0.0


def test_deadheaded_pump_draws_its_shutoff_power_whatever_the_header_head():
    plant = design_plant(500.0)
    plant.set_pump(2, 0.5, True)
    run(plant, 5.0)
    pump = plant.pumps[2]
    assert plant.station_head_m > pump.shutoff_head_m(0.5)  # its check valve holds
    assert plant.pump_shaft_kw[2] == pytest.approx(pump.shaft_kw(0.0, 0.5))
    assert plant.pump_shaft_kw[2] == pytest.approx(0.125 * pump.shaft_kw(0.0, 1.0), rel=0.15)


def test_a_pump_the_column_drives_past_run_out_is_a_resistance_and_its_power_stays_bounded():
    """After a trip at design flow with the survivor sagged to 30 % speed, the column carries far
    more than that pump gives: the station head falls below zero, the bypass opens, the pump runs
    past its run-out with negative head, and its drive sees at most the run-out power."""
    plant = design_plant()
    plant.set_pump(0, 0.0, False)
    plant.set_pump(1, 0.3, True)
    pump = plant.pumps[1]
    run_out_q = pump.flow_at_head_m3h(0.0, 0.3)
    for _ in range(20):
        plant.step(0.1)
        head = plant.station_head_m
        q = plant.pump_flow_m3h[1]
        assert head < 0.0 and plant.bypass_flow_m3h > 0.0
        assert q > run_out_q and pump.head_m(q, 0.3) == pytest.approx(head)
        assert q + plant.bypass_flow_m3h == pytest.approx(plant.flow_m3h)
        assert plant.pump_flow_m3h[0] == 0.0 and plant.pump_power_kw[0] == 0.0
        assert plant.pump_shaft_kw[1] == pytest.approx(pump.shaft_kw(run_out_q, 0.3))
    assert plant.flow_m3h < 790.0  # the column decelerates against the system
    assert plant.pump_shaft_kw[1] < 0.05 * REFERENCE.motor_rated_kw  # 0.3^3 of the run-out power


def weather_run(seed):
    demand = WeatherDemand(dt.date(2025, 1, 20), seed=seed)
    plant = Plant(demand=demand)
    for i in range(2):
        plant.set_pump(i, DESIGN_SPEED, True)
    plant.settle()
    run(plant, 1800.0, dt_s=0.5)
    return plant.reading()


def test_deterministic_from_seed():
    assert weather_run(5) == weather_run(5)
    assert weather_run(5) != weather_run(6)


def test_bad_inputs_raise_typed_errors():
    plant = design_plant()
    for call in (
        lambda: plant.set_pump(3, 0.5, True),
        lambda: plant.set_pump(0, -0.1, True),
        lambda: plant.set_pump(0, float("nan"), True),
        lambda: plant.set_pump(0, 2.0, True),
        lambda: plant.set_pump(0, 0.5, 1),
        lambda: plant.step(0.0),
        lambda: plant.step(float("inf")),
        lambda: plant.set_conditions(supply_temp_c=500.0),
        lambda: plant.set_conditions(suction_dip_kpa=-5.0),
        lambda: plant.set_conditions(source_running="yes"),
        lambda: ConstantDemand(-1.0),
    ):
        with pytest.raises(SimInputError):
            call()
    assert plant.flow_m3h == pytest.approx(800.0, abs=0.01)  # nothing half-applied


# --- real pumps: each its own curve --------------------------------------------------------------


def test_default_plant_pumps_are_the_datasheet_pump():
    plant = Plant(demand=ConstantDemand(800.0))
    assert [m.deviation for m in plant.pumps] == [PumpDeviation()] * 3


def real_plant(deviations, speeds, demand=800.0):
    pumps = [PumpModel(REFERENCE, d) for d in deviations]
    plant = Plant(demand=ConstantDemand(demand), pumps=pumps)
    for i, s in enumerate(speeds):
        plant.set_pump(i, s, s > 0.0)
    plant.settle()
    return plant


def test_pumps_with_their_own_curves_share_the_flow_unequally_and_draw_their_own_power():
    drawn = draw_iso9906_2b(1, 3)
    plant = real_plant(drawn, (0.93, 0.93, 0.93))
    flows = plant.pump_flow_m3h
    assert sum(flows) == pytest.approx(plant.flow_m3h)
    assert len({round(q, 3) for q in flows}) == 3  # equal speeds, unequal flows
    for i, m in enumerate(plant.pumps):
        assert m.deviation == drawn[i]
        assert m.head_m(flows[i], 0.93) == pytest.approx(plant.station_head_m)
        shaft = m.shaft_kw(flows[i], 0.93)
        assert plant.pump_shaft_kw[i] == pytest.approx(shaft)
        assert plant.pump_power_kw[i] == pytest.approx(m.electrical_kw(flows[i], 0.93))
    datasheet = real_plant([PumpDeviation()] * 3, (0.93, 0.93, 0.93))
    assert plant.flow_m3h != pytest.approx(datasheet.flow_m3h, abs=1.0)


def test_a_worn_pump_delivers_less_at_the_same_speed_and_costs_more_energy():
    worn = PumpDeviation(wear=0.2)
    new = real_plant([PumpDeviation()] * 3, (0.95, 0.95, 0.0))
    one_worn = real_plant([PumpDeviation(), worn, PumpDeviation()], (0.95, 0.95, 0.0))
    assert one_worn.pump_flow_m3h[1] < one_worn.pump_flow_m3h[0]
    assert one_worn.flow_m3h < new.flow_m3h
    assert one_worn.remote_dp_m < new.remote_dp_m
    # the same 800 m3/h at 12 m DP needs more speed on a worn pump, and more power
    head = REFERENCE.system_head_m(800.0)
    s_new = PumpModel(REFERENCE).speed_for_m(400.0, head)
    s_worn = PumpModel(REFERENCE, worn).speed_for_m(400.0, head)
    a = real_plant([PumpDeviation()] * 2 + [PumpDeviation()], (s_new, s_new, 0.0))
    b = real_plant([worn, worn, PumpDeviation()], (s_worn, s_worn, 0.0))
    assert a.remote_dp_m == pytest.approx(12.0, abs=0.01)
    assert b.remote_dp_m == pytest.approx(12.0, abs=0.01)
    assert b.total_power_kw > 1.15 * a.total_power_kw


def test_wrong_pump_lists_are_refused():
    with pytest.raises(SimInputError, match="PumpModel"):
        Plant(demand=ConstantDemand(800.0), pumps=[PumpModel()] * 2)
    with pytest.raises(SimInputError, match="PumpModel"):
        Plant(demand=ConstantDemand(800.0), pumps=[PumpModel(), PumpModel(), "pump"])
