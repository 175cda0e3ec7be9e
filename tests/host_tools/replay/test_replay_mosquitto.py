"""pumpreplay into a real Mosquitto, recorded by pumprecord: the new log holds the original's
frames in the same order with the same identities (or the mapped ones), paced at N x real time,
only the slice asked for; a damaged log is refused before anything is published; Ctrl-C stops
cleanly with what was published acknowledged."""

import signal
import subprocess
import time

from replay_logs import (
    PUMPREPLAY,
    make_log,
    records,
    run_replay,
    start_recorder,
    stop,
    wait_records,
    wait_subscribed,
)
from uplink_frames import T0

from host_tools.uplink.logfile import LogReader

STATION_KINDS = ("status", "telemetry", "event", "ack")


def station_records(written):
    return [(k, s, st, p) for k, s, st, p, *_ in written if k in STATION_KINDS]


def replay_and_record(broker, tmp_path, password_file, log, *args, expect: int):
    out = tmp_path / "replayed.rplog"
    rec = start_recorder(broker.port, out, password_file("recorder"))
    try:
        wait_subscribed(broker)
        done = run_replay(broker.port, log, password_file("replayer"), *args)
        assert done.returncode == 0, done.stderr
        wait_records(out, expect)
        time.sleep(0.3)  # nothing more arrives
    finally:
        stop(rec)
    return out, done


def test_replay_gives_the_same_frames_in_the_same_order_with_the_same_identities(
    broker, tmp_path, password_file
):
    log = tmp_path / "original.rplog"
    written = make_log(log, frames=300)
    want = station_records(written)
    out, done = replay_and_record(
        broker, tmp_path, password_file, log, "--as-fast-as-possible", "--window", "16",
        expect=len(want),
    )  # fmt: skip
    assert records(out) == want  # order (the late frame too), names, bytes; no cmd, no other
    lines = [line for line in done.stderr.splitlines() if line.endswith(" frames)")]
    assert [line.split()[1] for line in lines] == [str(p) for p in range(10, 101, 10)]
    assert f"{len(want)} of {len(want)} published, {len(want)} acknowledged" in done.stderr


def test_replay_remaps_station_identities(broker, tmp_path, password_file):
    log = tmp_path / "original.rplog"
    want = station_records(make_log(log, frames=40))
    out, _ = replay_and_record(
        broker, tmp_path, password_file, log, "--as-fast-as-possible",
        "--map", "jia/relay1=kvv/relay9", "--map", "jia/relay2=jia/relay7", expect=len(want),
    )  # fmt: skip
    names = {("jia", "relay1"): ("kvv", "relay9"), ("jia", "relay2"): ("jia", "relay7")}
    assert records(out) == [(k, *names[(s, st)], p) for k, s, st, p in want]


def test_replay_at_n_times_real_time_keeps_the_relative_timing(broker, tmp_path, password_file):
    log = tmp_path / "original.rplog"
    # 40 records received 100 ms apart: 3.9 s recorded, 1.95 s at x2
    written = make_log(log, frames=38, receive_step_us=100_000, extras=False)
    want = station_records(written)
    out, _ = replay_and_record(
        broker, tmp_path, password_file, log, "--speed", "2", expect=len(want)
    )
    got = [r.receive_us for r in LogReader(out)]
    sent = [w[4] for w in written]
    for i in range(1, len(got)):
        planned = (sent[i] - sent[0]) / 2e6
        actual = (got[i] - got[0]) / 1e6
        # never early (10 ms for the two clocks' reads); late by a loaded machine's scheduling
        assert planned - 0.01 <= actual <= planned + 0.5, (i, planned, actual)
    total = (got[-1] - got[0]) / 1e6
    assert 1.94 <= total <= 2.45, total


def test_seek_by_time_replays_only_the_slice(broker, tmp_path, password_file):
    log = tmp_path / "original.rplog"
    # 2 stations x 1080 frames 10 s apart: 3 hours; small index blocks, so seeking skips some
    written = make_log(log, frames=2160, index_every=50, extras=False)
    assert len(LogReader(log).index) > 20
    lo, hi = T0 + 3600, T0 + 2 * 3600
    want = [(k, s, st, p) for k, s, st, p, _, t in written if t is not None and lo <= t < hi]
    assert len(want) == 720
    out, _ = replay_and_record(
        broker, tmp_path, password_file, log, "--as-fast-as-possible",
        "--from", "+1h", "--to", "2026-05-28T22:26:40Z", expect=len(want),
    )  # fmt: skip
    assert hi == 1_780_007_200  # the ISO time above
    assert records(out) == want


def test_a_damaged_log_is_refused_before_anything_is_published(tmp_path):
    log = tmp_path / "original.rplog"
    make_log(log, frames=40)
    data = bytearray(log.read_bytes())
    data[len(data) // 2] ^= 0xFF
    log.write_bytes(bytes(data))
    # no broker on this port: the log is judged before any connection
    done = subprocess.run([PUMPREPLAY, str(log), "--port", "9"], capture_output=True, text=True)
    assert done.returncode == 3
    assert done.stderr.startswith(f"pumpreplay: {log}: damaged, nothing replayed: record at offset")
    assert len(done.stderr.splitlines()) == 1


def test_no_broker_is_one_line_and_exit_4(tmp_path):
    log = tmp_path / "original.rplog"
    make_log(log, frames=4)
    done = subprocess.run([PUMPREPLAY, str(log), "--port", "9"], capture_output=True, text=True)
    assert done.returncode == 4
    assert done.stderr.startswith("pumpreplay: cannot reach the broker at 127.0.0.1:9")


def test_ctrl_c_stops_cleanly_with_every_published_frame_acknowledged(
    broker, tmp_path, password_file
):
    log = tmp_path / "original.rplog"
    written = make_log(log, frames=400, receive_step_us=50_000, extras=False)  # 20 s
    want = station_records(written)
    out = tmp_path / "replayed.rplog"
    rec = start_recorder(broker.port, out, password_file("recorder"))
    try:
        wait_subscribed(broker)
        replay = subprocess.Popen(
            [PUMPREPLAY, str(log), "--port", str(broker.port), "--user", "replayer",
             "--password-file", password_file("replayer")],
            stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        wait_records(out, 20)
        replay.send_signal(signal.SIGINT)
        _, err = replay.communicate(timeout=15)
        assert replay.returncode == 130, err
        assert "interrupted" in err.splitlines()[-1]
        published = int(err.splitlines()[-1].split()[1])
        assert f"{published} acknowledged" in err
        wait_records(out, published)
        time.sleep(0.3)
    finally:
        stop(rec)
    got = records(out)
    assert 20 <= len(got) < len(want) and got == want[: len(got)] and len(got) == published


def test_progress_on_a_terminal_is_one_redrawn_line(broker, tmp_path, password_file):
    import os
    import pty

    log = tmp_path / "original.rplog"
    make_log(log, frames=3000, extras=False)
    parent, child = pty.openpty()
    proc = subprocess.Popen(
        [PUMPREPLAY, str(log), "--as-fast-as-possible", "--port", str(broker.port),
         "--user", "replayer", "--password-file", password_file("replayer")],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=child,
    )  # fmt: skip
    os.close(child)
    out = b""
    while True:
        try:
            chunk = os.read(parent, 4096)
        except OSError:  # the pty's other end closed
            break
        if not chunk:
            break
        out += chunk
    os.close(parent)
    assert proc.wait(timeout=60) == 0, out
    text = out.decode().replace("\r\n", "\n")  # the terminal turns \n into \r\n
    bar, summary = text.rstrip("\r\n").rsplit("\n", 1)
    assert bar.startswith("\r[") and "\n" not in bar.strip("\r\n")  # redrawn in place
    assert bar.rsplit("\r", 1)[-1] == f"[{'#' * 20}] 100.0 %  3002/3002 frames"
    assert summary.startswith("pumpreplay: 3002 of 3002 published, 3002 acknowledged")
    assert " % (" not in text  # no per-10 % lines on a terminal


def test_replay_over_tls(tls_broker, tmp_path, password_file):
    log = tmp_path / "original.rplog"
    want = station_records(make_log(log, frames=500))
    out = tmp_path / "replayed.rplog"
    rec = start_recorder(tls_broker.port, out, password_file("recorder"))
    try:
        wait_subscribed(tls_broker)
        done = run_replay(tls_broker.tls_port, log, password_file("replayer"),
                          "--as-fast-as-possible", "--ca", str(tls_broker.tls.ca))  # fmt: skip
        assert done.returncode == 0, done.stderr
        wait_records(out, len(want))
    finally:
        stop(rec)
    assert records(out) == want


def test_ctrl_c_ends_a_replay_whose_broker_stopped_acknowledging(broker, tmp_path, password_file):
    log = tmp_path / "original.rplog"
    make_log(log, frames=400, receive_step_us=20_000, extras=False)
    out = tmp_path / "replayed.rplog"
    rec = start_recorder(broker.port, out, password_file("recorder"))
    try:
        wait_subscribed(broker)
        replay = subprocess.Popen(
            [PUMPREPLAY, str(log), "--window", "10", "--port", str(broker.port),
             "--user", "replayer", "--password-file", password_file("replayer")],
            stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        wait_records(out, 20)
        broker.freeze()  # there, but silent: the window fills and stays full
        time.sleep(1.0)
        replay.send_signal(signal.SIGINT)
        _, err = replay.communicate(timeout=30)  # the drain's 5 s, not the broker's silence
    finally:
        broker.thaw()
        stop(rec)
    assert replay.returncode == 130, err
    last = err.splitlines()[-1]
    assert "interrupted" in last
    published, acked = int(last.split()[1]), int(last.split(",")[1].split()[0])
    assert published - acked == 10  # the window, never more
