"""The plant's steady states against EPANET 2.2 (run through WNTR's EpanetSimulator and toolkit).

The same station is written as an EPANET input file: a reservoir at the suction head, the pumps
with the reference HEAD curve (3 points -> EPANET fits exactly H = 70 - 4.938e-5 q^2) and a SPEED
setting, an EFFIC curve sampled from the reference parabola (or, for real pumps with their own
deviations and wear, each pump's own curves), a check-valved bypass pipe, a TCV
whose loss coefficient gives 6.72e-5 Q^2, and the substations as an emitter (exponent 0.5) at the
remote node, whose elevation is the suction head less the upstream assist so that the emitter
pressure is the remote differential head. Compared: network flow, station head, remote DP and the
shaft power of every pump that delivers flow (EPANET's pump energy is hydraulic power over its
efficiency curve with the Sarbu-Borza speed correction, i.e. our shaft power; the motor and VFD
chain is checked against the reference figures in test_pump.py). A pump held shut by its check
valve is 0 kW in EPANET but dead-head power in the plant, so it is left out of the power check.
"""

import math
import warnings

import pytest
import wntr
from wntr.epanet.toolkit import ENepanet

from host_tools.sim import REFERENCE, ConstantDemand, Plant, PumpModel
from host_tools.sim.pump import PumpDeviation, draw_iso9906_2b

# EPANET works in US units internally: minor loss h = 0.02517 K Q^2 / d^4 (ft, cfs), i.e.
# 8 / (pi^2 g) with g = 32.2 ft/s2; its energy routine takes water as 62.4 lbf/ft3. Emitter
# pressures are in metres of fresh water (head x specific gravity).
FT_M = 0.3048
G_EPANET = 8.0 / (math.pi**2 * 0.02517) * FT_M
GAMMA_WATER_N_M3 = 62.4 * 4.448222 / FT_M**3
VALVE_D_M = 0.4
SUCTION_HEAD_M = 23.8
EN_ENERGY = 13


def loss_coefficient(coeff_m_per_m3h2: float) -> float:
    """EPANET K (of a 400 mm valve/pipe) that gives h = coeff * Q^2 with Q in m3/h."""
    return coeff_m_per_m3h2 * 3600.0**2 * math.pi**2 * G_EPANET * VALVE_D_M**4 / 8.0


def station_inp(speeds, demand_m3h, assist_m=0.0, models=None):
    p = REFERENCE
    models = models or [PumpModel()] * len(speeds)
    spgr = p.rho_g / GAMMA_WATER_N_M3
    kv = demand_m3h / math.sqrt(p.remote_dp_design_m)
    lines = [
        "[TITLE]",
        "relay pump station, plant cross-check",
        "[JUNCTIONS]",
        "DIS 0 0",
        f"REM {SUCTION_HEAD_M - assist_m:.6f} 0",
        "[RESERVOIRS]",
        f"SRC {SUCTION_HEAD_M:.6f}",
        "[PUMPS]",
    ]
    lines += [f"P{i + 1} SRC DIS HEAD HC{i} SPEED {s:.9f}" for i, s in enumerate(speeds)]
    lines += [
        "[PIPES]",
        f"BYPASS SRC DIS 0.01 400 0.001 {loss_coefficient(p.bypass_coeff):.6f} CV",
        "[VALVES]",
        f"NET DIS REM 400 TCV {loss_coefficient(p.system_coeff):.6f} 0",
        "[STATUS]",
    ]
    lines += [f"P{i + 1} CLOSED" for i, s in enumerate(speeds) if s <= 0.0]
    lines += ["[EMITTERS]", f"REM {kv / math.sqrt(spgr):.9f}", "[CURVES]"]
    # Each pump its own curves: 3 head points of its parabola, its efficiency at full speed.
    for i, m in enumerate(models):
        lines += [f"HC{i} {q} {m.head_m(q, 1.0):.6f}" for q in (0.0, m.q_bep, 2.0 * m.q_bep)]
        lines += [f"EC{i} {q} {100.0 * m.efficiency(q, 1.0):.6f}" for q in range(0, 1000, 10)]
    lines += ["[ENERGY]"] + [f"PUMP P{i + 1} EFFIC EC{i}" for i in range(len(speeds))]
    lines += [
        "[OPTIONS]",
        "UNITS CMH",
        "HEADLOSS D-W",
        f"SPECIFIC GRAVITY {spgr:.6f}",
        "EMITTER EXPONENT 0.5",
        "ACCURACY 0.0000001",
        "TRIALS 500",
        "[TIMES]",
        "DURATION 0",
        "[END]",
    ]
    return "\n".join(lines) + "\n"


def run_epanet(tmp_path, speeds, demand_m3h, assist_m, models=None):
    inp = tmp_path / "station.inp"
    inp.write_text(station_inp(speeds, demand_m3h, assist_m, models))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # WNTR notes the H-W -> D-W switch
        wn = wntr.network.WaterNetworkModel(str(inp))
        results = wntr.sim.EpanetSimulator(wn).run_sim(file_prefix=str(tmp_path / "run"))
    head = results.node["head"]
    flow = results.link["flowrate"]
    out = {
        "flow": float(flow["NET"].iloc[0]) * 3600.0,
        "bypass": float(flow["BYPASS"].iloc[0]) * 3600.0,
        "station_head": float(head["DIS"].iloc[0]) - SUCTION_HEAD_M,
        "remote_dp": float(head["REM"].iloc[0]) - (SUCTION_HEAD_M - assist_m),
        "pump_flow": [float(flow[f"P{i + 1}"].iloc[0]) * 3600.0 for i in range(len(speeds))],
    }
    # Pump energy from the EPANET toolkit itself (the simulator's results do not carry it).
    tk = ENepanet()
    tk.ENopen(str(inp), str(tmp_path / "tk.rpt"), "")
    try:
        tk.ENopenH()
        tk.ENinitH(0)
        tk.ENrunH()
        out["pump_kw"] = [
            tk.ENgetlinkvalue(tk.ENgetlinkindex(f"P{i + 1}"), EN_ENERGY) for i in range(len(speeds))
        ]
        tk.ENcloseH()
    finally:
        tk.ENclose()
    return out


def run_plant(speeds, demand_m3h, assist_m, models=None):
    plant = Plant(demand=ConstantDemand(demand_m3h), pumps=models)
    plant.set_conditions(upstream_assist_m=assist_m)
    # Start from the design state and let the water column find the new steady state dynamically.
    for i in range(2):
        plant.set_pump(i, 0.948, True)
    plant.settle()
    for i, s in enumerate(speeds):
        plant.set_pump(i, s, s > 0.0)
    for _ in range(600):
        plant.step(0.5)
    shaft = [plant.pumps[i].shaft_kw(plant.pump_flow_m3h[i], s) for i, s in enumerate(speeds)]
    return plant, shaft


CASES = [
    ((0.948, 0.948, 0.0), 800.0, 0.0),  # design: 2 duty pumps
    ((0.9143, 0.9143, 0.9143), 800.0, 0.0),  # design flow on 3 pumps
    ((0.70, 0.70, 0.0), 600.0, 0.0),
    ((0.60, 0.0, 0.0), 300.0, 0.0),  # one pump, low flow, low speed
    ((1.0, 0.80, 0.0), 700.0, 0.0),  # unequal speeds: the slow pump's check valve holds
    ((0.95, 0.85, 0.0), 800.0, 0.0),  # unequal speeds, both delivering
    ((0.0, 0.0, 0.0), 500.0, 3.0),  # all stopped: flow through the bypass on the upstream DP
]


# Real pumps: the 2B draw of seed 1, and the same with one pump worn (host_tools/sim/pump.py).
DRAWN = draw_iso9906_2b(1, 3)
WORN = (DRAWN[0], PumpDeviation(0.97, 1.03, 0.96, 0.2), DRAWN[2])
REAL_CASES = [
    (DRAWN, (0.95, 0.95, 0.95), 800.0),
    (DRAWN, (0.90, 0.90, 0.0), 700.0),
    (WORN, (1.0, 0.85, 0.9), 800.0),
    (WORN, (0.8, 0.8, 0.0), 500.0),
]


@pytest.mark.parametrize(("speeds", "demand", "assist"), CASES)
def test_steady_state_matches_epanet(tmp_path, speeds, demand, assist):
    check_against_epanet(tmp_path, speeds, demand, assist, None)


@pytest.mark.parametrize(("deviations", "speeds", "demand"), REAL_CASES)
def test_pumps_with_their_own_curves_match_epanet(tmp_path, deviations, speeds, demand):
    models = [PumpModel(REFERENCE, d) for d in deviations]
    check_against_epanet(tmp_path, speeds, demand, 0.0, models)


def check_against_epanet(tmp_path, speeds, demand, assist, models):
    ep = run_epanet(tmp_path, speeds, demand, assist, models)
    plant, shaft = run_plant(speeds, demand, assist, models)
    assert plant.flow_m3h == pytest.approx(ep["flow"], abs=0.5)
    assert plant.station_head_m == pytest.approx(ep["station_head"], abs=0.1)
    assert plant.remote_dp_m == pytest.approx(ep["remote_dp"], abs=0.1)
    assert plant.bypass_flow_m3h == pytest.approx(ep["bypass"], abs=0.5)
    delivering = 0
    for i in range(len(speeds)):
        assert plant.pump_flow_m3h[i] == pytest.approx(ep["pump_flow"][i], abs=0.5)
        if ep["pump_flow"][i] > 1.0:
            delivering += 1
            assert shaft[i] == pytest.approx(ep["pump_kw"][i], rel=0.01)
    assert delivering == sum(1 for q in plant.pump_flow_m3h if q > 1.0)
