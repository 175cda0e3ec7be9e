"""pumpmon: a live view of stations from the broker: latest values, alarms, online/offline, last
event.

    pumpmon [SITE/STATION ...] [--stale S] [--duration S] [broker options]

SITE or STATION may be ``+`` (every one); no argument watches every station. It subscribes to
relaypump/SITE/STATION/+ (not shared: every viewer sees everything) and reads the broker, never
the log.

Rules:
- Online/offline: the retained status message (the station's birth, or the broker's last will
  when the link died): "online"/"offline" as text, or JSON with a "state" field; any other text is
  shown as it is. A station never heard of since pumpmon started has no status (shown "?").
  Telemetry older than --stale seconds (default 35 = three cadences and a half) marks the values
  STALE, whatever the status says.
- Values: the latest telemetry frame decoded with protocol.fast, scaled by protocol.uplink.SCALES;
  a "no reading" value shows as "--". Alarms: the names of the alarm_bits set (Alarm). Last event:
  code, severity, subject and its value in the unit EVENT_VALUE gives. A payload that does not
  decode is counted per station and shown, never dropped silently.
- On a terminal the screen is redrawn (plain ANSI: home + clear) at most once a second and on
  each update; into a pipe or a file, one line is printed per message.
- Stop: Ctrl-C or SIGTERM ends it, exit 0 (--duration S: after S seconds; 130 for a Ctrl-C
  before the broker answered); output into a closed pipe (``| head``) ends it quietly, exit 141.
  Exit 2 bad usage, 4 no broker or a refused login.
- The view is a library: Model.feed(topic, payload, retained, now) returns that line, and
  Model.render(now) returns the screen as text.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import signal
import sys
import threading
import time
from dataclasses import dataclass, field

from host_tools.uplink import broker
from protocol import fast, uplink

NO_READING_S16 = -0x8000
NO_READING_S32 = -0x80000000
CLOCK_SET = 1_000_000_000  # a timestamp_s below it: the station's clock was not set (uplink.py)


def _name(enum, value: int) -> str:
    try:
        return enum(value).name
    except ValueError:
        return str(value)


def _scaled(name: str, raw: int) -> str:
    if raw in (NO_READING_S16, NO_READING_S32) and name not in ("station_energy_kwh_x10",):
        return "--"
    unit, scale = uplink.SCALES[name]
    digits = len(str(scale)) - 1
    return f"{raw / scale:.{digits}f} {unit}"


def _clock(ts: int | float) -> str:
    if ts < CLOCK_SET:
        return f"t+{int(ts)} s (clock not set)"
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def alarm_names(bits: int) -> list[str]:
    names = [a.name for a in uplink.Alarm if bits >> a.value & 1]
    known = sum(1 << a.value for a in uplink.Alarm)
    names += [f"bit{n}" for n in range(32) if (bits & ~known) >> n & 1]
    return names


def event_text(ev: dict) -> str:
    code = ev["code"]
    unit, scale = uplink.EVENT_VALUE.get(code, ("", 1))
    value = ev["value"] / scale if scale != 1 else ev["value"]
    subject = "station" if ev["subject"] == 0 else f"pump {ev['subject']}"
    return (
        f"{_name(uplink.EventCode, code)} ({_name(uplink.Severity, ev['severity'])}, {subject})"
        f" {value}{' ' + unit if unit else ''}"
    )


_LINE_FIELDS = (
    ("setpoint", "setpoint_kpa_x10"),
    ("suction", "suction_kpa_x10"),
    ("discharge", "discharge_kpa_x10"),
    ("flow", "flow_m3h_x10"),
)
_PRESSURES = (
    ("setpoint", "setpoint_kpa_x10"),
    ("suction", "suction_kpa_x10"),
    ("discharge", "discharge_kpa_x10"),
    ("remote DP", "remote_dp_kpa_x10"),
)
_FLOWS = (
    ("supply", "supply_temp_c_x100"),
    ("return", "return_temp_c_x100"),
    ("flow", "flow_m3h_x10"),
    ("energy", "station_energy_kwh_x10"),
)


def _labelled(f: dict, fields, sep: str) -> str:
    return sep.join(f"{label} {_scaled(name, f[name])}" for label, name in fields)


def _pump_text(n: int, p: dict) -> str:
    fault = f" fault {p['fault_code']}" if p["fault_code"] else ""
    values = " ".join(
        _scaled(name, p[name]) for name in ("speed_pct_x100", "current_a_x10", "power_kw_x10")
    )
    return f"P{n} {_name(uplink.PumpState, p['state'])} {values}{fault}"


@dataclass
class StationView:
    site: str
    station: str
    status: str | None = None  # the status message as text
    online: bool | None = None
    telemetry: dict | None = None
    telemetry_at: float = 0.0  # receive time
    event: dict | None = None
    ack: dict | None = None
    undecodable: int = 0
    errors: list[str] = field(default_factory=list)


def parse_status(payload: bytes) -> tuple[str, bool | None]:
    text = payload.decode("utf-8", "replace").strip()
    state = text
    if text.startswith("{"):
        try:
            state = str(json.loads(text).get("state", text))
        except (ValueError, AttributeError):
            pass
    online = {"online": True, "offline": False}.get(state.lower())
    return text, online


class Model:
    """Every station seen, in the order they were first heard of."""

    def __init__(self, stale_s: float = 35.0):
        self.stale_s = stale_s
        self.stations: dict[tuple[str, str], StationView] = {}

    def view(self, site: str, station: str) -> StationView:
        key = (site, station)
        if key not in self.stations:
            self.stations[key] = StationView(site, station)
        return self.stations[key]

    def feed(self, topic: str, payload: bytes, retained: bool = False, now: float | None = None):
        """Take one message; returns its one-line description (None for other topics)."""
        now = time.time() if now is None else now
        t = broker.parse_topic(topic)
        if t is None:
            return None
        v = self.view(t.site, t.station)
        who = f"{t.site}/{t.station}"
        if t.kind == "status":
            v.status, v.online = parse_status(payload)
            return f"{who} status {v.status}{' (retained)' if retained else ''}"
        if t.kind == "cmd":
            return f"{who} command sent ({len(payload)} B)"
        try:
            kind, frame = fast.decode(payload)
        except uplink.UplinkError as err:
            v.undecodable += 1
            v.errors = (v.errors + [f"{t.kind}: {err}"])[-3:]
            return f"{who} {t.kind}: undecodable payload ({type(err).__name__}: {err})"
        if kind == uplink.Kind.TELEMETRY:
            v.telemetry, v.telemetry_at = frame, now
            return f"{who} telemetry seq {frame['seq']} {self._values_line(frame)}"
        if kind == uplink.Kind.EVENT:
            v.event = frame
            return f"{who} event {_clock(frame['timestamp_s'])} {event_text(frame)}"
        if kind == uplink.Kind.ACK:
            v.ack = frame
            return (
                f"{who} ack counter {frame['command_counter']}: "
                f"{_name(uplink.AckResult, frame['result'])}"
            )
        return f"{who} {t.kind}: {kind.name.lower()} frame"

    @staticmethod
    def _values_line(f: dict) -> str:
        alarms = alarm_names(f["alarm_bits"])
        return (
            f"mode {_name(uplink.Mode, f['mode'])} {_labelled(f, _LINE_FIELDS, ' ')}"
            f" alarms {','.join(alarms) if alarms else 'none'}"
        )

    def state_word(self, v: StationView, now: float) -> str:
        word = {True: "ONLINE", False: "OFFLINE", None: "?"}[v.online]
        if v.online is None and v.status:
            word = v.status[:20]
        if v.telemetry is not None and now - v.telemetry_at > self.stale_s:
            word += " STALE"
        return word

    def render(self, now: float | None = None) -> str:
        now = time.time() if now is None else now
        lines = [f"pumpmon  {_clock(now)}  {len(self.stations)} station(s)", ""]
        for (site, station), v in sorted(self.stations.items()):
            head = f"{site}/{station}  {self.state_word(v, now)}"
            f = v.telemetry
            if f is None:
                lines += [head + "  no telemetry yet"]
            else:
                age = now - v.telemetry_at
                when = _clock(f["timestamp_s"])
                lines.append(
                    f"{head}  telemetry {age:.0f} s ago, frame time {when}, seq {f['seq']}"
                )
                mode = _name(uplink.Mode, f["mode"])
                lines.append(f"  mode {mode}  {_labelled(f, _PRESSURES, '  ')}")
                lines.append(f"  {_labelled(f, _FLOWS, '  ')}")
                pumps = [
                    _pump_text(n, p)
                    for n, p in enumerate(f["pumps"], 1)
                    if p["state"] != uplink.PumpState.ABSENT
                ]
                lines.append("  " + (" | ".join(pumps) if pumps else "no pumps"))
                alarms = alarm_names(f["alarm_bits"])
                lines.append(f"  alarms: {', '.join(alarms) if alarms else 'none'}")
            if v.event is not None:
                lines.append(
                    f"  last event: {_clock(v.event['timestamp_s'])} {event_text(v.event)}"
                )
            if v.ack is not None:
                result = _name(uplink.AckResult, v.ack["result"])
                lines.append(f"  last ack: counter {v.ack['command_counter']} {result}")
            if v.undecodable:
                lines.append(f"  undecodable payloads: {v.undecodable} (last: {v.errors[-1]})")
            lines.append("")
        return "\n".join(lines)


def _filters(names: list[str]) -> list[str]:
    out = []
    for name in names or ["+/+"]:
        site, sep, station = name.partition("/")
        if not sep or not site or not station or "/" in station:
            raise broker.ToolError(f"{name!r}: expected SITE/STATION (either may be +)")
        out.append(broker.topic(site, station, "+"))
    return out


def run(args) -> int:
    model = Model(stale_s=args.stale)
    tty = sys.stdout.isatty()
    lock = threading.Lock()
    changed = threading.Event()
    client = broker.make_client(args)
    filters = _filters(args.stations)

    def on_connect(client, userdata, flags, reason_code, properties):
        for f in filters:
            client.subscribe(f, qos=1)

    closed: list[int] = []  # stdout's reader went away (| head), or a signal asked to stop

    def on_message(client, userdata, msg):
        with lock:
            line = model.feed(msg.topic, msg.payload, msg.retain)
        if line is None or closed:
            return
        if tty:
            changed.set()
            return
        try:
            print(line, flush=True)
        except BrokenPipeError:  # in paho's thread: tell the main loop, which ends the run
            closed.append(141)
            changed.set()

    client.on_connect = on_connect
    client.on_message = on_message
    signal.signal(signal.SIGTERM, lambda *_: (closed.append(0), changed.set()))
    broker.connect(client, args)
    end = time.monotonic() + args.duration if args.duration else None
    try:
        while not closed and (end is None or time.monotonic() < end):
            changed.wait(1.0)
            changed.clear()
            if tty:
                with lock:
                    screen = model.render()
                sys.stdout.write("\x1b[H\x1b[2J" + screen + "\n")
                sys.stdout.flush()
    except KeyboardInterrupt:
        pass
    finally:
        client.disconnect()
        client.loop_stop()
    if closed and closed[0] == 141:
        return broker.closed_stdout()
    return 0


def seconds(text: str) -> float:
    """A number of seconds above 0 (argparse type)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text!r}: expected seconds above 0")
    return value


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="pumpmon",
        description="Live view of relay pump stations.",
        epilog="Exit: 0 stopped (Ctrl-C, --duration), 2 bad usage, 4 no broker.",
    )
    p.add_argument(
        "stations",
        nargs="*",
        help="SITE/STATION, either may be + for any (default: every station, +/+)",
    )
    p.add_argument(
        "--stale",
        type=seconds,
        default=35.0,
        help="telemetry older than this many seconds is STALE (default 35)",
    )
    p.add_argument(
        "--duration",
        type=seconds,
        default=None,
        help="stop after this many seconds (default: run until Ctrl-C)",
    )
    broker.add_connection_options(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return run(args)
    except broker.ToolError as err:
        print(f"pumpmon: {err}", file=sys.stderr)
        return err.code
    except KeyboardInterrupt:  # while connecting (the view's own loop ends with exit 0)
        print("pumpmon: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
