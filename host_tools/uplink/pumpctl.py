"""pumpctl: sign a command, send it to a station, show the station's ack.

    pumpctl [options] SITE/STATION setpoint KPA
    pumpctl [options] SITE/STATION mode off|remote_dp|discharge|manual_speed
    pumpctl [options] SITE/STATION pump-enable N | pump-disable N
    pumpctl [options] SITE/STATION reset [N]          (0, the default: the station and every pump)
    pumpctl [options] SITE/STATION config KEY VALUE   (KEY: section.name or its id; pumpctl
                                                       config-keys lists them)
    options: --keys FILE  --state-dir DIR  --ttl S  --timeout S  --counter N  + broker options

Rules:
- Keys: the key file (--keys, else the environment variable RELAYPUMP_KEYS; never a key on the
  command line) holds one station a line, ``SITE/STATION STATION_ID KEY_HEX`` (the key: 32 or
  more hex digits, at least 16 bytes; ``#`` starts a comment). A key file that other users may
  read or write (any of the mode's "other" bits) is refused, as is a missing file or a station
  it does not name.
- Frame: protocol/uplink.py's construct schema builds the command (header station_id from the key
  file, seq = the counter, timestamp_s = now, expiry_s = now + --ttl) and its HMAC-SHA256 tag
  with CPython's hmac; published QoS 1 (not retained) on relaypump/SITE/STATION/cmd.
- Counters: the station accepts a command only with a counter above the last it accepted. The
  counter used last for each station is kept in --state-dir (else RELAYPUMP_STATE_DIR, else
  ~/.local/state/relaypump), one small file per station, updated atomically (a temporary file,
  fsync, rename, under a lock) before the command is sent: a counter is never used twice, even
  when a send fails. --counter N uses N (it must be above the last used one).
- Ack: pumpctl subscribes to relaypump/SITE/STATION/ack before it sends and waits for the ack with
  its station id and counter, at most --timeout seconds.
- Values: a setpoint or a number of ``config`` must be a finite number that fits the frame
  (``nan``, ``inf`` are usage errors); --ttl 1..86400 s; --timeout a number above 0.
- One line on stdout for the result; a refusal is one line on stderr. Exit status: 0 the station
  carried it out (OK); 1 the station refused it (the ack's result says why); 2 a usage, key or
  state problem (nothing sent); 3 no ack within the timeout; 4 the broker could not be reached or
  refused the connection; 130 interrupted (Ctrl-C; a command already sent may still be carried
  out: its counter is used).
"""

from __future__ import annotations

import argparse
import binascii
import fcntl
import json
import math
import os
import stat
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from relaypump.config_keys import BOOLEAN, CONFIG_KEYS, INTEGER, NUMBER  # the firmware's ids

from host_tools.uplink import broker
from host_tools.uplink.broker import ToolError
from protocol import fast, uplink

KEYS_ENV = "RELAYPUMP_KEYS"
STATE_ENV = "RELAYPUMP_STATE_DIR"
EXIT_OK, EXIT_REFUSED, EXIT_USAGE, EXIT_TIMEOUT, EXIT_BROKER = 0, 1, 2, 3, 4
MODES = {m.name.lower(): m for m in uplink.Mode if m is not uplink.Mode.LOCAL}


@dataclass(frozen=True)
class StationKey:
    site: str
    station: str
    station_id: int
    key: bytes


def load_keys(path: str | os.PathLike) -> dict[tuple[str, str], StationKey]:
    """The key file: refused when missing, open to other users, or malformed (line named)."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise ToolError(f"key file {path} not found") from None
    if mode & (stat.S_IROTH | stat.S_IWOTH):
        raise ToolError(
            f"key file {path} is open to other users (mode {stat.S_IMODE(mode):04o}): "
            f"refusing to use it; chmod o-rw {path}"
        )
    try:
        lines = path.read_text().splitlines()
    except OSError as err:
        raise ToolError(f"cannot read the key file {path}: {err.strerror or err}") from None
    except UnicodeDecodeError:
        raise ToolError(
            f"key file {path} is not text (SITE/STATION STATION_ID KEY_HEX lines)"
        ) from None
    keys = {}
    for number, line in enumerate(lines, 1):
        text = line.split("#", 1)[0].split()
        if not text:
            continue
        where = f"key file {path} line {number}"
        if len(text) != 3:
            raise ToolError(f"{where}: expected SITE/STATION STATION_ID KEY_HEX")
        try:
            site, station = broker.station_arg(text[0])
        except argparse.ArgumentTypeError as err:
            raise ToolError(f"{where}: {err}") from None
        if not text[1].isdigit() or not 0 <= int(text[1]) < 2**32:
            raise ToolError(f"{where}: station id must be an integer 0..4294967295")
        try:
            key = binascii.unhexlify(text[2])
        except (binascii.Error, ValueError):
            raise ToolError(f"{where}: the key must be hex digits") from None
        if len(key) < uplink.MIN_KEY_SIZE:
            raise ToolError(f"{where}: the key must be at least {uplink.MIN_KEY_SIZE} bytes")
        keys[(site, station)] = StationKey(site, station, int(text[1]), key)
    return keys


def keys_path(args) -> str:
    path = args.keys or os.environ.get(KEYS_ENV)
    if not path:
        raise ToolError(f"no key file: pass --keys FILE or set {KEYS_ENV}")
    return path


# --- counters --------------------------------------------------------------------------------
def state_dir(args) -> Path:
    if args.state_dir:
        return Path(args.state_dir)
    if os.environ.get(STATE_ENV):
        return Path(os.environ[STATE_ENV])
    return Path.home() / ".local" / "state" / "relaypump"


def take_counter(directory: Path, site: str, station: str, wanted: int | None = None) -> int:
    """The next command counter of a station (above the last used; `wanted` if given and above
    it), stored before it is returned."""
    if directory.exists() and not directory.is_dir():  # mkdir would say "File exists"
        raise ToolError(f"counter state: --state-dir {directory} is a file, not a folder")
    try:
        return _take_counter(directory, site, station, wanted)
    except OSError as err:
        where = err.filename or directory
        raise ToolError(
            f"counter state in {directory}: {where}: {err.strerror or err} (--state-dir)"
        ) from None


def _take_counter(directory: Path, site: str, station: str, wanted: int | None) -> int:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"pumpctl-{site}-{station}.json"
    with open(directory / ".pumpctl.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        last = 0
        if path.exists():
            try:
                last = int(json.loads(path.read_text())["last_counter"])
            except (ValueError, KeyError, TypeError):
                raise ToolError(f"counter state {path} is unreadable; fix or remove it") from None
        counter = last + 1 if wanted is None else wanted
        if counter <= last:
            raise ToolError(f"--counter {wanted} is not above the last one used ({last})")
        if counter >= 2**32:
            raise ToolError(f"{site}/{station}: the command counter is exhausted (2**32)")
        tmp = path.with_suffix(".tmp")
        with open(tmp, "w") as f:
            json.dump({"last_counter": counter}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    return counter


# --- commands --------------------------------------------------------------------------------
def config_entry(name: str):
    for entry in CONFIG_KEYS:
        key_id, section, key = entry[:3]
        if name == f"{section}.{key}" or name == str(key_id):
            return entry
    raise ToolError(
        f"config key {name!r} is not remotely settable (pumpctl config-keys lists them)"
    )


def config_value(entry, text: str) -> int:
    key_id, section, key, scale, kind = entry
    if kind == BOOLEAN:
        values = {"1": 1, "true": 1, "on": 1, "0": 0, "false": 0, "off": 0}
        if text.lower() not in values:
            raise ToolError(f"{section}.{key}: expected true/false, got {text!r}")
        return values[text.lower()]
    try:
        raw = int(text) if kind == INTEGER else round(finite(text) * scale)
    except ValueError:
        raise ToolError(f"{section}.{key}: expected a number, got {text!r}") from None
    if not -(2**31) <= raw < 2**31:
        raise ToolError(f"{section}.{key}: {text} does not fit the command's value")
    return raw


def finite(text: str) -> float:
    """A finite float of the command line (ValueError for nan, inf and what is not a number)."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text!r} is not a finite number")
    return value


def command_values(args) -> tuple[uplink.CommandType, dict, str]:
    """(command type, construct args, a description) of the parsed command line."""
    c = args.command
    if c == "setpoint":
        if not math.isfinite(args.kpa):
            raise ToolError(f"setpoint {args.kpa}: expected a finite number of kPa")
        raw = round(args.kpa * 10)
        if not -32767 <= raw <= 32767:
            raise ToolError(f"setpoint {args.kpa} kPa does not fit the frame (+-3276.7 kPa)")
        return uplink.CommandType.SETPOINT, {"setpoint_kpa_x10": raw}, f"setpoint {raw / 10} kPa"
    if c == "mode":
        mode = MODES[args.mode]
        return uplink.CommandType.MODE, {"mode": int(mode)}, f"mode {args.mode}"
    if c in ("pump-enable", "pump-disable"):
        kind = (
            uplink.CommandType.PUMP_ENABLE
            if c == "pump-enable"
            else uplink.CommandType.PUMP_DISABLE
        )
        return kind, {"pump": args.pump}, f"{c} {args.pump}"
    if c == "reset":
        what = "station" if args.pump == 0 else f"pump {args.pump}"
        return uplink.CommandType.RESET, {"pump": args.pump}, f"reset {what}"
    entry = config_entry(args.key)
    raw = config_value(entry, args.value)
    name = f"{entry[1]}.{entry[2]}"
    return (
        uplink.CommandType.CONFIG_CHANGE,
        {"key": entry[0], "value": raw},
        f"config {name} = {args.value} (id {entry[0]}, raw {raw})",
    )


def build_command(
    station: StationKey,
    counter: int,
    command_type: uplink.CommandType,
    arguments: dict,
    now_s: int,
    ttl_s: int,
) -> bytes:
    """The signed command frame (protocol/uplink.py's schema, HMAC-SHA256 under the key)."""
    return uplink.build(
        uplink.command,
        {
            "station_id": station.station_id,
            "seq": counter,
            "timestamp_s": now_s,
            "command_counter": counter,
            "expiry_s": now_s + ttl_s,
            "command_type": int(command_type),
            "args": arguments,
        },
        key=station.key,
    )


class AckWaiter:
    """Subscribes to the station's ack topic; ``wait`` returns the ack frame for a counter."""

    def __init__(self, client, station: StationKey):
        self.station = station
        self.topic = broker.topic(station.site, station.station, "ack")
        self.acks: dict[int, dict] = {}
        self.subscribed = threading.Event()
        self._cond = threading.Condition()
        client.on_subscribe = lambda *a: self.subscribed.set()
        client.on_message = self._on_message
        self.client = client

    def subscribe(self, timeout: float) -> None:
        self.client.subscribe(self.topic, qos=1)
        if not self.subscribed.wait(timeout):
            raise ToolError(f"the broker did not confirm the subscription to {self.topic}", 4)

    def _on_message(self, client, userdata, msg):
        try:
            ack = fast.decode_kind(uplink.Kind.ACK, msg.payload)
        except uplink.UplinkError:
            return  # not an ack frame: not ours to judge
        if ack["station_id"] != self.station.station_id:
            return
        with self._cond:
            self.acks[ack["command_counter"]] = ack
            self._cond.notify_all()

    def wait(self, counter: int, timeout: float) -> dict | None:
        with self._cond:
            self._cond.wait_for(lambda: counter in self.acks, timeout)
            return self.acks.get(counter)


def send(args) -> int:
    site, station_name = args.station
    keys = load_keys(keys_path(args))
    station = keys.get((site, station_name))
    if station is None:
        raise ToolError(f"the key file names no key for {site}/{station_name}")
    command_type, arguments, description = command_values(args)
    client = broker.make_client(args)
    waiter = AckWaiter(client, station)
    broker.connect(client, args, timeout=args.timeout)
    try:
        waiter.subscribe(args.timeout)
        counter = take_counter(state_dir(args), site, station_name, args.counter)
        now = int(time.time())
        frame = build_command(station, counter, command_type, arguments, now, args.ttl)
        start = time.monotonic()
        info = client.publish(broker.topic(site, station_name, "cmd"), frame, qos=1)
        info.wait_for_publish(args.timeout)
        if not info.is_published():
            raise ToolError(f"the broker did not take the command within {args.timeout:g} s", 4)
        left = max(0.0, args.timeout - (time.monotonic() - start))
        ack = waiter.wait(counter, left)
        elapsed_ms = (time.monotonic() - start) * 1000
    finally:
        client.disconnect()
        client.loop_stop()
    who = f"{site}/{station_name}: {description}, counter {counter}"
    if ack is None:
        print(f"pumpctl: {who}: no ack within {args.timeout:g} s", file=sys.stderr)
        return EXIT_TIMEOUT
    try:
        result = uplink.AckResult(ack["result"]).name
    except ValueError:
        result = f"result {ack['result']}"
    if ack["result"] == uplink.AckResult.OK:
        print(f"{who}: OK ({elapsed_ms:.0f} ms)")
        return EXIT_OK
    print(f"{who}: refused: {result} ({elapsed_ms:.0f} ms)")
    return EXIT_REFUSED


def list_config_keys() -> int:
    kinds = {NUMBER: "number", INTEGER: "integer", BOOLEAN: "true/false"}
    for key_id, section, key, scale, kind in CONFIG_KEYS:
        unit = f"value x {scale} on the wire" if kind == NUMBER else ""
        print(f"{key_id:4d}  {section}.{key:<28} {kinds[kind]:<10} {unit}".rstrip())
    return EXIT_OK


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="pumpctl",
        description="Sign a command, send it to a station and show its ack.",
        epilog="Exit status: 0 OK, 1 refused by the station, 2 usage/key/state problem, "
        "3 no ack in time, 4 broker unreachable.",
    )
    p.add_argument("station", help="SITE/STATION (or config-keys: list the config keys)")
    p.add_argument("--keys", default=None, help=f"key file (default ${KEYS_ENV})")
    p.add_argument(
        "--state-dir",
        default=None,
        help=f"counter state (default ${STATE_ENV}, else ~/.local/state/relaypump)",
    )
    p.add_argument(
        "--ttl",
        type=broker.bounded_int(1, 86400),
        default=60,
        help="seconds until the command expires (default 60)",
    )
    p.add_argument(
        "--timeout",
        type=positive_seconds,
        default=10.0,
        help="seconds to wait for the broker and the ack (default 10)",
    )
    p.add_argument(
        "--counter",
        type=int,
        default=None,
        help="use this counter, above the last one used (default: the last one + 1)",
    )
    broker.add_connection_options(p)
    sub = p.add_subparsers(dest="command")
    s = sub.add_parser("setpoint", help="setpoint of the active pressure mode, kPa")
    s.add_argument("kpa", type=float, help="the setpoint, kPa (e.g. 120.5)")
    s = sub.add_parser("mode", help="operating mode")
    s.add_argument("mode", choices=sorted(MODES), help="the mode to set")
    for name in ("pump-enable", "pump-disable"):
        s = sub.add_parser(name, help="pump number 1..3")
        s.add_argument("pump", type=int, choices=(1, 2, 3), help="the pump, 1..3")
    s = sub.add_parser("reset", help="clear trips and lockouts (0: station and all pumps)")
    s.add_argument(
        "pump",
        type=int,
        nargs="?",
        default=0,
        choices=(0, 1, 2, 3),
        help="the pump 1..3, or 0: the station and every pump (default 0)",
    )
    s = sub.add_parser("config", help="change one config key (pumpctl config-keys lists them)")
    s.add_argument("key", help="section.name or the key's id")
    s.add_argument("value", help="the new value (a number, or true/false)")
    return p


def positive_seconds(text: str) -> float:
    try:
        value = finite(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: not a number of seconds") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text}: must be above 0")
    return value


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(sys.argv[1:] if argv is None else argv)
    except BrokenPipeError:
        return broker.closed_stdout()
    except KeyboardInterrupt:
        print("pumpctl: interrupted", file=sys.stderr)
        return 130


def _main(argv: list[str]) -> int:
    if argv[:1] == ["config-keys"]:
        return list_config_keys()
    p = parser()
    args = p.parse_args(argv)
    if args.station == "config-keys" and args.command is None:  # after options: still the list
        return list_config_keys()
    try:
        args.station = broker.station_arg(args.station)
    except argparse.ArgumentTypeError as err:
        p.error(str(err))
    if args.command is None:
        p.error("which command? setpoint, mode, pump-enable, pump-disable, reset or config")
    try:
        return send(args)
    except ToolError as err:
        print(f"pumpctl: {err}", file=sys.stderr)
        return err.code
    except uplink.FieldRange as err:
        print(f"pumpctl: a value does not fit the command frame: {err}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
