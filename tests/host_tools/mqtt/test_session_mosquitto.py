"""The firmware's MQTT session (relaypump.mqtt) through its socket layer (relaypump.netio) on
CPython, against a real Mosquitto started by the test, with paho-mqtt 2.2 as the independent
peer: credentials and the ACL, QoS 1 both ways, the retained birth and the will, a dead link, a
broker restart with retransmission (DUP) and nothing lost, TLS with a test CA."""

import random
import ssl
import struct
import time

from mosquitto_broker import PASSWORDS, SITE, Watcher, make_tls
from relaypump import mqtt, netio
from relaypump.uplink_build import topic

STATUS = f"relaypump/{SITE}/relay1/status"
TELEMETRY = f"relaypump/{SITE}/relay1/telemetry"
CMD = f"relaypump/{SITE}/relay1/cmd"


def ticks_ms():
    return int(time.monotonic() * 1000) & 0x3FFFFFFF


class Station:
    """The firmware session and link driven by a plain loop: step, drain the events, wait."""

    def __init__(self, port, station="relay1", password=None, ca_file=None, command_topic=None,
                 keepalive_s=10, clean=False, inflight=8, seed=1, client_id=None):  # fmt: skip
        self.session = mqtt.Session(
            client_id or f"rp-{SITE}-{station}",
            topic(SITE, station, "status"),
            command_topic or topic(SITE, station, "cmd"),
            username=f"st-{station}",
            password=password or PASSWORDS[f"st-{station}"],
            keepalive_s=keepalive_s,
            clean_session=clean,
            inflight=inflight,
            backoff_min_ms=200,
            backoff_max_ms=1000,
            connect_timeout_ms=3000,
            random_below=random.Random(seed).randrange,
        )
        self.link = netio.Link(self.session, "127.0.0.1", port, ca_file=ca_file)
        self.events = []  # (kind, detail)
        self.messages = []  # (topic, payload, qos)
        self.acked = []

    def step(self):
        s = self.session
        self.link.step(ticks_ms())
        while True:
            ev = s.next_event()
            if ev == mqtt.NONE:
                return
            if ev == mqtt.MESSAGE:
                self.messages.append((bytes(s.topic).decode(), bytes(s.payload), s.qos))
                self.events.append((ev, None))
            elif ev == mqtt.PUBACK:
                self.acked.append(s.packet_id)
                self.events.append((ev, s.packet_id))
            elif ev == mqtt.DISCONNECTED:
                self.events.append((ev, s.reason))
            else:
                self.events.append((ev, None))

    def run(self, until, timeout=30.0, what="the condition"):  # wall time, a loaded CI host
        deadline = time.monotonic() + timeout
        while not until():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; events {self.events}")
            self.step()
            self.link.wait(10)

    def pause(self, seconds):
        """Keep the loop going for a while."""
        end = time.monotonic() + seconds
        self.run(lambda: time.monotonic() > end, timeout=seconds + 5)

    def connect(self):
        s = self.session
        self.run(lambda: s.connected and s.subscribed and not s.in_flight, what="SUBACK")

    def publish_seq(self, seq):
        pid = self.session.publish(TELEMETRY, struct.pack(">I", seq) + b"telemetry" * 4)
        assert pid > 0
        return pid

    def close(self):
        self.link.close()

    def reasons(self):
        return [d for e, d in self.events if e == mqtt.DISCONNECTED]


def seqs(payloads):
    return [struct.unpack(">I", p[:4])[0] for p in payloads]


def dedup(values):
    """What an application keeping the sequence numbers it has seen would accept."""
    seen = set()
    return [v for v in values if not (v in seen or seen.add(v))]


def test_qos1_publish_reaches_a_paho_subscriber_and_a_late_one_sees_the_retained_birth(broker):
    recorder = Watcher(broker.port, "recorder", [TELEMETRY])
    st = Station(broker.port)
    try:
        st.connect()
        assert st.session.connects == 1 and not st.session.sub_refused
        pids = []
        for n in range(20):  # 20 frames through a window of 8
            st.run(lambda: st.session.in_flight < 8, what="room in the window")
            pids.append(st.publish_seq(n))
        st.run(lambda: st.session.in_flight == 0, what="PUBACKs")
        assert st.acked == pids
        recorder.wait(lambda: len(recorder.payloads(TELEMETRY)) == 20)
        assert seqs(recorder.payloads(TELEMETRY)) == list(range(20))
        late = Watcher(broker.port, "recorder", [STATUS])
        late.wait(lambda: late.messages, what="the retained birth")
        assert late.messages == [(STATUS, b"online", True)]
        late.close()
    finally:
        st.close()
        recorder.close()


def test_credentials_are_checked_and_the_acl_refuses_foreign_topics(broker):
    bad = Station(broker.port, password="wrong")
    try:
        bad.run(lambda: bad.reasons(), what="a refusal")
        assert bad.reasons()[0] == mqtt.REFUSED and bad.session.refused_code in (4, 5)
        assert not bad.session.connected
    finally:
        bad.close()
    recorder = Watcher(broker.port, "recorder", ["relaypump/#"])
    control = Watcher(broker.port, "controlroom")
    st = Station(broker.port)
    # relay1's credentials asking for relay2's commands
    relay2_cmd = topic(SITE, "relay2", "cmd")
    spy = Station(broker.port, command_topic=relay2_cmd, seed=2, client_id="spy")
    try:
        st.connect()
        foreign = st.session.publish(f"relaypump/{SITE}/relay2/telemetry", b"forged")
        own = st.session.publish(TELEMETRY, b"\x00\x00\x00\x07own")
        st.run(lambda: st.session.in_flight == 0, what="PUBACKs")
        assert st.acked == [foreign, own]  # MQTT 3.1.1: the broker acknowledges and drops it
        recorder.wait(lambda: recorder.payloads(TELEMETRY), what="the station's own frame")
        assert not recorder.payloads(f"relaypump/{SITE}/relay2/telemetry")
        # Mosquitto 2.0 grants the subscription (SUBACK 1) and filters at delivery: relay2's
        # commands never reach relay1's credentials (SUBSCRIBE_REFUSED: tests/firmware)
        spy.connect()
        control.publish(relay2_cmd.decode(), b"for relay2 only", qos=1)
        control.publish(CMD, b"for relay1", qos=1)
        st.run(lambda: st.messages, what="relay1's command")
        spy.pause(0.3)
        assert spy.messages == [] and st.messages == [(CMD, b"for relay1", 1)]
        recorder.wait(lambda: len(recorder.payloads(CMD)) == 1, what="the commands")
        # nor may a station publish commands (its own command topic included)
        pid = st.session.publish(CMD, b"self-command")
        st.run(lambda: pid in st.acked, what="PUBACK")
        st.pause(0.3)
        assert st.messages == [(CMD, b"for relay1", 1)]
        assert recorder.payloads(CMD) == [b"for relay1"]
    finally:
        st.close()
        spy.close()
        control.close()
        recorder.close()


def test_will_fires_on_a_dead_link_and_resent_frames_are_dropped_by_sequence(broker):
    watch = Watcher(broker.port, "recorder", [STATUS, TELEMETRY])
    st = Station(broker.port)
    try:
        st.connect()
        watch.wait(lambda: watch.payloads(STATUS) == [b"online"], what="the birth")
        for n in range(3):
            st.publish_seq(n)
        st.step()  # the three frames go out; their PUBACKs will not be read
        watch.wait(lambda: len(watch.payloads(TELEMETRY)) == 3, what="the frames")
        assert st.session.in_flight == 3
        st.link.abort(ticks_ms())  # the link dies: no DISCONNECT
        watch.wait(lambda: b"offline" in watch.payloads(STATUS), what="the will")
        st.run(lambda: st.reasons(), what="DISCONNECTED")
        assert st.reasons() == [mqtt.LINK_LOST]
        st.run(lambda: st.session.connected and st.session.in_flight == 0, what="the resend")
        assert st.session.retransmissions == 3
        assert broker.log().count("Received PUBLISH from rp-jia-relay1 (d1, q1") == 3
        watch.wait(lambda: watch.payloads(STATUS) == [b"online", b"offline", b"online"])
        watch.wait(lambda: len(watch.payloads(TELEMETRY)) == 6, what="the duplicates")
        got = seqs(watch.payloads(TELEMETRY))
        assert got == [0, 1, 2, 0, 1, 2]  # QoS 1 is at least once ...
        assert dedup(got) == [0, 1, 2]  # ... and the sequence numbers make it once
    finally:
        st.close()
        watch.close()


def test_commands_from_a_paho_publisher_arrive_and_wait_for_an_offline_station(broker):
    control = Watcher(broker.port, "controlroom")
    st = Station(broker.port, clean=False)
    try:
        st.connect()
        control.publish(CMD, b"setpoint 120", qos=1)
        control.publish(CMD, b"mode auto", qos=0)
        st.run(lambda: len(st.messages) == 2, what="two commands")
        assert st.messages == [(CMD, b"setpoint 120", 1), (CMD, b"mode auto", 0)]
        st.step()  # the PUBACK leaves (an unacknowledged command would come again)
        # offline (a dead link), a QoS 1 command is kept by the broker for the persistent session
        st.link.abort(ticks_ms())
        control.publish(CMD, b"pump 2 off", qos=1)
        st.run(lambda: len(st.messages) == 3, what="the kept command")
        assert st.messages[2] == (CMD, b"pump 2 off", 1) and st.session.session_present
        # acknowledged: a later reconnect gets nothing again
        st.step()
        st.link.abort(ticks_ms())
        st.connect()
        st.pause(0.5)
        assert len(st.messages) == 3
    finally:
        st.close()
        control.close()


def test_broker_restart_resends_with_dup_and_loses_nothing(broker):
    recorder = Watcher(broker.port, "recorder", [TELEMETRY])
    st = Station(broker.port, inflight=16)
    try:
        st.connect()
        for n in range(5):
            st.publish_seq(n)
        st.run(lambda: st.session.in_flight == 0, what="PUBACKs")
        broker.freeze()  # there but silent: what is sent now is never acknowledged
        for n in range(5, 9):
            st.publish_seq(n)
        sent_before = st.link.bytes_out
        st.step()
        assert st.link.bytes_out > sent_before and st.session.in_flight == 4
        broker.kill()  # the frames die unread in its socket
        st.run(lambda: st.reasons(), what="the lost link")
        assert st.reasons()[0] == mqtt.LINK_LOST
        for n in range(9, 12):  # made during the outage
            st.publish_seq(n)
        st.pause(0.5)  # reconnects refused meanwhile
        assert not st.session.connected and st.link.failed >= 1
        broker.start()
        recorder.wait(lambda: recorder.subscribed >= 2, what="paho's resubscribe")
        st.run(lambda: st.session.connected and st.session.in_flight == 0)
        assert st.session.retransmissions == 4  # 5..8 again, with DUP; 9..11 for the first time
        # the broker's own log of what arrived: exactly those four with the DUP flag
        assert broker.log().count("Received PUBLISH from rp-jia-relay1 (d1, q1") == 4
        recorder.wait(lambda: len(dedup(seqs(recorder.payloads(TELEMETRY)))) == 12)
        got = seqs(recorder.payloads(TELEMETRY))
        assert dedup(got) == list(range(12))  # all, in order, none twice once ids are tracked
    finally:
        st.close()
        recorder.close()


def test_a_silent_broker_is_a_dead_link_after_one_and_a_half_keepalives(broker):
    st = Station(broker.port, keepalive_s=5)
    try:
        st.connect()
        broker.freeze()
        frozen = time.monotonic()
        st.run(lambda: st.reasons(), timeout=12, what="the dead link")
        waited = time.monotonic() - frozen
        assert st.reasons() == [mqtt.DEAD_LINK]
        assert 7.0 <= waited <= 10.0, waited  # 1.5 x 5 s after the last byte received
        broker.thaw()
        st.connect()
        assert st.session.connects == 2
    finally:
        st.close()


def test_tls_with_the_brokers_ca_and_a_wrong_ca_refused(tls_broker, tmp_path):
    recorder = Watcher(tls_broker.port, "recorder", [TELEMETRY])
    st = Station(tls_broker.tls_port, ca_file=str(tls_broker.tls.ca))
    other = make_tls(tmp_path / "other", name="someone-else")
    stranger = Station(tls_broker.tls_port, ca_file=str(other.ca), seed=3)
    try:
        st.connect()
        pid = st.publish_seq(42)
        st.run(lambda: pid in st.acked, what="PUBACK over TLS")
        recorder.wait(lambda: recorder.payloads(TELEMETRY))
        assert seqs(recorder.payloads(TELEMETRY)) == [42]
        stranger.run(lambda: stranger.link.failed >= 2, what="two refused handshakes")
        assert isinstance(stranger.link.last_error, ssl.SSLCertVerificationError)
        assert stranger.session.connects == 0
        assert set(stranger.reasons()) == {mqtt.LINK_LOST}
    finally:
        st.close()
        stranger.close()
        recorder.close()


def test_no_broker_is_a_refused_connect_and_a_backoff_never_an_exception():
    from mosquitto_broker import free_port

    st = Station(free_port())  # nothing listens there
    try:
        st.run(lambda: st.link.failed >= 3, what="three refused connects")
        assert set(st.reasons()) == {mqtt.LINK_LOST} and st.session.connects == 0
        assert isinstance(st.link.last_error, ConnectionRefusedError)
        assert 100 <= st.session.last_delay_ms <= 1000  # jittered, capped at backoff_max_ms
    finally:
        st.close()
