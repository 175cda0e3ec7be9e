"""One simulated run: a controller masters the bus of the simulated station on the virtual clock.

The loop, per plant step of ``scenario.step_s``: the controller does its bus work up to the end of
the step (``advance(bus, until_s)``: it sends requests and reads responses at their virtual
times), then the hardware steps. The recorder samples once per virtual second for the KPIs, the
plot and the telemetry log; with each sample it records what the field makes possible at that
instant (column "reach": a feasible.py code, judged every 10 s and on a change of the drives'
availability or the source state), which the band and unserved figures "where reachable" use.

A controller is any object with
    advance(bus: SimulatedBus, until_s: float) -> None
    setpoint_kpa() -> float          the remote DP it is holding now (for the in-band KPI)
and optionally ``telemetry_frames()`` -> list of uplink frames it produced (logged as they are).
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from host_tools.sim import feasible
from host_tools.sim import kpis as kpi
from host_tools.sim.bus import SimulatedBus
from host_tools.sim.hardware import SimulatedStation
from host_tools.sim.scenario import Scenario

SAMPLE_S = 1.0
G = 9.80665

COLUMNS = (
    "t_s",
    "flow_m3h",
    "demand_m3h",
    "suction_kpa",
    "discharge_kpa",
    "remote_dp_kpa",
    "setpoint_kpa",
    "suction_margin_kpa",
    "surge_kpa",
    "total_power_kw",
    "outdoor_c",
    "reach",  # feasible.REACHABLE / OVER / UNDER / UNSERVABLE at this sample's setpoint
)


class Controller(Protocol):
    def advance(self, bus: SimulatedBus, until_s: float) -> None: ...

    def setpoint_kpa(self) -> float: ...


@dataclass
class RunResult:
    scenario: Scenario
    samples: dict[str, array] = field(default_factory=dict)
    speeds: list[array] = field(default_factory=list)  # % per pump, per sample
    running: list[array] = field(default_factory=list)  # 1/0 per pump, per sample
    power: list[array] = field(default_factory=list)  # electrical kW per pump, per sample
    limited: list[array] = field(default_factory=list)  # 1 while the drive's current limit holds it
    kpis: dict[str, Any] = field(default_factory=dict)
    telemetry: list[bytes] = field(default_factory=list)
    interrupted: bool = False  # Ctrl-C: the samples cover the part simulated before it
    reach: feasible.Reach = field(default_factory=feasible.Reach)  # judges the "reach" column


def run(
    scenario: Scenario,
    controller: Controller,
    hours: float | None = None,
    progress: Callable[[float], None] | None = None,
    station: SimulatedStation | None = None,
) -> RunResult:
    station = station or SimulatedStation(scenario)
    hours = scenario.hours if hours is None else hours
    dt = scenario.step_s
    steps = round(hours * 3600.0 / dt)
    per_sample = max(1, round(SAMPLE_S / dt))
    result = RunResult(scenario)
    result.samples = {name: array("d") for name in COLUMNS}
    pumps = len(station.drives)
    result.speeds = [array("d") for _ in range(pumps)]
    result.running = [array("b") for _ in range(pumps)]
    result.power = [array("d") for _ in range(pumps)]
    result.limited = [array("b") for _ in range(pumps)]
    bus, plant = station.bus, station.plant
    min_margin = float("inf")
    report_every = max(1, steps // 200)
    sample = _sampler(result, station, controller)
    try:
        for k in range(steps):
            controller.advance(bus, station.t_s + dt)
            station.step(dt)
            if plant.suction_margin_kpa < min_margin:
                min_margin = plant.suction_margin_kpa
            if (k + 1) % per_sample == 0:
                sample()
            if progress is not None and k % report_every == 0:
                progress(k / steps)
    except KeyboardInterrupt:  # keep what was simulated: the caller writes it
        result.interrupted = True
        _trim(result)  # Ctrl-C may land inside sample(): keep whole samples only
    if progress is not None and not result.interrupted:
        progress(1.0)
    frames = getattr(controller, "telemetry_frames", None)
    if frames is not None:
        result.telemetry = list(frames())
    result.kpis = kpis(result, station, min_margin)
    return result


def _trim(result: RunResult) -> None:
    columns = [
        *result.samples.values(),
        *result.speeds,
        *result.running,
        *result.power,
        *result.limited,
    ]
    whole = min(len(c) for c in columns)
    for c in columns:
        del c[whole:]


def _sampler(
    result: RunResult, station: SimulatedStation, controller: Controller
) -> Callable[[], None]:
    """The function that records one sample. What is the same for every sample is looked up here,
    once per run: the columns' appends, the drives', the band's kPa (kpis())."""
    plant = station.plant
    demand = plant.demand
    outdoor = hasattr(demand, "outdoor_c")
    kpa_m = plant.params.rho_kg_m3 * G / 1000.0  # the band and unserved rules' metre (kpis())
    band_kpa = 0.5 * kpa_m
    low_kpa = 2.0 * kpa_m
    judge = result.reach.judge
    drives = station.drives
    (
        t_s,
        flow_m3h,
        demand_m3h,
        suction_kpa,
        discharge_kpa,
        remote_dp_kpa,
        setpoint_kpa,
        suction_margin_kpa,
        surge_kpa,
        total_power_kw,
        outdoor_c,
        reach,
    ) = (result.samples[name].append for name in COLUMNS)
    per_drive = list(
        enumerate(
            zip(
                drives,
                [column.append for column in result.speeds],
                [column.append for column in result.running],
                [column.append for column in result.power],
                [column.append for column in result.limited],
                strict=True,
            )
        )
    )

    def sample() -> None:
        t_s(station.t_s)
        flow_m3h(plant.flow_m3h)
        demand_m3h(plant.demand_m3h)
        suction_kpa(plant.suction_kpa)
        discharge_kpa(plant.discharge_kpa)
        remote_dp_kpa(plant.remote_dp_kpa)
        setpoint = controller.setpoint_kpa()
        setpoint_kpa(setpoint)
        suction_margin_kpa(plant.suction_margin_kpa)
        surge_kpa(plant.surge_kpa)
        total_power_kw(plant.total_power_kw)
        outdoor_c(demand.outdoor_c if outdoor else 0.0)
        reach(judge(plant, drives, setpoint, band_kpa, low_kpa))
        for i, (drive, speed, running, power, limited) in per_drive:
            speed(drive.speed_pct)
            running(1 if drive.running else 0)
            power(plant.pump_power_kw[i])
            limited(1 if drive.current_limited else 0)

    return sample


def kpis(result: RunResult, station: SimulatedStation, min_margin_kpa: float) -> dict[str, Any]:
    """The KPI table's figures (rules in kpis.py): all time, fault windows included, unless named
    "outside faults" (each fault window plus 10 minutes left out, the figures before issue 7) or
    "where reachable" / "servable" (the samples the field makes it impossible left out)."""
    s = result.samples
    t, dp, sp = s["t_s"], s["remote_dp_kpa"], s["setpoint_kpa"]
    kpa_per_m = station.plant.params.rho_kg_m3 * G / 1000.0
    band_kpa = 0.5 * kpa_per_m  # ±0.5 m of water
    reach = s["reach"]
    unreachable = [code != feasible.REACHABLE for code in reach]
    unservable = [code == feasible.UNSERVABLE for code in reach]
    minutes = [SAMPLE_S / 60.0 * sum(1 for c in reach if c == code) for code in range(4)]
    end_of_run = t[-1] if len(t) else 0.0
    faults = fault_windows(result.scenario)
    after = [kpi.Window(w.start_s, w.end_s + 600.0, w.kind) for w in faults]
    margins = [m for i, m in enumerate(s["suction_margin_kpa"]) if not kpi.inside(t[i], after)]
    starts, stops = kpi.station_transitions(result.running)
    trips_on_loss = [d.config.comm_loss_action == "fault" for d in station.drives]
    stop_causes = [
        kpi.stop_cause(t, i, result.running, s["suction_margin_kpa"], faults, trips_on_loss)
        for i in stops
    ]
    rated = rated_input_kw(station)
    power_ratio, power_pump, power_t = kpi.max_mean_power_ratio(t, result.power, rated)
    ran = [w for w in faults if w.start_s <= end_of_run]
    return {
        "hours": end_of_run / 3600.0,
        "energy_kwh": station.plant.total_energy_kwh,
        "dp_in_band_pct": kpi.dp_in_band_pct(t, dp, sp, band_kpa),
        "dp_in_band_outside_faults_pct": kpi.dp_in_band_pct(
            t, dp, sp, band_kpa, after, "sample outside fault windows"
        ),
        "unserved_min": kpi.unserved_min(t, dp, sp, 2.0 * kpa_per_m, SAMPLE_S),
        "dp_in_band_reachable_pct": kpi.dp_in_band_pct(
            t, dp, sp, band_kpa, what="sample where the band is reachable", left_out=unreachable
        ),
        "unserved_servable_min": kpi.unserved_min(
            t, dp, sp, 2.0 * kpa_per_m, SAMPLE_S, left_out=unservable
        ),
        "band_unreachable_min": sum(minutes[1:]),
        "band_unreachable_over_min": minutes[feasible.OVER],
        "band_unreachable_under_min": minutes[feasible.UNDER] + minutes[feasible.UNSERVABLE],
        "unservable_min": minutes[feasible.UNSERVABLE],
        "min_suction_margin_kpa": (
            min_margin_kpa if math.isfinite(min_margin_kpa) else kpi.NotComputed("no plant step")
        ),
        "min_suction_margin_outside_faults_kpa": (
            min(margins) if margins else kpi.NotComputed("no sample outside fault windows")
        ),
        "max_surge_kpa": station.plant.surge_peak_kpa,
        "max_slew_pct_s": max_slew(result, station),
        "max_current_limit_sag_pct_s": max_slew(result, station, current_limited=True),
        "starts": list(station.starts),
        "station_starts": len(starts),
        "station_stops": len(stops),
        "station_stop_times_s": [t[i] for i in stops],
        "station_stop_causes": stop_causes,
        "spurious_station_stops": sum(1 for cause in stop_causes if not cause),
        "max_starts_per_hour": max_starts_per_hour(result),
        "fault_recoveries": list(
            zip(ran, kpi.fault_recoveries(t, dp, sp, band_kpa, ran), strict=True)
        ),
        "max_power_vs_rated": power_ratio,
        "max_power_pump": power_pump,
        "max_power_t_s": power_t,
        "rated_input_kw": rated,
        "bus_requests": station.bus.requests,
        "bus_corrupted_frames": station.bus.corrupted_frames,
    }


def fault_windows(scenario: Scenario) -> list[kpi.Window]:
    return [kpi.Window(f.at_s, f.end_s, f.kind, f.pump) for f in scenario.faults]


def rated_input_kw(station: SimulatedStation) -> list[float]:
    """Each pump's rated electrical input: its drive's rated shaft power over the motor and drive
    efficiency of that pump at full load (the plant's own pump models)."""
    plant = station.plant
    models = getattr(plant, "pumps", None) or [plant.pump] * len(station.drives)
    return [
        drive.config.rated_kw / model.drive_efficiency(model.rated_kw)
        for drive, model in zip(station.drives, models, strict=True)
    ]


def max_slew(result: RunResult, station: SimulatedStation, current_limited: bool = False) -> float:
    """Largest speed change per second of a running drive inside its operating range.

    Below the drive's minimum speed a start follows the drive's own ramp to that minimum (the pump
    delivers nothing there: its shut-off head is below the header's) and a coasting trip is no
    command: both are left out. So is a change across a sample in which the drive's current limit
    held the speed down (a survivor the column overloads after a trip sags within a second: the
    drive protecting its motor, not a ramp); ``current_limited=True`` gives the largest of those
    sags instead.
    """
    worst = 0.0
    for drive, speeds, running, limited in zip(
        station.drives, result.speeds, result.running, result.limited, strict=True
    ):
        floor = drive.config.min_speed_pct - 0.01
        for i in range(1, len(speeds)):
            if not (running[i] and running[i - 1] and min(speeds[i], speeds[i - 1]) >= floor):
                continue
            if bool(limited[i] or limited[i - 1]) == current_limited:
                worst = max(worst, abs(speeds[i] - speeds[i - 1]) / SAMPLE_S)
    return worst


def max_starts_per_hour(result: RunResult) -> int:
    """Most starts of one pump within any sliding hour."""
    worst = 0
    t = result.samples["t_s"]
    for running in result.running:
        # whole ms: float sums of the step put two starts 3600 s apart at 3599.999999999 s
        starts = [
            round(t[i], 3) for i in range(1, len(running)) if running[i] and not running[i - 1]
        ]
        j = 0
        for i, start in enumerate(starts):
            while starts[j] <= start - 3600.0:
                j += 1
            worst = max(worst, i - j + 1)
    return worst
