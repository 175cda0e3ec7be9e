"""The agent holding the reference station for a day: energy against the offline optimum, DP band,
suction margin, slew, and how fast the closed loop (agent + plant on CPython) runs.

The optimum is computed offline on the project's own plant: for each minute of the run, the flow
the network demands at the DP setpoint, delivered by the best pump count and speed for it
(host_tools/sim/optimal), with no start-up.
energy_vs_bound_*: the same energy over the true lower bound (optimal.LowerBound: the plant's own
pumps, any count and split, no flow window, at the flow and remote DP the plant actually had).
The three days run in parallel processes; each figure is one day's (max_slew: the worst of them).
closed_loop_realtime_factor: the January day's simulated seconds per wall second of its run;
closed_loop_realtime_factor_cpu: the same per CPU second of its process (time.process_time), which
other work on a busy machine does not lower.
"""

import time
from concurrent.futures import ProcessPoolExecutor

from host_tools.sim import optimal, scenario
from host_tools.sim.agent_controller import AgentController
from host_tools.sim.hardware import SimulatedStation
from host_tools.sim.run import SAMPLE_S
from host_tools.sim.run import run as simulate

DAYS = {"design": "jia_design.toml", "jan": "jia_january.toml", "shoulder": "jia_shoulder.toml"}


def minute_means(samples, step_s: float) -> list[float]:
    per_minute = max(1, round(60.0 / step_s))
    return [
        sum(samples[i : i + per_minute]) / len(samples[i : i + per_minute])
        for i in range(0, len(samples), per_minute)
    ]


def day(name: str) -> dict:
    chosen = scenario.load(scenario.SCENARIOS / DAYS[name])
    station = SimulatedStation(chosen)
    start = time.perf_counter()
    cpu = time.process_time()
    result = simulate(chosen, AgentController(chosen), station=station)
    cpu = time.process_time() - cpu
    wall = time.perf_counter() - start
    flows = minute_means(result.samples["demand_m3h"], 1.0)
    best = optimal.daily_energy_kwh(flows, 60.0, "remote_dp")
    k = result.kpis
    s = result.samples
    bound = optimal.bound_energy_kwh(
        optimal.LowerBound(station.plant.pumps),
        s["flow_m3h"],
        s["remote_dp_kpa"],
        s["total_power_kw"],
        station.plant.params,
        SAMPLE_S,
    )
    return {
        "energy_ratio": k["energy_kwh"] / best,
        "bound_ratio": k["energy_kwh"] / bound.kwh,
        "energy_kwh": k["energy_kwh"],
        "optimal_kwh": best,
        "dp_in_band_pct": k["dp_in_band_pct"],
        "min_suction_margin_kpa": k["min_suction_margin_kpa"],
        "max_slew_pct_s": k["max_slew_pct_s"],
        "max_starts_per_hour": k["max_starts_per_hour"],
        "realtime_factor": 86400.0 / wall,
        "realtime_factor_cpu": 86400.0 / cpu,
    }


def run(report) -> None:
    with ProcessPoolExecutor(max_workers=2) as pool:
        results = dict(zip(DAYS, pool.map(day, DAYS), strict=True))
    for name, figures in results.items():
        report(f"energy_vs_optimal_{name}", figures["energy_ratio"], "ratio")
    for name, figures in results.items():
        report(f"energy_vs_bound_{name}", figures["bound_ratio"], "ratio")
    jan = results["jan"]
    report("dp_in_band_jan", jan["dp_in_band_pct"], "%")
    report("min_suction_margin_jan", jan["min_suction_margin_kpa"], "kPa")
    report("max_slew", max(f["max_slew_pct_s"] for f in results.values()), "%/s")
    report("closed_loop_realtime_factor", jan["realtime_factor"], "x")
    report("closed_loop_realtime_factor_cpu", jan["realtime_factor_cpu"], "x (per CPU second)")
    for name, figures in results.items():
        report(f"energy_{name}", figures["energy_kwh"], "kWh")
        report(f"energy_optimal_{name}", figures["optimal_kwh"], "kWh")
