"""pumprecord against a real Mosquitto: two recorders in one shared-subscription group split the
stations' stream, everything is recorded once, also when a recorder is killed mid-stream and QoS 1
redelivers what it had not acknowledged."""

import collections
import signal
import subprocess
import sys
import time
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from mosquitto_broker import PASSWORDS, SITE
from uplink_frames import T0, event, telemetry, with_header

from host_tools.uplink.logfile import LogReader, LogWriter, verify
from host_tools.uplink.recorder import Recorder, Session, subscription

PUMPRECORD = str(Path(sys.executable).parent / "pumprecord")
BASE = telemetry(suction_kpa_x10=1600, flow_m3h_x10=8000)


class Station:
    """A station's publisher (its own credentials): frames QoS 1, seq shared by all its kinds."""

    def __init__(self, port: int, name: str, station_id: int):
        self.name = name
        self.station_id = station_id
        self.seq = 0
        self.infos = []
        c = paho.Client(
            paho.CallbackAPIVersion.VERSION2, client_id=f"st-{name}", protocol=paho.MQTTv311
        )
        c.username_pw_set(f"st-{name}", PASSWORDS[f"st-{name}"])
        c.max_inflight_messages_set(100)
        c.max_queued_messages_set(0)
        c.connect("127.0.0.1", port)
        c.loop_start()
        self.client = c

    def publish(self, count: int, event_every: int = 0) -> None:
        for _ in range(count):
            seq = self.seq
            self.seq += 1
            if event_every and seq % event_every == event_every - 1:
                kind, frame = "event", event(self.station_id, seq, T0 + 10 * seq)
            else:
                kind, frame = "telemetry", with_header(BASE, self.station_id, seq, T0 + 10 * seq)
            topic = f"relaypump/{SITE}/{self.name}/{kind}"
            self.infos.append(self.client.publish(topic, frame, qos=1))

    def wait(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        for info in self.infos:
            info.wait_for_publish(max(0.1, deadline - time.monotonic()))
            assert info.is_published(), f"{self.name}: the broker did not take every frame"

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def start_recorder(port, log, client_id, password_file, group="fleet"):
    return subprocess.Popen(
        [PUMPRECORD, "record", "--log", str(log), "--client-id", client_id, "--group", group,
         "--port", str(port), "--user", "recorder", "--password-file", password_file],
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def wait_subscribed(broker, client_ids, times=1, timeout=20):
    """Until the broker's log (since its last start) shows each recorder's shared subscription
    (`times` times)."""
    deadline = time.monotonic() + timeout
    while True:
        text = broker.log().rsplit(" starting\n", 1)[-1]
        if all(text.count(f"{c} 1 $share/fleet/relaypump/+/+/+") >= times for c in client_ids):
            return
        assert time.monotonic() < deadline, f"recorders {client_ids} did not subscribe"
        time.sleep(0.05)


def stop(proc) -> str:
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    return err


def frames_in(*logs):
    """(station, seq) of every frame recorded, with repeats."""
    out = []
    for log in logs:
        if log.exists():
            out += [(r.station, r.frame_seq) for r in LogReader(log) if r.frame_seq is not None]
    return out


def wait_recorded(logs, count, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(frames_in(*logs)) >= count:
            return
        time.sleep(0.2)
    raise AssertionError(f"recorded {len(frames_in(*logs))} of {count}")


def expected(stations):
    return {(s.name, seq) for s in stations for seq in range(s.seq)}


def test_two_recorders_split_the_stream_and_record_everything_once(broker, tmp_path, password_file):
    logs = [tmp_path / "a.rplog", tmp_path / "b.rplog"]
    pw = password_file("recorder")
    recs = [start_recorder(broker.port, log, f"rec-{i}", pw) for i, log in enumerate(logs)]
    wait_subscribed(broker, ["rec-0", "rec-1"])  # both before the first frame
    stations = [Station(broker.port, "relay1", 1), Station(broker.port, "relay2", 2)]
    for _ in range(10):
        for s in stations:
            s.publish(150, event_every=25)
    for s in stations:
        s.wait()
    wait_recorded(logs, 3000)
    time.sleep(0.3)
    for p in recs:
        stop(p)
    for s in stations:
        s.close()
    got = frames_in(*logs)
    assert len(got) == 3000 and set(got) == expected(stations)  # 100 %, none twice
    shares = [len(frames_in(log)) for log in logs]
    assert min(shares) > 600, shares  # the group split the stream
    for log in logs:
        assert verify(log).crc_errors == [] and not verify(log).duplicates


def test_a_recorder_killed_mid_stream_loses_nothing_and_records_nothing_twice(
    broker, tmp_path, password_file
):
    logs = [tmp_path / "a.rplog", tmp_path / "b.rplog"]
    pw = password_file("recorder")
    a = start_recorder(broker.port, logs[0], "rec-a", pw)
    b = start_recorder(broker.port, logs[1], "rec-b", pw)
    wait_subscribed(broker, ["rec-a", "rec-b"])
    stations = [Station(broker.port, "relay1", 1), Station(broker.port, "relay2", 2)]
    for round_ in range(30):
        for s in stations:
            s.publish(100)
        if round_ == 10:
            time.sleep(0.05)
            a.kill()  # SIGKILL mid-round: what it holds is neither flushed nor acknowledged
            a.wait(5)
        for s in stations:
            s.wait()  # paced: the broker has every frame of the round
        if round_ == 13:  # the broker queued ~300 for it (its queue holds 1000: none dropped)
            a = start_recorder(broker.port, logs[0], "rec-a", pw)  # the same session again
            wait_subscribed(broker, ["rec-a"], times=2)  # meanwhile nothing is published
    wait_recorded(logs, 6000)
    time.sleep(0.5)
    err_a = stop(a)
    stop(b)
    for s in stations:
        s.close()
    got = frames_in(*logs)
    counts = collections.Counter(got)
    assert set(got) == expected(stations), "frames lost"
    assert [k for k, n in counts.items() if n > 1] == [], "frames recorded twice"
    assert len(got) == 6000
    assert "recorded" in err_a
    assert "being dropped" not in broker.log()


def test_qos1_redelivery_of_written_but_unacknowledged_frames_is_dropped(
    broker, tmp_path, password_file
):
    """Deterministic: the recorder writes the 20 frames the broker lets it have unacknowledged,
    its link dies before the PUBACKs; its session comes back in a new process (a new Recorder on
    the same log) and the broker delivers the 20 again (DUP): every one is dropped; the 30 the
    broker had queued and 5 new ones are recorded."""
    log = tmp_path / "a.rplog"

    pw = password_file("recorder")

    class Args:
        user, ca, client_id, keepalive, port = "recorder", None, "rec-x", 30, broker.port
        password_file = pw

    from host_tools.uplink import broker as tools_broker

    writer = LogWriter(log)
    client = tools_broker.make_client(Args, clean_session=False, manual_ack=True)
    session = Session(Recorder(writer), client, subscription("fleet"), batch=10_000, fsync=False)
    client.connect("127.0.0.1", broker.port)
    deadline = time.monotonic() + 30
    while not session.subscribed and time.monotonic() < deadline:
        session.step(0.05)
    station = Station(broker.port, "relay1", 1)
    station.publish(50)
    station.wait()

    def read(until, seconds):  # read, never commit: nothing is acknowledged
        end = time.monotonic() + seconds
        while not until() and time.monotonic() < end:
            client.loop_read()
            time.sleep(0.001)

    read(lambda: session.received >= 20, 30)  # the 20 (30 s: a bound for a loaded machine)
    read(lambda: False, 0.3)  # and no more come
    # the broker sends at most max_inflight_messages (20) unacknowledged, and waits
    assert session.received == 20 and len(session.pending) == 20
    writer.flush()  # written, not acknowledged: the moment a crash makes duplicates
    client.socket().close()  # the link dies without a DISCONNECT
    writer.close()

    writer = LogWriter(log)  # the recorder starts again
    recorder = Recorder(writer)
    client = tools_broker.make_client(Args, clean_session=False, manual_ack=True)
    session = Session(recorder, client, subscription("fleet"), batch=1000, fsync=False)
    client.connect("127.0.0.1", broker.port)
    deadline = time.monotonic() + 30
    while recorder.recorded < 30 and time.monotonic() < deadline:
        session.step(0.05)
    station.publish(5)  # and the stream goes on
    station.wait()
    deadline = time.monotonic() + 30
    while recorder.recorded < 35 and time.monotonic() < deadline:
        session.step(0.05)
    session.commit()
    client.disconnect()
    writer.close()
    station.close()
    assert recorder.duplicates == 20 and recorder.recorded == 35
    assert [r.frame_seq for r in LogReader(log)] == list(range(55))
    assert verify(log).ok


def test_the_recorder_comes_back_after_a_broker_restart(broker, tmp_path, password_file):
    log = tmp_path / "a.rplog"
    rec = start_recorder(broker.port, log, "rec-a", password_file("recorder"))
    wait_subscribed(broker, ["rec-a"])
    station = Station(broker.port, "relay1", 1)
    station.publish(100)
    station.wait()
    wait_recorded([log], 100)
    broker.stop()
    time.sleep(1.0)
    broker.start()  # same port; no persistence: the recorder must subscribe again by itself
    wait_subscribed(broker, ["rec-a"])  # again, by itself
    deadline = time.monotonic() + 20
    while not station.client.is_connected():
        assert time.monotonic() < deadline, "the station did not connect again"
        time.sleep(0.1)
    station.publish(100)
    station.wait()
    wait_recorded([log], 200)
    stop(rec)
    station.close()
    assert [r.frame_seq for r in LogReader(log)] == list(range(200))


def test_a_recorder_started_before_its_broker_waits_for_it(broker, tmp_path, password_file):
    log = tmp_path / "a.rplog"
    broker.stop()
    err_path = tmp_path / "rec.stderr"
    with open(err_path, "w") as err:
        rec = subprocess.Popen(
            [PUMPRECORD, "record", "--log", str(log), "--client-id", "rec-a", "--group", "fleet",
             "--port", str(broker.port), "--user", "recorder",
             "--password-file", password_file("recorder")],
            stderr=err,
        )  # fmt: skip
    deadline = time.monotonic() + 20
    while "Connection refused; retrying" not in err_path.read_text():
        assert time.monotonic() < deadline and rec.poll() is None, err_path.read_text()
        time.sleep(0.1)
    broker.start()
    wait_subscribed(broker, ["rec-a"])
    station = Station(broker.port, "relay1", 1)
    station.publish(10)
    station.wait()
    wait_recorded([log], 10)
    rec.send_signal(signal.SIGTERM)
    assert rec.wait(20) == 0
    station.close()
    assert "pumprecord: 10 recorded, 0 duplicates dropped" in err_path.read_text()


def test_the_recorder_over_tls_acknowledges_in_batches(tmp_path, tls_broker, password_file):
    """100 frames through a broker that lets 20 wait unacknowledged: they all arrive only if the
    recorder's batched PUBACKs (written straight to the TLS socket) are right."""
    from host_tools.uplink import broker as tools_broker

    pw = password_file("recorder")

    class Args:
        user, client_id, keepalive = "recorder", "rec-tls", 30
        ca, password_file = str(tls_broker.tls.ca), pw

    log = tmp_path / "a.rplog"
    writer = LogWriter(log)
    recorder = Recorder(writer)
    client = tools_broker.make_client(Args, clean_session=False, manual_ack=True)
    session = Session(recorder, client, subscription("fleet"), batch=1000, fsync=True)
    client.connect("127.0.0.1", tls_broker.tls_port)
    deadline = time.monotonic() + 30
    while not session.subscribed and time.monotonic() < deadline:
        session.step(0.05)
    station = Station(tls_broker.port, "relay1", 1)
    station.publish(100)
    station.wait()
    deadline = time.monotonic() + 30
    while recorder.recorded < 100 and time.monotonic() < deadline:
        session.step(0.05)
    session.commit()
    client.disconnect()
    writer.close()
    station.close()
    assert [r.frame_seq for r in LogReader(log)] == list(range(100))


def test_a_refused_login_is_one_line_and_exit_4_not_retried_forever(broker, tmp_path):
    wrong = tmp_path / "wrong.password"
    wrong.write_text("not-the-password\n")
    wrong.chmod(0o600)
    rec = start_recorder(broker.port, tmp_path / "r.rplog", "rec-refused", str(wrong))
    try:
        _, err = rec.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        rec.kill()
        rec.communicate()
        pytest.fail("pumprecord kept retrying a refused login")
    assert rec.returncode == 4
    refusal = [line for line in err.splitlines() if "refused" in line]
    assert refusal == [
        f"pumprecord: the broker at 127.0.0.1:{broker.port} refused the login: Not authorized"
    ]


@pytest.mark.parametrize(
    "option, message",
    [
        (["--group", "a/b"], "--group 'a/b': a name without /, + or #"),
        (["--group", "+"], "--group '+': a name without /, + or #"),
        (["--index-every", "0"], "--index-every 0: must be 1 or more"),
        (["--window", "3"], "--window 3: must be a power of two (e.g. 4096)"),
    ],
)
def test_bad_record_options_are_refused_before_anything_starts(tmp_path, option, message):
    """A share name with / or a wildcard would subscribe to other topics than relaypump's (the
    broker takes it): refused, as are an index block of no records and a window Recorder cannot
    use; no log is made, no broker is needed (port 1)."""
    log = tmp_path / "r.rplog"
    argv = ["record", "--log", str(log), "--client-id", "r", "--port", "1", *option]
    proc = subprocess.run([PUMPRECORD, *argv], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2 and proc.stderr == f"pumprecord: {message}\n"
    assert not log.exists()
