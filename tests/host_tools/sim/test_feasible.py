"""What the field makes possible (host_tools/sim/feasible.py), on hand-computed cases; each case
is checked against the plant's own steady state (plant.settle) so the closed forms are the
plant's physics, not a second model."""

import math

import pytest

from host_tools.sim import feasible
from host_tools.sim.drives import DriveConfig, make_drive
from host_tools.sim.plant import ConstantDemand, Plant
from host_tools.sim.station import REFERENCE
from host_tools.sim.water import saturation_pressure_kpa_abs

P = REFERENCE
KPA_M = P.kpa_per_m
SETPOINT = 12.0 * KPA_M  # 12 m, the reference's remote DP
BAND = 0.5 * KPA_M
LOW = 2.0 * KPA_M
ALL = [True, True, True]
SPEEDS = [(0.5, 1.0)] * 3
# the true suction limit while no pump needs more than 50 kPa over the vapour pressure (gauge)
LIMIT_KPA = saturation_pressure_kpa_abs(P.supply_temp_c) + 50.0 - P.atm_kpa_abs


def plant_at(demand_m3h, dip_kpa=0.0, source=True):
    plant = Plant(demand=ConstantDemand(demand_m3h))
    plant.set_conditions(suction_dip_kpa=dip_kpa, source_running=source)
    plant.step(0.2)  # the demand's Kv
    return plant


def judge(plant, available=ALL, setpoint=SETPOINT):
    return feasible.Field(plant, available, SPEEDS).judge(setpoint, BAND, LOW)


def settled_dp_m(plant, speeds):
    for i, s in enumerate(speeds):
        plant.set_pump(i, s, s > 0.0)
    plant.settle()
    return plant.remote_dp_m


def test_one_pump_at_its_minimum_speed_over_delivers_at_a_low_demand():
    demand = 175.0
    kv = demand / math.sqrt(P.remote_dp_design_m)
    # one pump at s = 0.5: h0 s^2 - c Q^2 = Q^2 / Kv^2 + k Q^2
    q = math.sqrt(P.shutoff_head_m * 0.25 / (1.0 / kv**2 + P.system_coeff + P.curve_coeff))
    dp_m = q * q / kv**2
    assert dp_m == pytest.approx(13.5, abs=0.1)  # 1.5 m over: above the band's 12.5 m
    plant = plant_at(demand)
    assert settled_dp_m(plant, [0.5, 0.0, 0.0]) == pytest.approx(dp_m, rel=1e-6)
    assert judge(plant) == feasible.OVER
    # the same field holds a setpoint at that DP: the answer follows the physics, not a default
    assert judge(plant, setpoint=dp_m * KPA_M) == feasible.REACHABLE


def test_a_normal_winter_sample_is_reachable_and_the_plant_confirms_it():
    plant = plant_at(700.0)
    assert judge(plant) == feasible.REACHABLE
    # two pumps share it at the speed where the network's 12 m at 700 m3/h meets their curve
    q = 700.0
    s = math.sqrt((P.system_head_m(q) + P.curve_coeff * (q / 2) ** 2) / P.shutoff_head_m)
    assert 0.5 < s < 1.0
    assert settled_dp_m(plant, [s, s, 0.0]) == pytest.approx(12.0, abs=1e-3)
    assert plant.suction_margin_kpa > 0.0


def test_the_pumps_a_tripped_drive_holds_are_out_of_the_field():
    plant = plant_at(840.0)
    assert judge(plant) == feasible.REACHABLE
    # one pump flat out: 70 - c Q^2 = Q^2 / Kv^2 + k Q^2 gives 8.9 m: more than 2 m low
    kv = 840.0 / math.sqrt(12.0)
    q = math.sqrt(P.shutoff_head_m / (1.0 / kv**2 + P.system_coeff + P.curve_coeff))
    assert q * q / kv**2 == pytest.approx(8.93, abs=0.02)
    assert judge(plant, [True, False, False]) == feasible.UNSERVABLE
    drives = [make_drive("abb", u, DriveConfig()) for u in (1, 2, 3)]
    drives[1].inject_fault("overcurrent")
    drives[2].inject_fault("overtemperature")
    assert feasible.field_of(plant, drives).judge(SETPOINT, BAND, LOW) == feasible.UNSERVABLE
    drives[2].clear_fault()  # the cause is gone: a reset can bring it back
    assert feasible.field_of(plant, drives).judge(SETPOINT, BAND, LOW) == feasible.REACHABLE


def dip_case(dp_at_edge_m):
    """A 120 kPa suction dip and a demand at which the suction reaches its limit where the remote
    DP is dp_at_edge_m: suction = 180 - 80 (Q / 800)^2 kPa meets LIMIT_KPA at q_edge."""
    upstream = P.upstream_run_kpa - 120.0
    q_edge = P.design_flow_m3h * math.sqrt((upstream - LIMIT_KPA) / P.upstream_loss_kpa_at_design)
    demand = q_edge / math.sqrt(dp_at_edge_m / 12.0)
    return plant_at(demand, 120.0), q_edge


def test_a_deep_suction_dip_leaves_no_speed_that_keeps_suction_and_reaches_the_setpoint():
    plant, q_edge = dip_case(11.0)  # the best the field allows: 11 m, 1 m low
    assert 380.0 < q_edge < 460.0
    assert judge(plant) == feasible.UNDER
    plant, _ = dip_case(9.0)  # 3 m low
    assert judge(plant) == feasible.UNSERVABLE
    # the plant agrees: carrying the band's lower edge (11.5 m) the true suction is below its limit
    plant, q_edge = dip_case(11.0)
    q = q_edge * math.sqrt(11.5 / 11.0)
    head = q * q / plant.kv**2 + P.system_coeff * q * q  # two pumps, q / 2 each
    s = math.sqrt((head + P.curve_coeff * (q / 2) ** 2) / P.shutoff_head_m)
    assert settled_dp_m(plant, [s, s, 0.0]) == pytest.approx(11.5, abs=1e-3)
    assert plant.suction_margin_kpa < 0.0
    # without the dip the same demand is served
    assert judge(plant_at(plant.demand_m3h)) == feasible.REACHABLE


def test_a_stopped_source_makes_service_impossible():
    assert judge(plant_at(600.0, source=False)) == feasible.UNSERVABLE


def test_reach_holds_its_judgement_and_judges_again_when_a_drive_trips():
    plant = plant_at(840.0)
    drives = [make_drive("abb", u, DriveConfig()) for u in (1, 2, 3)]
    reach = feasible.Reach(hold_s=10.0)
    assert reach.judge(plant, drives, SETPOINT, BAND, LOW) == feasible.REACHABLE
    plant.demand = ConstantDemand(175.0)
    plant.step(0.2)
    assert reach.judge(plant, drives, SETPOINT, BAND, LOW) == feasible.REACHABLE  # held
    drives[0].inject_fault("overcurrent")  # availability changed: judged at once
    assert reach.judge(plant, drives, SETPOINT, BAND, LOW) == feasible.OVER
    for _ in range(60):
        plant.step(0.2)
    plant.demand = ConstantDemand(840.0)
    plant.step(0.2)
    assert reach.judge(plant, drives, SETPOINT, BAND, LOW) == feasible.REACHABLE  # 10 s later
