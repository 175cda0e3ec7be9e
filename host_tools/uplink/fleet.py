"""A fleet of station uplinks against one Mosquitto and two recorders: outage, restart, flush.

    recording = fleet.load_recording(path)          # telemetry frames of a simulator run
    outcome = fleet.run(fleet.Plan(stations=500), workdir, recording)
    outcome.missing, outcome.duplicates, outcome.flush_s ...

What runs (everything real except the plant and the board's flash):
- Each station is the uplink part of the agent, the firmware's own modules on CPython:
  relaypump.mqtt.Session (from a validated ``mqtt`` config section) + relaypump.netio.Link (its
  non-blocking socket layer) + relaypump.outbox.Outbox (on RamFlash: the board's flash as
  bytearrays, so 500 outboxes cost no disk syncs) + a WallClock set at the start. Every
  ``period_s`` of station time each station appends the next frame of the recording (the
  simulator's telemetry log, replayed from a per-station offset, station_id set to its own; seq
  and time are the outbox's), and its runtime loop moves frames from the outbox into the
  session's window (take, publish; give_back when refused) and out of it on PUBACK (acked), as
  the agent's runtime does.
- All stations run in this one process, one loop: every round steps every station once, then
  waits on a selectors.DefaultSelector of all their sockets (at most WAIT_S) when no station
  moved a byte. Every loop ends by itself: a deadline per phase raises FleetTimeout with what
  was missing.
- Time: the stations see one clock, ``FleetClock``: real monotonic milliseconds plus skipped
  virtual time. Telemetry generation and the outage advance it by skipping (fast-forward); the
  network runs in real time. Skipping the outage means every station's reconnect backoff is in
  the state a real hour-long outage leaves it (at backoff_max, random phase).
- The broker (FleetBroker): Mosquitto on a free loopback port, a password file with one user per
  station (its name) plus ``recorder`` and ``controlroom``, and an ACL of ``pattern`` lines with
  ``%u``: a station may write only relaypump/<site>/<its name>/{status,telemetry,event,ack} and
  read only relaypump/<site>/<its name>/cmd; the recorder reads relaypump/#; only the control
  room writes cmd topics. One pattern set serves any number of stations; a station's user name
  must be its topic level, and no station may be named like a service user (patterns apply to
  every user).
- Broker settings beyond the defaults, and why (the first two lose frames otherwise):
  ``persistence true``: the recorders' persistent sessions and plain subscriptions survive the
  restart. Without it the restarted broker knows no subscriber until the recorders subscribe
  again, and a station that reconnects first gets PUBACKs for frames delivered to nobody.
  ``max_queued_messages`` = stations x (outbox capacity + 8), per client (default 1000): a
  recorder that is reconnecting, or slower than 500 stations flushing, has its messages queued at
  the broker, and past the limit Mosquitto drops QoS 1 messages ("Outgoing messages are being
  dropped for client ...") that the stations already had acknowledged. Measured with the
  defaults (1000 queued, 20 in flight), 500 stations x 1 h: 41,023 of 194,000 frames missing
  from the logs. ``max_inflight_messages 1000`` (default 20): QoS 1 messages on their way to
  one recorder not yet acknowledged; with 20 a recorder gets at most 20 per round trip. The
  restart is a clean stop (SIGTERM, sent while a period's frames are on the wire: the broker
  saves its database and exits).
- Recorders: two ``pumprecord record`` processes (the real tool), each with its own log and
  persistent session, ``split``: MIRROR (the default): each its own plain subscription to
  relaypump/+/+/+, both record everything; every (station, seq) must be in each log once.
  SHARED: one $share group, each frame to one of them; every (station, seq) must be in the two
  logs together once. Mosquitto 2.0.11 does not save a $share subscription in its persistence
  file (tests/host_tools/fleet: test_mosquitto_2_0_forgets_shared_subscriptions_across_a_restart),
  so after a restart the frames of every station that reconnects before the recorders subscribe
  again are acknowledged and delivered to nobody: SHARED loses frames whenever a station wins
  that race (the recorders retry a refused broker with backoff; the stations with theirs).
  SHARED also records a frame twice when a station sent it twice (a resend after a lost PUBACK)
  and the group gave the copies to different recorders: each recorder deduplicates its own log
  only. ``outage``: RESTART (the broker stopped and started) or FREEZE (SIGSTOP/SIGCONT: the
  broker hangs with every link open; the stations find their links dead by the keepalive after
  resending their window into its buffers, which it delivers once it goes on).
  The outcome reads the logs with a tail reader as they grow.

Figures: ``flush_s``: from the restarted broker accepting connections until the recorders' logs
hold every frame the stations had appended before it (logs read every TAIL_EVERY_S);
``reconnect_s``: until every station's session was connected again; ``handed_s``: until the broker
had acknowledged every such frame (each station's PUBACK count; read with the logs, so to
TAIL_EVERY_S).
"""

from __future__ import annotations

import collections
import random
import secrets
import selectors
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from relaypump import mqtt, netio, outbox, uplink, uplink_build, uplink_config
from relaypump.ticks import TICKS_MASK
from relaypump.wallclock import WallClock

from host_tools.uplink.broker_process import BrokerProcess
from host_tools.uplink.broker_process import mosquitto_path as mosquitto_path  # the callers' check
from host_tools.uplink.logfile import KIND_TELEMETRY, MAGIC, Record, decode_at

SITE = "fleet"
T0 = 1_780_000_000  # the stations' wall clock at the fleet's start
WAIT_S = 0.02  # longest wait for a socket when no station moved a byte
TAIL_EVERY_S = 0.25
RECORDERS = ("rec-a", "rec-b")
GROUP = "recorders"
SERVICE_USERS = ("recorder", "controlroom")
REPO = Path(__file__).resolve().parents[2]
DEFAULT_SCENARIO = REPO / "host_tools" / "sim" / "scenarios" / "jia_shoulder.toml"


class FleetTimeout(AssertionError):
    """A phase did not finish within its time; the message says what was missing."""


# --- the board's flash, in RAM -------------------------------------------------------------------


class _RamFile:
    def __init__(self, data: bytearray):
        self.data = data
        self.pos = 0

    def seek(self, pos: int, whence: int = 0) -> int:
        self.pos = pos if whence == 0 else (self.pos + pos if whence == 1 else len(self.data) + pos)
        return self.pos

    def write(self, data) -> int:
        end = self.pos + len(data)
        if end > len(self.data):
            self.data.extend(bytes(end - len(self.data)))
        self.data[self.pos : end] = data
        self.pos = end
        return len(data)

    def read(self, n: int = -1) -> bytes:
        end = len(self.data) if n < 0 else min(len(self.data), self.pos + n)
        out = bytes(self.data[self.pos : end])
        self.pos = end
        return out

    def readinto(self, buf) -> int:
        got = self.data[self.pos : self.pos + len(buf)]
        buf[: len(got)] = got
        self.pos += len(got)
        return len(got)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


class RamFlash:
    """A station's flash file system in RAM, as storage.py and outbox.py use one: ``open`` (modes
    rb, r+b, wb, w+b), ``rename`` (replaces, as littlefs), ``remove``; no fsync to wait for."""

    def __init__(self):
        self.files: dict[str, bytearray] = {}

    def open(self, path: str, mode: str = "rb") -> _RamFile:
        if "w" in mode:
            self.files[path] = bytearray()
        elif path not in self.files:
            raise OSError(2, f"no such file: {path}")
        return _RamFile(self.files[path])

    def rename(self, old: str, new: str) -> None:
        if old not in self.files:
            raise OSError(2, f"no such file: {old}")
        self.files[new] = self.files.pop(old)

    def remove(self, path: str) -> None:
        if self.files.pop(path, None) is None:
            raise OSError(2, f"no such file: {path}")


# --- the recording ---------------------------------------------------------------------------------


def load_recording(path: Path) -> list[bytes]:
    """The telemetry frames of a simulator telemetry log (telemetry.bin: frames back to back, each
    sized by its kind); other kinds are skipped. ValueError for a log that is not one."""
    data = Path(path).read_bytes()
    sizes = {
        uplink.KIND_TELEMETRY: uplink.TELEMETRY_SIZE,
        uplink.KIND_EVENT: uplink.EVENT_SIZE,
        uplink.KIND_ACK: uplink.ACK_SIZE,
    }
    frames = []
    pos = 0
    while pos < len(data):
        kind = uplink.frame_kind(data[pos : pos + uplink.HEADER_SIZE])
        size = sizes.get(kind)
        if size is None or pos + size > len(data):
            raise ValueError(f"{path}: frame of kind {kind} at byte {pos} is not a logged frame")
        if kind == uplink.KIND_TELEMETRY:
            uplink.decode_telemetry(data[pos : pos + size])  # a bad frame raises here, not later
            frames.append(data[pos : pos + size])
        pos += size
    if not frames:
        raise ValueError(f"{path}: no telemetry frames")
    return frames


def record_telemetry(out: Path, hours: float, scenario: Path = DEFAULT_SCENARIO) -> Path:
    """Run the simulator (pumpsim run, the agent in control) for `hours`: its telemetry.bin."""
    cmd = [
        sys.executable,
        "-m",
        "host_tools.sim.cli",
        "run",
        "--scenario",
        str(scenario),
        "--hours",
        f"{hours:g}",
        "--out",
        str(out),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=REPO)
    if done.returncode != 0:
        raise RuntimeError(f"pumpsim failed ({done.returncode}): {done.stderr[-2000:]}")
    return out / "telemetry.bin"


# --- the broker ------------------------------------------------------------------------------------


def station_name(i: int) -> str:
    return f"s{i + 1:04d}"


def acl_text(site: str = SITE) -> str:
    base = f"relaypump/{site}/%u"
    lines = ["user recorder", "topic read relaypump/#", ""]
    lines += ["user controlroom", "topic write relaypump/+/+/cmd", "topic read relaypump/#", ""]
    lines += [f"pattern write {base}/{kind}" for kind in ("status", "telemetry", "event", "ack")]
    lines.append(f"pattern read {base}/cmd")
    return "\n".join(lines) + "\n"


class FleetBroker(BrokerProcess):
    """Mosquitto for the fleet (see the module's rules): start, stop (SIGTERM: the database is
    saved), start again on the same port (broker_process.py)."""

    def __init__(self, directory: Path, stations: int, queue_limit: int, inflight: int = 1000):
        self.passwords = {station_name(i): secrets.token_hex(12) for i in range(stations)}
        self.passwords.update({user: secrets.token_hex(12) for user in SERVICE_USERS})
        if set(self.passwords) & set(SERVICE_USERS) != set(SERVICE_USERS) or len(
            self.passwords
        ) != stations + len(SERVICE_USERS):
            raise ValueError("a station may not be named like a service user")
        settings = [
            "persistence true",
            f"persistence_location {Path(directory)}/",
            f"max_queued_messages {queue_limit}",
            f"max_inflight_messages {inflight}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "log_type subscribe",
        ]
        super().__init__(directory, self.passwords, acl_text(), settings)

    def password_file(self, user: str) -> Path:
        path = self.dir / f"{user}.password"
        path.write_text(self.passwords[user] + "\n")
        path.chmod(0o600)
        return path

    def warnings(self) -> list[str]:
        """The broker's log lines that say it dropped or refused something."""
        text = self.log()
        words = ("dropped", "Denied", "denied", "Error", "error", "Warning: Unable")
        return [line for line in text.splitlines() if any(w in line for w in words)]


# --- the recorders ---------------------------------------------------------------------------------


class Recorders:
    """Two pumprecord processes, each with its own log and persistent session: one shared-
    subscription group (``group``), or with group "" each its own plain subscription."""

    def __init__(self, directory: Path, broker: FleetBroker, group: str = GROUP, batch: int = 1000):
        self.dir = Path(directory)
        self.broker = broker
        self.group = group
        self.batch = batch
        self.logs = [self.dir / f"{name}.rplog" for name in RECORDERS]
        self.procs: list[subprocess.Popen] = []
        self.stderr: list[str] = []

    def start(self) -> None:
        pw = self.broker.password_file("recorder")
        for name, log in zip(RECORDERS, self.logs, strict=True):
            cmd = [
                sys.executable,
                "-m",
                "host_tools.uplink.recorder",
                "record",
                "--log",
                str(log),
                "--client-id",
                name,
                "--group",
                self.group,
                "--batch",
                str(self.batch),
                "--port",
                str(self.broker.port),
                "--user",
                "recorder",
                "--password-file",
                str(pw),
            ]
            with open(self.dir / f"{name}.stderr", "w") as err:
                self.procs.append(subprocess.Popen(cmd, stderr=err, cwd=REPO))

    def wait_subscribed(self, timeout: float = 30.0) -> None:
        """Until the broker's log shows both recorders' subscriptions."""
        deadline = time.monotonic() + timeout
        prefix = f"$share/{self.group}/" if self.group else "relaypump/"
        want = [f"{name} 1 {prefix}" for name in RECORDERS]
        while True:
            text = self.broker.log()
            if all(w in text for w in want):
                return
            for p in self.procs:
                if p.poll() is not None:
                    raise RuntimeError(f"a recorder exited ({p.returncode}):\n{self.errors()}")
            if time.monotonic() > deadline:
                raise FleetTimeout(f"the recorders did not subscribe:\n{self.broker.log(40)}")
            time.sleep(0.05)

    def stop(self) -> list[int]:
        """SIGTERM (each writes and acknowledges its batch, exits 0); their exit codes."""
        codes = []
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                codes.append(p.wait(60))
            except subprocess.TimeoutExpired:
                p.kill()
                codes.append(p.wait(5))
        self.procs = []
        self.stderr = [self.errors(name) for name in RECORDERS]
        return codes

    def errors(self, name: str | None = None) -> str:
        out = []
        for n in [name] if name else list(RECORDERS):
            try:
                out.append((self.dir / f"{n}.stderr").read_text(errors="replace").strip())
            except OSError:
                pass
        return "\n".join(out)


class LogTail:
    """Reads the records a recorder has appended to its log since the last read."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.pos = 0

    def read(self) -> list[Record]:
        try:
            with open(self.path, "rb") as f:
                if self.pos == 0:
                    if f.read(len(MAGIC)) != MAGIC:
                        return []  # not written yet
                    self.pos = len(MAGIC)
                f.seek(self.pos)
                data = f.read()
        except FileNotFoundError:
            return []
        out = []
        off = 0
        while True:
            record, nxt = decode_at(data, off)
            if record is None:
                break
            out.append(record)
            off = nxt
        self.pos += off
        return out


# --- the stations ----------------------------------------------------------------------------------


class FleetClock:
    """The stations' milliseconds: real time plus skipped virtual time (never wraps here; the
    stations get it masked to ticks)."""

    def __init__(self):
        self.start = time.monotonic()
        self.skipped_ms = 0

    def ms(self) -> int:
        return int((time.monotonic() - self.start) * 1000) + self.skipped_ms

    def skip_to(self, ms: int) -> None:
        now = self.ms()
        if ms > now:
            self.skipped_ms += ms - now


class Station:
    """The uplink part of one agent: session + link + outbox, and the runtime's carrying."""

    def __init__(
        self,
        index: int,
        port: int,
        password: str,
        recording: list[bytes],
        now_ms: int,
        session: dict,
        segments: int,
        seed: int,
    ):
        self.name = station_name(index)
        self.station_id = index + 1
        cfg = uplink_config.mqtt_section(
            dict(
                session,
                host="127.0.0.1",
                port=port,
                site=SITE,
                station=self.name,
                username=self.name,
                password=password,
            )
        )
        self.session = uplink_build.session_from_config(
            cfg, random.Random(seed * 100_003 + index).randrange
        )
        self.link = netio.Link(self.session, cfg["host"], cfg["port"])
        self.flash = RamFlash()
        self.clock = WallClock()
        self.clock.set_time(T0, now_ms)
        self.box = outbox.Outbox(
            self.flash,
            "/outbox",
            self.station_id,
            self.clock,
            now_ms,
            segments,
            opener=self.flash.open,
        )
        self.topic = uplink_build.topic(SITE, self.name, "telemetry")
        self.recording = recording
        self.offset = (index * 37) % len(recording)  # stations do not all replay the same minute
        self.frame = bytearray(uplink.TELEMETRY_SIZE)
        self.tokens: dict[int, int] = {}  # packet id -> outbox token
        self.appended = 0
        self.acked = 0  # frames acknowledged by the broker (and so out of the outbox)
        self.refused = 0  # appends the outbox refused (full of events: never here)
        self.stray_pubacks = 0  # PUBACKs for no frame of ours, or frames no longer in the box
        self.messages = 0
        self.sock = None  # the socket registered with the fleet's selector

    def append(self, now_ms: int) -> None:
        """The next recorded frame (its own station id; the outbox sets seq and time)."""
        src = self.recording[(self.offset + self.appended) % len(self.recording)]
        self.frame[:] = src
        self.frame[4:8] = self.station_id.to_bytes(4, "big")
        if not self.box.append(self.frame, now_ms):
            self.refused += 1
        self.appended += 1

    def expected(self, seq: int) -> bytes:
        """The frame body (after the 16-byte header) the station sent as seq."""
        return self.recording[(self.offset + seq) % len(self.recording)][uplink.HEADER_SIZE :]

    def step(self, now_ms: int) -> bool:
        """Events in, frames from the outbox into the window, then the link; True if anything
        moved."""
        s = self.session
        box = self.box
        moved = False
        while True:
            ev = s.next_event()
            if ev == mqtt.NONE:
                break
            moved = True
            if ev == mqtt.PUBACK:
                token = self.tokens.pop(s.packet_id, 0)
                if token and box.acked(token):
                    self.acked += 1
                else:
                    self.stray_pubacks += 1
            elif ev == mqtt.MESSAGE:
                self.messages += 1
        while s.in_flight < s.inflight:
            token = box.take(now_ms)
            if not token:
                break
            pid = s.publish(self.topic, box.frame)
            if pid <= 0:
                box.give_back(token)
                break
            self.tokens[pid] = token
        box.poll(now_ms)
        link = self.link
        before = link.bytes_in + link.bytes_out + link.opened
        link.step(now_ms)
        return moved or link.bytes_in + link.bytes_out + link.opened != before

    @property
    def idle(self) -> bool:
        """Nothing waits: the outbox is empty and the window too."""
        return self.box.pending == 0 and self.session.in_flight == 0


class Fleet:
    """All stations in one loop (see the module's rules)."""

    def __init__(self, stations: list[Station], clock: FleetClock, period_ms: int):
        self.stations = stations
        self.clock = clock
        self.period_ms = period_ms
        self.next_frame_ms = clock.ms() + period_ms
        self.frames_generated = 0
        self.selector = selectors.DefaultSelector()
        self.rounds = 0

    def generate_due(self) -> None:
        """Every station appends a frame for each period of station time that has begun."""
        while self.clock.ms() >= self.next_frame_ms:
            now = self.next_frame_ms & TICKS_MASK
            for st in self.stations:
                st.append(now)
            self.frames_generated += 1
            self.next_frame_ms += self.period_ms

    def skip_period(self) -> None:
        """Fast-forward to the next frame time and generate it."""
        self.clock.skip_to(self.next_frame_ms)
        self.generate_due()

    def round(self, wait: bool = True) -> bool:
        self.rounds += 1
        self.generate_due()
        now = self.clock.ms() & TICKS_MASK
        moved = False
        for st in self.stations:
            if st.step(now):
                moved = True
            sock = st.link.socket
            if sock is not st.sock:
                self._watch(st, sock)
        if wait and not moved:
            self.selector.select(WAIT_S)
        return moved

    def _watch(self, st: Station, sock) -> None:
        if st.sock is not None:
            try:
                self.selector.unregister(st.sock)
            except (KeyError, ValueError):
                pass
        st.sock = None
        if sock is not None:
            self.selector.register(sock, selectors.EVENT_READ, st)
            st.sock = sock

    def run_until(self, done, timeout: float, what: str, also=None) -> float:
        """Rounds until done() (checked every round); seconds it took. FleetTimeout after
        timeout. ``also()`` runs every TAIL_EVERY_S (reading the logs)."""
        start = time.monotonic()
        deadline = start + timeout
        next_also = start
        while True:
            t = time.monotonic()
            if also is not None and t >= next_also:
                also()
                next_also = t + TAIL_EVERY_S
            if done():
                return time.monotonic() - start
            if t > deadline:
                raise FleetTimeout(f"{what}: not done after {timeout:g} s; {self.summary()}")
            self.round()

    def summary(self) -> str:
        sts = self.stations
        connected = sum(st.session.connected for st in sts)
        pending = sum(st.box.pending for st in sts)
        window = sum(st.session.in_flight for st in sts)
        return (
            f"{connected}/{len(sts)} connected, {pending} frames in outboxes, {window} in windows"
        )

    def close(self) -> None:
        for st in self.stations:
            st.link.close()
        self.selector.close()


# --- the run -----------------------------------------------------------------------------------------

SHARED = "shared"  # one $share group: each frame goes to one of the recorders
MIRROR = "mirror"  # each recorder its own plain persistent subscription: both record everything
RESTART = "restart"  # the outage: the broker stopped (SIGTERM, its database saved), started again
FREEZE = "freeze"  # the outage: the broker hangs (SIGSTOP) with every link open, then goes on


@dataclass
class Plan:
    """A fleet run: stations, the seconds of telemetry before, during and after the outage, and
    how the recorders subscribe (``split``: SHARED or MIRROR)."""

    stations: int = 500
    before_s: int = 120  # live telemetry before the outage
    outage_s: int = 3600  # broker down: every station's outbox fills with this much
    outage: str = RESTART  # RESTART (SIGTERM, start again) or FREEZE (SIGSTOP, SIGCONT)
    after_s: int = 60  # live telemetry after the flush
    period_s: int = 10
    segments: int = 12  # outbox segments per station (39 frames each)
    split: str = MIRROR
    session: dict = field(
        default_factory=lambda: dict(
            keepalive_s=60, inflight=4, retry_s=20, backoff_min_s=1, backoff_max_s=30
        )
    )
    connect_timeout: float = 120.0
    flush_timeout: float = 300.0
    settle_s: float = 10.0  # nothing in any outbox or window and no new record for this long
    seed: int = 1


@dataclass
class Outcome:
    plan: Plan
    appended: dict[str, int]  # station -> frames appended (its seqs are 0..n-1)
    before_restart: dict[str, int]  # station -> frames appended before the restart
    logs: list[collections.Counter]  # per recorder log: (station, seq) -> times recorded
    mismatched: list[tuple[str, int]]  # recorded frames whose content is not what was sent
    foreign: list[str]  # telemetry records of stations not in the fleet, or a wrong station_id
    reconnect_s: float | None
    handed_s: float | None  # until the broker had acknowledged every frame of the outage
    flush_s: float | None  # None: the recorders never held everything
    frames_at_restart: int
    dropped_telemetry: int
    refused: int
    stray_pubacks: int
    retransmissions: int
    connects: int
    recorder_codes: list[int]
    recorder_stderr: list[str]
    broker_warnings: list[str]
    elapsed_s: float
    stopped: str | None  # the phase that ran out of time, if one did

    @property
    def expected(self) -> int:
        return sum(self.appended.values())

    def holders(self) -> list[collections.Counter]:
        """What must hold every frame once: each log (mirror), or both together (shared)."""
        if self.plan.split == MIRROR:
            return self.logs
        return [sum(self.logs, collections.Counter())]

    @property
    def missing(self) -> list[tuple[int, str, int]]:
        """(holder, station, seq) of every frame appended and not recorded."""
        return [
            (k, st, seq)
            for k, held in enumerate(self.holders())
            for st, n in self.appended.items()
            for seq in range(n)
            if (st, seq) not in held
        ]

    @property
    def duplicates(self) -> list[tuple[int, str, int]]:
        return sorted(
            (k, *key) for k, held in enumerate(self.holders()) for key, n in held.items() if n > 1
        )

    def lines(self) -> list[str]:
        p = self.plan

        def s(value):
            return "never" if value is None else f"{value:.1f} s"

        return [
            f"{p.stations} stations, {p.before_s} s live + {p.outage_s} s outage + {p.after_s} s"
            f" live, one frame per {p.period_s} s: {self.expected} frames; recorders: {p.split};"
            f" outage: {p.outage}",
            f"recorded {' + '.join(str(sum(log.values())) for log in self.logs)},"
            f" missing {len(self.missing)}, twice {len(self.duplicates)},"
            f" mismatched {len(self.mismatched)}, foreign {len(self.foreign)}",
            f"after the restart: {self.frames_at_restart} frames waiting; all connected in"
            f" {s(self.reconnect_s)}, all acknowledged by the broker in {s(self.handed_s)},"
            f" all recorded in {s(self.flush_s)}",
            f"outboxes dropped {self.dropped_telemetry}; {self.retransmissions} DUP resends,"
            f" {self.connects} connects, {self.stray_pubacks} stray PUBACKs;"
            f" run {self.elapsed_s:.0f} s"
            + (f"; out of time: {self.stopped}" if self.stopped else ""),
        ]


class _Logs:
    """What the recorders' logs hold so far, and how much of a target set is still missing."""

    def __init__(self, paths: list[Path], stations: list[Station], split: str):
        self.tails = [LogTail(p) for p in paths]
        self.held = [collections.Counter() for _ in paths]
        self.union: collections.Counter = collections.Counter()
        self.by_name = {st.name: st for st in stations}
        self.split = split
        self.mismatched: list[tuple[str, int]] = []
        self.foreign: list[str] = []
        self.target: dict[str, int] = {}
        self.left = 0
        self.last_new = time.monotonic()

    def set_target(self, target: dict[str, int]) -> None:
        """From now on, count the frames (station, seq < target[station]) not yet held."""
        self.read()
        self.target = target
        holders = self.held if self.split == MIRROR else [self.union]
        self.left = sum(
            1
            for held in holders
            for name, n in target.items()
            for seq in range(n)
            if (name, seq) not in held
        )

    def read(self) -> None:
        for k, tail in enumerate(self.tails):
            for r in tail.read():
                if r.kind == KIND_TELEMETRY:
                    self._take(k, r)

    def _take(self, k: int, r: Record) -> None:
        st = self.by_name.get(r.station)
        station_id = int.from_bytes(r.payload[4:8], "big")
        seq = int.from_bytes(r.payload[8:12], "big")
        if st is None or r.site != SITE or station_id != st.station_id:
            self.foreign.append(f"{r.site}/{r.station} id {station_id}")
            return
        key = (st.name, seq)
        self.held[k][key] += 1
        self.union[key] += 1
        if r.payload[uplink.HEADER_SIZE :] != st.expected(seq):
            self.mismatched.append(key)
        if seq < self.target.get(st.name, 0):
            self.last_new = time.monotonic()  # the flush still brings frames
            first = self.held[k][key] == 1 if self.split == MIRROR else self.union[key] == 1
            if first:
                self.left -= 1

    def all_held(self, appended: dict[str, int]) -> bool:
        holders = self.held if self.split == MIRROR else [self.union]
        return all(len(held) >= sum(appended.values()) for held in holders)


def run(plan: Plan, workdir: Path, recording: list[bytes]) -> Outcome:
    """The whole story: broker and recorders up, stations connected, live telemetry, the broker
    stopped with frames in flight, the outage (outboxes fill), the restart and the flush (timed),
    live telemetry again, the recorders stopped; then what the logs hold. A phase that runs out of
    time ends the run early (``stopped``); the outcome still says what the logs hold."""
    if plan.split not in (SHARED, MIRROR):
        raise ValueError(f"split: {plan.split!r} is neither {SHARED!r} nor {MIRROR!r}")
    if plan.outage not in (RESTART, FREEZE):
        raise ValueError(f"outage: {plan.outage!r} is neither {RESTART!r} nor {FREEZE!r}")
    started = time.monotonic()
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    capacity = plan.segments * outbox.SEGMENT_SLOTS - 1
    broker = FleetBroker(workdir / "broker", plan.stations, plan.stations * (capacity + 8))
    recorders = Recorders(workdir, broker, group=GROUP if plan.split == SHARED else "")
    clock = FleetClock()
    stations = [
        Station(
            i,
            broker.port,
            broker.passwords[station_name(i)],
            recording,
            clock.ms(),
            plan.session,
            plan.segments,
            plan.seed,
        )
        for i in range(plan.stations)
    ]
    fleet = Fleet(stations, clock, plan.period_s * 1000)
    logs = _Logs(recorders.logs, stations, plan.split)
    before: dict[str, int] = {}
    frames_at_restart = 0
    reconnect_s = handed_s = flush_s = None
    stopped = None
    codes: list[int] = []

    def all_idle() -> bool:
        return all(st.idle for st in stations)

    def settled() -> bool:
        """Nothing left to send and no frame of the flush recorded for settle_s: what is
        missing now stays missing."""
        return time.monotonic() - logs.last_new > plan.settle_s and all_idle()

    try:
        broker.start()
        recorders.start()
        recorders.wait_subscribed()
        # 1. every station connected (birth, command subscription)
        fleet.run_until(
            lambda: all(st.session.subscribed for st in stations),
            plan.connect_timeout,
            "first connect",
        )
        # 2. live telemetry: each period's frames acknowledged before the next
        for _ in range(plan.before_s // plan.period_s):
            fleet.skip_period()
            fleet.run_until(all_idle, 60, "live telemetry")
        # 3. the broker stops (SIGTERM) or freezes (SIGSTOP) while a period's frames are on
        # their way
        fleet.skip_period()
        fleet.round(wait=False)
        if plan.outage == RESTART:
            broker.terminate()
            fleet.run_until(lambda: not broker.running, 60, "the broker stopping")
            broker.stop()
            fleet.run_until(
                lambda: not any(st.session.connected for st in stations),
                60,
                "the stations noticing the stop",
            )
        else:
            broker.freeze()  # the links stay open: the stations find them dead (keepalive)
        # 4. the outage: station time runs on, frames pile up in the outboxes, connects fail
        for _ in range(plan.outage_s // plan.period_s):
            fleet.skip_period()
            fleet.round(wait=False)
        if any(st.session.connected for st in stations):
            raise FleetTimeout(f"stations still connected after the outage; {fleet.summary()}")
        before = {st.name: st.appended for st in stations}
        frames_at_restart = sum(st.box.pending for st in stations)
        logs.set_target(before)
        # 5. the restart: every station flushes its outbox at once
        if plan.outage == RESTART:
            broker.start()
        else:
            broker.thaw()
        restart = time.monotonic()

        def watch() -> None:
            nonlocal handed_s
            logs.read()
            if handed_s is None and all(st.acked >= before[st.name] for st in stations):
                handed_s = time.monotonic() - restart

        reconnect_s = fleet.run_until(
            lambda: all(st.session.connected for st in stations),
            plan.flush_timeout,
            "reconnect after the restart",
            also=watch,
        )
        fleet.run_until(
            lambda: logs.left <= 0 or settled(),
            plan.flush_timeout - reconnect_s,
            "the recorders holding every frame of the outage",
            also=watch,
        )
        watch()
        if logs.left <= 0:
            flush_s = time.monotonic() - restart
        # 6. live again, then everything appended must be recorded
        for _ in range(plan.after_s // plan.period_s):
            fleet.skip_period()
            fleet.run_until(all_idle, 60, "live telemetry after")
        appended = {st.name: st.appended for st in stations}
        fleet.run_until(
            lambda: logs.all_held(appended) or settled(),
            60,
            "the last frames recorded",
            also=logs.read,
        )
    except FleetTimeout as e:
        stopped = str(e)
    finally:
        fleet.close()
        codes = recorders.stop()
        broker.stop()
    logs.read()
    return Outcome(
        plan=plan,
        appended={st.name: st.appended for st in stations},
        before_restart=before,
        logs=logs.held,
        mismatched=logs.mismatched,
        foreign=logs.foreign,
        reconnect_s=reconnect_s,
        handed_s=handed_s,
        flush_s=flush_s,
        frames_at_restart=frames_at_restart,
        dropped_telemetry=sum(st.box.dropped_telemetry for st in stations),
        refused=sum(st.refused for st in stations),
        stray_pubacks=sum(st.stray_pubacks for st in stations),
        retransmissions=sum(st.session.retransmissions for st in stations),
        connects=sum(st.session.connects for st in stations),
        recorder_codes=codes,
        recorder_stderr=recorders.stderr,
        broker_warnings=broker.warnings(),
        elapsed_s=time.monotonic() - started,
        stopped=stopped,
    )
