"""Scenario files: the station, its drives and sensors, the day and weather, and a fault schedule.

A scenario is a TOML file (readable, comments allowed). Every key is checked: an unknown key, a
wrong type or a value out of range is refused with ScenarioError naming the file, the field and
the reason, e.g. ``jia.toml: faults[1].pump: 4 is outside 1..3``. Times of day are "HH:MM"
from the start of the run (a run may last several days: "30:00" is 06:00 on the second day).

    name = "..."                       # shown in the KPI table
    seed = 1                           # every random draw derives from it
    hours = 24
    agent_config = "firmware/station.json"   # the agent's config, relative to the repository

    [day]   date = "2026-01-15"; mean_temp_c = -6.0 (optional); weather_sigma_c; flow_noise
    [plant] step_s = 0.2; upstream_assist_m = 0.0; supply_temp_c = 120.0
            pump_spread = "iso9906_2b" | "none"   (default "iso9906_2b")
        "iso9906_2b": each pump gets its own curve, drawn from the seed within the ISO 9906:2012
        grade 2B acceptance tolerances (flow +-8 %, head +-5 %, efficiency -5 %; Table 8), so the
        plant's pumps differ from the datasheet the agent knows and from each other; "none": every
        pump is the datasheet pump. See host_tools/sim/pump.py for the model.
    [[pumps]]  optional, one table per pump in drive order (fewer tables than drives: the rest keep
               the draw); each key given replaces that pump's drawn value:
        head_factor (0.8..1.2)  flow_factor (0.8..1.2)  efficiency_factor (0.7..1.1)
        wear (0..0.3): the fraction of the datasheet BEP head lost at the pump's BEP flow, the loss
        growing with the square of the flow (same shut-off head, less head and efficiency at flow)
    [demand]   shapes the weather-driven demand (host_tools/sim/demand.py); all optional:
        floor_m3h = 240          lowest demanded flow, 10..840 (default 0.30 x design = 240)
        night_setback = {start = "22:00", end = "05:00", factor = 0.7, ramp_min = 2}
                                 factor 0.2..1.0 in that window every day (may wrap midnight),
                                 reached and left linearly over ramp_min (0..120, default 2)
        morning_boost = {start = "05:00", end = "08:00", factor = 1.2, ramp_min = 2}
                                 the same with factor 1.0..2.0
        [[demand.steps]] at = "HH:MM", factor (0.1..3.0): multiplies the demand from then on
        [[demand.ramps]] at = "HH:MM", duration_min, factor (0.1..3.0): the multiplier goes
                                 linearly from 1 to factor over the duration, then stays
        Every factor multiplies (they combine as a product); the result never falls below the
        floor nor exceeds twice the design flow.
    [bus]   baud = 19200; turnaround_ms = 3
    [[drives]] unit, profile (abb | danfoss | g120), accel_s, decel_s, comm_loss_action
               (fault | hold | safe_speed | none), comm_timeout_s, safe_speed_pct,
               rated_kw = 110 (1..1000), rated_current_a = 200 (1..2000, at 400 V),
               current_limit_pct = 110 (50..200 % of rated current)
        accel_s / decel_s (default 60) are the power-up values of the drive's ramp-time registers
        (the master may write them); above the current limit the drive's speed sags, and its I^2 t
        model trips a motor overload (drives/base.py has the rules).
    [io]    unit = 10
    [sensors.<name>]  optional, per analog channel (suction_kpa | discharge_kpa | remote_dp_kpa |
               supply_temp_c | flow_m3h), each key optional (defaults in transmitters.py:
               noise 0.1 % of span, lag 0.5..2 s by kind, quantum 1 uA of the loop):
        noise_pct (0..5): noise std dev, % of the channel's span; lag_s (0..60): first-order lag;
        quantum (0..10 % of span, channel units; 0 = only the card's 1 uA steps)
    [[faults]] kind, at, duration_min (optional: without it the fault stays), and per kind:
        pump_trip          pump (1..N), fault (overcurrent | overtemperature | dc_overvoltage)
        drive_comm_loss    pump
        sensor_fault       sensor (suction_kpa | discharge_kpa | remote_dp_kpa | supply_temp_c |
                           flow_m3h), mode, and the mode's keys (transmitters.py has the rules):
                             wire_break | short | fail_low | fail_high   the loop's NE43 current
                             stuck         frozen at the value of the moment the fault began
                             drift         rate_per_h (channel units per hour, |x| <= span)
                             offset        offset (channel units, |x| <= span)
                             intermittent  period_s (1..3600, default 30), duty (0.01..0.99,
                                           default 0.2): open-loop bursts
        sensor_wire_break  the same as sensor_fault with mode defaulting to wire_break (older files)
        crc_noise          probability (0..1, per frame)
        suction_dip        kpa (0..500)
        source_pumps_stop  -
"""

from __future__ import annotations

import datetime as dt
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from host_tools.sim.demand import DailyWindow, DemandRamp, DemandShape, DemandStep
from host_tools.sim.iomodule import DEFAULT_ANALOG
from host_tools.sim.pump import (
    EFFICIENCY_FACTOR_RANGE,
    FLOW_FACTOR_RANGE,
    HEAD_FACTOR_RANGE,
    WEAR_RANGE,
)
from host_tools.sim.station import REFERENCE
from host_tools.sim.transmitters import DEFAULT_SPECS, FAULT_MODES, TransmitterSpec

SCENARIOS = Path(__file__).resolve().parent / "scenarios"
DEFAULT_SCENARIO = SCENARIOS / "jia_january.toml"

PUMP_SPREADS = ("iso9906_2b", "none")
PROFILES = ("abb", "danfoss", "g120")
COMM_LOSS_ACTIONS = ("fault", "hold", "safe_speed", "none")
DRIVE_FAULTS = ("overcurrent", "overtemperature", "dc_overvoltage")
SENSORS = ("suction_kpa", "discharge_kpa", "remote_dp_kpa", "supply_temp_c", "flow_m3h")
SENSOR_MODES = FAULT_MODES
SENSOR_SPANS = {c.name: c.hi - c.lo for c in DEFAULT_ANALOG}
MODE_FIELDS = {"drift": {"rate_per_h"}, "offset": {"offset"}, "intermittent": {"period_s", "duty"}}
SENSOR_FAULT_FIELDS = {"sensor", "mode", "rate_per_h", "offset", "period_s", "duty"}
FAULT_FIELDS = {
    "pump_trip": {"pump", "fault"},
    "drive_comm_loss": {"pump"},
    "sensor_fault": SENSOR_FAULT_FIELDS,
    "sensor_wire_break": SENSOR_FAULT_FIELDS,
    "crc_noise": {"probability"},
    "suction_dip": {"kpa"},
    "source_pumps_stop": set(),
}


class ScenarioError(ValueError):
    def __init__(self, source: str, field_path: str, reason: str) -> None:
        super().__init__(f"{source}: {field_path}: {reason}")
        self.source = source
        self.field = field_path
        self.reason = reason


@dataclass(frozen=True)
class DriveSpec:
    unit: int
    profile: str
    accel_s: float = 60.0
    decel_s: float = 60.0
    comm_loss_action: str = "safe_speed"
    comm_timeout_s: float = 10.0
    safe_speed_pct: float = 70.0
    rated_kw: float = 110.0
    rated_current_a: float = 200.0
    current_limit_pct: float = 110.0


@dataclass(frozen=True)
class PumpSpec:
    """A [[pumps]] table: what replaces the drawn deviation of one pump (None: keep the draw)."""

    head_factor: float | None = None
    flow_factor: float | None = None
    efficiency_factor: float | None = None
    wear: float | None = None


@dataclass(frozen=True)
class FaultSpec:
    kind: str
    at_s: float
    duration_s: float | None
    pump: int = 0  # 1-based, as on the station's panel
    fault: str = "overcurrent"
    sensor: str = ""
    mode: str = "wire_break"
    probability: float = 0.0
    kpa: float = 0.0
    rate_per_h: float = 0.0  # sensor drift, channel units per hour
    offset: float = 0.0  # sensor offset, channel units
    period_s: float = 30.0  # intermittent sensor: one open-loop burst per period
    duty: float = 0.2  # intermittent sensor: burst length / period

    @property
    def end_s(self) -> float:
        return float("inf") if self.duration_s is None else self.at_s + self.duration_s


@dataclass(frozen=True)
class Scenario:
    name: str
    source: str
    seed: int = 1
    hours: float = 24.0
    agent_config: str = "firmware/station.json"
    date: dt.date = dt.date(2026, 1, 15)
    mean_temp_c: float | None = None
    weather_sigma_c: float = 0.0
    flow_noise: float = 0.01
    step_s: float = 0.2
    upstream_assist_m: float = 0.0
    supply_temp_c: float = 120.0
    pump_spread: str = "iso9906_2b"
    pumps: tuple[PumpSpec, ...] = ()
    demand_floor_m3h: float | None = None  # None: 0.30 x design
    night_setback: DailyWindow | None = None
    morning_boost: DailyWindow | None = None
    demand_steps: tuple[DemandStep, ...] = ()
    demand_ramps: tuple[DemandRamp, ...] = ()
    baud: int = 19200
    turnaround_ms: float = 3.0
    drives: tuple[DriveSpec, ...] = ()
    io_unit: int = 10
    sensors: dict[str, TransmitterSpec] = field(default_factory=dict)  # only the ones given
    faults: tuple[FaultSpec, ...] = field(default_factory=tuple)

    @property
    def demand_shape(self) -> DemandShape:
        windows = tuple(w for w in (self.night_setback, self.morning_boost) if w is not None)
        return DemandShape(windows + self.demand_steps + self.demand_ramps)


_KIND_WORDS = {float: "a number", int: "a whole number", str: "a text", bool: "true or false"}


def _described(value: Any) -> str:
    """A TOML value as a newcomer reads it: 'the text "19200"', not "str '19200'"."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return (
            f"the text {value!r} (no quotes around a number)"
            if _numeric(value)
            else f"the text {value!r}"
        )
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "a list"
    return repr(value)


def _numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


class _Reader:
    """Typed access to one table of the TOML document, naming the field in every error."""

    def __init__(self, source: str, table: Any, path: str) -> None:
        self.source = source
        self.path = path
        if not isinstance(table, dict):
            raise ScenarioError(source, path or "(top)", "must be a table")
        self.table = table
        self.used: set[str] = set()

    def _name(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def error(self, key: str, reason: str) -> ScenarioError:
        return ScenarioError(self.source, self._name(key), reason)

    def get(self, key: str, kind: type, default: Any = None, required: bool = False) -> Any:
        self.used.add(key)
        if key not in self.table:
            if required:
                raise self.error(key, "is required")
            return default
        value = self.table[key]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise self.error(key, f"must be {_KIND_WORDS[kind]}, not {_described(value)}")
        return value

    def number(self, key: str, default: float | None, low: float, high: float, **kw: Any) -> Any:
        value = self.get(key, float, default, **kw)
        if value is not None and not low <= value <= high:
            raise self.error(key, f"{value} is outside {low:g}..{high:g}")
        return value

    def integer(self, key: str, default: int | None, low: int, high: int, **kw: Any) -> Any:
        value = self.get(key, int, default, **kw)
        if value is not None and not low <= value <= high:
            raise self.error(key, f"{value} is outside {low}..{high}")
        return value

    def choice(self, key: str, default: str | None, choices: tuple[str, ...], **kw: Any) -> Any:
        value = self.get(key, str, default, **kw)
        if value is not None and value not in choices:
            raise self.error(key, f"{value!r} is not one of {', '.join(choices)}")
        return value

    def table_of(self, key: str) -> _Reader:
        self.used.add(key)
        return _Reader(self.source, self.table.get(key, {}), self._name(key))

    def finish(self) -> None:
        unknown = sorted(set(self.table) - self.used)
        if unknown:
            raise self.error(unknown[0], "unknown key")


def _time_of_day(reader: _Reader, key: str, required: bool) -> float | None:
    text = reader.get(key, str, None, required=required)
    if text is None:
        return None
    hours, sep, minutes = text.partition(":")
    if not (sep and hours.isdigit() and minutes.isdigit() and len(minutes) == 2):
        raise reader.error(key, f"{text!r} is not HH:MM")
    if int(minutes) >= 60:
        raise reader.error(key, f"{text!r}: minutes must be below 60")
    return int(hours) * 3600.0 + int(minutes) * 60.0


def load(path: str | Path) -> Scenario:
    path = Path(path)
    source = str(path)
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ScenarioError(source, "(file)", exc.strerror or str(exc)) from exc
    except UnicodeDecodeError as exc:
        raise ScenarioError(
            source, "(file)", f"not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at {exc.start})"
        ) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(source, "(syntax)", str(exc)) from exc
    return parse(document, source)


def parse(document: dict[str, Any], source: str = "<scenario>") -> Scenario:
    top = _Reader(source, document, "")
    name = top.get("name", str, required=True)
    seed = top.integer("seed", 1, 0, 2**31 - 1)
    hours = top.number("hours", 24.0, 0.01, 24.0 * 151)
    agent_config = top.get("agent_config", str, "firmware/station.json")

    day = top.table_of("day")
    date_text = day.get("date", str, "2026-01-15")
    try:
        date = dt.date.fromisoformat(date_text)
    except ValueError as exc:
        raise day.error("date", f"{date_text!r} is not YYYY-MM-DD") from exc
    if not (date.month >= 11 or date.month <= 3):
        raise day.error("date", f"{date_text} is outside the heating season (1 Nov - 31 Mar)")
    mean_temp_c = day.number("mean_temp_c", None, -40.0, 18.0)
    weather_sigma_c = day.number("weather_sigma_c", 0.0, 0.0, 10.0)
    flow_noise = day.number("flow_noise", 0.01, 0.0, 0.2)
    day.finish()

    plant = top.table_of("plant")
    step_s = plant.number("step_s", 0.2, 0.01, 1.0)
    upstream_assist_m = plant.number("upstream_assist_m", 0.0, 0.0, 50.0)
    supply_temp_c = plant.number("supply_temp_c", 120.0, 20.0, 180.0)
    pump_spread = plant.choice("pump_spread", "iso9906_2b", PUMP_SPREADS)
    plant.finish()

    demand = top.table_of("demand")
    max_flow = REFERENCE.max_load_ratio * REFERENCE.design_flow_m3h
    floor_m3h = demand.number("floor_m3h", None, 10.0, max_flow)
    night_setback = _daily_window(demand, "night_setback", 0.2, 1.0)
    morning_boost = _daily_window(demand, "morning_boost", 1.0, 2.0)
    steps = []
    for r in _tables(demand, "steps"):
        steps.append(DemandStep(_run_time(r, "at", hours), _factor(r)))
        r.finish()
    ramps = []
    for r in _tables(demand, "ramps"):
        at_s = _run_time(r, "at", hours)
        duration_min = r.number("duration_min", None, 0.1, hours * 60.0, required=True)
        ramps.append(DemandRamp(at_s, duration_min * 60.0, _factor(r)))
        r.finish()
    demand.finish()

    bus = top.table_of("bus")
    baud = bus.integer("baud", 19200, 1200, 115200)
    turnaround_ms = bus.number("turnaround_ms", 3.0, 0.0, 100.0)
    bus.finish()

    io = top.table_of("io")
    io_unit = io.integer("unit", 10, 1, 247)
    io.finish()

    sensor_tables = top.table_of("sensors")
    sensors = {}
    for sensor in sorted(sensor_tables.table):
        if sensor not in SENSOR_SPANS:
            raise sensor_tables.error(sensor, f"is not one of {', '.join(SENSORS)}")
        r = sensor_tables.table_of(sensor)
        default = DEFAULT_SPECS[sensor]
        sensors[sensor] = TransmitterSpec(
            noise_pct=r.number("noise_pct", default.noise_pct, 0.0, 5.0),
            lag_s=r.number("lag_s", default.lag_s, 0.0, 60.0),
            quantum=r.number("quantum", default.quantum, 0.0, SENSOR_SPANS[sensor] / 10.0),
        )
        r.finish()

    top.used.add("drives")
    raw_drives = document.get("drives", [])
    if not isinstance(raw_drives, list) or not 1 <= len(raw_drives) <= 4:
        raise ScenarioError(source, "drives", "must be a list of 1..4 [[drives]] tables")
    drives = []
    for i, raw in enumerate(raw_drives):
        r = _Reader(source, raw, f"drives[{i}]")
        drives.append(
            DriveSpec(
                unit=r.integer("unit", None, 1, 247, required=True),
                profile=r.choice("profile", None, PROFILES, required=True),
                accel_s=r.number("accel_s", 60.0, 0.0, 600.0),
                decel_s=r.number("decel_s", 60.0, 0.0, 600.0),
                comm_loss_action=r.choice("comm_loss_action", "safe_speed", COMM_LOSS_ACTIONS),
                comm_timeout_s=r.number("comm_timeout_s", 10.0, 0.1, 600.0),
                safe_speed_pct=r.number("safe_speed_pct", 70.0, 0.0, 100.0),
                rated_kw=r.number("rated_kw", 110.0, 1.0, 1000.0),
                rated_current_a=r.number("rated_current_a", 200.0, 1.0, 2000.0),
                current_limit_pct=r.number("current_limit_pct", 110.0, 50.0, 200.0),
            )
        )
        r.finish()
    units = [d.unit for d in drives] + [io_unit]
    if len(set(units)) != len(units):
        raise ScenarioError(source, "drives", f"unit ids must be unique on the bus: {units}")

    pumps = []
    for r in _tables(top, "pumps"):
        pumps.append(
            PumpSpec(
                head_factor=r.number("head_factor", None, *HEAD_FACTOR_RANGE),
                flow_factor=r.number("flow_factor", None, *FLOW_FACTOR_RANGE),
                efficiency_factor=r.number("efficiency_factor", None, *EFFICIENCY_FACTOR_RANGE),
                wear=r.number("wear", None, *WEAR_RANGE),
            )
        )
        r.finish()
    if len(pumps) > len(drives):
        raise ScenarioError(
            source, "pumps", f"{len(pumps)} [[pumps]] tables for {len(drives)} drives"
        )

    top.used.add("faults")
    raw_faults = document.get("faults", [])
    if not isinstance(raw_faults, list):
        raise ScenarioError(source, "faults", "must be a list of [[faults]] tables")
    faults = [_fault(source, raw, i, len(drives), hours) for i, raw in enumerate(raw_faults)]
    top.finish()
    return Scenario(
        name=name,
        source=source,
        seed=seed,
        hours=hours,
        agent_config=agent_config,
        date=date,
        mean_temp_c=mean_temp_c,
        weather_sigma_c=weather_sigma_c,
        flow_noise=flow_noise,
        step_s=step_s,
        upstream_assist_m=upstream_assist_m,
        supply_temp_c=supply_temp_c,
        pump_spread=pump_spread,
        pumps=tuple(pumps),
        demand_floor_m3h=floor_m3h,
        night_setback=night_setback,
        morning_boost=morning_boost,
        demand_steps=tuple(sorted(steps, key=lambda x: x.at_s)),
        demand_ramps=tuple(sorted(ramps, key=lambda x: x.at_s)),
        baud=baud,
        turnaround_ms=turnaround_ms,
        drives=tuple(drives),
        io_unit=io_unit,
        sensors=sensors,
        faults=tuple(sorted(faults, key=lambda f: f.at_s)),
    )


def _tables(reader: _Reader, key: str) -> list[_Reader]:
    """An optional array of tables ([[key]]): one reader per table (the caller finishes each)."""
    reader.used.add(key)
    raw = reader.table.get(key, [])
    name = reader._name(key)
    if not isinstance(raw, list):
        raise ScenarioError(reader.source, name, f"must be a list of [[{name}]] tables")
    return [_Reader(reader.source, item, f"{name}[{i}]") for i, item in enumerate(raw)]


def _factor(reader: _Reader) -> float:
    return reader.number("factor", None, 0.1, 3.0, required=True)


def _run_time(reader: _Reader, key: str, hours: float) -> float:
    """A required "HH:MM" from the start of the run, before its end."""
    at_s = _time_of_day(reader, key, required=True)
    assert at_s is not None
    if at_s >= hours * 3600.0:
        raise reader.error(key, f"is after the end of the run ({hours:g} h)")
    return at_s


def _daily_window(demand: _Reader, key: str, low: float, high: float) -> DailyWindow | None:
    """night_setback / morning_boost: {start, end, factor, ramp_min}, times of the day."""
    if key not in demand.table:
        demand.used.add(key)
        return None
    r = demand.table_of(key)
    start_s = _time_of_day(r, "start", required=True)
    end_s = _time_of_day(r, "end", required=True)
    assert start_s is not None and end_s is not None
    for name, value in (("start", start_s), ("end", end_s)):
        if value >= 86400.0:
            raise r.error(name, "is a time of the day: below 24:00")
    if start_s == end_s:
        raise r.error("end", "is the same as start: an empty (or whole-day) window")
    factor = r.number("factor", None, low, high, required=True)
    ramp_min = r.number("ramp_min", 2.0, 0.0, 120.0)
    r.finish()
    return DailyWindow(start_s, end_s, factor, ramp_min * 60.0)


def _fault(source: str, raw: Any, i: int, pumps: int, hours: float) -> FaultSpec:
    r = _Reader(source, raw, f"faults[{i}]")
    kind = r.choice("kind", None, tuple(FAULT_FIELDS), required=True)
    at_s = _time_of_day(r, "at", required=True)
    assert at_s is not None
    if at_s >= hours * 3600.0:
        raise r.error("at", f"is after the end of the run ({hours:g} h)")
    duration_min = r.number("duration_min", None, 0.1, hours * 60.0)
    allowed = FAULT_FIELDS[kind]
    for key in set(r.table) - {"kind", "at", "duration_min"} - allowed:
        raise r.error(key, f"does not apply to a {kind} fault")
    spec: dict[str, Any] = {}
    if "pump" in allowed:
        spec["pump"] = r.integer("pump", None, 1, pumps, required=True)
    if "fault" in allowed:
        spec["fault"] = r.choice("fault", "overcurrent", DRIVE_FAULTS)
    if "sensor" in allowed:
        sensor = spec["sensor"] = r.choice("sensor", None, SENSORS, required=True)
        legacy = kind == "sensor_wire_break"
        mode = spec["mode"] = r.choice(
            "mode", "wire_break" if legacy else None, SENSOR_MODES, required=not legacy
        )
        for key in set(r.table) & (SENSOR_FAULT_FIELDS - {"sensor", "mode"}):
            if key not in MODE_FIELDS.get(mode, set()):
                raise r.error(key, f"does not apply to a {mode} sensor fault")
        span = SENSOR_SPANS[sensor]
        if mode == "drift":
            spec["rate_per_h"] = r.number("rate_per_h", None, -span, span, required=True)
        elif mode == "offset":
            spec["offset"] = r.number("offset", None, -span, span, required=True)
        elif mode == "intermittent":
            spec["period_s"] = r.number("period_s", 30.0, 1.0, 3600.0)
            spec["duty"] = r.number("duty", 0.2, 0.01, 0.99)
    if "probability" in allowed:
        spec["probability"] = r.number("probability", None, 0.0, 1.0, required=True)
    if "kpa" in allowed:
        spec["kpa"] = r.number("kpa", None, 0.0, 500.0, required=True)
    r.finish()
    duration_s = None if duration_min is None else duration_min * 60.0
    return FaultSpec(kind=kind, at_s=at_s, duration_s=duration_s, **spec)
