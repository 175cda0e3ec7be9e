"""Fleet figures: 500 station uplinks flushing an hour of outbox each after a broker restart.

host_tools.uplink.fleet runs the story (its docstring has the rules): 500 stations (the firmware's
mqtt.Session + netio.Link + Outbox on CPython, one process, one selector loop) fed the
simulator's telemetry (a one-hour pumpsim run, replayed per station from its own offset), one
Mosquitto (password file of 502 users, %u pattern ACL, persistence, deep queues), two pumprecord
processes. Two minutes live, the broker stopped with frames in flight, an hour of outage in
station time (every outbox fills with 360 frames; the reconnect backoff reaches its cap), the
broker started again, every station flushes at once; one minute live after.

- fleet_flush_s: from the restarted broker accepting connections until the recorders' logs hold
  every frame appended before the restart (goal <= 60 s). The recorders mirror (each its own
  persistent subscription, both record everything; Mosquitto 2.0 does not keep a $share
  subscription across a restart, see the fleet tests): the figure waits for both logs.
- fleet_reconnect_s: until every station's session is connected again. With the stations'
  backoff_max_s of 30 s here, the last reconnect comes up to 30 s after the restart by design
  (jitter spreads the herd); the firmware's default cap of 120 s spreads it over up to 2 min.
- fleet_handed_s: until the broker had acknowledged every one of those frames (the stations'
  side done; the rest of fleet_flush_s is the broker and the recorders catching up).
- fleet_frames_missing / fleet_frames_twice: frames not recorded / recorded twice in a log (0).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from host_tools.uplink import fleet

PLAN = fleet.Plan(
    stations=500,
    before_s=120,
    outage_s=3600,
    after_s=60,
    split=fleet.MIRROR,
    session=dict(keepalive_s=60, inflight=4, retry_s=20, backoff_min_s=1, backoff_max_s=30),
    flush_timeout=600,
)


def run(report) -> None:
    if fleet.mosquitto_path() is None:
        report("fleet_flush_s", "n/a (mosquitto not installed)", "")
        return
    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as tmp:
        recording = fleet.load_recording(fleet.record_telemetry(Path(tmp) / "sim", 1.0))
        out = fleet.run(PLAN, Path(tmp) / "fleet", recording)
    for line in out.lines():
        print(f"  {line}", flush=True)
    flush = out.flush_s if out.flush_s is not None else f"n/a (never complete: {out.stopped})"
    report("fleet_flush_s", flush, "s (goal <= 60)")
    report("fleet_reconnect_s", out.reconnect_s, "s")
    report("fleet_handed_s", out.handed_s, "s (the broker acknowledged every frame)")
    report("fleet_frames_missing", len(out.missing), f"of {out.expected} (x2 logs)")
    report("fleet_frames_twice", len(out.duplicates), "")


if __name__ == "__main__":
    from host_tools.bench.__main__ import report as _report

    run(_report)
