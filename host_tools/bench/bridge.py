"""pumpbridge's throughput: station frames in, Sparkplug B out, through a local Mosquitto.

- bridge_frames_per_s: FRAMES telemetry frames of STATIONS stations (the season log bench's
  synthetic frames, every one with changed values) published QoS 1 by a raw-socket publisher
  into Mosquitto while pumpbridge (its own process, as shipped: python -m
  host_tools.uplink.bridge) is connected; counted from the first publish until a subscriber of
  the node's DBIRTH/DDATA topics has received one Sparkplug message per frame (a DBIRTH for each
  station's first frame, a DDATA for every other). Goal (issue 10): >= 5,000.
- bridge_frames_per_cpu_s: the same frames per CPU second of the bridge process (from /proc):
  what a machine shared with other work (the publisher, the broker, the counter) moves least.
n/a when mosquitto is not installed or the bridge does not deliver every message in time.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as paho

from host_tools.bench.season_log import _cpu_s, season_frames
from host_tools.bench.uplink_host import _raw_publish, bench_broker
from host_tools.uplink.broker_process import mosquitto_path

FRAMES = 50_000
STATIONS = 10
SITE = "jia"
STALL_S = 20.0  # no Sparkplug message for this long: the bridge is stuck, give up


def _messages(frames: int, stations: int) -> list[tuple[str, bytes]]:
    out = []
    for chunk in season_frames(frames):
        for frame in chunk:
            station = f"relay{len(out) % stations + 1}"
            out.append((f"relaypump/{SITE}/{station}/telemetry", frame))
    return out


class _Counter:
    """Counts the node's DBIRTH and DDATA messages (QoS 0, as the bridge sends them)."""

    def __init__(self, port: int):
        self.count = 0
        self.last_at = time.perf_counter()
        self.subscribed = threading.Event()
        self.done = threading.Event()
        self.want = 0
        c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="bench-scada")
        c.on_subscribe = lambda *a: self.subscribed.set()
        c.on_message = self._on_message
        c.connect("127.0.0.1", port)
        c.subscribe([(f"spBv1.0/{SITE}/DBIRTH/#", 0), (f"spBv1.0/{SITE}/DDATA/#", 0)])
        c.loop_start()
        self.client = c
        if not self.subscribed.wait(10):
            raise RuntimeError("the counter got no SUBACK")

    def _on_message(self, client, userdata, msg) -> None:
        self.count += 1
        self.last_at = time.perf_counter()
        if self.count >= self.want:
            self.done.set()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def bridge_rate(frames: int = FRAMES, stations: int = STATIONS) -> tuple[float, float]:
    """(frames per wall second, frames per CPU second of the bridge process)."""
    messages = _messages(frames, stations)
    with tempfile.TemporaryDirectory(prefix="bench-bridge-") as tmp:
        mosq = bench_broker(Path(tmp))
        bridge = None
        counter = None
        try:
            counter = _Counter(mosq.port)
            counter.want = len(messages)
            bridge = subprocess.Popen(
                [sys.executable, "-m", "host_tools.uplink.bridge", "--site", SITE, "--port",
                 str(mosq.port), "--state-dir", tmp, "--client-id", "bench-bridge"],
                stdout=subprocess.PIPE, text=True,
            )  # fmt: skip
            if not bridge.stdout.readline().startswith("pumpbridge: edge node"):
                raise RuntimeError("pumpbridge did not start")
            time.sleep(0.5)  # its subscriptions follow the NBIRTH
            cpu0 = _cpu_s(bridge.pid)
            start = time.perf_counter()
            _raw_publish(mosq.port, messages)
            while not counter.done.wait(0.5):
                if time.perf_counter() - counter.last_at > STALL_S:
                    raise RuntimeError(f"{counter.count} of {len(messages)} Sparkplug messages")
            elapsed = counter.last_at - start
            cpu = _cpu_s(bridge.pid) - cpu0
        finally:
            if counter is not None:
                counter.close()
            if bridge is not None:
                bridge.terminate()
                bridge.wait(10)
            mosq.stop()
    return len(messages) / elapsed, len(messages) / max(cpu, 1e-3)


def run(report) -> None:
    if mosquitto_path() is None:
        report("bridge_frames_per_s", "n/a (mosquitto not installed)", "")
        return
    try:
        wall, cpu = bridge_rate()
    except RuntimeError as err:
        report("bridge_frames_per_s", f"n/a ({err})", "")
        return
    report("bridge_frames_per_s", wall, "frames/s")
    report("bridge_frames_per_cpu_s", cpu, "frames/s")
