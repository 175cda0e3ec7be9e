"""pumpmon: the model renders online/offline from retained status (birth and will), values and
alarms from telemetry, the last event; through a real Mosquitto and as a CLI into a pipe."""

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import paho.mqtt.client as paho
from mosquitto_broker import PASSWORDS, SITE, Watcher
from uplink_frames import T0, ack, event, telemetry

from host_tools.uplink.monitor import Model
from protocol import uplink

PUMPMON = str(Path(sys.executable).parent / "pumpmon")
ALARMS = 1 << uplink.Alarm.SUCTION_LOW | 1 << uplink.Alarm.PUMP2_TRIPPED


def frame(**fields):
    fields.setdefault("pumps", None)
    f = dict(
        suction_kpa_x10=952, discharge_kpa_x10=4500, remote_dp_kpa_x10=-32768,
        supply_temp_c_x100=11850, return_temp_c_x100=6020, flow_m3h_x10=8000,
        setpoint_kpa_x10=1110, mode=1, alarm_bits=ALARMS, station_energy_kwh_x10=123456,
    )  # fmt: skip
    f.update({k: v for k, v in fields.items() if k != "pumps"})
    return telemetry(1, 41, T0, **f)


def test_the_model_renders_values_alarms_events_and_staleness():
    m = Model(stale_s=35)
    assert m.feed(f"relaypump/{SITE}/relay1/status", b"online", True, now=T0) == (
        f"{SITE}/relay1 status online (retained)"
    )
    line = m.feed(f"relaypump/{SITE}/relay1/telemetry", frame(), now=T0 + 1)
    assert line.startswith(f"{SITE}/relay1 telemetry seq 41 mode REMOTE_DP setpoint 111.0 kPa")
    assert line.endswith("alarms SUCTION_LOW,PUMP2_TRIPPED")
    ev = event(1, 42, T0 + 2, uplink.EventCode.SUCTION_TRIP, uplink.Severity.ALARM, 0, 952)
    assert m.feed(f"relaypump/{SITE}/relay1/event", ev, now=T0 + 2) == (
        f"{SITE}/relay1 event 2026-05-28 20:26:42Z SUCTION_TRIP (ALARM, station) 95.2 kPa"
    )
    m.feed(f"relaypump/{SITE}/relay1/ack", ack(1, 43, T0 + 3, 7, uplink.AckResult.REPLAYED))
    m.feed(f"relaypump/{SITE}/relay2/status", b'{"state":"offline"}', True, now=T0)
    m.feed(f"relaypump/{SITE}/relay2/telemetry", b"RP\x01\x01short", now=T0)
    screen = m.render(now=T0 + 10)
    assert (
        f"{SITE}/relay1  ONLINE  telemetry 9 s ago, frame time 2026-05-28 20:26:40Z, seq 41"
        in screen
    )
    assert "suction 95.2 kPa  discharge 450.0 kPa  remote DP --" in screen
    assert "supply 118.50 degC  return 60.20 degC  flow 800.0 m3/h  energy 12345.6 kWh" in screen
    assert "  alarms: SUCTION_LOW, PUMP2_TRIPPED" in screen
    assert "  last event: 2026-05-28 20:26:42Z SUCTION_TRIP (ALARM, station) 95.2 kPa" in screen
    assert "  last ack: counter 7 REPLAYED" in screen
    assert f"{SITE}/relay2  OFFLINE  no telemetry yet" in screen
    assert "undecodable payloads: 1 (last: telemetry: " in screen
    assert f"{SITE}/relay1  ONLINE STALE" in m.render(now=T0 + 60)


def station_with_will(port, name):
    c = paho.Client(
        paho.CallbackAPIVersion.VERSION2, client_id=f"st-{name}", protocol=paho.MQTTv311
    )
    c.username_pw_set(f"st-{name}", PASSWORDS[f"st-{name}"])
    c.will_set(f"relaypump/{SITE}/{name}/status", b"offline", qos=1, retain=True)
    connected = threading.Event()
    c.on_connect = lambda *a: connected.set()
    c.connect("127.0.0.1", port, keepalive=5)
    c.loop_start()
    assert connected.wait(30)
    c.publish(f"relaypump/{SITE}/{name}/status", b"online", qos=1, retain=True).wait_for_publish(5)
    return c


def test_online_offline_from_retained_birth_and_will_through_mosquitto(broker):
    relay1 = station_with_will(broker.port, "relay1")
    relay2 = station_with_will(broker.port, "relay2")
    status2 = f"relaypump/{SITE}/relay2/status"
    will = Watcher(broker.port, "controlroom", topics=[status2])
    relay2.loop_stop()
    relay2.socket().close()  # the link dies: the broker publishes relay2's will (retained)
    will.wait(lambda: b"offline" in will.payloads(status2), what="relay2's will")
    will.close()
    relay1.publish(f"relaypump/{SITE}/relay1/telemetry", frame(), qos=1).wait_for_publish(5)
    ev = event(1, 42, T0 + 2, uplink.EventCode.PUMP_TRIPPED, uplink.Severity.ALARM, 2, 17)
    relay1.publish(f"relaypump/{SITE}/relay1/event", ev, qos=1).wait_for_publish(5)
    # a viewer that comes later still sees who is online: the status messages are retained
    watcher = Watcher(broker.port, "controlroom", topics=[f"relaypump/{SITE}/+/+"])
    watcher.wait(lambda: len(watcher.messages) >= 2, what="the retained status")
    model = Model()
    for topic, payload, retained in watcher.messages:
        model.feed(topic, payload, retained)
    relay1.publish(f"relaypump/{SITE}/relay1/telemetry", frame(alarm_bits=0), qos=1)
    watcher.wait(lambda: len(watcher.messages) >= 3, what="live telemetry")
    model.feed(*watcher.messages[2])
    watcher.close()
    relay1.disconnect()
    relay1.loop_stop()
    screen = model.render()
    assert sorted(m[:1] + m[2:] for m in watcher.messages[:2]) == [
        (f"relaypump/{SITE}/relay1/status", True),
        (f"relaypump/{SITE}/relay2/status", True),
    ]
    assert f"{SITE}/relay1  ONLINE  telemetry" in screen and "  alarms: none" in screen
    assert f"{SITE}/relay2  OFFLINE" in screen


def test_pumpmon_prints_a_line_per_message_into_a_pipe(broker, password_file):
    relay1 = station_with_will(broker.port, "relay1")
    proc = subprocess.Popen(
        [PUMPMON, f"{SITE}/+", "--duration", "60", "--port", str(broker.port),
         "--user", "controlroom", "--password-file", password_file("controlroom")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    first = proc.stdout.readline()  # the retained birth arrives on subscribing
    assert first == f"{SITE}/relay1 status online (retained)\n"
    relay1.publish(f"relaypump/{SITE}/relay1/telemetry", frame(), qos=1).wait_for_publish(30)
    relay1.loop_stop()
    relay1.socket().close()  # the will: offline
    # the two lines, then Ctrl-C (--duration only bounds a test that fails: "" at its end)
    lines = [proc.stdout.readline().rstrip("\n") for _ in range(2)]
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    lines += out.splitlines()
    assert lines[0].startswith(f"{SITE}/relay1 telemetry seq 41 mode REMOTE_DP")
    assert lines[1] == f"{SITE}/relay1 status offline"


def test_pumpmon_redraws_the_screen_on_a_terminal(broker, password_file):
    import os
    import select

    relay1 = station_with_will(broker.port, "relay1")
    master, slave = os.openpty()
    proc = subprocess.Popen(
        [PUMPMON, "--duration", "60", "--port", str(broker.port),
         "--user", "controlroom", "--password-file", password_file("controlroom")],
        stdout=slave, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    os.close(slave)
    seen = b""
    deadline = time.monotonic() + 60
    published = False
    alarms = b"  alarms: SUCTION_LOW, PUMP2_TRIPPED"
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # the terminal's other side closed: pumpmon ended
                break
            if not chunk:
                break
            seen += chunk
        if not published and b"ONLINE" in seen:
            relay1.publish(f"relaypump/{SITE}/relay1/telemetry", frame(), qos=1)
            published = True
        if published and alarms in seen.rsplit(b"\x1b[H\x1b[2J", 1)[-1]:
            break  # the telemetry is on the screen (--duration only bounds a failing test)
    proc.send_signal(signal.SIGINT)
    proc.wait(10)
    os.close(master)
    relay1.disconnect()
    relay1.loop_stop()
    assert proc.returncode == 0
    screens = seen.split(b"\x1b[H\x1b[2J")[1:]  # home + clear before every screen
    assert len(screens) >= 2
    assert any(f"{SITE}/relay1  ONLINE  no telemetry yet".encode() in s for s in screens)
    assert alarms in screens[-1]


def test_pumpmon_into_a_closed_pipe_ends_quietly_with_exit_141(broker, password_file):
    """`pumpmon | head -1`: once head is gone, the next line ends pumpmon (it used to die in
    paho's thread and hang until --duration)."""
    relay1 = station_with_will(broker.port, "relay1")
    proc = subprocess.Popen(
        [PUMPMON, f"{SITE}/+", "--duration", "60", "--port", str(broker.port),
         "--user", "controlroom", "--password-file", password_file("controlroom")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout.readline() == f"{SITE}/relay1 status online (retained)\n"
        proc.stdout.close()  # the reader goes away
        deadline = time.monotonic() + 30
        while proc.poll() is None and time.monotonic() < deadline:
            relay1.publish(f"relaypump/{SITE}/relay1/telemetry", frame(), qos=1)
            time.sleep(0.2)
    finally:
        relay1.disconnect()
        relay1.loop_stop()
        if proc.poll() is None:
            proc.kill()
        err = proc.stderr.read()
        proc.wait(10)
    assert proc.returncode == 141 and err == ""
