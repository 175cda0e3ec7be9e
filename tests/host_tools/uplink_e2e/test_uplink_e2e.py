"""End to end: the firmware agent drives the simulated plant (virtual time) and talks through its
uplink (relaypump/station_uplink.py: mqtt.py + netio.py + outbox.py + commands.py, real sockets)
to a Mosquitto the test starts (password file + ACL); a paho-mqtt 2 client is the control room.

What is proven here (issue 9): telemetry arrives and decodes (protocol/uplink.py, the construct
schema) to the plant's values; a broker outage of a simulated hour loses nothing, duplicates
nothing at the application level, keeps the order; a reboot with frames in the outbox delivers
them; forged, replayed, expired, out-of-envelope commands and commands for another station are
refused with an ack saying why and leave the plant alone; an accepted setpoint moves the held DP;
a config change is stored and applied without a restart.
"""

import json
import statistics
import time

import pytest
from mosquitto_broker import PASSWORDS, Watcher
from relaypump.runtime import CONFIG_PATH

from host_tools.sim import scenario as scenarios
from host_tools.sim.uplink_field import EPOCH_S, Field, sign, station_config, topic
from protocol import uplink as P

SCENARIO = scenarios.SCENARIOS / "jia_shoulder.toml"
SETTLE_S = 300  # from standstill to the DP in band (two pumps): ~4 min
PERIOD_S = 10  # telemetry cadence (outbox.telemetry_s default)
LAG_S = 3  # transmitter lag (<= 2 s) + the agent's 2 s filter, rounded to whole samples
# sensor spans of the shipped config (io.channels) and the transmitters' noise (0.1 % of span,
# host_tools/sim/transmitters.py): 3 sigma of one sample bounds the mean of ten
SPANS = {"suction": 1000.0, "discharge": 1600.0, "remote_dp": 400.0, "supply_temp": 150.0,
         "flow": 1200.0}  # fmt: skip
FIELDS = {  # telemetry field -> (plant sample column, scale)
    "suction": ("suction_kpa_x10", 1, 10),
    "discharge": ("discharge_kpa_x10", 2, 10),
    "remote_dp": ("remote_dp_kpa_x10", 3, 10),
    "supply_temp": ("supply_temp_c_x100", 4, 100),
    "flow": ("flow_m3h_x10", 5, 10),
}
# Wall-time bound of a wait for what travels through the broker (paho's thread, Mosquitto): the
# plant and agent run in virtual time, ~2 ms per virtual second, so a bound in virtual seconds is
# a few ms of wall time on a loaded CI machine. Generous: a passing test never waits for it.
WALL_S = 30


@pytest.fixture(scope="module")
def scenario():
    return scenarios.load(SCENARIO)


def make_field(scenario, broker, port=None, **mqtt):
    port = port or broker.port
    cfg = station_config(scenario, port, "st-relay1", PASSWORDS["st-relay1"], **mqtt)
    return Field(scenario, cfg)


def frames(watcher, kind):
    return [P.parse_any(p)[1] for p in watcher.payloads(topic(kind))]


def wait_delivered(watcher, box):
    """Until the watcher has the last frame the outbox gave out: the broker has it (settle waits
    for its PUBACK), paho's thread gets it in wall time."""
    last = box._seq - 1  # the last seq given out (next_seq() would give out one more)

    def seen():
        return last in {seq for seq, _, _ in first_seen(watcher)[0]}

    watcher.wait(seen, WALL_S, f"seq {last}")


def first_seen(watcher):
    """(seq, kind, frame) of telemetry and events in arrival order, each seq once (what an
    application that drops QoS 1 redeliveries keeps), and the number of redeliveries."""
    out, seen, again = [], set(), 0
    with watcher._cond:
        messages = list(watcher.messages)
    for t, payload, _ in messages:
        if not t.endswith(("/telemetry", "/event")):
            continue
        kind, frame = P.parse_any(payload)
        if frame.seq in seen:
            again += 1
            continue
        seen.add(frame.seq)
        out.append((frame.seq, kind, frame))
    return out, again


def test_telemetry_arrives_and_decodes_to_the_plants_values(scenario, broker):
    watcher = Watcher(broker.port, "recorder", [topic("#")])
    field = make_field(scenario, broker)
    try:
        field.run(SETTLE_S + 300)
        got = frames(watcher, "telemetry")
        assert len(got) >= (SETTLE_S + 300) // PERIOD_S - 2
        by_second = {round(s[0]): s for s in field.samples}
        checked = 0
        for f in got:
            assert f.station_id == 1 and f.timestamp_s >= EPOCH_S  # the clock was set
            t = f.timestamp_s - EPOCH_S
            if t < SETTLE_S:
                continue
            window = [by_second[s] for s in range(t - PERIOD_S + 1, t + 1)]
            for name, (fieldname, col, scale) in FIELDS.items():
                plant = statistics.fmean(s[col] for s in window)
                # what the plant moved within the sensing lag, plus the noise bound
                moved = max(abs(by_second[s][col] - by_second[s - LAG_S][col])
                            for s in range(t - PERIOD_S + 1, t + 1))  # fmt: skip
                tol = 0.003 * SPANS[name] + moved
                value = getattr(f, fieldname) / scale
                assert abs(value - plant) <= tol, (name, t, value, plant, tol)
            assert f.return_temp_c_x100 == P.NO_READING["h"]  # not measured
            assert f.mode == P.Mode.REMOTE_DP
            assert f.setpoint_kpa_x10 == 1110
            running = [p for p in f.pumps if p.state == P.PumpState.RUNNING]
            assert len(running) >= 1 and all(p.speed_pct_x100 > 4000 for p in running)
            assert [p.state for p in f.pumps].count(P.PumpState.ABSENT) == 0
            checked += 1
        assert checked >= 25
        events = frames(watcher, "event")
        assert P.EventCode.AGENT_STARTED in [e.code for e in events]
        status = watcher.payloads(topic("status"))
        assert status and status[-1] == b"online"
    finally:
        watcher.close()


def test_telemetry_over_tls_with_the_brokers_ca(scenario, tls_broker):
    watcher = Watcher(tls_broker.port, "recorder", [topic("telemetry")])
    field = make_field(
        scenario, tls_broker, tls=True, ca_file=str(tls_broker.tls.ca), port=tls_broker.tls_port
    )
    try:
        field.run(35)
        watcher.wait(lambda: len(watcher.payloads(topic("telemetry"))) >= 3, WALL_S, "3 frames")
        got = frames(watcher, "telemetry")
        assert len(got) == 3 and all(f.station_id == 1 for f in got)
        assert field.uplink.link._ctx is not None  # the link verified the broker's certificate
    finally:
        watcher.close()


def test_a_broker_outage_of_an_hour_loses_nothing_and_repeats_nothing(scenario, broker):
    watcher = Watcher(broker.port, "recorder", [topic("#")])
    field = make_field(scenario, broker)
    try:
        field.run(120)
        before = watcher.subscribed
        broker.stop()
        field.run(3600)
        box = field.uplink.box
        waiting = box.pending
        assert waiting >= 3600 // PERIOD_S  # the hour's telemetry waits on flash
        assert box.dropped_telemetry == 0
        broker.start()
        watcher.wait(lambda: watcher.subscribed > before, WALL_S, "re-subscribed")
        assert field.run_until(lambda: box.pending == 0, 600), "outbox not emptied"
        field.run(30)
        wait_delivered(watcher, box)
        got, again = first_seen(watcher)
        seqs = [s for s, _, _ in got]
        assert seqs == sorted(seqs), "out of order"
        assert seqs == list(range(seqs[0], seqs[-1] + 1)), "a frame is missing"
        assert seqs[0] == 0
        assert seqs[-1] == box.next_seq() - 1  # the last seq the outbox gave out
        # the hour is there: telemetry every 10 s of virtual time across the outage
        stamps = [f.timestamp_s for _, k, f in got if k == P.Kind.TELEMETRY]
        gaps = [b - a for a, b in zip(stamps, stamps[1:], strict=False)]
        assert max(gaps) <= PERIOD_S + 1 and stamps[-1] - stamps[0] >= 3600
        assert field.uplink.session.connects >= 2
        print(f"outage: {waiting} frames waited, {again} QoS 1 redeliveries dropped")
    finally:
        watcher.close()


def test_a_station_rebooting_with_frames_in_its_outbox_delivers_them(scenario, broker):
    watcher = Watcher(broker.port, "recorder", [topic("#")])
    field = make_field(scenario, broker)
    try:
        field.run(60)
        before = watcher.subscribed
        broker.stop()
        field.run(300)
        old_box = field.uplink.box
        left = old_box.pending
        last_seq = old_box.next_seq() - 1
        assert left >= 300 // PERIOD_S
        field.reboot()
        box = field.uplink.box
        assert box.pending == left  # loaded from flash
        broker.start()
        watcher.wait(lambda: watcher.subscribed > before, WALL_S, "re-subscribed")
        assert field.run_until(lambda: box.pending == 0, 600), "outbox not emptied"
        field.run(20)
        wait_delivered(watcher, box)
        got, _ = first_seen(watcher)
        seqs = [s for s, _, _ in got]
        assert seqs == sorted(seqs)
        first, second = seqs[: last_seq + 1], seqs[last_seq + 1 :]
        assert first == list(range(0, last_seq + 1))  # every frame of the first boot
        # the second boot numbers from its lease on (a seq never repeats across boots)
        assert second[0] > last_seq and second == list(range(second[0], second[-1] + 1))
        starts = [f for _, k, f in got if k == P.Kind.EVENT and f.code == P.EventCode.AGENT_STARTED]
        assert len(starts) == 2  # one per boot
    finally:
        watcher.close()


class ControlRoom:
    """A paho client as the control room: publishes commands, reads the station's acks/events."""

    def __init__(self, broker, field):
        self.watcher = Watcher(broker.port, "controlroom", [topic("ack"), topic("event")])
        self.field = field

    def send(self, frame):
        """The command to the broker; the station takes it at the present virtual instant (it
        travels in wall time: were the sim to run meanwhile, a fresh command could expire)."""
        self._seen = len(frames(self.watcher, "ack"))
        up = self.field.uplink
        handled = up.commands.handled
        self.watcher.publish(topic("cmd"), frame)
        deadline = time.monotonic() + WALL_S
        while up.commands.handled == handled:
            assert time.monotonic() < deadline, "the station did not receive the command"
            self.field.controller.settle(0.01)
            up.link.wait(10)

    def ack(self, counter):
        """The station's ack to the command sent last: the sim runs on while the ack travels to
        the control room (wall time), until it arrives."""

        def found():
            return frames(self.watcher, "ack")[self._seen :]

        deadline = time.monotonic() + WALL_S
        while not found():
            assert time.monotonic() < deadline, f"no ack for {counter}"
            self.field.run_until(lambda: bool(found()), 1)
        (a,) = found()
        assert a.command_counter == counter and a.station_id == 1
        return a

    def events(self, code):
        return [e for e in frames(self.watcher, "event") if e.code == code]

    def wait_events(self, count, *codes):
        """Until ``count`` events of these codes have arrived; the sim runs meanwhile."""

        def arrived():
            return sum(len(self.events(c)) for c in codes) >= count

        deadline = time.monotonic() + WALL_S
        while not arrived():
            assert time.monotonic() < deadline, f"fewer than {count} events {codes}"
            self.field.run_until(arrived, 1)

    def close(self):
        self.watcher.close()


def test_forged_replayed_expired_out_of_envelope_and_foreign_commands_are_refused(scenario, broker):
    field = make_field(scenario, broker)
    room = ControlRoom(broker, field)
    try:
        field.run(SETTLE_S)
        agent = field.agent
        setpoint = agent.control.setpoint
        SP = P.CommandType.SETPOINT
        # an accepted command first (the setpoint it has): counter 10 is now the last accepted
        room.send(sign(10, SP, {"setpoint_kpa_x10": 1110}, field.wall_s))
        assert room.ack(10).result == P.AckResult.OK
        assert agent.state.command_counter == 10
        saved = field.files.files.get("/state.a", b"") + field.files.files.get("/state.b", b"")
        assert b'"command_counter": 10' in saved or b'"command_counter":10' in saved
        dp_before = statistics.fmean(s[3] for s in field.samples[-30:])

        cases = [
            (11, sign(11, SP, {"setpoint_kpa_x10": 1500}, field.wall_s, key=b"x" * 32),
             P.AckResult.BAD_SIGNATURE),
            (10, sign(10, SP, {"setpoint_kpa_x10": 1500}, field.wall_s), P.AckResult.REPLAYED),
            (12, sign(12, SP, {"setpoint_kpa_x10": 1500}, field.wall_s - 120, ttl_s=60),
             P.AckResult.EXPIRED),
            (13, sign(13, SP, {"setpoint_kpa_x10": 2500}, field.wall_s),
             P.AckResult.OUT_OF_ENVELOPE),
            (14, sign(14, SP, {"setpoint_kpa_x10": 1500}, field.wall_s, station_id=2),
             P.AckResult.WRONG_STATION),
        ]  # fmt: skip
        for counter, frame, why in cases:
            room.send(frame)
            assert room.ack(counter).result == why, why
        # every command got its event: one accepted, the five refused with their reasons (the
        # events come through the outbox, after their acks)
        room.wait_events(6, P.EventCode.COMMAND_ACCEPTED, P.EventCode.COMMAND_REJECTED)
        assert len(room.events(P.EventCode.COMMAND_ACCEPTED)) == 1
        rejected = [e.value for e in room.events(P.EventCode.COMMAND_REJECTED)]
        assert sorted(rejected) == sorted(int(w) for _, _, w in cases)
        # the authentic, fresh ones consumed their counters (expired 12, out of envelope 13)
        assert agent.state.command_counter == 13
        # the plant is unaffected: the setpoint held, the DP where it was
        assert setpoint.fixed_kpa == 111.0 and field.agent is agent
        field.run(120)
        dp_after = statistics.fmean(s[3] for s in field.samples[-30:])
        assert abs(dp_after - dp_before) < 3.0 and abs(dp_after - 111.0) < 3.0
    finally:
        room.close()


def test_an_accepted_setpoint_moves_the_held_dp_and_a_config_change_applies_live(scenario, broker):
    field = make_field(scenario, broker)
    room = ControlRoom(broker, field)
    try:
        field.run(SETTLE_S)
        room.send(sign(1, P.CommandType.SETPOINT, {"setpoint_kpa_x10": 1300}, field.wall_s))
        assert room.ack(1).result == P.AckResult.OK
        field.run(240)
        dp = statistics.fmean(s[3] for s in field.samples[-30:])
        assert abs(dp - 130.0) < 3.0
        room.wait_events(1, P.EventCode.COMMAND_ACCEPTED)
        (ev,) = room.events(P.EventCode.COMMAND_ACCEPTED)
        assert ev.value == P.CommandType.SETPOINT

        # config change: setpoint.ramp_kpa_per_s (key id 4, 0.001 kPa/s) 0.5 -> 1.0, applied
        # without a restart; the pumps keep running (adopted), the file on flash holds it
        runtime = field.controller.runtime
        old_agent = runtime.agent
        running = sum(p.state == 3 for p in old_agent.snapshot.pumps)
        room.send(sign(2, P.CommandType.CONFIG_CHANGE, {"key": 4, "value": 1000}, field.wall_s))
        assert room.ack(2).result == P.AckResult.OK
        assert runtime.agent is not old_agent
        assert runtime.agent.control.setpoint.ramp_kpa_per_s == 1.0
        stored = json.loads(field.files.files[CONFIG_PATH])
        assert stored["setpoint"]["ramp_kpa_per_s"] == 1.0 and stored["mqtt"]["station"] == "relay1"
        field.run(120)
        agent = runtime.agent
        assert sum(p.state == 3 for p in agent.snapshot.pumps) == running  # nothing slammed
        assert agent.control.setpoint.fixed_kpa == 130.0  # the remote setpoint kept
        dp = statistics.fmean(s[3] for s in field.samples[-30:])
        assert abs(dp - 130.0) < 3.0
        room.wait_events(1, P.EventCode.CONFIG_APPLIED)
        # a config value the schema refuses: out of envelope, nothing stored
        room.send(sign(3, P.CommandType.CONFIG_CHANGE, {"key": 4, "value": -5}, field.wall_s))
        assert room.ack(3).result == P.AckResult.OUT_OF_ENVELOPE
        assert json.loads(field.files.files[CONFIG_PATH])["setpoint"]["ramp_kpa_per_s"] == 1.0
    finally:
        room.close()


def test_pump_disable_mode_off_and_back_act_on_the_plant(scenario, broker):
    field = make_field(scenario, broker)
    room = ControlRoom(broker, field)
    watcher = Watcher(broker.port, "recorder", [topic("telemetry")])
    try:
        field.run(SETTLE_S)
        drives = field.station.drives
        running = [i for i, d in enumerate(drives) if d.running]
        assert running
        pump = running[0] + 1
        counter = iter(range(1, 100))
        n = next(counter)
        room.send(sign(n, P.CommandType.PUMP_DISABLE, {"pump": pump}, field.wall_s))
        assert room.ack(n).result == P.AckResult.OK
        assert field.run_until(lambda: not drives[pump - 1].running, 600), "still running"
        field.run(180)
        dp = statistics.fmean(s[3] for s in field.samples[-30:])
        assert abs(dp - 111.0) < 3.0  # the others hold the DP without it
        last = frames(watcher, "telemetry")[-1]
        assert last.pumps[pump - 1].state == P.PumpState.OFF
        n = next(counter)
        room.send(sign(n, P.CommandType.PUMP_ENABLE, {"pump": pump}, field.wall_s))
        assert room.ack(n).result == P.AckResult.OK
        assert field.agent.enabled == 0b111

        n = next(counter)
        room.send(sign(n, P.CommandType.MODE, {"mode": int(P.Mode.OFF)}, field.wall_s))
        assert room.ack(n).result == P.AckResult.OK
        assert field.run_until(lambda: not any(d.running for d in drives), 900), "not stopped"
        field.run(20)
        assert frames(watcher, "telemetry")[-1].mode == P.Mode.OFF
        # a setpoint has no meaning while the station is off
        n = next(counter)
        room.send(sign(n, P.CommandType.SETPOINT, {"setpoint_kpa_x10": 1200}, field.wall_s))
        assert room.ack(n).result == P.AckResult.OUT_OF_ENVELOPE
        n = next(counter)
        room.send(sign(n, P.CommandType.MODE, {"mode": int(P.Mode.REMOTE_DP)}, field.wall_s))
        assert room.ack(n).result == P.AckResult.OK
        assert field.run_until(lambda: any(d.running for d in drives), 900), "not restarted"
        field.run(SETTLE_S)
        dp = statistics.fmean(s[3] for s in field.samples[-30:])
        assert abs(dp - 111.0) < 3.0
        # a reset of the station (nothing locked out): carried out, acknowledged
        n = next(counter)
        room.send(sign(n, P.CommandType.RESET, {"pump": 0}, field.wall_s))
        assert room.ack(n).result == P.AckResult.OK
    finally:
        watcher.close()
        room.close()


def test_pumpctl_commands_the_simulated_station(scenario, broker, tmp_path, capsys):
    """The control room's tool (host_tools/uplink/pumpctl.py) and the firmware agree: key file,
    signature, counter, topics, ack. pumpctl waits for the ack in a thread of its own while the
    simulation runs."""
    import threading

    from host_tools.sim.uplink_field import KEY
    from host_tools.uplink import pumpctl

    keys = tmp_path / "keys"
    keys.write_text(f"jia/relay1 1 {KEY.hex()}\n")
    keys.chmod(0o600)
    password = tmp_path / "controlroom.password"
    password.write_text(PASSWORDS["controlroom"] + "\n")
    password.chmod(0o600)
    field = make_field(scenario, broker)
    field.run(SETTLE_S)
    common = ["--keys", str(keys), "--state-dir", str(tmp_path / "state"), "--port",
              str(broker.port), "--user", "controlroom", "--password-file", str(password)]  # fmt: skip

    def pumpctl_run(*argv):
        result = []
        thread = threading.Thread(target=lambda: result.append(pumpctl.main([*common, *argv])))
        thread.start()
        # The station runs for as long as pumpctl waits in wall time (its own 10 s ack
        # timeout), not for a fixed virtual span: under CI load 60 virtual seconds went by
        # before pumpctl had even connected, and the ack was never sent.
        deadline = time.monotonic() + 30
        while thread.is_alive() and time.monotonic() < deadline:
            field.run_until(lambda: not thread.is_alive(), 1)
        thread.join(15)
        return result[0]

    assert pumpctl_run("jia/relay1", "setpoint", "125.0") == pumpctl.EXIT_OK
    assert field.agent.control.setpoint.fixed_kpa == 125.0
    assert pumpctl_run("jia/relay1", "setpoint", "250") == pumpctl.EXIT_REFUSED
    assert pumpctl_run("jia/relay1", "config", "setpoint.ramp_kpa_per_s", "1.5") == 0
    assert field.agent.control.setpoint.ramp_kpa_per_s == 1.5
    out = capsys.readouterr().out
    assert "OK" in out and "OUT_OF_ENVELOPE" in out


def test_an_outage_longer_than_the_outbox_drops_the_oldest_telemetry_and_reports_it(
    scenario, broker
):
    watcher = Watcher(broker.port, "recorder", [topic("#")])
    cfg = station_config(scenario, broker.port, "st-relay1", PASSWORDS["st-relay1"])
    cfg["outbox"] = {"segments": 2}  # 77 frames: 13 min of telemetry
    field = Field(scenario, cfg)
    try:
        field.run(60)
        before = watcher.subscribed
        broker.stop()
        field.run(1800)  # 180 telemetry frames for 77 places
        box = field.uplink.box
        dropped = box.dropped_telemetry
        assert dropped >= 180 - 77 and box.dropped_events == 0
        broker.start()
        watcher.wait(lambda: watcher.subscribed > before, WALL_S, "re-subscribed")
        assert field.run_until(lambda: box.pending == 0, 600), "outbox not emptied"
        field.run(20)
        wait_delivered(watcher, box)
        got, _ = first_seen(watcher)
        reports = [
            f for _, k, f in got if k == P.Kind.EVENT and f.code == P.EventCode.TELEMETRY_DROPPED
        ]
        assert reports and reports[-1].value == box.dropped_telemetry >= dropped
        # every event made arrived (none dropped); the gaps in seq are the dropped telemetry
        seqs = [s for s, _, _ in got]
        assert seqs == sorted(seqs)
        missing = set(range(seqs[0], seqs[-1] + 1)) - set(seqs)
        # the oldest telemetry dropped includes what sat in the session's window (handed out,
        # no PUBACK): the session still delivers those, so up to `inflight` fewer are missing
        window = field.uplink.session.inflight
        assert box.dropped_telemetry - window <= len(missing) <= box.dropped_telemetry
        stamps = [f.timestamp_s for _, k, f in got if k == P.Kind.TELEMETRY]
        assert max(b - a for a, b in zip(stamps, stamps[1:], strict=False)) > 600  # the hole
    finally:
        watcher.close()
