"""Regression diff: where two decisions logs (trace_replay.py) of the same trace differ.

    python -m host_tools.sim.trace_diff OLD.jsonl NEW.jsonl [--tolerance-s S] [--speed-tolerance P]

Rules:
- Decisions are the start, stop, trip, reset and event records, compared in order. Two match
  when they are the same kind of the same pump (stop: and the same "by"), or the same event
  code and subject, within ``tolerance_s`` (default 1 s) of each other; an event's value is
  shown, not compared. The first divergence is the first position where they do not match:
  its time is the earlier of the two, with what each version did there (or "nothing more").
- Speeds: the minute samples; they diverge where a pump runs in one and not the other, a
  running pump's reference differs by more than ``speed_tolerance_pct`` (default 2 %), or the
  setpoints differ by more than 1 kPa. The first such minute is reported apart.
- Differing decisions: each decision is paired with the other version's earliest unpaired one
  of the same kind within ``tolerance_s``; the decisions left unpaired are those only one version
  made, listed in time order (the first ``LIST_MAX``).
- Counts per kind (pump starts and stops per pump, trips, resets, each event code), the station's
  starts and stops and the plant KPIs (energy, DP in band, unserved, suction margin) of each, and
  the difference.
Identical decisions: "no divergence". Exit status of the command line: 0 none, 1 they differ,
2 a log that cannot be read.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DECISIONS = ("start", "stop", "trip", "reset", "event")
DEFAULT_TOLERANCE_S = 1.0
DEFAULT_SPEED_TOLERANCE_PCT = 2.0
SETPOINT_TOLERANCE_KPA = 1.0
LIST_MAX = 40


class DiffError(ValueError):
    """A decisions log that cannot be read; str() names the file and line."""


@dataclass
class Decisions:
    path: str
    header: dict[str, Any]
    decisions: list[dict[str, Any]]
    speeds: list[dict[str, Any]]
    summary: dict[str, Any]


def load(path: Path | str) -> Decisions:
    header: dict[str, Any] | None = None
    summary: dict[str, Any] = {}
    decisions, speeds = [], []
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise DiffError(f"{path}: {exc.strerror}") from exc
    for n, line in enumerate(lines, 1):
        try:
            record = json.loads(line)
            kind = record["kind"]
        except (ValueError, KeyError, TypeError):
            raise DiffError(f"{path}:{n}: not a decisions record") from None
        if kind == "header":
            header = record
        elif kind == "summary":
            summary = record
        elif kind == "speeds":
            speeds.append(record)
        elif kind in DECISIONS:
            decisions.append(record)
    if header is None:
        raise DiffError(f"{path}: no header record (not a decisions log)")
    return Decisions(str(path), header, decisions, speeds, summary)


def what(record: dict[str, Any]) -> tuple:
    """What a decision is, its time aside (what two versions must agree on)."""
    kind = record["kind"]
    if kind == "event":
        return (kind, record["code"], record["subject"])
    if kind == "stop":
        return (kind, record["pump"], record.get("by"))
    return (kind, record["pump"])


def describe(record: dict[str, Any] | None) -> str:
    if record is None:
        return "nothing more"
    kind = record["kind"]
    if kind == "event":
        code, subject = record["code"], record["subject"]
        if code.startswith(("PUMP_", "DRIVE_")):
            subject = f"pump {subject}"
        else:
            subject = f"subject {subject}" if subject else "station"
        return f"event {record['code']} ({subject}, value {record['value']})"
    if kind == "stop":
        return f"stop pump {record['pump']} (by {record.get('by')})"
    if kind == "trip":
        return f"trip pump {record['pump']} ({record.get('fault')})"
    return f"{kind} pump {record['pump']}"


class Clock:
    """Times as the report prints them: HH:MM:SS from the trace start, and UTC when known."""

    def __init__(self, start_utc: str | None) -> None:
        self.start = dt.datetime.fromisoformat(start_utc) if start_utc else None

    def __call__(self, t: float) -> str:
        whole = int(t)
        day, rest = divmod(whole, 86400)
        text = f"{rest // 3600:02d}:{rest % 3600 // 60:02d}:{rest % 60:02d}"
        text = f"{day}d {text}" if day else text
        if self.start is not None:
            at = self.start + dt.timedelta(seconds=t)
            text += f" ({at:%Y-%m-%d %H:%M:%S} UTC)"
        return f"{text}, t = {t:g} s"


def first_divergence(
    old: list[dict], new: list[dict], tolerance_s: float
) -> tuple[int, dict | None, dict | None] | None:
    """(position, old's decision there, new's) at the first mismatch; None when none."""
    for k in range(max(len(old), len(new))):
        a = old[k] if k < len(old) else None
        b = new[k] if k < len(new) else None
        if a is None or b is None or what(a) != what(b) or abs(a["t"] - b["t"]) > tolerance_s:
            return k, a, b
    return None


def first_speed_divergence(
    old: list[dict], new: list[dict], tolerance_pct: float
) -> tuple[float, str] | None:
    by_time = {s["t"]: s for s in new}
    for a in old:
        b = by_time.get(a["t"])
        if b is None:
            continue
        for pump, (x, y) in enumerate(zip(a["ref"], b["ref"], strict=False), 1):
            if (x is None) != (y is None) or (x is not None and abs(x - y) > tolerance_pct):
                shown = [("stopped" if v is None else f"{v:.1f} %") for v in (x, y)]
                return a["t"], f"pump {pump}: old {shown[0]}, new {shown[1]}"
        if abs(a["setpoint_kpa"] - b["setpoint_kpa"]) > SETPOINT_TOLERANCE_KPA:
            return a["t"], f"setpoint: old {a['setpoint_kpa']} kPa, new {b['setpoint_kpa']} kPa"
    return None


def only_in_one(
    old: list[dict], new: list[dict], tolerance_s: float
) -> tuple[list[dict], list[dict]]:
    """The decisions only old made and only new made: each decision is paired with the other
    version's earliest unpaired one of the same kind (what) within tolerance_s."""
    by_what: dict[tuple, tuple[list[dict], list[dict]]] = {}
    for side, records in ((0, old), (1, new)):
        for r in records:
            by_what.setdefault(what(r), ([], []))[side].append(r)
    gone, added = [], []
    for a, b in by_what.values():
        i = j = 0
        while i < len(a) and j < len(b):
            if abs(a[i]["t"] - b[j]["t"]) <= tolerance_s:
                i, j = i + 1, j + 1
            elif a[i]["t"] < b[j]["t"]:
                gone.append(a[i])
                i += 1
            else:
                added.append(b[j])
                j += 1
        gone += a[i:]
        added += b[j:]
    return sorted(gone, key=lambda r: r["t"]), sorted(added, key=lambda r: r["t"])


def _counts(run: Decisions) -> dict[str, int]:
    counts: dict[str, int] = {}
    for r in run.decisions:
        if r["kind"] == "event":
            key = f"event {r['code']}"
        else:
            key = f"pump {r['pump']} {r['kind']}" + (
                f" by {r['by']}" if r["kind"] == "stop" else ""
            )
        counts[key] = counts.get(key, 0) + 1
    return counts


def _number(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        return f"{value:.2f}"
    if isinstance(value, list):
        return "/".join(_number(v) for v in value)
    return str(value)


def _delta(a: Any, b: Any) -> str:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        d = b - a
        if d == 0:
            return "="
        return f"{d:+.2f}" if isinstance(d, float) else f"{d:+d}"
    return "=" if a == b else "differs"


def _version(label: str, run: Decisions) -> str:
    h = run.header
    git = f"git {h['firmware_git']}, " if h.get("firmware_git") else ""
    return f"  {label}: {h['firmware']} ({git}files {h['firmware_sha']}); config {h['config']}"


def report(
    old: Decisions,
    new: Decisions,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
    speed_tolerance_pct: float = DEFAULT_SPEED_TOLERANCE_PCT,
) -> tuple[str, bool]:
    """The readable report and whether the two runs' decisions differ."""
    h = old.header
    clock = Clock(h.get("trace_start_utc"))
    lines = [
        f"Regression diff of two firmware versions on the trace {h['trace']}",
        f"  scenario: {h['scenario']} (seed {h['seed']}), {h['hours']:g} h, "
        f"replayed channels: {', '.join(h['channels'])} ({h['between']}, max hold "
        f"{h['max_hold_s']:g} s)",
        _version("old", old),
        _version("new", new),
    ]
    for key in ("trace", "scenario", "seed", "channels", "hours", "between"):
        if old.header.get(key) != new.header.get(key):
            lines.append(f"  WARNING: the runs differ in {key}: {h.get(key)} / {new.header[key]}")
    lines.append("")
    first = first_divergence(old.decisions, new.decisions, tolerance_s)
    speed = first_speed_divergence(old.speeds, new.speeds, speed_tolerance_pct)
    if first is None:
        lines.append(
            f"First divergence: none ({len(old.decisions)} decisions agree within {tolerance_s:g} s)"
        )
    else:
        k, a, b = first
        t = min(r["t"] for r in (a, b) if r is not None)
        lines += [
            f"First divergence: {clock(t)}, decision {k + 1} (the {k} before it agree)",
            f"  old: {describe(a)}" + (f" at {clock(a['t'])}" if a else ""),
            f"  new: {describe(b)}" + (f" at {clock(b['t'])}" if b else ""),
        ]
    if speed is None:
        lines.append(
            f"First speed divergence: none (references within {speed_tolerance_pct:g} %, "
            f"setpoints within {SETPOINT_TOLERANCE_KPA:g} kPa, minute samples)"
        )
    else:
        lines.append(f"First speed divergence: {clock(speed[0])}: {speed[1]}")
    gone, added = only_in_one(old.decisions, new.decisions, tolerance_s)
    if gone or added:
        lines += ["", f"Decisions only one version made: old {len(gone)}, new {len(added)}"]
        merged = sorted(
            [(r["t"], "old", r) for r in gone] + [(r["t"], "new", r) for r in added],
            key=lambda x: x[0],
        )
        for t, label, r in merged[:LIST_MAX]:
            lines.append(f"  {clock(t).split(',')[0]:>10}  {label} only: {describe(r)}")
        if len(merged) > LIST_MAX:
            lines.append(f"  ... {len(merged) - LIST_MAX} more")
    lines += ["", f"{'Counts':<44}{'old':>12}{'new':>12}{'change':>10}"]
    a_counts, b_counts = _counts(old), _counts(new)
    for key in sorted(set(a_counts) | set(b_counts)):
        x, y = a_counts.get(key, 0), b_counts.get(key, 0)
        lines.append(f"  {key:<42}{x:>12}{y:>12}{_delta(x, y):>10}")
    lines += ["", f"{'Plant KPIs (simulated plant)':<44}{'old':>12}{'new':>12}{'change':>10}"]
    rows = (
        ("energy_kwh", "energy, kWh"),
        ("dp_in_band_pct", "remote DP within ±0.5 m, %"),
        ("unserved_min", "remote DP > 2 m low, min"),
        ("min_suction_margin_kpa", "min suction margin, kPa"),
        ("starts", "pump starts (P1/P2/P3)"),
        ("station_starts", "station starts"),
        ("station_stops", "station stops"),
        ("max_starts_per_hour", "max starts of a pump per hour"),
    )
    for key, label in rows:
        x, y = old.summary.get(key), new.summary.get(key)
        lines.append(f"  {label:<42}{_number(x):>12}{_number(y):>12}{_delta(x, y):>10}")
    if "remote_dp_kpa" in h["channels"]:
        lines.append(
            "  (the agents regulated on the traced remote DP: the plant's DP figures say how their"
            " speeds served the simulated network, open loop)"
        )
    differ = first is not None or speed is not None
    verdict = "the decisions differ" if differ else "no divergence"
    if not differ and any(old.summary.get(k) != new.summary.get(k) for k, _ in rows):
        verdict += " (the plant KPIs differ: speeds within the tolerance)"
    lines += ["", "Verdict: " + verdict]
    return "\n".join(lines) + "\n", differ


def _not_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value >= 0.0 or value == float("inf"):  # also NaN
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text!r}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m host_tools.sim.trace_diff",
        description="Where two decisions logs of the same trace differ (pumpsim trace/diff).",
        epilog="Exit status: 0 no divergence, 1 they differ, 2 a log that cannot be read.",
    )
    parser.add_argument("old", metavar="OLD.jsonl", help="the old firmware's decisions log")
    parser.add_argument("new", metavar="NEW.jsonl", help="the new firmware's decisions log")
    parser.add_argument(
        "--tolerance-s",
        type=_not_negative,
        default=DEFAULT_TOLERANCE_S,
        metavar="S",
        help=f"two decisions this far apart or nearer are the same, s (default "
        f"{DEFAULT_TOLERANCE_S:g})",
    )
    parser.add_argument(
        "--speed-tolerance",
        type=_not_negative,
        default=DEFAULT_SPEED_TOLERANCE_PCT,
        metavar="P",
        help=f"speed references this close are the same, %% (default "
        f"{DEFAULT_SPEED_TOLERANCE_PCT:g})",
    )
    args = parser.parse_args(argv)
    try:
        text, differ = report(
            load(args.old), load(args.new), args.tolerance_s, args.speed_tolerance
        )
    except DiffError as exc:
        print(f"trace_diff: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(text)
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
