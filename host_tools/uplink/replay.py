"""pumpreplay: play a telemetry log (host_tools/uplink/logfile.py) back to an MQTT broker.

    pumpreplay LOG [--speed N | --as-fast-as-possible] [--from T] [--to T]
                   [--map SITE/STATION=SITE2/STATION2 ...] [--kinds K,K] [--window W]
                   [broker options: --host --port --user --password-file --ca --client-id]

Rules:
- Order: records are published in log order (the order the recorder received them) over one
  connection, QoS 1, retain off (a replay leaves no retained state at the broker). MQTT keeps a
  client's QoS 1 messages in order towards each subscriber.
- Timing: a record is published at (its receive time - the first replayed record's receive time)
  / N after the first one (``--speed N``, default 1: real time). A receive time earlier than the
  one before (the recorder's clock stepped back) is published at once: time never runs backwards.
  ``--as-fast-as-possible``: no waiting, only the in-flight window.
- In-flight window: at most ``--window`` messages published and not yet acknowledged (PUBACK);
  the replay waits for the broker rather than queueing without bound. Default 100, and 10,000
  with ``--as-fast-as-possible``: there each half window is a round trip to the broker, and on a
  loaded machine a round trip is the scheduler's latency (~20 ms): 100 held a replay to ~2,000
  frames/s where 10,000 gives ~60,000.
  The broker acknowledges on receipt, not when subscribers have them: a replay faster than a
  subscriber fills that subscriber's queue at the broker, and Mosquitto drops QoS 1 messages past
  its max_queued_messages (default 1000) silently. Size that for the replay, or slow it down.
  The publisher needs nothing of the broker for the window itself: Mosquitto's
  max_inflight_messages limits what it sends a client, not what it takes from one (MQTT 3.1.1).
- Client: host_tools/uplink/publisher.py (MQTT 3.1.1, QoS 1 straight into one output buffer,
  PUBACKs read in bulk), not paho-mqtt as the other tools: paho's objects per message and per
  PUBACK cost ~25 us of CPU a frame, the publisher ~1 us (a season replays at ~3.5 us a frame,
  the log's reading included).
- Seeking: ``--from``/``--to`` select records by record time (the frame's timestamp, see
  logfile.py) with from <= time < to, through the log's index (whole blocks outside are skipped).
  T is Unix seconds, an ISO 8601 time (UTC when no zone is given), or an offset from the log's
  first record time: ``+90s``, ``+15m``, ``+2h``, ``+1d`` (a bare ``+N`` is seconds). A time
  before 1970 or after 2106 (what a frame's 32-bit timestamp holds), or --to not after --from,
  is a usage error (exit 2) naming the times as given.
- Identities: the topic's site and station are those recorded (the identity the broker vouched
  for); ``--map SITE/STATION=SITE2/STATION2`` (repeatable) publishes that station's records under
  the other names. The frames are sent unchanged (their station_id, seq and timestamp too).
  A --map whose station had no record in the replay is named on stderr (a typo renames nothing).
- Kinds: ``--kinds`` (default status,telemetry,event,ack: what stations publish). ``cmd`` (signed
  commands: never replayed at stations by default) and ``other`` (records of topics outside
  relaypump/<site>/<station>/<kind>, published to their own topic) only when named.
- Progress on stderr: on a terminal one line redrawn at most 10 times a second; into a pipe or
  file one line at each 10 %.
- The log is checked before anything is published: a damaged log (a record failing its CRC) is
  refused with one line (exit 3); an incomplete tail (a live recorder's) is left out.
- SIGINT / SIGTERM: no new message; those in flight get up to 5 s for their PUBACK; disconnect,
  totals on stderr, exit 130. Exit 0 when everything was published and acknowledged, 2 bad usage,
  3 a damaged log, 4 the broker refused or went away.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import re
import signal
import sys
import time

from host_tools.uplink import broker
from host_tools.uplink.logfile import KIND_NAMES, KIND_OTHER, KINDS, LogError, LogReader
from host_tools.uplink.publisher import Interrupted, Publisher

DEFAULT_KINDS = ("status", "telemetry", "event", "ack")
WINDOW = 100  # --window's default
FAST_WINDOW = 10_000  # --window's default with --as-fast-as-possible
DRAIN_S = 5.0  # the in-flight messages' time for their PUBACK after a stop
_OFFSET = re.compile(r"^\+(\d+(?:\.\d*)?)([smhd]?)$")
_UNIT_S = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
TIME_END_S = 2**32  # a frame's timestamp_s is 32 bits: no record time reaches it


def parse_when(text: str, origin_s: int | None = None) -> int:
    """Unix seconds of a --from/--to value: Unix seconds, ISO 8601 (UTC when no zone), or an
    offset +N[smhd] from origin_s (the log's first record time)."""
    t = _seconds(text.strip(), origin_s)
    if not 0 <= t < TIME_END_S:
        raise ValueError(f"{text!r}: outside the times a log holds (1970 .. 2106)")
    return t


def _seconds(text: str, origin_s: int | None) -> int:
    offset = _OFFSET.match(text)
    if offset:
        if origin_s is None:
            raise ValueError(f"{text!r}: an offset needs a log with a first record")
        return origin_s + int(float(offset.group(1)) * _UNIT_S[offset.group(2)])
    try:
        value = float(text)
    except ValueError:
        pass
    else:
        if math.isfinite(value):
            return int(value)
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"{text!r}: not Unix seconds, an ISO time, nor an offset like +2h"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return int(when.timestamp())


def mapping_arg(text: str) -> tuple[tuple[str, str], tuple[str, str]]:
    """SITE/STATION=SITE2/STATION2 of the command line."""
    old, sep, new = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"{text!r}: expected SITE/STATION=SITE2/STATION2")
    return broker.station_arg(old), broker.station_arg(new)


def kinds_arg(text: str) -> frozenset[int]:
    out = set()
    for name in filter(None, (n.strip() for n in text.split(","))):
        if name == "other":
            out.add(KIND_OTHER)
        elif name in KINDS:
            out.add(KINDS[name])
        else:
            raise argparse.ArgumentTypeError(
                f"unknown kind {name!r} (known: {', '.join(KINDS)}, other)"
            )
    if not out:
        raise argparse.ArgumentTypeError("no kind named")
    return frozenset(out)


def first_time(reader: LogReader) -> int | None:
    """The record time of the log's first record (None for an empty log)."""
    for record in reader.records():
        return record.time_s
    return None


def time_range(
    reader: LogReader, start: str | None, end: str | None
) -> tuple[int | None, int | None]:
    """--from/--to texts -> Unix seconds (offsets from the log's first record time)."""
    origin = (
        first_time(reader) if any(t and t.strip().startswith("+") for t in (start, end)) else None
    )
    lo = parse_when(start, origin) if start is not None else None
    hi = parse_when(end, origin) if end is not None else None
    if lo is not None and hi is not None and hi <= lo:
        raise ValueError(f"--to {end} is not after --from {start}")
    return lo, hi


class Topics:
    """Topic of a record, with --map applied (cached per site, station, kind)."""

    def __init__(self, mapping: dict[tuple[str, str], tuple[str, str]]):
        self.mapping = mapping
        self._cache: dict[tuple[int, str, str], str] = {}
        self.seen: set[tuple[str, str]] = set()  # stations of the records replayed

    def unused(self) -> list[str]:
        """A line for each --map whose station had no record replayed."""
        return [
            f"--map {'/'.join(old)}={'/'.join(new)}: no record of {'/'.join(old)} replayed"
            for old, new in sorted(self.mapping.items())
            if old not in self.seen
        ]

    def of(self, record) -> str:
        if record.kind == KIND_OTHER:
            return record.topic
        key = (record.kind, record.site, record.station)
        topic = self._cache.get(key)
        if topic is None:
            self.seen.add(key[1:])
            site, station = self.mapping.get((record.site, record.station), key[1:])
            topic = self._cache[key] = broker.topic(site, station, KIND_NAMES[record.kind])
        return topic


class Progress:
    """Frames published of the total: a redrawn line on a terminal, a line per 10 % elsewhere.
    ``next_at``: the count at which update wants to be called next (cheap to test per frame)."""

    def __init__(self, total: int, stream, tty: bool | None = None):
        self.total = total
        self.stream = stream
        self.tty = stream.isatty() if tty is None else tty
        self.decile = 0
        self.last_draw = 0.0
        self.step = max(1, total // 1000)
        self.next_at = 0 if self.tty else self._decile_at(1)

    def _decile_at(self, k: int) -> int:
        return math.ceil(self.total * k / 10) if k <= 10 else 1 << 62

    def update(self, done: int) -> None:
        if self.tty:
            now = time.monotonic()
            self.next_at = min(done + self.step, self.total)  # the last frame is drawn
            if now - self.last_draw >= 0.1 or done >= self.total:
                self.last_draw = now
                pct = 100.0 * done / self.total if self.total else 100.0
                bar = "#" * int(pct / 5)
                self.stream.write(f"\r[{bar:<20}] {pct:5.1f} %  {done}/{self.total} frames")
                self.stream.flush()
            return
        while done >= self.next_at and self.decile < 10:
            self.decile += 1
            self.stream.write(f"pumpreplay: {self.decile * 10} % ({done} of {self.total} frames)\n")
            self.stream.flush()
            self.next_at = self._decile_at(self.decile + 1)

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def replay(reader, publisher: Publisher, topics: Topics, kinds, lo, hi, speed, progress, stop):
    """Publish the selected records; returns the count. `speed` None: as fast as possible.
    `stop`: a list a signal handler appends to."""
    first_us = None
    last_us = 0
    wall0 = 0.0
    sent = 0
    for record in reader.records(start_s=lo, end_s=hi):
        if record.kind not in kinds:
            continue
        if stop:
            raise Interrupted
        if speed is not None:
            if first_us is None:
                first_us = last_us = record.receive_us
                wall0 = time.monotonic()
            last_us = max(last_us, record.receive_us)
            due = wall0 + (last_us - first_us) / 1e6 / speed
            while True:
                wait = due - time.monotonic()
                if wait <= 0:
                    break
                publisher.pump(min(wait, 0.2))
                if stop:
                    raise Interrupted
        publisher.publish(topics.of(record), record.message)
        sent += 1
        if sent >= progress.next_at:
            progress.update(sent)
    return sent


def count_selected(reader: LogReader, kinds, lo, hi) -> int:
    """Records to replay; reads (and so CRC-checks) every one of them before the first publish."""
    return reader.count(kinds, lo, hi)


def window_of(args) -> int:
    """--window, or its default for the pace asked for."""
    if args.window is None:
        return FAST_WINDOW if args.as_fast_as_possible else WINDOW
    if not 1 <= args.window <= 65535:
        raise broker.ToolError("--window must be 1..65535")
    return args.window


def run(args) -> int:
    try:
        reader = LogReader(args.log)
    except FileNotFoundError:
        raise broker.ToolError(f"{args.log}: no such file") from None
    try:
        lo, hi = time_range(reader, args.start, args.end)
    except ValueError as err:
        raise broker.ToolError(str(err)) from None
    if args.speed is not None and not args.speed > 0:
        raise broker.ToolError("--speed must be above 0")
    window = window_of(args)
    try:
        total = count_selected(reader, args.kinds, lo, hi)
    except LogError as err:
        raise broker.ToolError(
            f"{args.log}: damaged, nothing replayed: {err} (pumplog verify tells more)", code=3
        ) from None
    speed = None if args.as_fast_as_possible else (args.speed or 1.0)
    topics = Topics(dict(args.map or ()))
    stop: list[int] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.append(1))
    publisher = Publisher(args, window, stop)
    publisher.connect(args.host, broker.port_of(args), args.keepalive)
    progress = Progress(total, sys.stderr)
    started = time.monotonic()
    interrupted = False
    try:
        replay(reader, publisher, topics, args.kinds, lo, hi, speed, progress, stop)
    except Interrupted:
        interrupted = True
    finally:
        progress.close()
    complete = publisher.drain(DRAIN_S if interrupted else 60.0)
    elapsed = time.monotonic() - started
    publisher.disconnect()
    rate = publisher.acked / elapsed if elapsed > 0 else 0.0
    print(
        f"pumpreplay: {publisher.published} of {total} published, {publisher.acked} acknowledged"
        f" in {elapsed:.1f} s ({rate:.0f} msg/s)" + (", interrupted" if interrupted else ""),
        file=sys.stderr,
    )
    if interrupted:
        return 130
    for line in topics.unused():
        print(f"pumpreplay: {line}", file=sys.stderr)
    if not complete:
        raise broker.ToolError(f"{publisher.inflight} messages never acknowledged", code=4)
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="pumpreplay",
        description=__doc__.split("\n\n")[0],
        epilog="Exit: 0 all published and acknowledged, 2 bad usage, 3 a damaged log, "
        "4 the broker refused or went away, 130 interrupted.",
    )
    p.add_argument("log", help="the telemetry log (pumprecord's)")
    pace = p.add_mutually_exclusive_group()
    pace.add_argument("--speed", type=float, default=None, help="N x real time (default 1)")
    pace.add_argument(
        "--as-fast-as-possible", action="store_true", help="no waiting, only the window"
    )
    p.add_argument(
        "--from",
        dest="start",
        default=None,
        metavar="T",
        help="records with time >= T: Unix s, ISO 8601 or +N[smhd] (default: from the first)",
    )
    p.add_argument(
        "--to",
        dest="end",
        default=None,
        metavar="T",
        help="records with time < T (default: to the last)",
    )
    p.add_argument(
        "--map",
        action="append",
        type=mapping_arg,
        metavar="SITE/STATION=SITE2/STATION2",
        help="publish a station's records under other names (repeatable; default: as recorded)",
    )
    p.add_argument(
        "--kinds",
        type=kinds_arg,
        default=frozenset(KINDS[k] for k in DEFAULT_KINDS),
        help=f"kinds to replay (default {','.join(DEFAULT_KINDS)}; also cmd, other)",
    )
    p.add_argument(
        "--window",
        type=int,
        default=None,
        help=f"messages awaiting PUBACK at most (default {WINDOW}; {FAST_WINDOW} as fast as possible)",
    )
    broker.add_connection_options(p, client_id="")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return run(args)
    except broker.ToolError as err:
        print(f"pumpreplay: {err}", file=sys.stderr)
        return err.code
    except (OSError, LogError) as err:
        print(f"pumpreplay: {err}", file=sys.stderr)
        return 3 if isinstance(err, LogError) else 2
    except KeyboardInterrupt:  # before the replay's own handler (reading the log, connecting)
        print("pumpreplay: interrupted, nothing published", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
