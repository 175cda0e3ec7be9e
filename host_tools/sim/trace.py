"""Sensor traces: recorded station measurements that drive the simulated I/O module.

A trace replaces, channel by channel, what the simulated transmitters would give the I/O module
(iomodule.py), so the agent reads over Modbus what a real station saw, while the drives and the
hydraulics stay simulated, and so do the channels the trace is silent on. Two sources:

CSV trace (any name; ``.csv`` by convention), UTF-8 (a BOM is allowed), a header row, cells
separated by commas, or by semicolons or tabs (the header's separator: a spreadsheet's export
where the decimal sign is a comma); a number may have a decimal comma (``299,5``) where commas do
not separate the cells, or in a quoted cell; any line ending:
    time column   the first column named ``t_s`` (seconds, a number: 0, 0.5, 86399.8) or ``time``,
                  ``time_utc``, ``timestamp`` (ISO 8601, UTC when it has no zone: 2026-01-15T14:00:00,
                  2026-01-15 14:00:00+08:00; or Unix seconds). Rows in strictly increasing time.
                  The run's virtual time 0 is the first row's time.
    sensor columns  named as the station's sensors: the I/O module's channels (suction_kpa,
                  discharge_kpa, remote_dp_kpa, supply_temp_c, flow_m3h; digital
                  source_pumps_running, bypass_open) or the names the agent's config gives them
                  (station.json io.channels by their register, io.inputs by their index:
                  source_running = source_pumps_running). Units are the channel's: kPa (gauge),
                  degC, m3/h. An analog cell is a value in those units, which becomes the loop
                  current of a healthy transmitter (4..20 mA over the I/O module's range,
                  saturated to 3.8..20.5 mA as NE43 says), or a loop current with the unit ``mA``
                  (``0mA`` an open loop, ``3.6mA`` a transmitter's failure signal, ``24mA`` a
                  short), taken as it is. A digital cell is 0/1, true/false or on/off.
    empty cell    no reading: the channel is silent from that row to its next non-empty cell.
    other columns  (a ``pumplog export --csv`` has many) are not replayed; ``Trace.ignored``
                  names them.
    site, station  (a ``pumplog export --csv`` of several stations) the rows of ``station``
                  only; without it, rows of a second station are refused.
Telemetry: a telemetry log (host_tools/uplink/logfile.py; one station's telemetry records, chosen
with ``station`` when the log has several) or a ``pumpsim`` telemetry.bin (uplink frames back to
back). Each telemetry frame is a row at its timestamp_s, its analog fields the sensor cells in
engineering units (suction_kpa, discharge_kpa, remote_dp_kpa, supply_temp_c, flow_m3h; a "no
reading" field is an empty cell). Frames are taken in timestamp order; a repeated timestamp keeps
the first frame; a frame made before the station's clock was set (timestamp_s below 1e9) is left
out.

Between samples (``between``): ``hold`` (the default: a sample stands until the channel's next
row) or ``linear`` (interpolated towards the next row's value when both are values, not
currents). Either way a sample stands at most ``max_hold_s`` (default 60 s): a longer gap between
rows leaves the channel silent (simulated) until its next sample. After the last row the trace is
silent. ``channels`` limits the replay to some sensors: the others stay simulated.

How it reaches the agent (``TraceInputs.apply(io, t_s)``, called after the transmitters have
set the I/O module at each plant step): the traced channels' loop currents and digital inputs are
set in the I/O module (``set_current``, ``set_input``), over what the simulated transmitters
gave; the agent reads them as Modbus bytes. A traced value is what the station's card read: the
simulated transmitter's noise, lag and a scenario's sensor fault on that channel do not apply
while the trace drives it (a recorded fault is in the trace, as a current).
Errors: TraceError, one line naming the file and, for a CSV, the line and the column.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import math
from array import array
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from host_tools.sim.iomodule import (
    DEFAULT_ANALOG,
    DEFAULT_DIGITAL,
    UA_MAX_MEASURING,
    UA_MIN_MEASURING,
    UA_SHORT,
    AnalogChannel,
    IoModule,
)

SECONDS_COLUMN = "t_s"
TIME_COLUMNS = ("time", "time_utc", "timestamp")
BETWEEN = ("hold", "linear")
DEFAULT_MAX_HOLD_S = 60.0
TELEMETRY_FIELDS = {  # telemetry field -> (I/O module channel, scale)
    "suction_kpa_x10": ("suction_kpa", 10),
    "discharge_kpa_x10": ("discharge_kpa", 10),
    "remote_dp_kpa_x10": ("remote_dp_kpa", 10),
    "supply_temp_c_x100": ("supply_temp_c", 100),
    "flow_m3h_x10": ("flow_m3h", 10),
}
NO_READING = (-32768, -(2**31))
_TRUE = ("1", "true", "on")
_FALSE = ("0", "false", "off")


class TraceError(ValueError):
    """A trace that cannot be replayed; str() is one line naming the file (line, column)."""


@dataclass(frozen=True)
class Current:
    """A loop current given in a cell (uA), replayed as it is."""

    ua: int


Cell = float | Current | bool | None


@dataclass
class Trace:
    """Rows of a trace: ``times`` (s from the first row) and, per I/O module channel, one cell
    per row (None: no reading)."""

    source: str
    times: list[float] = field(default_factory=list)
    cells: dict[str, list[Cell]] = field(default_factory=dict)
    ignored: list[str] = field(default_factory=list)  # columns that name no sensor
    start_utc: dt.datetime | None = None  # the first row's time, when the trace has real times

    @property
    def span_s(self) -> float:
        return self.times[-1] if self.times else 0.0

    def channels(self) -> list[str]:
        """The channels with at least one reading."""
        return [name for name, cells in self.cells.items() if any(c is not None for c in cells)]


# ---- the station's sensor names -----------------------------------------------------------------


def sensor_names(
    analog: Iterable[AnalogChannel] = DEFAULT_ANALOG,
    digital: Iterable[str] = DEFAULT_DIGITAL,
    agent_config: Path | None = None,
) -> dict[str, str]:
    """Column name -> I/O module channel: the module's own names, and those of the agent's config
    (io.channels by register, io.inputs by index) where they name a channel the module has."""
    analog, digital = list(analog), list(digital)
    names = {c.name: c.name for c in analog} | {d: d for d in digital}
    if agent_config is None:
        return names
    try:
        io = json.loads(Path(agent_config).read_text())["io"]
    except (OSError, ValueError, KeyError, TypeError):
        return names  # the simulator checks the config elsewhere; here only names are wanted
    for name, spec in (io.get("channels") or {}).items():
        register = spec.get("register") if isinstance(spec, dict) else None
        if isinstance(register, int) and 0 <= register < len(analog):
            names.setdefault(name, analog[register].name)
    for name, index in (io.get("inputs") or {}).items():
        if isinstance(index, int) and 0 <= index < len(digital):
            names.setdefault(name, digital[index])
    return names


# ---- CSV ----------------------------------------------------------------------------------------


def _utc(text: str) -> dt.datetime:
    stamp = dt.datetime.fromisoformat(text)
    return stamp.replace(tzinfo=dt.UTC) if stamp.tzinfo is None else stamp.astimezone(dt.UTC)


def _time_of(text: str, seconds: bool) -> tuple[float, dt.datetime | None]:
    """(seconds, the UTC time when the cell gave one); ValueError when it is neither."""
    if "," in text:  # a decimal comma (never in a comma-separated file's cell)
        text = text.replace(",", ".")
    if not seconds:
        try:
            stamp = _utc(text)
            return stamp.timestamp(), stamp
        except ValueError:
            pass
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(text)
    if seconds:
        return value, None
    return value, dt.datetime.fromtimestamp(value, dt.UTC)


def _analog_cell(text: str) -> Cell:
    text = text.replace(",", ".")  # a decimal comma (never in a comma-separated file's cell)
    if text.lower().endswith("ma"):
        ma = float(text[:-2])
        if not 0.0 <= ma <= UA_SHORT / 1000.0:
            raise ValueError(f"current {text!r} outside 0..{UA_SHORT / 1000:g} mA")
        return Current(round(ma * 1000.0))
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"not a finite number: {text!r} (an empty cell is no reading)")
    return value


def _digital_cell(text: str) -> Cell:
    low = text.lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise ValueError(f"not a digital value (0/1, true/false, on/off): {text!r}")


def _separator(handle) -> str:
    """The header line's separator: a comma, else a semicolon or a tab (a spreadsheet's export
    where the decimal sign is a comma)."""
    header = handle.readline()
    handle.seek(0)
    return next((c for c in ",;\t" if c in header), ",")


def read_csv(
    path: Path | str,
    names: dict[str, str],
    digital: Iterable[str] = DEFAULT_DIGITAL,
    station: tuple[str, str] | None = None,
):
    """A CSV trace (module docstring); ``names``: column name -> channel (sensor_names);
    ``station``: the rows of that station when the file has ``site`` and ``station`` columns."""
    path = Path(path)
    digital = set(digital)
    try:
        handle = path.open(newline="", encoding="utf-8-sig")  # -sig: a BOM is not the header's
    except OSError as exc:
        raise TraceError(f"{path}: {exc.strerror}") from exc
    with handle:
        try:
            separator = _separator(handle)
        except UnicodeDecodeError as exc:
            raise TraceError(f"{path}:1: not a CSV header, not UTF-8 text ({exc})") from None
        rows = csv.reader(handle, delimiter=separator)
        try:
            header = [h.strip() for h in next(rows)]
        except StopIteration:
            raise TraceError(f"{path}: empty, no header row") from None
        except (csv.Error, UnicodeDecodeError) as exc:
            raise TraceError(f"{path}:1: not a CSV header ({exc})") from None
        trace = _csv_columns(path, header, names)
        columns = [(i, names[h], h) for i, h in enumerate(header) if h in names]
        time_at = 0
        seconds = header[0] == SECONDS_COLUMN
        whose = [header.index(c) for c in ("site", "station") if c in header]
        chosen = station if len(whose) == 2 else None  # else one station's file
        first: float | None = None
        previous = -math.inf
        line = 1
        try:
            for row in rows:
                line = rows.line_num
                if not row or all(not c.strip() for c in row):
                    continue  # a blank line
                if len(row) != len(header):
                    hint = ""
                    if separator == "," and len(row) > len(header):
                        hint = " (decimal commas? with ',' between cells, numbers take a point)"
                    raise TraceError(
                        f"{path}:{line}: {len(row)} cells, the header has {len(header)}{hint}"
                    )
                if len(whose) == 2:  # a pumplog export: one station's rows
                    of = (row[whose[0]].strip(), row[whose[1]].strip())
                    if chosen is None:
                        chosen = of
                    if of != chosen:
                        if station is not None:
                            continue
                        raise TraceError(
                            f"{path}:{line}: rows of more than one station ({chosen[0]}/"
                            f"{chosen[1]}, {of[0]}/{of[1]}): name one (--station SITE/STATION)"
                        )
                text = row[time_at].strip()
                try:
                    t, stamp = _time_of(text, seconds)
                except ValueError:
                    kind = "seconds" if seconds else "an ISO 8601 time or Unix seconds"
                    raise TraceError(
                        f"{path}:{line}, column {header[0]} (1): not {kind}: {text!r}"
                    ) from None
                if t <= previous:
                    raise TraceError(
                        f"{path}:{line}, column {header[0]} (1): {text} is not after the row before"
                    )
                previous = t
                if first is None:
                    first, trace.start_utc = t, stamp
                trace.times.append(t - first)
                for i, channel, name in columns:
                    cell = row[i].strip()
                    if not cell:
                        trace.cells[channel].append(None)
                        continue
                    try:
                        value = _digital_cell(cell) if channel in digital else _analog_cell(cell)
                    except ValueError as exc:
                        why = str(exc)  # ours, or float()'s "could not convert ..."
                        if why.startswith("could not convert"):
                            why = f"not a number (or a current in mA): {cell!r}"
                        raise TraceError(f"{path}:{line}, column {name} ({i + 1}): {why}") from None
                    trace.cells[channel].append(value)
        except (csv.Error, UnicodeDecodeError) as exc:
            raise TraceError(f"{path}:{line + 1}: not CSV ({exc})") from None
    if not trace.times:
        if station is not None and len(whose) == 2:
            raise TraceError(f"{path}: no rows of {station[0]}/{station[1]}")
        raise TraceError(f"{path}: a header and no rows")
    return trace


def _csv_columns(path: Path, header: list[str], names: dict[str, str]) -> Trace:
    if header[0] not in (SECONDS_COLUMN, *TIME_COLUMNS):
        raise TraceError(
            f"{path}:1, column {header[0] or '(empty)'} (1): the first column is the time: "
            f"{SECONDS_COLUMN} (seconds) or {', '.join(TIME_COLUMNS)} (ISO 8601 or Unix seconds)"
        )
    seen: dict[str, int] = {}
    channels: dict[str, str] = {}
    for i, name in enumerate(header):
        if name in seen:
            raise TraceError(f"{path}:1, column {name} ({i + 1}): also column {seen[name] + 1}")
        seen[name] = i
        channel = names.get(name)
        if channel is None:
            continue
        if channel in channels:
            raise TraceError(
                f"{path}:1, column {name} ({i + 1}): the same sensor as column "
                f"{channels[channel]} ({channel})"
            )
        channels[channel] = name
    if not channels:
        raise TraceError(
            f"{path}:1: no column names a sensor of the station (sensors: "
            f"{', '.join(sorted(names))})"
        )
    ignored = [h for h in header[1:] if h and h not in names]  # a trailing separator: no name
    return Trace(str(path), cells={c: [] for c in channels}, ignored=ignored)


# ---- telemetry ----------------------------------------------------------------------------------


def read_telemetry(path: Path | str, station: tuple[str, str] | None = None) -> Trace:
    """A telemetry log or a pumpsim telemetry.bin (module docstring)."""
    from host_tools.uplink import logfile
    from protocol import fast
    from protocol.uplink import Kind, UplinkError

    path = Path(path)
    try:
        with path.open("rb") as f:
            head = f.read(len(logfile.MAGIC))
    except OSError as exc:
        raise TraceError(f"{path}: {exc.strerror}") from exc
    payloads: list[bytes] = []
    if head == logfile.MAGIC:
        try:
            records = [r for r in logfile.LogReader(path) if r.kind == logfile.KIND_TELEMETRY]
        except logfile.LogError as exc:
            raise TraceError(f"{path}: {exc}") from exc
        stations = sorted({(r.site, r.station) for r in records})
        if station is None and len(stations) > 1:
            listed = ", ".join(f"{s}/{n}" for s, n in stations)
            raise TraceError(
                f"{path}: telemetry of {len(stations)} stations ({listed}): name one "
                "(--station SITE/STATION)"
            )
        if station is not None and station not in stations:
            raise TraceError(f"{path}: no telemetry of {station[0]}/{station[1]}")
        payloads = [bytes(r.payload) for r in records if station in (None, (r.site, r.station))]
    else:
        from host_tools.uplink.pumplog import Refused, split_frames

        try:
            frames = split_frames(path.read_bytes(), path)
        except Refused as exc:
            raise TraceError(str(exc)) from None
        payloads = [frame for _, frame in frames if frame[3] == int(Kind.TELEMETRY)]
    decoded = {}
    for payload in payloads:
        try:
            frame = fast.decode_telemetry(payload)
        except UplinkError:
            continue
        if frame["timestamp_s"] >= logfile.UNSYNCED_BELOW:  # else made before the clock was set
            decoded.setdefault(frame["timestamp_s"], frame)
    if not decoded:
        raise TraceError(f"{path}: no telemetry frame")
    stamps = sorted(decoded)
    trace = Trace(str(path), cells={ch: [] for ch, _ in TELEMETRY_FIELDS.values()})
    trace.start_utc = dt.datetime.fromtimestamp(stamps[0], dt.UTC)
    for stamp in stamps:
        frame = decoded[stamp]
        trace.times.append(float(stamp - stamps[0]))
        for name, (channel, scale) in TELEMETRY_FIELDS.items():
            raw = frame[name]
            trace.cells[channel].append(None if raw in NO_READING else raw / scale)
    return trace


def read(
    path: Path | str,
    names: dict[str, str] | None = None,
    station: tuple[str, str] | None = None,
) -> Trace:
    """A trace from a CSV (by its text) or a telemetry file (by its bytes)."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            head = f.read(8)
    except OSError as exc:
        raise TraceError(f"{path}: {exc.strerror}") from exc
    if head.startswith(b"RPLOG") or head.startswith(b"RP\x01"):
        return read_telemetry(path, station)
    return read_csv(path, names if names is not None else sensor_names(), station=station)


# ---- replay -------------------------------------------------------------------------------------


class _Series:
    """One channel's samples as segments: [start, end) holds ua0 (+ slope for linear)."""

    def __init__(self, name: str, digital: bool) -> None:
        self.name = name
        self.digital = digital
        self.start = array("d")
        self.end = array("d")
        self.ua = array("d")  # loop current at start (digital: 1.0 / 0.0)
        self.slope = array("d")  # uA per second (linear), else 0
        self.saturate = array("b")  # a value's current saturates to the measuring range
        self.k = 0


class TraceInputs:
    """The trace applied to an I/O module: ``apply(io, t_s)`` at each plant step."""

    def __init__(
        self,
        trace: Trace,
        io: IoModule,
        channels: Iterable[str] | None = None,
        between: str = "hold",
        max_hold_s: float = DEFAULT_MAX_HOLD_S,
    ) -> None:
        if between not in BETWEEN:
            raise TraceError(f"between: {between!r} is not one of {', '.join(BETWEEN)}")
        if not (math.isfinite(max_hold_s) and max_hold_s > 0):
            raise TraceError(f"max hold: must be a number of seconds > 0, got {max_hold_s}")
        have = trace.channels()
        chosen = have if channels is None else list(channels)
        for name in chosen:
            if name not in have:
                raise TraceError(
                    f"{trace.source}: no readings of {name!r} (it has {', '.join(have) or 'none'})"
                )
        self.trace = trace
        self.channels = chosen
        self.series = [
            self._series(name, trace, io, between, max_hold_s)
            for name in chosen
            if name in io.analog or name in io.digital_names
        ]

    @staticmethod
    def _series(name, trace, io, between, max_hold_s) -> _Series:
        digital = name not in io.analog
        series = _Series(name, digital)
        times, cells = trace.times, trace.cells[name]
        channel = None if digital else io.analog[name]
        last = len(times) - 1
        for i, cell in enumerate(cells):
            if cell is None:
                continue
            start = times[i]
            next_t = times[i + 1] if i < last else start
            end = min(next_t, start + max_hold_s)
            if end <= start:
                continue  # the last row: the trace ends there
            slope = 0.0
            saturate = 0
            if digital:
                ua = 1.0 if cell else 0.0
            elif isinstance(cell, Current):
                ua = float(cell.ua)
            else:
                ua = 4000.0 + 16000.0 * (cell - channel.lo) / (channel.hi - channel.lo)
                saturate = 1
                after = cells[i + 1] if i < last else None
                if between == "linear" and end == next_t and isinstance(after, float):
                    ua_after = 4000.0 + 16000.0 * (after - channel.lo) / (channel.hi - channel.lo)
                    slope = (ua_after - ua) / (end - start)
            series.start.append(start)
            series.end.append(end)
            series.ua.append(ua)
            series.slope.append(slope)
            series.saturate.append(saturate)
        return series

    def apply(self, io: IoModule, t_s: float) -> None:
        """Set the traced channels that have a sample at t_s; leave the others as they are."""
        for s in self.series:
            k, end, n = s.k, s.end, len(s.end)
            while k < n and t_s >= end[k]:
                k += 1
            s.k = k
            if k == n or t_s < s.start[k]:
                continue
            if s.digital:
                io.set_input(s.name, s.ua[k] > 0.5)
                continue
            ua = s.ua[k] + s.slope[k] * (t_s - s.start[k])
            if s.saturate[k]:
                ua = UA_MAX_MEASURING if ua > UA_MAX_MEASURING else max(UA_MIN_MEASURING, ua)
            io.set_current(s.name, round(ua))


# ---- recording ----------------------------------------------------------------------------------


def cell_of(channel: AnalogChannel, ua: int) -> str:
    """What a CSV trace keeps of a loop current: the value when a healthy transmitter can give it
    (3.8..20.5 mA), else the current in mA."""
    if UA_MIN_MEASURING <= ua <= UA_MAX_MEASURING:
        return f"{channel.to_value(ua):.6g}"
    return f"{ua / 1000.0:g}mA"


class TraceWriter:
    """Writes what an I/O module's card reads, one CSV row per ``row(io, t_s)``."""

    def __init__(self, path: Path | str, io: IoModule) -> None:
        self.path = Path(path)
        self._file = self.path.open("w", newline="", encoding="utf-8")
        self._out = csv.writer(self._file)
        self._analog = list(io.analog.values())
        self._digital = list(io.digital_names)
        self._out.writerow([SECONDS_COLUMN, *(c.name for c in self._analog), *self._digital])
        self.rows = 0

    def row(self, io: IoModule, t_s: float) -> None:
        cells = [cell_of(c, io.current_ua(c.name)) for c in self._analog]
        bits = io.read_discrete_inputs(0, len(self._digital)) if self._digital else []
        self._out.writerow([f"{t_s:.3f}".rstrip("0").rstrip("."), *cells, *(int(b) for b in bits)])
        self.rows += 1

    def close(self) -> None:
        self._file.close()
