"""The fault campaign: the agent (CPython, virtual clock) on K seeded days, cold to warm, each with
random faults of every kind, demand shapes and real (deviated) pumps; plus fault-free heating-season
days scored against the true energy lower bound (host_tools/sim/optimal.LowerBound).

    python -m host_tools.bench.campaign [--quick] [--days K] [--season-days D] [--hours H]

Days (every draw from random.Random of the day's name, so a campaign is reproducible):
- Fault day k of K: mean temperature spread evenly over -12..+15 degC; one fault of each kind at a
  random time in its own slot of the day (the first after 10 % of the day, so the cold start has
  settled): pump_trip, drive_comm_loss, a sensor fault whose mode cycles through every mode the
  simulator knows (on a random channel) and a stuck transmitter (remote DP or flow, in turn),
  suction_dip, source_pumps_stop; and crc_noise, every third day at 10..15 % for a quarter of the
  day (overlapping the others), otherwise 2..8 % for 30..60 min. Demand: night setback, morning
  boost, a floor, a step and a ramp, all drawn, raising the demand no further than two pumps
  can serve (headroom(); a pump trip on a cold day is then survivable by design). Pumps: the ISO 9906 2B draw plus wear 0..0.1 on
  one pump. Transmitters: drawn noise and lag.
- Season day j of D: mean temperature spread over -12..+15 degC, night setback and morning boost
  (so the pump count changes during the day), no fault. "datasheet": every pump the datasheet's;
  "worn": each pump's head, flow and efficiency factors drawn within +-5 %.
- A scenario is built as a TOML document and loaded through host_tools/sim/scenario.py, so every
  key is validated. A key or fault kind the simulator does not know yet is dropped with a note on
  stderr (the campaign runs with what the simulator supports).

Figures (definitions of the per-sample rules in host_tools/sim/kpis.py; what the field makes
possible in host_tools/sim/feasible.py):
- fault_campaign_dp_in_band: % of the fault-day samples with |remote DP - setpoint| <= 0.5 m,
  fault windows included; left out are the source_pumps_stop windows [start, end] (a stopped
  source makes service impossible) and every sample at which the field itself cannot hold the DP
  in band at steady state (no set of the pumps its drives can run, at any speed within the
  drives' own limits, with the true suction at or above its true limit: feasible.py);
  fault_campaign_dp_in_band_source_stops: the share inside the source-stop windows;
  fault_campaign_dp_in_band_all: every fault-day sample, nothing left out.
- fault_campaign_band_unreachable_pct: the share of the fault-day samples outside source stops
  left out of the band share because the field cannot reach the band; _over_pct: every pump set
  that reaches the band's low edge over-delivers (one pump at its drive's minimum speed at a low
  demand); _under_pct: the best the field allows is below the band (a deep suction dip).
- fault_campaign_unserved_min: minutes with the remote DP > 2 m below the setpoint, per fault day
  (mean; the worst day on its own line), outside source-stop windows and outside the samples at
  which even the best the field allows is more than 2 m low (fault_campaign_unservable_min, per
  day); fault_campaign_unserved_min_all: the same with nothing left out.
- spurious_station_stops: station stops (from >= 1 pump running to none) on every day of the
  campaign that no source-pump stop, true suction below its limit or drive trip of every running
  pump demanded (kpis.py, "Spurious station stop", states the rule exactly).
- max_pump_power_vs_rated: worst sliding 10 s mean electrical power of a pump over its rated
  electrical input, over every day; where it happened (the day, the pump, the time the window
  ended, that pump's speed, the station's flow and pump count, suction and remote DP) is printed
  on stderr with the day lines.
- stuck_sensor_detect_s: worst time from a stuck fault's start to the agent's first event flagging
  that channel (SENSOR_SUSPECT-like code, or SENSOR_FAULT) while the fault lasts, read from the
  agent's event ring (drained after every bus step, as an uplink would). "n/a" with the reason when
  the agent has no such event code, or when a stuck fault was never flagged.
- energy_vs_bound_season(_worn): agent energy over the lower bound's energy, summed over the
  season days; the bound at each 1 s sample's carried flow and remote DP on the plant's own pumps.
  energy_vs_optimal_season: the same days against the old optimum (demanded flow, datasheet pumps,
  flow window), for comparison.
- fault_recovery_<kind>: worst recovery of that fault kind over the fault days (kpis.py).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import math
import pickle
import random
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from host_tools.sim import feasible, kpis, optimal, scenario
from host_tools.sim.agent_controller import AgentController, load_agent_config
from host_tools.sim.hardware import SimulatedStation
from host_tools.sim.run import SAMPLE_S, G, fault_windows
from host_tools.sim.run import run as simulate
from protocol.uplink import EventCode

COLD_C, WARM_C = -12.0, 15.0
FAULT_DAYS = 12
SEASON_DAYS = 6
HOURS = 24.0
WORKERS = 2
SENSORS = ("suction_kpa", "discharge_kpa", "remote_dp_kpa", "flow_m3h")
NOMINAL = {  # a typical reading per channel, to size drift and offset faults
    "suction_kpa": 200.0,
    "discharge_kpa": 650.0,
    "remote_dp_kpa": 111.0,
    "supply_temp_c": 120.0,
    "flow_m3h": 600.0,
}
CHANNEL = {  # SENSOR_FAULT's value per channel (protocol/uplink.py)
    "suction_kpa": 1,
    "discharge_kpa": 2,
    "remote_dp_kpa": 3,
    "supply_temp_c": 4,
    "flow_m3h": 5,
}
DATES = ((-6.0, "2026-01-15"), (0.0, "2026-02-10"), (6.0, "2026-03-05"), (99.0, "2026-03-25"))


# --- scenario documents ------------------------------------------------------------------------


def _clock(t_s: float) -> str:
    minutes = int(t_s // 60)
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _temp(index: int, count: int) -> float:
    return COLD_C if count == 1 else COLD_C + (WARM_C - COLD_C) * index / (count - 1)


def _base(name: str, seed: int, hours: float, temp_c: float, rng: random.Random) -> dict:
    return {
        "name": name,
        "seed": seed,
        "hours": hours,
        "day": {
            "date": next(date for below, date in DATES if temp_c <= below),  # a day that fits
            "mean_temp_c": round(temp_c, 2),
            "flow_noise": 0.01,
        },
        "plant": {"step_s": 0.2, "supply_temp_c": 120.0},
        "bus": {"baud": 19200, "turnaround_ms": 3},
        "drives": [
            {"unit": 1, "profile": "abb"},
            {"unit": 2, "profile": "danfoss"},
            {"unit": 3, "profile": "g120"},
        ],
        "io": {"unit": 10},
    }


def headroom(temp_c: float) -> float:
    """How far the demand may be raised on a day of this mean temperature so that two pumps still
    serve its peak (the station's N-1 design: 1.05 x 800 m3/h): 1.05 over the weather model's peak
    ratio sqrt((18 - T) / 28) x 1.08 (the daily habit's 1.065 and noise), never below 1."""
    peak = min(1.05, math.sqrt(max(0.09, (18.0 - temp_c) / 28.0)) * 1.08)
    return max(1.0, 1.05 / peak)


def _up(rng: random.Random, low: float, high: float, cap: float) -> float:
    """A raising factor drawn in low..high, scaled into 1..cap."""
    return round(1.0 + (rng.uniform(low, high) - 1.0) * min(1.0, (cap - 1.0) / (high - 1.0)), 3)


def _demand(rng: random.Random, hours: float, temp_c: float) -> dict:
    """Demand shapes; every raising factor fits headroom(temp_c) (together: the cube root each)."""
    cap = headroom(temp_c) ** (1.0 / 3.0)
    demand: dict[str, Any] = {
        "floor_m3h": round(rng.uniform(120.0, 240.0)),
        "night_setback": {
            "start": rng.choice(("21:00", "22:00", "23:00")),
            "end": rng.choice(("04:00", "05:00")),
            "factor": round(rng.uniform(0.6, 0.9), 2),
            "ramp_min": rng.choice((2, 10, 30)),
        },
        "morning_boost": {
            "start": rng.choice(("05:00", "05:30", "06:00")),
            "end": rng.choice(("07:30", "08:00", "09:00")),
            "factor": _up(rng, 1.05, 1.3, cap),
            "ramp_min": rng.choice((2, 10, 20)),
        },
    }
    span = hours * 3600.0
    demand["steps"] = [
        {"at": _clock(rng.uniform(0.3, 0.6) * span), "factor": min(_up(rng, 0.85, 1.1, cap), 1.1)}
    ]
    demand["ramps"] = [
        {
            "at": _clock(rng.uniform(0.6, 0.8) * span),
            "duration_min": round(max(1.0, 0.05 * hours * 60.0)),
            "factor": _up(rng, 1.0, 1.15, cap),
        }
    ]
    return demand


def _sensor_fault(sensor: str, mode: str, rng: random.Random) -> dict:
    fault = {"kind": "sensor_fault", "sensor": sensor, "mode": mode}
    nominal = NOMINAL[sensor]
    if mode == "drift":
        fault["rate_per_h"] = round(rng.choice((-1, 1)) * rng.uniform(0.1, 0.2) * nominal, 1)
    elif mode == "offset":
        fault["offset"] = round(rng.choice((-1, 1)) * rng.uniform(0.05, 0.1) * nominal, 1)
    elif mode == "intermittent":
        fault["period_s"] = rng.choice((10.0, 30.0, 120.0))
        fault["duty"] = round(rng.uniform(0.1, 0.5), 2)
    return fault


def fault_day(k: int, count: int, hours: float = HOURS) -> dict:
    """The TOML document of fault day k (module docstring)."""
    rng = random.Random(f"campaign/fault/{k}")
    doc = _base(f"fault campaign day {k + 1}/{count}", 1000 + k, hours, _temp(k, count), rng)
    doc["plant"]["pump_spread"] = "iso9906_2b"
    worn = rng.randrange(3)
    doc["pumps"] = [
        {"wear": round(rng.uniform(0.0, 0.1), 3)} if i == worn else {} for i in range(3)
    ]
    doc["demand"] = _demand(rng, hours, _temp(k, count))
    doc["sensors"] = {
        name: {
            "noise_pct": round(rng.uniform(0.05, 0.3), 3),
            "lag_s": round(rng.uniform(0.5, 2), 1),
        }
        for name in SENSORS
    }
    modes = [m for m in scenario.SENSOR_MODES if m != "stuck"] or ["wire_break"]
    span = hours * 3600.0
    pump = rng.randrange(1, 4)
    kinds = [
        {"kind": "pump_trip", "pump": pump, "fault": rng.choice(scenario.DRIVE_FAULTS)},
        {"kind": "drive_comm_loss", "pump": rng.randrange(1, 4)},
        _sensor_fault(rng.choice(SENSORS), modes[k % len(modes)], rng),
        _sensor_fault(("remote_dp_kpa", "flow_m3h")[k % 2], "stuck", rng),
        {"kind": "suction_dip", "kpa": round(rng.uniform(30.0, 120.0))},
        {"kind": "source_pumps_stop"},
    ]
    rng.shuffle(kinds)
    first, last = 0.1 * span, 0.92 * span
    slot = (last - first) / len(kinds)
    faults = []
    for i, fault in enumerate(kinds):
        duration = min(rng.uniform(5.0, 40.0) * 60.0, 0.6 * slot)
        fault["at"] = _clock(first + i * slot + rng.uniform(0.0, slot - duration))
        fault["duration_min"] = round(max(duration / 60.0, 1.0), 1)
        faults.append(fault)
    if k % 3 == 0:
        noise = {"probability": round(rng.uniform(0.10, 0.15), 3), "length": 0.25 * span}
    else:
        noise = {
            "probability": round(rng.uniform(0.02, 0.08), 3),
            "length": rng.uniform(30, 60) * 60,
        }
    length = min(noise["length"], 0.5 * span)
    faults.append(
        {
            "kind": "crc_noise",
            "probability": noise["probability"],
            "at": _clock(rng.uniform(first, span - length)),
            "duration_min": round(max(length / 60.0, 1.0), 1),
        }
    )
    doc["faults"] = faults
    return doc


def season_day(j: int, count: int, worn: bool, hours: float = HOURS) -> dict:
    """The TOML document of season day j (datasheet or worn pumps, no fault)."""
    rng = random.Random(f"campaign/season/{j}")
    label = "worn pumps" if worn else "datasheet pumps"
    doc = _base(f"season day {j + 1}/{count}, {label}", 2000 + j, hours, _temp(j, count), rng)
    doc["plant"]["pump_spread"] = "none"
    demand = _demand(rng, hours, _temp(j, count))
    doc["demand"] = {key: demand[key] for key in ("night_setback", "morning_boost")}
    if worn:
        wear = random.Random(f"campaign/worn/{j}")
        doc["pumps"] = [
            {
                "head_factor": round(wear.uniform(0.95, 1.05), 3),
                "flow_factor": round(wear.uniform(0.95, 1.05), 3),
                "efficiency_factor": round(wear.uniform(0.95, 1.05), 3),
            }
            for _ in range(3)
        ]
    return doc


def to_toml(doc: dict) -> str:
    """The document as a scenario file (so a campaign day can be rerun with pumpsim --scenario)."""
    lines: list[str] = []
    _emit(doc, "", lines)
    return "\n".join(lines) + "\n"


def _emit(table: dict, prefix: str, lines: list[str]) -> None:
    nested = {}
    for key, value in table.items():
        if isinstance(value, dict) or (
            isinstance(value, list) and value and all(isinstance(v, dict) for v in value)
        ):
            nested[key] = value
        else:
            lines.append(f"{key} = {_toml_value(value)}")
    for key, value in nested.items():
        name = f"{prefix}{key}"
        for item in value if isinstance(value, list) else [value]:
            lines.append("")
            lines.append(f"[[{name}]]" if isinstance(value, list) else f"[{name}]")
            _emit(item, f"{name}.", lines)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return repr(value)


def load(doc: dict) -> tuple[scenario.Scenario, list[str]]:
    """Parse through scenario.py; drop what it does not know yet (a note each) and parse again."""
    notes: list[str] = []
    doc = _legacy_sensor_faults(doc, notes)
    for _ in range(100):
        try:
            return scenario.parse(doc, f"<{doc['name']}>"), notes
        except scenario.ScenarioError as exc:
            notes.append(f"{exc.field}: {exc.reason} (dropped)")
            if not _drop(doc, exc.field):
                raise
    raise RuntimeError(f"{doc['name']}: the scenario would not parse")


def _legacy_sensor_faults(doc: dict, notes: list[str]) -> dict:
    """Before kind="sensor_fault": its modes that sensor_wire_break knows, under that kind."""
    if "sensor_fault" in scenario.FAULT_FIELDS:
        return doc
    kept = []
    for fault in doc.get("faults", []):
        if fault["kind"] == "sensor_fault":
            if fault["mode"] not in scenario.SENSOR_MODES:
                notes.append(f"sensor fault mode {fault['mode']!r} not simulated yet (skipped)")
                continue
            fault = {
                k: v for k, v in fault.items() if k in ("at", "duration_min", "sensor", "mode")
            }
            fault["kind"] = "sensor_wire_break"
        kept.append(fault)
    return {**doc, "faults": kept}


def _drop(doc: dict, path: str) -> bool:
    """Remove what a ScenarioError's field path names: the list item it lies in (a whole fault,
    a demand step), or else the key."""
    parts = path.replace("]", "").replace("[", ".").split(".")
    indexed = [i for i, part in enumerate(parts) if part.isdigit()]
    if indexed:
        parts = parts[: indexed[-1] + 1]
    node: Any = doc
    for part in parts[:-1]:
        node = node[int(part)] if part.isdigit() else node.get(part)
        if node is None:
            return False
    last = parts[-1]
    if isinstance(node, list) and last.isdigit() and int(last) < len(node):
        del node[int(last)]
        return True
    if isinstance(node, dict) and last in node:
        del node[last]
        return True
    return False


# --- one day -----------------------------------------------------------------------------------


class EventDrain(AgentController):
    """The agent in control; its event ring is drained after each bus step, as an uplink would."""

    def __init__(self, chosen: scenario.Scenario, wanted: set[int], config: dict) -> None:
        super().__init__(chosen, config)
        self.wanted = wanted
        self.events: list[tuple[int, int, int, int]] = []  # (code, subject, value, at_ms)

    def advance(self, bus, until_s: float) -> None:
        super().advance(bus, until_s)
        ring = self.agent.events
        while True:
            event = ring.pop()
            if event is None:
                break
            if event[0] in self.wanted:
                self.events.append((event[0], event[2], event[3], event[4]))


def detection_codes() -> tuple[set[int], bool]:
    """Event codes that flag a transmitter, and whether the agent has a SUSPECT-like one."""
    suspect = {int(c) for c in EventCode if "SUSPECT" in c.name}
    return suspect | {int(EventCode.SENSOR_FAULT)}, bool(suspect)


def simulate_day(job: tuple[str, dict, dict]) -> dict:
    """Run one day; the figures it contributes (plain data, for the parent process)."""
    kind, doc, config = job
    try:
        return _simulate_day(kind, doc, copy.deepcopy(config))
    except Exception as exc:  # noqa: BLE001 - one broken day must not hide the others' figures
        return {"kind": kind, "name": doc["name"], "error": f"{type(exc).__name__}: {exc}"}


def _simulate_day(kind: str, doc: dict, config: dict) -> dict:
    chosen, notes = load(doc)
    wanted, _ = detection_codes()
    station = SimulatedStation(chosen)
    controller = EventDrain(chosen, wanted, config)
    started = time.perf_counter()
    result = simulate(chosen, controller, station=station)
    wall = time.perf_counter() - started
    k = result.kpis
    s = result.samples
    t, dp, sp = s["t_s"], s["remote_dp_kpa"], s["setpoint_kpa"]
    kpa_m = station.plant.params.rho_kg_m3 * G / 1000.0
    faults = fault_windows(chosen)
    source = [w for w in faults if w.kind == "source_pumps_stop"]
    stopped = [kpis.inside(x, source) for x in t]
    in_source = sum(stopped)
    reach = s["reach"]
    unreachable = [c != feasible.REACHABLE for c in reach]
    unservable = [c == feasible.UNSERVABLE for c in reach]
    outside = [c for c, inside in zip(reach, stopped, strict=True) if not inside]
    over = sum(1 for c in outside if c == feasible.OVER)
    under = sum(1 for c in outside if c in (feasible.UNDER, feasible.UNSERVABLE))
    band = kpis.dp_in_band_pct(
        t, dp, sp, 0.5 * kpa_m, source, "reachable sample outside source stops", unreachable
    )
    band_source = kpis.dp_in_band_pct(
        t, dp, sp, 0.5 * kpa_m, _complement(source), "sample in a source stop"
    )
    figures = {
        "kind": kind,
        "name": chosen.name,
        "notes": notes,
        "wall_s": wall,
        "hours": k["hours"],
        "samples": len(t),
        "samples_outside_source": len(t) - in_source,
        "samples_in_source": in_source,
        "samples_counted": len(t) - in_source - over - under,  # the band share's samples
        "samples_unreachable_over": over,
        "samples_unreachable_under": under,
        "dp_in_band_pct": band,
        "dp_in_band_all_pct": kpis.dp_in_band_pct(t, dp, sp, 0.5 * kpa_m),
        "dp_in_band_in_source_pct": band_source,
        "unserved_min": kpis.unserved_min(
            t, dp, sp, 2.0 * kpa_m, SAMPLE_S, source, left_out=unservable
        ),
        "unserved_all_min": kpis.unserved_min(t, dp, sp, 2.0 * kpa_m, SAMPLE_S),
        "unservable_min": SAMPLE_S / 60.0 * sum(1 for c in outside if c == feasible.UNSERVABLE),
        "pump_starts": list(k["starts"]),
        "station_stops": k["station_stops"],
        "stop_times_s": k["station_stop_times_s"],
        "stop_causes": k["station_stop_causes"],
        "spurious_station_stops": k["spurious_station_stops"],
        "max_power_vs_rated": k["max_power_vs_rated"],
        "max_power_at": _power_context(result, k["max_power_pump"], k["max_power_t_s"]),
        "recoveries": [
            (_label(f), r) for f, (_, r) in zip(chosen.faults, k["fault_recoveries"], strict=False)
        ],
        "stuck": _stuck_detections(chosen, controller.events, faults),
        "energy_kwh": k["energy_kwh"],
    }
    if kind != "fault":
        figures.update(_energy(station, result))
    return figures


def _power_context(result, pump: int, t_s: float) -> dict:
    """Where the worst 10 s power mean ended: pump (1-based), time, that pump's speed, the
    station's flow, the pumps running, suction and remote DP (to tell what caused it)."""
    s = result.samples
    if not pump or not s["t_s"]:
        return {}
    i = min(range(len(s["t_s"])), key=lambda j: abs(s["t_s"][j] - t_s))
    return {
        "pump": pump,
        "t_s": t_s,
        "speed_pct": result.speeds[pump - 1][i],
        "flow_m3h": s["flow_m3h"][i],
        "running": sum(r[i] for r in result.running),
        "suction_kpa": s["suction_kpa"][i],
        "remote_dp_kpa": s["remote_dp_kpa"][i],
        "setpoint_kpa": s["setpoint_kpa"][i],
    }


def _label(fault: scenario.FaultSpec) -> str:
    return f"{fault.kind}_{fault.mode}" if "sensor" in fault.kind else fault.kind


def _complement(windows: list[kpis.Window]) -> list[kpis.Window]:
    """Windows covering every sample outside `windows` (to count samples inside them)."""
    edges = [-math.inf]
    for w in sorted(windows, key=lambda w: w.start_s):
        edges += [w.start_s - 1e-6, w.end_s + 1e-6]
    edges.append(math.inf)
    return [kpis.Window(edges[i], edges[i + 1]) for i in range(0, len(edges), 2)]


def _stuck_detections(
    chosen: scenario.Scenario, events, faults: list[kpis.Window]
) -> list[tuple[str, float | None]]:
    """(sensor, seconds from a stuck fault's start to the first event flagging its channel).

    A SENSOR_FAULT raised while bus noise is on is no credit (noise makes channels BAD)."""
    noise = [w for w in faults if w.kind == "crc_noise"]
    found = []
    for f in chosen.faults:
        if getattr(f, "mode", "") != "stuck" or "sensor" not in f.kind:
            continue
        channel = CHANNEL[f.sensor]
        times = [
            at_ms / 1000.0
            for code, _subject, value, at_ms in events
            if value == channel
            and f.at_s - 1.0 <= at_ms / 1000.0 <= f.end_s
            and not (code == EventCode.SENSOR_FAULT and kpis.inside(at_ms / 1000.0, noise))
        ]
        found.append((f.sensor, min(times) - f.at_s if times else None))
    return found


def _energy(station: SimulatedStation, result) -> dict:
    plant = station.plant
    pumps = getattr(plant, "pumps", None) or [plant.pump] * len(station.drives)
    speeds = [d.config.max_speed_pct / 100.0 for d in station.drives]
    bound = optimal.LowerBound(pumps, speeds)
    s = result.samples
    energy = optimal.bound_energy_kwh(
        bound, s["flow_m3h"], s["remote_dp_kpa"], s["total_power_kw"], plant.params, SAMPLE_S
    )
    demand = s["demand_m3h"]
    minutes = [sum(demand[i : i + 60]) / len(demand[i : i + 60]) for i in range(0, len(demand), 60)]
    try:
        old: float | None = optimal.daily_energy_kwh(minutes, 60.0)
    except optimal.SimInputError:  # a demand the old optimum's flow window cannot serve
        old = None
    return {
        "bound_kwh": energy.kwh,
        "bound_infeasible": energy.infeasible,
        "old_optimum_kwh": old,
    }


# --- the campaign ------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Plan:
    fault_days: int = FAULT_DAYS
    season_days: int = SEASON_DAYS
    hours: float = HOURS
    workers: int = WORKERS


QUICK = Plan(fault_days=2, season_days=2, hours=2.0)


def jobs(plan: Plan) -> list[tuple[str, dict]]:
    """Every day, the three kinds interleaved (a campaign cut short has some of each)."""
    fault = [("fault", fault_day(k, plan.fault_days, plan.hours)) for k in range(plan.fault_days)]
    season = [
        ("season", season_day(j, plan.season_days, False, plan.hours))
        for j in range(plan.season_days)
    ]
    worn = [
        ("worn", season_day(j, plan.season_days, True, plan.hours)) for j in range(plan.season_days)
    ]
    out: list[tuple[str, dict]] = []
    while fault or season or worn:
        for group in (fault, fault, season, worn):
            if group:
                out.append(group.pop(0))
    return out


def campaign(plan: Plan, log: str | None = None) -> list[dict]:
    """Every day of the plan; the agent's config is read once, here, so that every day runs the
    same config (and a day that raises is reported as failed instead of ending the campaign).
    With `log`, each day's figures are appended to that file (pickles) as soon as it is done, so
    a campaign cut short can still be summarised (--summarize)."""
    first, _ = load(jobs(plan)[0][1])
    config = load_agent_config(first)
    todo = [(kind, doc, config) for kind, doc in jobs(plan)]
    days = []
    with ProcessPoolExecutor(max_workers=max(1, plan.workers)) as pool:
        for future in as_completed([pool.submit(simulate_day, job) for job in todo]):
            day = future.result()
            days.append(day)
            if log is not None:
                with open(log, "ab") as out:
                    pickle.dump(day, out)
    order = {doc["name"]: i for i, (_, doc, _) in enumerate(todo)}
    return sorted(days, key=lambda d: order[d["name"]])


def read_log(log: str) -> list[dict]:
    days = []
    with open(log, "rb") as stream:
        while True:
            try:
                days.append(pickle.load(stream))
            except EOFError:
                return days


def figures(days: list[dict]) -> list[tuple[str, Any, str]]:
    """The campaign's (name, value, unit) lines; a value may be a NotComputed."""
    fault = [d for d in days if d["kind"] == "fault"]
    lines: list[tuple[str, Any, str]] = []
    lines.append(
        ("fault_campaign_dp_in_band", _share(fault, "dp_in_band_pct", "samples_counted"), "%")
    )
    lines.append(
        ("fault_campaign_dp_in_band_all", _share(fault, "dp_in_band_all_pct", "samples"), "%")
    )
    outside = sum(d["samples_outside_source"] for d in fault)
    for name, keys in (
        ("fault_campaign_band_unreachable_pct", ("over", "under")),
        ("fault_campaign_band_unreachable_over_pct", ("over",)),
        ("fault_campaign_band_unreachable_under_pct", ("under",)),
    ):
        left = sum(d[f"samples_unreachable_{key}"] for d in fault for key in keys)
        share = 100.0 * left / outside if outside else kpis.NotComputed("no fault day sample")
        lines.append((name, share, "%"))
    stopped = sum(d["samples_in_source"] for d in fault)
    if stopped:
        inside = sum(
            d["dp_in_band_in_source_pct"] * d["samples_in_source"] / 100.0
            for d in fault
            if d["samples_in_source"]
        )
        value: Any = 100.0 * inside / stopped
    else:
        value = kpis.NotComputed("no source-pump stop simulated")
    lines.append(("fault_campaign_dp_in_band_source_stops", value, "%"))
    if fault:
        unserved = [d["unserved_min"] for d in fault]
        day_h = sum(d["hours"] for d in fault) / len(fault)
        lines.append(("fault_campaign_unserved_min", sum(unserved) / len(fault), "min/day"))
        lines.append(("fault_campaign_unserved_worst_day", max(unserved), "min"))
        every = sum(d["unserved_all_min"] for d in fault) / len(fault)
        lines.append(("fault_campaign_unserved_min_all", every, "min/day"))
        unservable = sum(d["unservable_min"] for d in fault) / len(fault)
        lines.append(("fault_campaign_unservable_min", unservable, "min/day"))
        lines.append(("fault_campaign_day_hours", day_h, "h"))
    lines.append(("spurious_station_stops", sum(d["spurious_station_stops"] for d in days), ""))
    lines.append(("station_stops_all", sum(d["station_stops"] for d in days), ""))
    power = [d["max_power_vs_rated"] for d in days]
    numbers = [p for p in power if not isinstance(p, kpis.NotComputed)]
    lines.append(
        (
            "max_pump_power_vs_rated",
            max(numbers) if numbers else kpis.NotComputed("no pump ran"),
            "ratio",
        )
    )
    lines.append(("stuck_sensor_detect_s", _stuck_figure(fault), "s"))
    for kind in sorted({r[0] for d in fault for r in d["recoveries"]}):
        values = [r for d in fault for k, r in d["recoveries"] if k == kind]
        missing = sum(1 for r in values if isinstance(r, kpis.NotComputed))
        if missing:
            worst: Any = kpis.NotComputed(f"{missing} of {len(values)} not back in band by day end")
        else:
            worst = max(values)
        lines.append((f"fault_recovery_{kind}", worst, "s"))
    for kind, name in (
        ("season", "energy_vs_bound_season"),
        ("worn", "energy_vs_bound_season_worn"),
    ):
        group = [d for d in days if d["kind"] == kind]
        if not group:
            continue
        agent = sum(d["energy_kwh"] for d in group)
        bound = sum(d["bound_kwh"] for d in group)
        lines.append(
            (name, agent / bound if bound > 0 else kpis.NotComputed("zero bound"), "ratio")
        )
        if kind == "season":
            olds = [d["old_optimum_kwh"] for d in group]
            if None in olds:
                why = kpis.NotComputed("a demand outside the old optimum's flow window")
                lines.append(("energy_vs_optimal_season", why, "ratio"))
            else:
                lines.append(("energy_vs_optimal_season", agent / sum(olds), "ratio"))
                lines.append(("energy_bound_over_old_optimum_season", bound / sum(olds), "ratio"))
        infeasible = sum(d["bound_infeasible"] for d in group)
        lines.append((f"{name}_uncovered_samples", infeasible, ""))
    lines.append(("campaign_days", len(days), ""))
    lines.append(("campaign_realtime_factor", _realtime(days), "x"))
    return lines


def _share(days: list[dict], pct: str, samples: str) -> Any:
    """The days' percentages `pct`, weighted by their sample counts `samples`."""
    known = [d for d in days if not isinstance(d[pct], kpis.NotComputed)]
    counted = sum(d[samples] for d in known)
    if not counted:
        return kpis.NotComputed("no fault day sample")
    return sum(d[pct] * d[samples] for d in known) / counted


def _stuck_figure(fault: list[dict]) -> Any:
    _, has_suspect = detection_codes()
    stuck = [s for d in fault for s in d["stuck"]]
    if not stuck:
        return kpis.NotComputed("no stuck-transmitter fault simulated")
    if not has_suspect and all(delay is None for _, delay in stuck):
        return kpis.NotComputed("agent has no detection yet")
    missed = [name for name, delay in stuck if delay is None]
    if missed:
        return kpis.NotComputed(
            f"{len(missed)} of {len(stuck)} stuck faults never flagged ({', '.join(missed)})"
        )
    return max(delay for _, delay in stuck)


def _realtime(days: list[dict]) -> float:
    wall = sum(d["wall_s"] for d in days)
    return sum(d["hours"] for d in days) * 3600.0 / wall if wall > 0 else 0.0


def print_notes(days: list[dict]) -> None:
    seen: set[str] = set()
    for d in days:
        for note in d["notes"]:
            if note not in seen:
                seen.add(note)
                print(f"campaign: {note}", file=sys.stderr)


def print_days(days: list[dict]) -> None:
    """One line per day on stderr: what each day contributed (to find the failing ones)."""
    for d in days:
        recoveries = " ".join(f"{k}={kpis.fmt(r, 's', 0)}" for k, r in d["recoveries"])
        stops = [c or "SPURIOUS" for c in d["stop_causes"]]
        energy = (
            f" energy/bound {d['energy_kwh'] / d['bound_kwh']:.3f}" if d.get("bound_kwh") else ""
        )
        print(
            f"campaign: {d['name']}: band {kpis.fmt(d['dp_in_band_pct'], '%')} "
            f"(all {kpis.fmt(d['dp_in_band_all_pct'], '%')}; unreachable "
            f"{d['samples_unreachable_over'] * SAMPLE_S / 60:.1f} min over, "
            f"{d['samples_unreachable_under'] * SAMPLE_S / 60:.1f} min under), "
            f"unserved {d['unserved_min']:.1f} min (all {d['unserved_all_min']:.1f}), "
            f"pump starts {d['pump_starts']}, stops {stops}, "
            f"power/rated {kpis.fmt(d['max_power_vs_rated'], '', 3)}{_power_where(d)}, "
            f"stuck {d['stuck']}, "
            f"{recoveries}{energy}",
            file=sys.stderr,
        )


def _worst_power_day(days: list[dict]) -> dict | None:
    numbers = [d for d in days if not isinstance(d["max_power_vs_rated"], kpis.NotComputed)]
    return max(numbers, key=lambda d: d["max_power_vs_rated"]) if numbers else None


def _power_where(day: dict) -> str:
    at = day.get("max_power_at")  # a log written before the context was recorded has none
    if not at:
        return ""
    return (
        f" (pump {at['pump']} at {_clock(at['t_s'])}:{int(at['t_s']) % 60:02d}, "
        f"{at['speed_pct']:.1f} %, station {at['flow_m3h']:.0f} m3/h on {at['running']} pumps, "
        f"suction {at['suction_kpa']:.0f} kPa, DP {at['remote_dp_kpa']:.0f}/{at['setpoint_kpa']:.0f} kPa)"
    )


def run(report, plan: Plan = Plan(), log: str | None = None) -> None:
    summarise(report, campaign(plan, log))


def summarise(report, days: list[dict]) -> None:
    failed = [d for d in days if "error" in d]
    for d in failed:
        print(f"campaign: {d['name']} FAILED: {d['error']}", file=sys.stderr)
    days = [d for d in days if "error" not in d]
    print_notes(days)
    print_days(days)
    report("campaign_failed_days", len(failed), "")
    worst = _worst_power_day(days)
    if worst is not None:
        print(
            f"campaign: max_pump_power_vs_rated on {worst['name']}{_power_where(worst)}",
            file=sys.stderr,
        )
    for name, value, unit in figures(days):
        report(name, value, unit)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="campaign", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 fault + 2x2 season days of 2 h")
    parser.add_argument("--days", type=int, default=None, help=f"fault days (default {FAULT_DAYS})")
    parser.add_argument("--season-days", type=int, default=None)
    parser.add_argument("--hours", type=float, default=None, help="length of each day")
    parser.add_argument("--workers", type=int, default=WORKERS)
    parser.add_argument("--log", default=None, help="append each day's figures to this file")
    parser.add_argument("--summarize", metavar="LOG", help="print the figures of a --log file")
    parser.add_argument("--write", metavar="DIR", help="write the days as scenario files, no run")
    args = parser.parse_args(argv)
    from host_tools.bench.__main__ import report

    if args.summarize:
        summarise(report, read_log(args.summarize))
        return 0
    if args.write:
        out = Path(args.write)
        out.mkdir(parents=True, exist_ok=True)
        for i, (kind, doc) in enumerate(jobs(_plan(args))):
            (out / f"{i + 1:02d}_{kind}.toml").write_text(to_toml(doc), encoding="utf-8")
        print(f"campaign: wrote {i + 1} scenario files to {out}", file=sys.stderr)
        return 0
    run(report, _plan(args), args.log)
    return 0


def _plan(args: argparse.Namespace) -> Plan:
    plan = QUICK if args.quick else Plan()
    return dataclasses.replace(
        plan,
        fault_days=args.days if args.days is not None else plan.fault_days,
        season_days=args.season_days if args.season_days is not None else plan.season_days,
        hours=args.hours if args.hours is not None else plan.hours,
        workers=args.workers,
    )


if __name__ == "__main__":
    sys.exit(main())
