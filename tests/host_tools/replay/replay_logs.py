"""Telemetry logs for the replay and pumplog tests, written with logfile.LogWriter from frames of
protocol/uplink.py (tests/host_tools/uplink/uplink_frames.py)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from uplink_frames import T0, ack, event, telemetry, with_header

from host_tools.uplink.logfile import KINDS, LogReader, LogWriter

BIN = Path(sys.executable).parent
PUMPRECORD = str(BIN / "pumprecord")
PUMPREPLAY = str(BIN / "pumpreplay")
PUMPLOG = str(BIN / "pumplog")
BASE = telemetry(
    suction_kpa_x10=1612, discharge_kpa_x10=4475, remote_dp_kpa_x10=-32768,
    supply_temp_c_x100=9012, return_temp_c_x100=5501, flow_m3h_x10=8123, setpoint_kpa_x10=1500,
    mode=1, station_energy_kwh_x10=123456, pump1_speed_pct_x100=8250, pump1_current_a_x10=1850,
    pump1_power_kw_x10=745, pump1_state=4, pump1_energy_kwh_x10=99, pump2_state=2, pump3_state=0,
)  # fmt: skip
STATIONS = (("jia", "relay1", 1), ("jia", "relay2", 2))


def make_log(path: Path, frames: int = 60, period_s: int = 10, receive_step_us: int = 10_000,
             index_every: int = 4096, extras: bool = True) -> list[tuple]:  # fmt: skip
    """A log of two stations: a status each, then `frames` frames round robin (every 7th an
    event, every 11th an ack, the rest telemetry; record times period_s apart per station,
    receive times receive_step_us apart), one frame received late (an outbox flush) and, with
    extras, a command and a message of another topic (neither replayed by default).
    Returns what was written: (kind name, site, station, payload, receive_us, record time)."""
    written = []
    with LogWriter(path, index_every=index_every) as w:
        us = T0 * 1_000_000

        def put(kind, site, station, payload, time_s=None):
            nonlocal us
            us += receive_step_us
            w.append(us, KINDS[kind] if kind != "other" else 255, site, station, payload)
            written.append((kind, site, station, payload, us, time_s))

        for site, station, _ in STATIONS:
            put("status", site, station, b'{"online": true}')
        late = None
        for i in range(frames):
            site, station, sid = STATIONS[i % len(STATIONS)]
            seq = i // len(STATIONS)
            ts = T0 + period_s * seq
            if seq % 7 == 6:
                kind, frame = "event", event(sid, seq, ts)
            elif seq % 11 == 10:
                kind, frame = "ack", ack(sid, seq, ts, command_counter=seq)
            else:
                kind, frame = "telemetry", with_header(BASE, sid, seq, ts)
            if i == 4:
                late = (kind, site, station, frame, ts)  # held back: arrives after frame 9
                continue
            put(kind, site, station, frame, ts)
            if i == 9 and late:
                put(late[0], late[1], late[2], late[3], late[4])
        if extras:
            put("cmd", "jia", "relay1", b"RP\x01\x03" + bytes(60))
            w.append(us + 1, 255, "", "", b"other/topic\0hello")
            written.append(("other", "", "", b"other/topic\0hello", us + 1, None))
    return written


def records(path: Path) -> list[tuple]:
    """(kind name, site, station, message) of every record of a log, in log order."""
    return [(r.kind_name, r.site, r.station, r.message) for r in LogReader(path)]


def start_recorder(port: int, log: Path, password_file: str, client_id: str = "rec"):
    return subprocess.Popen(
        [PUMPRECORD, "record", "--log", str(log), "--client-id", client_id, "--group", "",
         "--port", str(port), "--user", "recorder", "--password-file", password_file],
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def wait_subscribed(broker, client_id: str = "rec", timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while f"{client_id} 1 relaypump/+/+/+" not in broker.log():
        assert time.monotonic() < deadline, "the recorder did not subscribe"
        time.sleep(0.05)


def wait_records(log: Path, count: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    got = 0
    while time.monotonic() < deadline:
        if log.exists():
            got = sum(1 for _ in LogReader(log))
            if got >= count:
                return
        time.sleep(0.1)
    raise AssertionError(f"recorded {got} of {count}")


def stop(proc) -> str:
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    return err


def run_replay(port: int, log: Path, password_file: str, *args: str, timeout: float = 120):
    return subprocess.run(
        [PUMPREPLAY, str(log), "--port", str(port), "--user", "replayer",
         "--password-file", password_file, *args],
        capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
