"""pumprecord: take every uplink message from the broker and append it to the telemetry log.

    pumprecord record --log FILE --client-id ID [--group G] [broker options]
    pumprecord verify FILE        CRC, index, duplicates and gaps; exit 1 when anything is wrong
    pumprecord dump FILE [--from T] [--to T]    one line per record (T: Unix s or ISO time)

Rules:
- Subscribes to ``$share/<group>/relaypump/+/+/+`` (QoS 1): recorders of one group split the
  fleet's messages between them, each into its own log. ``--group ''`` subscribes without
  sharing. The session is persistent (clean session off, a stable --client-id): messages
  published while a recorder is away wait for it at the broker.
- At least once, then exactly once in the log: a message is acknowledged (PUBACK, paho's
  manual_ack) only after its record was handed to the OS (``--fsync``: synced to the disk), in
  batches: after ``--batch`` messages or when the socket has nothing more to read. A recorder that
  dies gets the unacknowledged messages again when it comes back; those it had already written
  are dropped by (site, station, seq), so a QoS 1 redelivery (or a station resending after a lost
  PUBACK) is recorded once.
- Duplicate detection keeps a window of the last ``--window`` seq numbers per station (a power of
  two; bounded memory: one byte per seq slot per station). It is rebuilt from the log's last
  2 x --index-every records (whole blocks) when the recorder starts, which covers every
  unacknowledged message as long as --batch is below that. A seq older than the window is
  recorded (and counted as ``stale``): an old frame is never lost for want of memory; ``verify``
  finds any duplicate later.
  Commands (kind cmd) carry the control room's own numbers: they have their own window. Status
  messages and payloads that are not uplink frames have no seq and are always recorded.
- The broker decides what waits for an absent recorder: Mosquitto's max_queued_messages (default
  1000 per session) drops QoS 1 messages past it, silently for the recorder ("Outgoing messages
  are being dropped" in the broker's log). Size it for the longest recorder outage to survive
  (messages a second x seconds, shared between the group), and max_inflight_messages (default
  20) at least --batch: with 20 the broker waits for PUBACKs every 20 messages.
- A broker that is not there (at start too) or goes away is retried: at once, then after 0.5 s,
  doubling up to 10 s, each failure one line on stderr. A login the broker refuses (bad user
  name or password, not authorized, client id not valid) does not come right by retrying: one
  line, exit 4.
- SIGINT / SIGTERM: the batch is written and acknowledged, the log synced, exit 0; the totals go
  to stderr.
- Exit: 0 stopped (or dump/verify done), 1 verify found problems, 2 bad usage or a file that
  cannot be read or written, 3 not a log or a damaged one, 4 a refused login; ``dump`` into a closed pipe (``| head``): 141.
"""

from __future__ import annotations

import argparse
import datetime as dt
import select
import signal
import ssl
import struct
import sys
import time

import paho.mqtt.client as paho

from host_tools.uplink import broker
from host_tools.uplink.logfile import (
    FLAG_DUP,
    FLAG_RETAINED,
    INDEX_EVERY,
    KIND_CMD,
    KIND_OTHER,
    KIND_STATUS,
    KINDS,
    NAME_MAX,
    UNSYNCED_BELOW,
    LogError,
    LogReader,
    LogWriter,
    frame_head,
    verify,
)
from host_tools.uplink.replay import parse_when

_MASK = 0xFFFFFFFF
_PUBACK = struct.Struct(">BBH")  # MQTT 3.1.1 PUBACK: type, remaining length 2, packet id
_HALF = 1 << 31
_LOGIN_REFUSED = (133, 134, 135)  # CONNACK: client id not valid, bad user/password, not authorized


class SeqWindow:
    """The last `size` seq numbers of one stream (modulo 2**32): ``duplicate(seq)`` is True for a
    seq seen before, and marks it seen otherwise."""

    def __init__(self, size: int = 4096):
        if size < 1 or size & (size - 1):
            raise ValueError("the window must be a power of two")  # so seq % size survives a wrap
        self.size = size
        self.high: int | None = None
        self.seen = bytearray(size)
        self.stale = 0

    def duplicate(self, seq: int) -> bool:
        size = self.size
        if self.high is None:
            self.high = seq
            self.seen[seq % size] = 1
            return False
        ahead = (seq - self.high) & _MASK
        if ahead == 0:
            return True
        if ahead < _HALF:
            if ahead >= size:
                self.seen[:] = bytes(size)
            else:
                for s in range(self.high + 1, self.high + ahead):
                    self.seen[s % size] = 0
            self.high = seq
            self.seen[seq % size] = 1
            return False
        if (1 << 32) - ahead >= size:
            self.stale += 1
            return False
        if self.seen[seq % size]:
            return True
        self.seen[seq % size] = 1
        return False


class Recorder:
    """The recorder without the network: ``take`` one message, it is logged or dropped."""

    def __init__(self, writer: LogWriter, window: int = 4096):
        self.writer = writer
        self.window = window
        self.windows: dict[tuple[str, str, bool], SeqWindow] = {}
        self.recorded = 0
        self.duplicates = 0
        self._rebuild()

    def _rebuild(self) -> None:
        """Mark every frame of the log's last records as seen: whole index blocks back from the
        end until they hold at least 2 x index_every records (and the window), plus the open
        block."""
        self.writer.flush()
        need = max(2 * self.writer.index_every, self.window)
        start = None
        held = 0
        for entry in reversed(self.writer.indexed):
            start = entry.offset
            held += entry.count
            if held >= need:
                break
        reader = LogReader(self.writer.path)
        for record in reader.records() if start is None else reader.records_from(start):
            head = frame_head(record.payload)
            if head is not None and record.kind not in (KIND_STATUS, KIND_OTHER):
                self._window(record.site, record.station, record.kind).duplicate(head[1])

    def _window(self, site: str, station: str, kind: int) -> SeqWindow:
        key = (site, station, kind == KIND_CMD)
        window = self.windows.get(key)
        if window is None:
            window = self.windows[key] = SeqWindow(self.window)
        return window

    def take(
        self,
        topic: str,
        payload: bytes,
        retained: bool = False,
        dup: bool = False,
        receive_us: int | None = None,
    ) -> bool:
        """Log one message; False when it was a duplicate (dropped)."""
        parts = topic.split("/")
        kind = KIND_OTHER
        if len(parts) == 4 and parts[0] == broker.PREFIX:
            site, station, kind = parts[1], parts[2], KINDS.get(parts[3], KIND_OTHER)
            if len(site) > NAME_MAX // 4 or len(station) > NAME_MAX // 4:  # UTF-8: <= 4 B a char
                if len(site.encode()) > NAME_MAX or len(station.encode()) > NAME_MAX:
                    kind = KIND_OTHER
        if receive_us is None:
            receive_us = time.time_ns() // 1000
        time_s = receive_us // 1_000_000
        if kind == KIND_OTHER:  # kept whole: the topic in front of the message
            site, station, payload = "", "", topic.encode() + b"\0" + payload
        else:
            head = frame_head(payload)
            if head is not None:
                if kind != KIND_STATUS and self._window(site, station, kind).duplicate(head[1]):
                    self.duplicates += 1
                    return False
                if head[2] >= UNSYNCED_BELOW:  # the record time, as logfile.record_time
                    time_s = head[2]
        flags = (FLAG_RETAINED if retained else 0) | (FLAG_DUP if dup else 0)
        self.writer.append(receive_us, kind, site, station, payload, flags, time_s)
        self.recorded += 1
        return True

    @property
    def stale(self) -> int:
        return sum(w.stale for w in self.windows.values())


class Session:
    """A Recorder fed by a paho client; ``step`` runs the network once, ``commit`` writes and
    acknowledges the batch. Single-threaded: the caller owns the loop (run() below)."""

    def __init__(self, recorder: Recorder, client, subscription: str, batch: int, fsync: bool):
        self.recorder = recorder
        self.client = client
        self.subscription = subscription
        self.batch = batch
        self.fsync = fsync
        self.pending: list[int] = []
        self.received = 0
        self.subscribed = False
        self.refused: str | None = None  # a login the broker refused: the run ends
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        client.on_disconnect = self._on_disconnect

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            if reason_code.value in _LOGIN_REFUSED:
                self.refused = str(reason_code)
                return
            print(f"pumprecord: the broker refused the connection: {reason_code}", file=sys.stderr)
        else:
            client.subscribe(self.subscription, qos=1)

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties):
        self.subscribed = True

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        # acknowledgements of this connection are void: the broker sends those messages again
        self.recorder.writer.flush()
        self.pending.clear()
        self.subscribed = False

    def _on_message(self, client, userdata, msg):
        self.received += 1
        self.recorder.take(msg.topic, msg.payload, msg.retain, msg.dup)
        if msg.qos:
            self.pending.append(msg.mid)

    def step(self, timeout: float) -> int:
        """One network step; returns paho's result code. Waits up to timeout for the socket,
        then reads packets while there are any (paho's loop_read takes one packet a call; no
        select between them), at most a batch; then commits."""
        sock = self.client.socket()
        if sock is None:
            return paho.MQTT_ERR_NO_CONN
        if self.client.want_write():
            rc = self.client.loop_write()
            if rc:
                return rc
        ready, _, _ = select.select([sock], [], [], 0.0 if self.pending else timeout)
        if ready:
            for _ in range(self.batch):
                before = self.received
                rc = self.client.loop_read()
                if rc:
                    return rc
                if self.received == before:  # nothing more, or a packet that is not a message
                    break
                if len(self.pending) >= self.batch:
                    break
        if self.pending:
            self.commit()
        return self.client.loop_misc()

    def commit(self) -> None:
        """Hand the batch's records to the OS (fsync with --fsync), then acknowledge them: one
        write of all the PUBACKs when paho has nothing else queued, else paho's ack() each."""
        if self.fsync:
            self.recorder.writer.sync()
        else:
            self.recorder.writer.flush()
        pending, self.pending = self.pending, []
        sock = self.client.socket()
        sent = 0
        if sock is not None and not self.client.want_write():
            data = b"".join(_PUBACK.pack(0x40, 2, mid) for mid in pending)
            try:
                sent = _send_some(sock, data)
                end = sent + (-sent % _PUBACK.size)  # a PUBACK begun is finished, never half
                while sent < end:
                    select.select([], [sock], [], 1.0)
                    sent += _send_some(sock, data[sent:end])
            except OSError:
                return  # the link is gone: the broker sends the batch again (paho sees it next)
        for mid in pending[sent // _PUBACK.size :]:  # the send buffer was full: paho queues these
            self.client.ack(mid, 1)


def _send_some(sock, data: bytes) -> int:
    try:
        return sock.send(data)
    except (BlockingIOError, ssl.SSLWantWriteError):
        return 0


def subscription(group: str) -> str:
    base = f"{broker.PREFIX}/+/+/+"
    return f"$share/{group}/{base}" if group else base


def record(args) -> int:
    if not args.client_id.strip():
        raise broker.ToolError("--client-id must not be empty (a persistent session)")
    if any(c in args.group for c in "/+#"):  # MQTT: a share name is one level, no wildcard
        raise broker.ToolError(f"--group {args.group!r}: a name without /, + or #")
    if args.index_every < 1:
        raise broker.ToolError(f"--index-every {args.index_every}: must be 1 or more")
    if args.window < 1 or args.window & (args.window - 1):
        raise broker.ToolError(f"--window {args.window}: must be a power of two (e.g. 4096)")
    if not 1 <= args.batch <= 2 * args.index_every:
        raise broker.ToolError("--batch must be 1..2 x --index-every (the window rebuilt at start)")
    writer = LogWriter(args.log, index_every=args.index_every)
    if writer.truncated:
        print(f"{args.log}: torn tail of {writer.truncated} bytes truncated", file=sys.stderr)
    recorder = Recorder(writer, window=args.window)
    client = broker.make_client(args, clean_session=False, manual_ack=True)
    session = Session(recorder, client, subscription(args.group), args.batch, args.fsync)
    stop = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.append(1))
    where = f"{args.host}:{broker.port_of(args)}"
    client.connect_async(args.host, broker.port_of(args), keepalive=args.keepalive)
    backoff = 0.0  # the first connect at once
    try:
        while not stop:
            if client.socket() is None:  # not connected: (re)connect after the backoff
                _sleep(backoff, stop)
                backoff = min(max(backoff * 2, 0.5), 10.0)
                try:
                    client.reconnect()
                except OSError as err:
                    why = err.strerror or err
                    print(f"pumprecord: broker {where}: {why}; retrying", file=sys.stderr)
                continue
            session.step(0.2)
            if session.refused:
                raise broker.ToolError(
                    f"the broker at {where} refused the login: {session.refused}", code=4
                )
            if session.subscribed:
                backoff = 0.0
        session.commit()
        client.disconnect()
    finally:
        writer.close()
        print(
            f"pumprecord: {recorder.recorded} recorded, {recorder.duplicates} duplicates dropped,"
            f" {recorder.stale} older than the window",
            file=sys.stderr,
        )
    return 0


def _sleep(seconds: float, stop: list) -> None:
    """Sleep, but end at once when a signal asked to stop."""
    end = time.monotonic() + seconds
    while not stop and time.monotonic() < end:
        time.sleep(min(0.1, max(0.0, end - time.monotonic())))


def _time(text: str) -> int:
    """--from/--to of dump: Unix seconds or an ISO time (pumpreplay's rules, without offsets)."""
    if text.strip().startswith("+"):
        raise argparse.ArgumentTypeError(f"{text!r}: dump takes Unix seconds or an ISO time")
    try:
        return parse_when(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def dump(args) -> int:
    reader = LogReader(args.log)
    for r in reader.records(start_s=args.start, end_s=args.end):
        received = dt.datetime.fromtimestamp(r.receive_us / 1e6, dt.UTC).isoformat(
            timespec="milliseconds"
        )
        head = frame_head(r.payload) if r.kind != KIND_OTHER else None
        what = f"seq {head[1]} t {head[2]}" if head else repr(bytes(r.message[:40]))
        who = f"{r.site}/{r.station} {r.kind_name}" if r.kind != KIND_OTHER else r.topic
        print(f"{r.offset} {received} {who} {len(r.message)} B {what}")
    if reader.tail_bytes:
        print(f"(incomplete tail: {reader.tail_bytes} bytes)")
    return 0


def check(args) -> int:
    report = verify(args.log)
    print("\n".join(report.lines()))
    return 0 if report.ok else 1


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="pumprecord",
        description=__doc__.split("\n\n")[0],
        epilog="Exit: 0 stopped or done, 1 verify found problems, 2 bad usage or file, "
        "3 a damaged log, 4 a refused login.",
    )
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("record", help="record from the broker into a log")
    r.add_argument("--log", required=True, help="the log file (made when missing, else appended)")
    r.add_argument(
        "--group",
        default="recorders",
        help="shared subscription group (no /, + or #), '' for none (default recorders)",
    )
    r.add_argument(
        "--window",
        type=int,
        default=4096,
        help="seq window per station, a power of 2 (default 4096)",
    )
    r.add_argument(
        "--batch", type=int, default=1000, help="messages per write+acknowledge (default 1000)"
    )
    r.add_argument(
        "--index-every",
        type=int,
        default=INDEX_EVERY,
        help=f"records per index block (default {INDEX_EVERY})",
    )
    r.add_argument("--fsync", action="store_true", help="fsync before acknowledging")
    broker.add_connection_options(r, client_id_required=True)
    r.set_defaults(run=record)
    v = sub.add_parser("verify", help="check a log")
    v.add_argument("log", help="the telemetry log")
    v.set_defaults(run=check)
    d = sub.add_parser("dump", help="list a log's records")
    d.add_argument("log", help="the telemetry log")
    d.add_argument(
        "--from",
        dest="start",
        type=_time,
        default=None,
        metavar="T",
        help="records with time >= T, Unix s or ISO (default: from the first)",
    )
    d.add_argument(
        "--to",
        dest="end",
        type=_time,
        default=None,
        metavar="T",
        help="records with time < T (default: to the last)",
    )
    d.set_defaults(run=dump)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.run(args)
    except broker.ToolError as err:
        print(f"pumprecord: {err}", file=sys.stderr)
        return err.code
    except BrokenPipeError:
        return broker.closed_stdout()
    except OSError as err:
        where = f"{err.filename}: " if err.filename else ""
        print(f"pumprecord: {where}{err.strerror or err}", file=sys.stderr)
        return 2
    except LogError as err:  # not a log, or damaged (dump; record refuses to append to it)
        print(f"pumprecord: {err}", file=sys.stderr)
        return 3
    except ValueError as err:
        print(f"pumprecord: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # dump, verify (record stops on its own signal handler)
        print("pumprecord: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
