"""A heating season of one station's telemetry in the log (host_tools/uplink/logfile.py).

- season_log_write_s: SEASON_FRAMES telemetry frames, one every 10 s (about 150 days), appended
  by LogWriter (CRC per record, index as it goes) and closed (fsync). Only the writer's time
  counts: the frames are synthesised in chunks outside the clock.
- season_log_verify_s: logfile.verify of that log (every CRC, the index, seq gaps/duplicates);
  season_log_verify_cpu_s: its CPU time (what a machine shared with other work moves least).
- season_seek_ms: the worst of SEEKS seeks to a random hour of the season: LogReader opened,
  records(start_s=hour) read up to the first record of that hour.
- replay_frames_per_s: REPLAY_FRAMES of the season read from the log and published by
  pumpreplay's replay loop and Publisher (host_tools/uplink/publisher.py: QoS 1, in-flight
  window 10,000 as ``pumpreplay --as-fast-as-possible`` has by default) into a local Mosquitto,
  until the last PUBACK; n/a when mosquitto is not installed.
  replay_frames_per_cpu_s: the same frames per CPU second of the replaying process;
  replay_broker_frames_per_cpu_s: per CPU second of the broker (from /proc). On a machine with a
  core for each, the wall figure is the lower of the two; on a loaded one it is the number of
  window round trips times the scheduler's latency (each half window waits for the broker to
  run, then for the replay to run again), hence the window of 10,000: 1,000 gives about a third of
  the wall rate there, the same CPU figures. The broker needs nothing for it (no subscriber;
  max_inflight_messages limits what Mosquitto sends, not what it takes).

The frames (``season_frames``) are protocol/uplink.py telemetry (its layout's struct): a
station following a daily flow cycle with a cold-to-mild outdoor trend, two pumps sharing the
load, the meters counting up. Not a simulation: data with the right shape and size.
"""

from __future__ import annotations

import math
import os
import random
import struct
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from host_tools.uplink.broker_process import mosquitto_path
from host_tools.uplink.logfile import KIND_TELEMETRY, LogReader, LogWriter, verify
from protocol import layout

SEASON_FRAMES = 1_300_000
PERIOD_S = 10
SEASON_START = 1_790_812_800  # 2026-10-01T00:00:00Z
SEEKS = 20
REPLAY_FRAMES = 100_000
SITE, STATION = "jia", "relay1"


def season_frames(count: int, start_s: int = SEASON_START, chunk: int = 10_000) -> Iterator[list]:
    """Telemetry frames of one station every PERIOD_S from start_s, in lists of `chunk`."""
    lay = layout.layout("telemetry")
    pack = struct.Struct(lay.build_format).pack
    head = [f.const for f in lay.fields if f.const is not None]
    energy = [0.0, 0.0, 0.0]
    out = []
    for seq in range(count):
        t = start_s + seq * PERIOD_S
        day = (t % 86400) / 86400.0
        season = seq / max(1, count)
        flow = 600 + 250 * (1 - season) + 180 * math.sin(2 * math.pi * (day - 0.3))  # m3/h
        speed = 55 + 30 * flow / 1030
        power = 0.09 * flow
        two = flow > 800
        pumps = []
        for p in range(3):
            on = p == 0 or (p == 1 and two)
            kw = power / (2 if two else 1) if on else 0.0
            energy[p] += kw * PERIOD_S / 3600
            pumps += [round(speed * 100) if on else 0, round(kw * 3) if on else 0,
                      round(kw * 10), 4 if on else 2, 0, round(energy[p] * 10)]  # fmt: skip
        values = [1, seq, t, 1600, 4400 + round(flow), 1500 + round(20 * math.sin(seq)),
                  9000 - round(2000 * season), 5500, round(flow * 10), 1500, 1, 0,
                  round(sum(energy) * 10), *pumps]  # fmt: skip
        out.append(pack(*head, *values))
        if len(out) == chunk:
            yield out
            out = []
    if out:
        yield out


def write_season(path: Path, count: int, index_every: int = 4096) -> float:
    """Write the season's log; returns the writer's seconds (append + close)."""
    spent = 0.0
    writer = LogWriter(path, index_every=index_every)
    for frames in season_frames(count):
        t0 = time.perf_counter()
        append = writer.append
        for frame in frames:
            ts = int.from_bytes(frame[12:16], "big")
            append(ts * 1_000_000, KIND_TELEMETRY, SITE, STATION, frame, 0, ts)
        spent += time.perf_counter() - t0
    t0 = time.perf_counter()
    writer.close()
    return spent + time.perf_counter() - t0


def seek_ms(path: Path, hours: int, seeks: int, rng: random.Random) -> float:
    """Worst time to open the log and read the first record of a random hour, ms."""
    worst = 0.0
    for _ in range(seeks):
        hour = SEASON_START + 3600 * rng.randrange(hours)
        t0 = time.perf_counter()
        record = next(LogReader(path).records(start_s=hour))
        worst = max(worst, time.perf_counter() - t0)
        if record.time_s != hour:
            raise RuntimeError(f"seek to {hour} found {record.time_s}")
    return worst * 1000


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system) of a process, from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def replay_rate(path: Path, frames: int) -> tuple[float, float, float]:
    """Frames published and acknowledged by a local Mosquitto per wall second, per CPU second of
    this process (the figure a loaded machine moves least), and per CPU second of the broker."""
    from host_tools.bench.uplink_host import bench_broker
    from host_tools.uplink.replay import FAST_WINDOW, Progress, Publisher, Topics, replay

    with tempfile.TemporaryDirectory(prefix="bench-replay-") as tmp:
        mosq = bench_broker(Path(tmp))
        try:
            args = SimpleArgs(mosq.port)
            publisher = Publisher(args, window=FAST_WINDOW)
            publisher.connect("127.0.0.1", mosq.port, 60)
            reader = LogReader(path)
            end = SEASON_START + frames * PERIOD_S
            quiet = Progress(frames, _Null(), tty=False)
            t0 = time.perf_counter()
            cpu0 = time.process_time()
            broker0 = _cpu_s(mosq.proc.pid)
            sent = replay(reader, publisher, Topics({}), {KIND_TELEMETRY}, None, end, None,
                          quiet, [])  # fmt: skip
            if not publisher.drain(60):
                raise RuntimeError("the broker did not acknowledge every frame")
            elapsed = time.perf_counter() - t0
            cpu = time.process_time() - cpu0
            broker_cpu = _cpu_s(mosq.proc.pid) - broker0
            publisher.disconnect()
        finally:
            mosq.stop()
    if sent != frames:
        raise RuntimeError(f"replayed {sent} of {frames}")
    return frames / elapsed, frames / cpu, frames / max(broker_cpu, 1e-3)


class SimpleArgs:
    def __init__(self, port: int):
        self.port = port
        self.user = None
        self.ca = None
        self.password_file = None
        self.client_id = "bench-replay"
        self.keepalive = 60


class _Null:
    def write(self, text: str) -> None:
        pass

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False


def run(report) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-season-") as tmp:
        path = Path(tmp) / "season.rplog"
        report("season_log_write_s", write_season(path, SEASON_FRAMES), "s")
        t0, cpu0 = time.perf_counter(), time.process_time()
        checked = verify(path)
        report("season_log_verify_s", time.perf_counter() - t0, "s")
        report("season_log_verify_cpu_s", time.process_time() - cpu0, "s")
        if not checked.ok or checked.records != SEASON_FRAMES:
            raise RuntimeError("the season log does not verify: " + "; ".join(checked.lines()))
        hours = SEASON_FRAMES * PERIOD_S // 3600
        report("season_seek_ms", seek_ms(path, hours, SEEKS, random.Random(10)), "ms")
        if mosquitto_path() is None:
            report("replay_frames_per_s", "n/a (mosquitto not installed)", "")
        else:
            wall, cpu, broker_cpu = replay_rate(path, REPLAY_FRAMES)
            report("replay_frames_per_s", wall, "frames/s")
            report("replay_frames_per_cpu_s", cpu, "frames/s")
            report("replay_broker_frames_per_cpu_s", broker_cpu, "frames/s")
