"""pumpbridge: the stations of a site, republished as Sparkplug B for SCADA (Ignition and others).

    pumpbridge --site jia [--group G] [--node pumpbridge] [--keys FILE] [--state-dir DIR]
               [--primary-host ID] [--ttl S] [--ack-timeout S] [--duration S] + broker options

Rules:
- Sparkplug B 3.0 (namespace spBv1.0): one edge node (group --group, default the site; node id
  --node), one device per station (device id = the station's name). Payloads: sparkplug.py;
  metrics: sparkplug_station.py (derived from protocol/uplink.py).
- Session: the NDEATH (metric bdSeq) is the bridge's MQTT will (QoS 1); on every CONNACK the
  bridge subscribes to its NCMD and DCMD topics, publishes NBIRTH (seq 0, bdSeq, ``Node
  Control/Rebirth``, its frame counters) and a DBIRTH of every station it has values of, then
  subscribes to relaypump/SITE/+/+. bdSeq is 0..255, one more on every new MQTT connection, and kept in
  --state-dir (pumpbridge-GROUP-NODE.json) so a restarted bridge uses the next one. A bridge that
  stops on purpose publishes its NDEATH itself before it disconnects. Every NBIRTH, DBIRTH,
  DDATA, NDATA and DDEATH carries seq, 0..255 wrapping, from 0 at each NBIRTH. Sparkplug
  messages are QoS 0, not retained.
- A station's device is born (DBIRTH, every metric with its datatype, unit, description and
  readOnly) by its first telemetry frame; after that a frame gives a DDATA of the metrics whose
  value changed (nothing changed: no message), stamped with the frame's time (the bridge's
  time for a frame made before the station's clock was set). Each event gives a DDATA of the
  event metrics. QoS 1 redeliveries (a (seq, timestamp) seen among the station's last 256
  frames) are counted and skipped. A frame that does not decode, or whose station id is not the
  key file's for that station, is counted (NDATA ``Bridge/Malformed Frames``) and skipped.
- The station's status message "offline" (its last will; also a retained one) gives a DDEATH
  of a born device; its next telemetry frame gives a DBIRTH again.
- NCMD ``Node Control/Rebirth`` = true: NBIRTH and every DBIRTH again (same bdSeq).
- --primary-host ID (Sparkplug 3.0 primary host application): the bridge subscribes to
  spBv1.0/STATE/ID and publishes its births only once that host's STATE (JSON online, timestamp)
  says online; a STATE offline (not older than the last taken) makes it publish its NDEATH,
  disconnect and connect again (the next bdSeq), to wait for the host. Until its births no
  Sparkplug message goes out and commands are ignored; the stations' values are kept.
- DCMD: only metrics declared writable in the DBIRTH (setpoint, mode, Command/pump_enable,
  Command/pump_disable, Command/reset; none for a station without a key). Each is turned into a
  command built and signed by pumpctl's code (key file lines ``SITE/STATION STATION_ID KEY_HEX``,
  counters in --state-dir shared with pumpctl under its lock, expiry now + --ttl) and published
  QoS 1 on relaypump/SITE/STATION/cmd. ``Command/Last Command`` and ``Command/Last Result``
  (DDATA) say what was sent and how it ended: the station's ack result (OK, OUT_OF_ENVELOPE,
  ...), "no ack within N s" (the broker may still deliver it: an ack that comes later is
  reported with "(late)"), or "refused: why" for a write the bridge will not send (unknown or
  read-only metric, a value of the wrong type, out of range or not finite); nothing is sent then.
  A message the bridge cannot handle is logged (one line) and skipped; the bridge goes on.
- A lost broker is logged (one line) and reconnected to with the next bdSeq (its will is the
  NDEATH), "connected again" when it is back. A connection the broker closes as soon as it is
  made, 3 times in a row (within 5 s of its CONNACK), is another client with the same client id
  taking it over: the bridge stops (exit 4) rather than flap NBIRTH/NDEATH with it.
- Exit status: 0 stopped (SIGTERM, SIGINT, --duration; the NDEATH published first when
  connected; Ctrl-C before the broker answered: one line), 2 a usage, key file or state dir
  problem, 4 the broker could not be reached, refused the connection or kept closing it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import paho.mqtt.client as paho

from host_tools.uplink import broker, pumpctl
from host_tools.uplink import sparkplug as sp
from host_tools.uplink import sparkplug_station as st
from host_tools.uplink.broker import ToolError
from host_tools.uplink.monitor import CLOCK_SET, event_text, parse_status
from protocol import fast, layout, uplink

EXIT_OK, EXIT_USAGE, EXIT_BROKER = 0, 2, 4
REBIRTH = "Node Control/Rebirth"
MALFORMED = "Bridge/Malformed Frames"
DUPLICATES = "Bridge/Duplicate Frames"
RECENT_FRAMES = 256
TAKEOVER_S, TAKEOVERS = 5.0, 3  # connections lost this soon after CONNACK, this many in a row


@dataclass(frozen=True)
class Out:
    """One MQTT message for the runner to publish."""

    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False


@dataclass
class Device:
    site: str
    station: str
    key: pumpctl.StationKey | None
    born: bool = False
    values: dict = field(default_factory=dict)  # metric name -> value (None: null)
    stamp_ms: int = 0  # time of the values: the last frame's
    recent: deque = field(default_factory=lambda: deque(maxlen=RECENT_FRAMES))
    recent_set: set = field(default_factory=set)

    def seen(self, ident: tuple) -> bool:
        """True for a frame already taken (a redelivery); else remembers it."""
        if ident in self.recent_set:
            return True
        if len(self.recent) == RECENT_FRAMES:
            self.recent_set.discard(self.recent[0])
        self.recent.append(ident)
        self.recent_set.add(ident)
        return False

    def writable(self, spec: st.Spec) -> bool:
        return spec.command is not None and self.key is not None


def _ms(now: float) -> int:
    return int(now * 1000)


class Bridge:
    """The bridge without I/O: feed it messages, publish what it returns."""

    def __init__(
        self,
        group: str,
        node: str,
        site: str,
        keys: dict | None = None,
        state_dir: Path | None = None,
        ttl_s: int = 60,
        ack_timeout_s: float = 10.0,
        log=None,
        primary_host: str | None = None,
    ):
        self.group = sp.check_id("group", group)
        self.node = sp.check_id("edge node", node)
        self.site = site
        self.keys = {k[1]: v for k, v in (keys or {}).items() if k[0] == site}
        self.state_dir = state_dir
        self.ttl_s = ttl_s
        self.ack_timeout_s = ack_timeout_s
        self.log = log or (lambda text: print(f"pumpbridge: {text}", file=sys.stderr))
        self.bd_seq = 0
        self.seq = 0
        self.malformed = 0
        self.duplicates = 0
        self.devices: dict[str, Device] = {}
        self.pending: dict[tuple[str, int], tuple[str, float]] = {}  # (station, counter)
        self.overdue: dict[tuple[str, int], str] = {}  # timed out, a late ack still reported
        self.primary_host = primary_host and sp.check_id("primary host", primary_host)
        self.live = False  # NBIRTH published in this MQTT session: Sparkplug messages may go
        self.host_ms = -1  # timestamp of the last STATE taken
        self.host_lost = False  # the primary host went offline: NDEATH, disconnect, reconnect

    # --- Sparkplug messages ------------------------------------------------------------------
    def _next_seq(self) -> int:
        seq = self.seq
        self.seq = (seq + 1) % 256
        return seq

    def _out(self, message_type: str, metrics: list, now: float, device: str | None = None):
        payload = sp.Payload(_ms(now), self._next_seq(), metrics)
        return Out(sp.topic(self.group, message_type, self.node, device), sp.encode(payload))

    def ndeath(self) -> Out:
        """The will (and the NDEATH of a stop on purpose): bdSeq only, QoS 1."""
        payload = sp.Payload(metrics=[sp.Metric("bdSeq", sp.DataType.UINT64, self.bd_seq)])
        return Out(sp.topic(self.group, "NDEATH", self.node), sp.encode(payload), qos=1)

    def state_topic(self) -> str | None:
        return None if self.primary_host is None else f"{sp.NAMESPACE}/STATE/{self.primary_host}"

    def connected(self, now: float) -> list[Out]:
        """A new MQTT session: the births now, or when the primary host is online."""
        self.live = False
        self.host_lost = False
        return self.births(now) if self.primary_host is None else []

    def births(self, now: float) -> list[Out]:
        """NBIRTH (seq 0) and the DBIRTH of every device that has values."""
        self.seq = 0
        self.live = True
        metrics = [
            sp.Metric("bdSeq", sp.DataType.UINT64, self.bd_seq),
            sp.Metric(REBIRTH, sp.DataType.BOOLEAN, False, properties={"readOnly": False}),
            sp.Metric(MALFORMED, sp.DataType.UINT64, self.malformed),
            sp.Metric(DUPLICATES, sp.DataType.UINT64, self.duplicates),
        ]
        out = [self._out("NBIRTH", metrics, now)]
        for device in self.devices.values():
            if device.born:
                out.append(self._dbirth(device, now))
        return out

    def _dbirth(self, d: Device, now: float) -> Out:
        metrics = []
        for spec in st.ALL_SPECS:
            props: dict = {"engUnit": spec.unit} if spec.unit else {}
            props["readOnly"] = not d.writable(spec)
            value = d.values.get(spec.name)
            metrics.append(
                sp.Metric(
                    spec.name,
                    spec.datatype,
                    value,
                    d.stamp_ms,
                    is_null=value is None,
                    description=spec.description or None,
                    properties=props,
                )  # fmt: skip
            )
        return self._out("DBIRTH", metrics, now, d.station)

    def _ddata(self, d: Device, names, now: float, stamp_ms: int) -> Out:
        metrics = []
        for name in names:
            spec, value = st.BY_NAME[name], d.values[name]
            metrics.append(sp.Metric(name, spec.datatype, value, stamp_ms, is_null=value is None))
        return self._out("DDATA", metrics, now, d.station)

    def _counters(self, now: float) -> list[Out]:
        metrics = [
            sp.Metric(MALFORMED, sp.DataType.UINT64, self.malformed),
            sp.Metric(DUPLICATES, sp.DataType.UINT64, self.duplicates),
        ]
        return [self._out("NDATA", metrics, now)]

    # --- input -------------------------------------------------------------------------------
    def device(self, station: str) -> Device:
        d = self.devices.get(station)
        if d is None:
            sp.check_id("device", station)
            d = self.devices[station] = Device(self.site, station, self.keys.get(station))
            d.values.update({s.name: None for s in st.ALL_SPECS})
            d.values.update({s.name: 0 for s in st.COMMAND_SPECS if s.command is not None})
        return d

    def feed(self, topic: str, payload: bytes, now: float) -> list[Out]:
        """One message from the broker: the messages it causes (no Sparkplug message before
        the NBIRTH of the session: the station's values are kept for the births)."""
        if topic == self.state_topic():
            return self._host_state(payload, now)
        out = self._feed(topic, payload, now)
        return out if self.live else [o for o in out if not o.topic.startswith(sp.NAMESPACE)]

    def _host_state(self, payload: bytes, now: float) -> list[Out]:
        try:
            state = json.loads(payload)
            online, stamp = state["online"], state["timestamp"]
            if not isinstance(online, bool) or not isinstance(stamp, int):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            self.log(f"STATE of {self.primary_host}: not {{online: bool, timestamp: int}}")
            return []
        if stamp < self.host_ms:
            return []  # older than the one taken: a stale retained message
        self.host_ms = stamp
        if online and not self.live:
            return self.births(now)
        if not online and self.live:
            self.live = False
            self.host_lost = True
            return [self.ndeath()]
        return []

    def _feed(self, topic: str, payload: bytes, now: float) -> list[Out]:
        parts = topic.split("/")
        if parts[0] == sp.NAMESPACE:
            if len(parts) < 4 or parts[1] != self.group or parts[3] != self.node:
                return []  # another edge node's
            if not self.live:
                self.log(f"{topic}: before the NBIRTH of this session: ignored")
                return []
            if parts[2] == "NCMD" and len(parts) == 4:
                return self._ncmd(payload, now)
            if parts[2] == "DCMD" and len(parts) == 5:
                return self._dcmd(parts[4], payload, now)
            return []
        t = broker.parse_topic(topic)
        if t is None or t.site != self.site or t.kind == "cmd":
            return []
        try:
            sp.check_id("device", t.station)
        except sp.SparkplugError as err:
            self.log(f"{topic}: {err}: not bridged")
            return []
        if t.kind == "status":
            return self._status(t.station, payload, now)
        try:
            kind, frame = fast.decode(payload)
        except uplink.UplinkError as err:
            return self._malformed(topic, f"{type(err).__name__}: {err}", now)
        d = self.device(t.station)
        if d.key is not None and frame["station_id"] != d.key.station_id:
            why = f"station id {frame['station_id']}, the key file says {d.key.station_id}"
            return self._malformed(topic, why, now)
        if kind in (uplink.Kind.TELEMETRY, uplink.Kind.EVENT):
            if d.seen((frame["seq"], frame["timestamp_s"])):
                self.duplicates += 1
                return []
        if kind == uplink.Kind.TELEMETRY:
            return self._telemetry(d, frame, now)
        if kind == uplink.Kind.EVENT:
            return self._event(d, frame, now)
        if kind == uplink.Kind.ACK:
            return self._ack(d, frame, now)
        return []

    def _malformed(self, topic: str, why: str, now: float) -> list[Out]:
        self.malformed += 1
        self.log(f"{topic}: skipped a malformed frame ({why})")
        return self._counters(now)

    def _status(self, station: str, payload: bytes, now: float) -> list[Out]:
        _, online = parse_status(payload)
        d = self.devices.get(station)
        if online is False and d is not None and d.born:
            d.born = False
            payload_ = sp.Payload(_ms(now), self._next_seq(), [])
            return [Out(sp.topic(self.group, "DDEATH", self.node, station), sp.encode(payload_))]
        return []

    @staticmethod
    def _stamp(frame: dict, now: float) -> int:
        ts = frame["timestamp_s"]
        return ts * 1000 if ts >= CLOCK_SET else _ms(now)

    def _telemetry(self, d: Device, frame: dict, now: float) -> list[Out]:
        flat = layout.from_container(st.TELEMETRY, frame)
        stamp = self._stamp(frame, now)
        values = d.values
        changed = []
        for spec in st.TELEMETRY_SPECS:
            value = spec.value(flat[spec.index])
            if values[spec.name] != value:
                values[spec.name] = value
                changed.append(spec.name)
        bits = frame["alarm_bits"]
        for spec in st.ALARM_SPECS:
            value = bool(bits >> spec.bit & 1)
            if values[spec.name] != value:
                values[spec.name] = value
                changed.append(spec.name)
        values[st.STATION_ID.name] = flat[st.STATION_ID_INDEX]
        d.stamp_ms = stamp
        if not d.born:
            d.born = True
            return [self._dbirth(d, now)]
        return [self._ddata(d, changed, now, stamp)] if changed else []

    def _event(self, d: Device, frame: dict, now: float) -> list[Out]:
        flat = layout.from_container(st.EVENT, frame)
        for spec in st.EVENT_SPECS:
            if spec.index is not None:
                d.values[spec.name] = flat[spec.index]
        d.values["event/text"] = event_text(frame)
        if not d.born:
            return []  # the values go out with the DBIRTH
        return [self._ddata(d, [s.name for s in st.EVENT_SPECS], now, self._stamp(frame, now))]

    def _ack(self, d: Device, frame: dict, now: float) -> list[Out]:
        key = (d.station, frame["command_counter"])
        late = key in self.overdue
        command = self.pending.pop(key, (None,))[0] or self.overdue.pop(key, None)
        if command is None:
            return []  # not the bridge's command (pumpctl's)
        try:
            result = uplink.AckResult(frame["result"]).name
        except ValueError:
            result = f"result {frame['result']}"
        return self._command_result(d, command, result + (" (late)" if late else ""), now)

    def _command_result(self, d: Device, command: str, result: str, now: float) -> list[Out]:
        d.values[st.LAST_COMMAND] = command
        d.values[st.LAST_RESULT] = result
        if not d.born:
            return []
        return [self._ddata(d, [st.LAST_COMMAND, st.LAST_RESULT], now, _ms(now))]

    def tick(self, now: float) -> list[Out]:
        """Commands whose ack is overdue."""
        out: list[Out] = []
        for (station, counter), (command, deadline) in list(self.pending.items()):
            if now >= deadline:
                del self.pending[(station, counter)]
                self.overdue[(station, counter)] = command
                if len(self.overdue) > RECENT_FRAMES:
                    del self.overdue[next(iter(self.overdue))]
                result = f"no ack within {self.ack_timeout_s:g} s"
                out += self._command_result(self.devices[station], command, result, now)
        return out if self.live else []

    # --- commands ----------------------------------------------------------------------------
    def _ncmd(self, payload: bytes, now: float) -> list[Out]:
        try:
            metrics = sp.decode(payload).metrics
        except sp.SparkplugError as err:
            self.log(f"NCMD: not a Sparkplug payload ({err})")
            return []
        for m in metrics:
            if m.name != REBIRTH:
                self.log(f"NCMD: metric {m.name!r} is not writable")
                continue
            try:
                wanted = sp.typed_value(m, sp.DataType.BOOLEAN)
            except sp.SparkplugError as err:
                self.log(f"NCMD: {err}")
                continue
            if wanted:
                return self.births(now)
        return []

    def _dcmd(self, station: str, payload: bytes, now: float) -> list[Out]:
        d = self.devices.get(station)
        if d is None or not d.born:
            self.log(f"DCMD for {station!r}: no such device is born; nothing sent")
            return []
        try:
            metrics = sp.decode(payload).metrics
        except sp.SparkplugError as err:
            self.log(f"DCMD {station}: refused: {err}")
            return self._command_result(d, "DCMD", f"refused: {err}", now)
        out: list[Out] = []
        for m in metrics:
            try:
                spec = self._writable_spec(d, m)
                value = sp.typed_value(m, spec.datatype)
                ctype, arguments, description = self._command(spec, value)
            except (sp.SparkplugError, ToolError) as err:
                self.log(f"DCMD {station}: refused: {err}")
                out += self._command_result(d, f"write {m.name}", f"refused: {err}", now)
                continue
            try:
                message, sent = self._send(d, ctype, arguments, description, now)
            except ToolError as err:  # the counter state
                out += self._command_result(d, description, f"refused: {err}", now)
                continue
            out.append(message)
            out += self._command_result(d, sent, "sent, waiting for the ack", now)
        return out

    @staticmethod
    def _writable_spec(d: Device, m: sp.Metric) -> st.Spec:
        if m.name is None:
            raise sp.SparkplugError("a metric by alias only (the births declare no aliases)")
        spec = st.BY_NAME.get(m.name)
        if spec is None:
            raise sp.SparkplugError(f"no metric {m.name!r}")
        if not d.writable(spec):
            raise sp.SparkplugError(f"{m.name} is not writable")
        return spec

    @staticmethod
    def _command(spec: st.Spec, value) -> tuple:
        """(CommandType, arguments, description) by pumpctl's rules, ToolError when refused."""
        t = uplink.CommandType
        if spec.command == t.SETPOINT:
            if not math.isfinite(value):
                raise ToolError(f"setpoint {value}: not a finite number of kPa")
            return pumpctl.command_values(SimpleNamespace(command="setpoint", kpa=value))
        if spec.command == t.MODE:
            try:
                name = uplink.Mode(value).name.lower()
            except ValueError:
                name = str(value)
            if name not in pumpctl.MODES:
                raise ToolError(f"mode {value} ({name}) cannot be set remotely")
            return pumpctl.command_values(SimpleNamespace(command="mode", mode=name))
        lowest = 0 if spec.command == t.RESET else 1
        if not lowest <= value <= uplink.PUMP_SLOTS:
            raise ToolError(f"{spec.name}: pump {value} is not {lowest}..{uplink.PUMP_SLOTS}")
        verb = spec.command.name.lower().replace("_", "-")
        return pumpctl.command_values(SimpleNamespace(command=verb, pump=value))

    def _send(self, d: Device, ctype, arguments: dict, description: str, now: float):
        """(the signed command's message, its description with the counter)."""
        if self.state_dir is None:
            raise ToolError("no --state-dir for the command counters")
        counter = pumpctl.take_counter(self.state_dir, d.site, d.station)
        frame = pumpctl.build_command(d.key, counter, ctype, arguments, int(now), self.ttl_s)
        sent = f"{description}, counter {counter}"
        self.pending[(d.station, counter)] = (sent, now + self.ack_timeout_s)
        return Out(broker.topic(d.site, d.station, "cmd"), frame, qos=1), sent


# --- bdSeq across restarts -------------------------------------------------------------------
def next_bd_seq(directory: Path, group: str, node: str) -> int:
    """The bdSeq of the next connection (one more than the last stored, 0..255), stored first."""
    path = directory / f"pumpbridge-{group}-{node}.json"
    last = -1
    try:
        directory.mkdir(parents=True, exist_ok=True)
        if path.exists():
            try:
                last = int(json.loads(path.read_text())["bd_seq"])
            except (ValueError, KeyError, TypeError):
                raise ToolError(f"bdSeq state {path} is unreadable; fix or remove it") from None
        bd_seq = (last + 1) % 256
        tmp = path.with_suffix(".tmp")
        with open(tmp, "w") as f:
            json.dump({"bd_seq": bd_seq}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:  # not a folder, not writable
        raise ToolError(f"state dir {directory}: {err.strerror or err}") from None
    return bd_seq


# --- the MQTT side ---------------------------------------------------------------------------
def run(args) -> int:
    keys = pumpctl.load_keys(args.keys) if args.keys else {}
    state = pumpctl.state_dir(args)
    group = args.group or args.site
    bridge = Bridge(
        group, args.node, args.site, keys, state, args.ttl, args.ack_timeout,
        primary_host=args.primary_host,
    )  # fmt: skip
    client = broker.make_client(args)
    lock = threading.Lock()
    stopping = threading.Event()
    link = SimpleNamespace(connected_at=None, lost=False, short=0, fatal=None)  # its history

    def publish(outs: list[Out]) -> None:
        for o in outs:
            client.publish(o.topic, o.payload, qos=o.qos, retain=o.retain)

    def new_session() -> None:
        bridge.bd_seq = next_bd_seq(state, group, args.node)
        will = bridge.ndeath()
        client.will_set(will.topic, will.payload, qos=1, retain=False)

    def on_connect(client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            return
        with lock:
            if link.lost:
                bridge.log(f"connected again to {args.host}:{broker.port_of(args)}")
                link.lost = False
            link.connected_at = time.monotonic()
            client.subscribe(sp.topic(group, "NCMD", args.node), qos=1)
            client.subscribe(sp.topic(group, "DCMD", args.node, "+"), qos=1)
            if bridge.state_topic() is not None:
                client.subscribe(bridge.state_topic(), qos=1)
            publish(bridge.connected(time.time()))
            client.subscribe(broker.topic(args.site, "+", "+"), qos=1)

    def on_disconnect(client, userdata, flags, reason_code, properties):
        if stopping.is_set():
            return
        with lock:
            bridge.live = False  # no NDEATH of ours on a dead connection: the broker has the will
            since, link.connected_at = link.connected_at, None
            if since is not None and reason_code.is_failure:  # not a refused CONNECT
                lasted = time.monotonic() - since
                bridge.log(f"lost the broker ({reason_code}); connecting again")
                link.lost = True
                # closed as soon as made, again and again: another client took over the
                # client id (a second bridge); both would flap NBIRTH/NDEATH forever
                link.short = link.short + 1 if lasted < TAKEOVER_S else 0
                if link.short >= TAKEOVERS:
                    link.fatal = (
                        f"the broker closed the connection {link.short} times as soon as it was "
                        f"made: is another client using client id {args.client_id!r} (a second "
                        "pumpbridge)? give each bridge its own --client-id and --node"
                    )
                    stopping.set()
                    return
            new_session()  # the reconnect carries the next bdSeq in its will

    def on_message(client, userdata, msg):
        with lock:
            try:
                outs = bridge.feed(msg.topic, msg.payload, time.time())
            except Exception as err:  # noqa: BLE001 - one bad message must not stop the bridge
                bridge.log(f"{msg.topic}: not handled ({type(err).__name__}: {err})")
                return
            publish(outs)

    client.on_connect = on_connect
    client.on_disconnect = on_disconnect
    client.on_message = on_message
    with lock:
        new_session()
    broker.connect(client, args)
    # before the line that says it runs: a SIGTERM right after it must be a clean stop
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.set())
    print(
        f"pumpbridge: edge node {group}/{args.node} (bdSeq {bridge.bd_seq}) on "
        f"{args.host}:{broker.port_of(args)}, stations of {args.site}",
        flush=True,
    )
    end = time.monotonic() + args.duration if args.duration else None
    try:
        while not stopping.wait(0.2):
            if end is not None and time.monotonic() >= end:
                break
            with lock:
                publish(bridge.tick(time.time()))
            if bridge.host_lost:  # its NDEATH is out: a new session, births when it is back
                bridge.host_lost = False
                client.disconnect()
                client.loop_stop()  # on_disconnect gave the will the next bdSeq
                client.connect_async(args.host, broker.port_of(args), keepalive=args.keepalive)
                client.loop_start()
    finally:
        stopping.set()
        with lock:
            death = bridge.ndeath()
            info = client.publish(death.topic, death.payload, qos=1) if bridge.live else None
        if info is not None and info.rc == paho.MQTT_ERR_SUCCESS:
            try:
                info.wait_for_publish(5)
            except (RuntimeError, ValueError):  # the connection went meanwhile: the will goes
                pass
        client.disconnect()
        client.loop_stop()
    if link.fatal:
        raise ToolError(link.fatal, code=EXIT_BROKER)
    return EXIT_OK


def _positive(kind):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not (math.isfinite(value) and value > 0):
            raise argparse.ArgumentTypeError(f"must be more than 0, got {text!r}")
        return value

    return parse


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="pumpbridge",
        description="Republish a site's stations as Sparkplug B (one edge node, a device each).",
        epilog="Exit status: 0 stopped, 2 usage, key file or state dir problem, 4 broker "
        "unreachable, refusing, or another client took the client id.",
    )
    p.add_argument(
        "--site", required=True, metavar="SITE", help="the site whose stations are bridged"
    )
    p.add_argument("--group", metavar="ID", help="Sparkplug group id (default: the site)")
    p.add_argument(
        "--node",
        default="pumpbridge",
        metavar="ID",
        help="Sparkplug edge node id (default pumpbridge)",
    )
    p.add_argument(
        "--keys",
        metavar="FILE",
        help="key file (SITE/STATION STATION_ID KEY_HEX lines, not readable by others): the "
        "stations that take commands (default: none, every metric read-only)",
    )
    p.add_argument(
        "--primary-host",
        metavar="ID",
        help="Sparkplug host id: births only while its STATE is online (default: births at once)",
    )
    p.add_argument(
        "--state-dir",
        metavar="DIR",
        help=f"command counters and bdSeq (default ${pumpctl.STATE_ENV}, else "
        "~/.local/state/relaypump)",
    )
    p.add_argument(
        "--ttl", type=_positive(int), default=60, metavar="S",
        help="seconds until a command expires (default 60)",
    )  # fmt: skip
    p.add_argument(
        "--ack-timeout", type=_positive(float), default=10.0, metavar="S",
        help="seconds to wait for a station's ack (default 10)",
    )  # fmt: skip
    p.add_argument(
        "--duration", type=_positive(float), default=None, metavar="S",
        help="stop after this many seconds (default: run until SIGINT/SIGTERM)",
    )  # fmt: skip
    broker.add_connection_options(p, client_id="pumpbridge")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        sp.check_id("site" if args.group is None else "group", args.group or args.site)
        sp.check_id("edge node", args.node)
        return run(args)
    except sp.SparkplugError as err:
        print(f"pumpbridge: {err}", file=sys.stderr)
        return EXIT_USAGE
    except ToolError as err:
        print(f"pumpbridge: {err}", file=sys.stderr)
        return err.code
    except KeyboardInterrupt:  # Ctrl-C while connecting (later it is a stop like SIGTERM)
        print("pumpbridge: stopped before the broker answered", file=sys.stderr)
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
