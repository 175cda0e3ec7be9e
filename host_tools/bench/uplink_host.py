"""Uplink host figures: the recorder's rate through Mosquitto, and a station's bytes per day.

- recorder_frames_per_s: FRAMES telemetry frames (QoS 1, 20 stations) wait at a local Mosquitto
  for a recorder's persistent shared-subscription session; the recorder (host_tools.uplink's
  Recorder + Session: paho-mqtt 2, manual acknowledgements after each buffered write) then
  connects and drains them into a log. Rate = frames / (connect to the last frame written, the
  log flushed). The publisher is a raw-socket MQTT client so that it costs no CPU while the
  recorder is timed. recorder_frames_per_cpu_s: the same frames over the recorder process's CPU
  time (the broker's excluded), the figure that a loaded machine moves least. Skipped (n/a) when mosquitto is not installed.
- uplink_bytes_per_day: one station at the default telemetry cadence (10 s): every telemetry
  frame as the MQTT 3.1.1 PUBLISH (QoS 1) on the wire plus its PUBACK, TCP/TLS not counted. The
  same data as JSON (the frame decoded by protocol.fast without magic and version, compact
  json.dumps with the field names and scaled integers, the same topic and
  MQTT framing) is given for comparison. Both computed from real frames and real packet sizes.
"""

from __future__ import annotations

import json
import socket
import struct
import tempfile
import time
from pathlib import Path

from host_tools.uplink import broker as uplink_broker
from host_tools.uplink.broker_process import BrokerProcess, mosquitto_path
from host_tools.uplink.logfile import LogWriter, verify
from host_tools.uplink.recorder import Recorder, Session, subscription
from protocol import fast, layout, uplink

FRAMES = 100_000
STATIONS = 20
CADENCE_S = 10
SITE = "bench"


def telemetry_frames(count: int, stations: int = STATIONS) -> list[tuple[str, bytes]]:
    """(topic, frame) of design-point telemetry, stations round robin, seq per station. One frame
    is built by construct; the others differ in the header's station_id, seq and timestamp_s."""
    lay = layout.layout("telemetry")
    names = [f.flat_name for f in lay.values]
    values = [0] * len(lay.values)
    values[names.index("suction_kpa_x10")] = 1600
    values[names.index("discharge_kpa_x10")] = 4500
    values[names.index("flow_m3h_x10")] = 8000
    values[names.index("mode")] = 1
    base = bytearray(uplink.build(uplink.telemetry, layout.to_container(lay, values)))
    topics = [uplink_broker.topic(SITE, f"st{st + 1}", "telemetry") for st in range(stations)]
    out = []
    for i in range(count):
        st, seq = i % stations, i // stations
        struct.pack_into(">III", base, 4, st + 1, seq, 1_780_000_000 + seq * CADENCE_S)
        out.append((topics[st], bytes(base)))
    return out


def _remaining(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def publish_packet(topic: str, payload: bytes, qos: int, packet_id: int = 1) -> bytes:
    t = topic.encode()
    var = struct.pack(">H", len(t)) + t + (struct.pack(">H", packet_id) if qos else b"")
    body = var + payload
    return bytes((0x30 | qos << 1,)) + _remaining(len(body)) + body


PUBACK_SIZE = 4


def bench_broker(directory: Path) -> BrokerProcess:
    """A started throwaway broker for the benches: loopback, anonymous, deep queues."""
    broker = BrokerProcess(
        directory,
        None,
        settings=["persistence false", "max_queued_messages 0", "max_inflight_messages 1000"],
    )
    broker.start()
    return broker


def _raw_publish(port: int, messages: list[tuple[str, bytes]]) -> None:
    """CONNECT, then the messages QoS 1 in chunks (each chunk's PUBACKs awaited), DISCONNECT."""
    sock = socket.create_connection(("127.0.0.1", port))
    cid = b"bench-pub"
    var = b"\x00\x04MQTT\x04\x02\x00\x3c" + struct.pack(">H", len(cid)) + cid
    sock.sendall(b"\x10" + _remaining(len(var)) + var)
    if sock.recv(4)[:2] != b"\x20\x02":
        raise RuntimeError("no CONNACK")
    chunk = 10_000
    for start in range(0, len(messages), chunk):
        part = messages[start : start + chunk]
        sock.sendall(b"".join(publish_packet(t, p, 1, i + 1) for i, (t, p) in enumerate(part)))
        want = len(part) * PUBACK_SIZE
        got = 0
        while got < want:
            data = sock.recv(65536)
            if not data:
                raise RuntimeError("broker closed the publisher")
            got += len(data)
    sock.sendall(b"\xe0\x00")
    sock.close()


def recorder_rate(frames: int = FRAMES) -> tuple[float, float]:
    """(frames per wall second, frames per CPU second of the recorder)."""
    messages = telemetry_frames(frames)
    with tempfile.TemporaryDirectory(prefix="bench-uplink-") as tmp:
        directory = Path(tmp)
        mosq = bench_broker(directory)
        try:
            args = _args(mosq.port)
            # 1. the recorder's session subscribes, then goes away: the broker queues for it
            writer = LogWriter(directory / "bench.rplog")
            client = uplink_broker.make_client(args, clean_session=False, manual_ack=True)
            session = Session(Recorder(writer), client, subscription("bench"), 1000, False)
            client.connect("127.0.0.1", mosq.port)
            deadline = time.monotonic() + 10
            while not session.subscribed and time.monotonic() < deadline:
                session.step(0.05)
            client.disconnect()
            client.loop(0.1)
            # 2. the fleet's frames arrive while it is away
            _raw_publish(mosq.port, messages)
            # 3. the recorder comes back and drains them
            client = uplink_broker.make_client(args, clean_session=False, manual_ack=True)
            recorder = session.recorder
            session = Session(recorder, client, subscription("bench"), 1000, False)
            start = time.perf_counter()
            cpu_start = time.process_time()
            client.connect("127.0.0.1", mosq.port)
            deadline = time.monotonic() + 120
            while recorder.recorded < frames and time.monotonic() < deadline:
                session.step(0.05)
            session.commit()
            elapsed = time.perf_counter() - start
            cpu = time.process_time() - cpu_start
            client.disconnect()
            writer.close()
            if recorder.recorded != frames:
                raise RuntimeError(f"recorded {recorder.recorded} of {frames}")
            report = verify(directory / "bench.rplog")  # the figure counts a sound log only
            if not report.ok or report.records != frames:
                raise RuntimeError("the bench log does not verify: " + "; ".join(report.lines()))
        finally:
            mosq.stop()
    return frames / elapsed, frames / cpu


def _args(port: int):
    class Args:
        user = None
        ca = None
        password_file = None
        client_id = "bench-recorder"
        keepalive = 60

    a = Args()
    a.port = port
    return a


def bytes_per_day() -> tuple[int, int]:
    """(binary, JSON) bytes a day for one station's telemetry at CADENCE_S, MQTT included."""
    frame = telemetry_frames(1, 1)[0][1]
    topic = uplink_broker.topic("jia", "relay1", "telemetry")  # the reference station's names
    packet = publish_packet(topic, frame, 1)
    kind, decoded = fast.decode(frame)
    fields = {k: v for k, v in decoded.items() if k not in ("magic", "version")}  # framing only
    text = json.dumps(fields, separators=(",", ":")).encode()
    json_packet = publish_packet(topic, text, 1)
    per_day = 86_400 // CADENCE_S
    return (
        per_day * (len(packet) + PUBACK_SIZE),
        per_day * (len(json_packet) + PUBACK_SIZE),
    )


def run(report) -> None:
    binary, as_json = bytes_per_day()
    report("uplink_bytes_per_day", binary, "B (goal <= 1100000)")
    report("uplink_bytes_per_day_json", as_json, "B (same data as JSON)")
    if mosquitto_path() is None:
        report("recorder_frames_per_s", "n/a (mosquitto not installed)", "")
        return
    per_s, per_cpu_s = recorder_rate()
    report("recorder_frames_per_s", per_s, "frames/s (goal >= 20000)")
    # the machine's load moves the first figure; the recorder's own CPU cost does not move much
    report("recorder_frames_per_cpu_s", per_cpu_s, "frames per CPU second of the recorder")


if __name__ == "__main__":
    from host_tools.bench.__main__ import report as _report

    run(_report)
