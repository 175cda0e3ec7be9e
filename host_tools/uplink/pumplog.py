"""pumplog: look at, cut, merge, check, export and plot telemetry logs (host_tools/uplink/logfile.py).

    pumplog list LOG                           stations, time span, records per kind
    pumplog cut LOG --from T --to T -o OUT     the records with from <= record time < to
    pumplog merge A B ... -o OUT               one log in time order, duplicate frames dropped
    pumplog verify LOG                         CRC, index, seq gaps and duplicates (exit 1)
    pumplog export LOG --csv OUT [--station SITE/STATION] [--from T] [--to T]
    pumplog plot LOG -o PNG [--station SITE/STATION] [--from T] [--to T]
    pumplog import FRAMES --site SITE --station STATION -o OUT   pumpsim's telemetry.bin as a log

T as pumpreplay takes it: Unix seconds, ISO 8601 (UTC when no zone), or +N[smhd] from the log's
first record time; a time outside 1970..2106, or --to not after --from, is bad usage (exit 2).

Rules:
- A damaged log (a record failing its CRC, an impossible length, not a log at all) is refused with
  one line naming the file and offset, exit 3; nothing is written. ``verify`` reports the damage
  in full (exit 1). An incomplete tail (a recorder still writing) is left out and said so.
- ``cut`` and ``merge`` write a new log (never over an input): every record is copied whole
  (receive time, kind, flags, names, payload), the index is built as the records are written.
- ``merge``: records ordered by record time, then receive time, then input order (stable).
  A duplicate is a frame of the same stream (site, station; commands apart, as in verify) with the
  same seq and the same bytes as one already taken (a QoS 1 redelivery, two recorders' copies): it
  is dropped. Same seq with other bytes (a station whose counter restarted) is kept. Records
  without a seq (status messages, other topics) are all kept.
- ``export --csv``: telemetry frames only, in log order, one row each. Columns (the header row):
  ``time_utc`` (ISO 8601 of the frame's timestamp_s), ``site``, ``station`` (the topic's),
  then every field of the telemetry frame in frame order (protocol/uplink.py; decoded with
  protocol/fast.py) under its flat name: ``station_id``, ``seq``, ``timestamp_s``, ... and
  ``pumpN_...`` for pump slot N. A scaled field (protocol.uplink.SCALES) is in engineering units
  and loses its ``_xN`` suffix: ``suction_kpa_x10`` -> ``suction_kpa`` in kPa, ``speed_pct_x100``
  -> ``pumpN_speed_pct`` in %, printed with as many decimals as the scale has. Enumerations and
  bit fields (``mode``, ``alarm_bits``, ``pumpN_state``, ``pumpN_fault_code``) are the integers.
  A "no reading" value (protocol.uplink.NO_READING) is an empty cell.
- ``plot``: one station's telemetry drawn by the simulator's own plot (host_tools/sim/report.py:
  pressures, flow, speeds, power) from samples rebuilt from the frames; hours count from midnight
  UTC of the first frame's day. Telemetry carries no demand: that line stays empty. A log with
  more than one station needs --station.
- ``import``: uplink frames back to back (the simulator's telemetry.bin,
  host_tools/sim/telemetry_log.py: telemetry, event and ack frames, each frame's kind giving its
  size) become records of SITE/STATION, received at the frame's timestamp_s, so a simulated run
  can be listed, exported, plotted and replayed like a recorded one. Bytes that are not a whole
  frame are refused (exit 3, naming the offset), nothing written.
- A file that cannot be read or written is one line naming it and the reason, exit 2. Ctrl-C:
  exit 130 (a new log cut short stays as it is: ``verify`` shows how far it got); output into a
  closed pipe (``| head``): exit 141, quietly.
Exit: 0 done, 1 verify found problems, 2 bad usage, 3 a damaged log (or frame file).
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import math
import sys
import zlib
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

from host_tools.uplink import broker
from host_tools.uplink.logfile import (
    KIND_ACK,
    KIND_CMD,
    KIND_EVENT,
    KIND_NAMES,
    KIND_OTHER,
    KIND_STATUS,
    KIND_TELEMETRY,
    NAME_MAX,
    LogError,
    LogReader,
    LogWriter,
    decode_at,
    verify,
)
from host_tools.uplink.replay import time_range
from protocol import fast, layout
from protocol.uplink import NO_READING, SCALES, Kind, UplinkError


class Refused(Exception):
    """One line for the user, and the exit status."""

    def __init__(self, message: str, code: int = 2):
        super().__init__(message)
        self.code = code


def _open(path) -> LogReader:
    try:
        return LogReader(path)
    except FileNotFoundError:
        raise Refused(f"{path}: no such file") from None
    except LogError as err:
        raise Refused(str(err), 3) from None


def _records(reader: LogReader, lo=None, hi=None):
    """Records of a reader; damage becomes a refusal naming the file."""
    try:
        yield from reader.records(start_s=lo, end_s=hi)
    except LogError as err:
        raise Refused(f"{reader.path}: damaged: {err} (pumplog verify {reader.path})", 3) from None


def _checked(reader: LogReader, lo=None, hi=None) -> None:
    """Read every record of the range once, so that damage is refused before any output."""
    for _ in _records(reader, lo, hi):
        pass


def _range(reader: LogReader, args) -> tuple[int | None, int | None]:
    try:
        return time_range(reader, getattr(args, "start", None), getattr(args, "end", None))
    except ValueError as err:
        raise Refused(str(err)) from None


def _iso(t: int) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).isoformat().replace("+00:00", "Z")


def _new_log(path: Path, inputs) -> LogWriter:
    out = Path(path)
    if out.exists() or any(out.resolve() == Path(i).resolve() for i in inputs):
        raise Refused(f"{out}: exists; pumplog writes new logs only")
    try:
        return LogWriter(out)
    except OSError as err:
        raise Refused(f"cannot write {out}: {err.strerror or err}") from None


# ---- list ---------------------------------------------------------------------------------------


def cmd_list(args) -> int:
    reader = _open(args.log)
    per_station: dict[str, Counter] = {}
    spans: dict[str, list[int]] = {}
    kinds: Counter = Counter()
    total = 0
    for r in _records(reader):
        total += 1
        kinds[r.kind_name] += 1
        who = r.topic if r.kind == KIND_OTHER else f"{r.site}/{r.station}"
        per_station.setdefault(who, Counter())[r.kind_name] += 1
        span = spans.get(who)
        t = r.time_s
        if span is None:
            spans[who] = [t, t]
        else:
            span[0] = min(span[0], t)
            span[1] = max(span[1], t)
    print(f"{args.log}: {total} records, {len(reader.index)} index blocks")
    if spans:
        lo = min(s[0] for s in spans.values())
        hi = max(s[1] for s in spans.values())
        print(f"time span: {_iso(lo)} .. {_iso(hi)} ({(hi - lo) / 3600:.2f} h)")
        print("records per kind: " + _counts(kinds))
    for who in sorted(per_station):
        lo, hi = spans[who]
        print(f"  {who}: {_iso(lo)} .. {_iso(hi)}: {_counts(per_station[who])}")
    if reader.tail_bytes:
        print(f"incomplete tail: {reader.tail_bytes} bytes (left out)")
    return 0


def _counts(counter: Counter) -> str:
    order = [KIND_NAMES[k] for k in sorted(KIND_NAMES)]
    return ", ".join(f"{name} {counter[name]}" for name in order if counter[name])


# ---- cut and merge ------------------------------------------------------------------------------


def _copy(writer: LogWriter, r) -> None:
    writer.append(r.receive_us, r.kind, r.site, r.station, r.payload, r.flags, r.time_s)


def cmd_cut(args) -> int:
    reader = _open(args.log)
    lo, hi = _range(reader, args)
    _checked(reader, lo, hi)
    with _new_log(args.out, [args.log]) as writer:
        for r in _records(reader, lo, hi):
            _copy(writer, r)
        count = writer.records_written
    print(f"{args.out}: {count} records" + (f" from {_iso(lo)}" if lo is not None else "")
          + (f" before {_iso(hi)}" if hi is not None else ""))  # fmt: skip
    return 0


def cmd_merge(args) -> int:
    import numpy as np

    readers = [_open(path) for path in args.logs]
    keys = []  # (time_s, receive_us, input, offset) of every record
    for i, reader in enumerate(readers):
        keys.extend((r.time_s, r.receive_us, i, r.offset) for r in _records(reader))
    table = np.array(keys, dtype=np.int64).reshape(-1, 4)
    order = np.lexsort((table[:, 3], table[:, 2], table[:, 1], table[:, 0]))
    seen: dict[tuple[str, str, bool], set[int]] = {}
    dropped = 0
    with _new_log(args.out, args.logs) as writer:
        for row in table[order].tolist():
            r, _ = decode_at(readers[row[2]].data, row[3])
            seq = r.frame_seq if r.kind != KIND_STATUS else None
            if seq is not None:
                stream = seen.setdefault((r.site, r.station, r.kind == KIND_CMD), set())
                key = seq << 32 | zlib.crc32(r.payload)
                if key in stream:
                    dropped += 1
                    continue
                stream.add(key)
            _copy(writer, r)
        count = writer.records_written
    print(f"{args.out}: {count} records from {len(readers)} logs, {dropped} duplicates dropped")
    return 0


# ---- verify -------------------------------------------------------------------------------------


def cmd_verify(args) -> int:
    _open(args.log)  # not a log at all: refused like the other commands
    report = verify(args.log)
    print("\n".join(report.lines()))
    return 0 if report.ok else 1


# ---- export -------------------------------------------------------------------------------------


class Column:
    """One telemetry field as a CSV column: its name, and the cell of a raw value."""

    def __init__(self, f: layout.Field):
        self.name = f.flat_name
        unit_scale = SCALES.get(f.path[-1])
        self.scale = unit_scale[1] if unit_scale else 1
        self.unit = unit_scale[0] if unit_scale else ""
        if unit_scale:
            self.name = self.name.rsplit("_x", 1)[0]
        self.digits = round(math.log10(self.scale))
        self.missing = NO_READING.get(f.code)

    def cell(self, raw: int) -> str:
        if raw == self.missing:
            return ""
        if self.scale == 1:
            return str(raw)
        return f"{raw / self.scale:.{self.digits}f}"


def telemetry_columns() -> list[Column]:
    return [Column(f) for f in layout.layout("telemetry").values]


def _station_filter(args):
    return getattr(args, "station", None)


def _telemetry(reader: LogReader, lo, hi, station):
    """(record, flat tuple) of the telemetry frames selected; undecodable frames are counted."""
    bad = 0
    for r in _records(reader, lo, hi):
        if r.kind != KIND_TELEMETRY or (station and (r.site, r.station) != station):
            continue
        try:
            yield r, fast.decode_telemetry_tuple(r.payload)
        except UplinkError:
            bad += 1
    if bad:
        print(f"pumplog: {bad} telemetry payloads are not valid frames (left out)", file=sys.stderr)


def _writing(path, text: bool = True):
    """An output file opened for writing; Refused (one line, exit 2) when it cannot be."""
    try:
        return open(path, "w", newline="") if text else open(path, "wb")
    except OSError as err:
        raise Refused(f"cannot write {path}: {err.strerror or err}") from None


def cmd_export(args) -> int:
    reader = _open(args.log)
    lo, hi = _range(reader, args)
    _checked(reader, lo, hi)
    columns = telemetry_columns()
    at_ts = [c.name for c in columns].index("timestamp_s")
    rows = 0
    with _writing(args.csv) as f:
        out = csv.writer(f)
        out.writerow(["time_utc", "site", "station"] + [c.name for c in columns])
        for r, values in _telemetry(reader, lo, hi, args.station):
            cells = [_iso(values[at_ts]), r.site, r.station]
            cells += [c.cell(v) for c, v in zip(columns, values, strict=True)]
            out.writerow(cells)
            rows += 1
    print(f"{args.csv}: {rows} telemetry rows, {len(columns) + 3} columns")
    if rows == 0 and args.station:
        print(f"pumplog: no telemetry of {'/'.join(args.station)} in the range", file=sys.stderr)
    return 0


# ---- plot ---------------------------------------------------------------------------------------


def rebuild_run(reader: LogReader, lo, hi, station) -> SimpleNamespace:
    """What host_tools.sim.report.plot draws (samples, speeds, scenario name and faults), rebuilt
    from one station's telemetry."""
    from array import array

    stations = {
        (r.site, r.station)
        for r in _records(reader, lo, hi)
        if r.kind == KIND_TELEMETRY and (not station or (r.site, r.station) == station)
    }
    if not stations:
        raise Refused(f"{reader.path}: no telemetry" + (f" of {'/'.join(station)}" if station else "")
                      + " in the range")  # fmt: skip
    if len(stations) > 1:
        names = ", ".join(sorted("/".join(s) for s in stations))
        raise Refused(f"{reader.path}: {len(stations)} stations ({names}): name one with --station")
    (site, name) = stations.pop()
    index = {c.name: i for i, c in enumerate(telemetry_columns())}
    columns = telemetry_columns()
    nan = float("nan")

    def value(values, field):
        i = index[field]
        raw = values[i]
        return nan if raw == columns[i].missing else raw / columns[i].scale

    s = {k: array("d") for k in ("t_s", "suction_kpa", "discharge_kpa", "remote_dp_kpa",
                                 "setpoint_kpa", "flow_m3h", "demand_m3h", "total_power_kw")}  # fmt: skip
    speeds = [array("d") for _ in range(3)]
    present = [False] * 3
    midnight = None
    for _, values in _telemetry(reader, lo, hi, (site, name)):
        t = values[index["timestamp_s"]]
        if midnight is None:
            midnight = t - t % 86400
        s["t_s"].append(float(t - midnight))
        for key in ("suction_kpa", "discharge_kpa", "remote_dp_kpa", "setpoint_kpa", "flow_m3h"):
            s[key].append(value(values, key))
        s["demand_m3h"].append(nan)
        power = 0.0
        for p in range(3):
            speeds[p].append(value(values, f"pump{p + 1}_speed_pct"))
            power += value(values, f"pump{p + 1}_power_kw")
            present[p] = present[p] or values[index[f"pump{p + 1}_state"]] != 0
        s["total_power_kw"].append(power)
    first = _iso(int(s["t_s"][0]) + midnight) if midnight is not None else ""
    scenario = SimpleNamespace(name=f"{site}/{name} from {first}", faults=[])
    return SimpleNamespace(
        scenario=scenario,
        samples=s,
        speeds=[sp for sp, on in zip(speeds, present, strict=True) if on],
    )


def cmd_plot(args) -> int:
    from host_tools.sim.report import plot

    reader = _open(args.log)
    lo, hi = _range(reader, args)
    _checked(reader, lo, hi)
    run = rebuild_run(reader, lo, hi, args.station)
    _writing(args.out, text=False).close()  # an unwritable path: one line, before the drawing
    plot(run, Path(args.out))  # type: ignore[arg-type]  # the fields plot reads, rebuilt
    print(f"{args.out}: {len(run.samples['t_s'])} samples of {run.scenario.name}")
    return 0


# ---- import -------------------------------------------------------------------------------------

# uplink frame kind -> (log record kind, frame size); commands (signed, variable) are not imported
_IMPORTED = {
    int(Kind.TELEMETRY): (KIND_TELEMETRY, layout.layout("telemetry").size),
    int(Kind.EVENT): (KIND_EVENT, layout.layout("event").size),
    int(Kind.ACK): (KIND_ACK, layout.layout("ack").size),
}


def split_frames(data: bytes, name) -> list[tuple[int, bytes]]:
    """(log kind, frame) of back-to-back uplink frames; Refused at the first bytes that are not
    a whole telemetry, event or ack frame."""
    out = []
    pos = 0
    while pos < len(data):
        kind = data[pos + 3] if pos + 4 <= len(data) and data[pos : pos + 3] == b"RP\x01" else None
        known = _IMPORTED.get(kind) if kind is not None else None
        if known is None or pos + known[1] > len(data):
            why = "not an uplink frame" if known is None else "a frame cut short"
            raise Refused(f"{name}: {why} at byte {pos}; nothing imported", 3)
        out.append((known[0], data[pos : pos + known[1]]))
        pos += known[1]
    return out


def cmd_import(args) -> int:
    try:
        data = Path(args.frames).read_bytes()
    except FileNotFoundError:
        raise Refused(f"{args.frames}: no such file") from None
    frames = split_frames(data, args.frames)
    with _new_log(args.out, [args.frames]) as writer:
        for kind, frame in frames:
            ts = int.from_bytes(frame[12:16], "big")
            writer.append(ts * 1_000_000, kind, args.site, args.station, frame)
    print(f"{args.out}: {len(frames)} frames of {args.site}/{args.station}")
    return 0


# ---- command line -------------------------------------------------------------------------------


def _station(text: str) -> tuple[str, str]:
    return broker.station_arg(text)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="pumplog",
        description=__doc__.split("\n\n")[0],
        epilog="T: Unix seconds, ISO 8601 (UTC when no zone) or +N[smhd] from the first record. "
        "Exit: 0 done, 1 verify found problems, 2 bad usage, 3 a damaged log, 130 Ctrl-C.",
    )
    sub = p.add_subparsers(dest="command", required=True)
    station_help = "only this station's telemetry, SITE/STATION (default: every station)"

    def ranged(q):
        q.add_argument(
            "--from",
            dest="start",
            default=None,
            metavar="T",
            help="records with time >= T (default: from the first)",
        )
        q.add_argument(
            "--to",
            dest="end",
            default=None,
            metavar="T",
            help="records with time < T (default: to the last)",
        )

    def source(q):
        q.add_argument("log", help="the telemetry log (pumprecord's, or pumplog's)")

    q = sub.add_parser("list", help="stations, time span, records per kind")
    source(q)
    q.set_defaults(run=cmd_list)
    q = sub.add_parser("cut", help="a time slice into a new log")
    source(q)
    ranged(q)
    q.add_argument("-o", "--out", required=True, help="the new log (must not exist)")
    q.set_defaults(run=cmd_cut)
    q = sub.add_parser("merge", help="logs into one, time order, duplicates dropped")
    q.add_argument("logs", nargs="+", help="the telemetry logs to merge")
    q.add_argument("-o", "--out", required=True, help="the new log (must not exist)")
    q.set_defaults(run=cmd_merge)
    q = sub.add_parser("verify", help="CRC, index, gaps, duplicates")
    source(q)
    q.set_defaults(run=cmd_verify)
    q = sub.add_parser("export", help="telemetry as CSV in engineering units")
    source(q)
    q.add_argument("--csv", required=True, help="the CSV file to write (replaced if it exists)")
    q.add_argument("--station", type=_station, default=None, help=station_help)
    ranged(q)
    q.set_defaults(run=cmd_export)
    q = sub.add_parser("plot", help="a period as the picture pumpsim draws (PNG)")
    source(q)
    q.add_argument("-o", "--out", required=True, help="the PNG file")
    q.add_argument(
        "--station",
        type=_station,
        default=None,
        help="the station to draw, SITE/STATION (default: the log's only one)",
    )
    ranged(q)
    q.set_defaults(run=cmd_plot)
    q = sub.add_parser("import", help="uplink frames back to back (pumpsim's telemetry.bin)")
    q.add_argument("frames", help="the frame file (pumpsim's telemetry.bin)")
    q.add_argument("--site", type=_name, required=True, help="the site name of the records")
    q.add_argument("--station", type=_name, required=True, help="the station name of the records")
    q.add_argument("-o", "--out", required=True, help="the new log (must not exist)")
    q.set_defaults(run=cmd_import)
    return p


def _name(text: str) -> str:
    """A site or station name: one MQTT topic level."""
    if not text or any(c in text for c in "/+#") or len(text.encode()) > NAME_MAX:
        raise argparse.ArgumentTypeError(
            f"{text!r}: a name of 1..{NAME_MAX} bytes without /, + or #"
        )
    return text


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.run(args)
    except Refused as err:
        print(f"pumplog: {err}", file=sys.stderr)
        return err.code
    except LogError as err:
        print(f"pumplog: {err}", file=sys.stderr)
        return 3
    except BrokenPipeError:
        return broker.closed_stdout()
    except OSError as err:
        where = f"{err.filename}: " if err.filename else ""
        print(f"pumplog: {where}{err.strerror or err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("pumplog: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
