"""The MQTT session (relaypump.mqtt) against hand-built server packets (MQTT 3.1.1): the codec's
edge cases, connect / birth / subscribe, QoS 1 with DUP retransmission, keepalive and dead links,
jittered backoff, any split of the input, malformed input, and allocation (runs in the VM too)."""

from relaypump import mqtt
from support import ON_MICROPYTHON, bytes_allocated

VM_HEAP_KIB = 192  # test_config_section compiles uplink_config.py and what it imports

STATUS = b"relaypump/jia/relay1/status"
CMD = b"relaypump/jia/relay1/cmd"
TELEMETRY = b"relaypump/jia/relay1/telemetry"


# -- server-side packets and a parser of what the session sends --------------------------------


def _field(data):
    return bytes([len(data) >> 8, len(data) & 0xFF]) + data


def _packet(first, body):
    head = bytearray(5)
    end = mqtt.encode_length(head, 0, len(body))
    return bytes([first]) + bytes(head[:end]) + body


def connack(code=0, present=0):
    return bytes([0x20, 2, present, code])


def puback(pid):
    return bytes([0x40, 2, pid >> 8, pid & 0xFF])


def suback(pid, code=1):
    return bytes([0x90, 3, pid >> 8, pid & 0xFF, code])


PINGRESP = b"\xd0\x00"


def publish_in(topic, payload, qos=0, pid=0, retain=False, dup=False):
    first = 0x30 | (qos << 1) | (1 if retain else 0) | (8 if dup else 0)
    body = _field(topic) + (bytes([pid >> 8, pid & 0xFF]) if qos else b"") + payload
    return _packet(first, body)


def packets(data):
    """Split bytes the session sent into (type, flags, body) tuples."""
    out = []
    data = bytes(data)
    pos = 0
    while pos < len(data):
        rl = mqtt.decode_length(data, pos + 1, len(data))
        assert rl >= 0, "a truncated packet"
        start = pos + 1 + mqtt.length_size(rl)
        out.append((data[pos] >> 4, data[pos] & 0x0F, data[start : start + rl]))
        pos = start + rl
    return out


def publish_fields(body, flags):
    """(topic, packet id, payload) of an outgoing PUBLISH body."""
    tlen = (body[0] << 8) | body[1]
    p = 2 + tlen
    pid = 0
    if (flags >> 1) & 3:
        pid = (body[p] << 8) | body[p + 1]
        p += 2
    return body[2 : 2 + tlen], pid, body[p:]


class Rand:
    """An injected random: a fixed value (clamped to the range) or the top of it."""

    def __init__(self, value=0):
        self.value = value
        self.asked = []

    def __call__(self, n):
        self.asked.append(n)
        return min(self.value, n - 1)


def new_session(**kw):
    kw.setdefault("random_below", Rand())
    return mqtt.Session("rp-jia-relay1", STATUS, CMD, **kw)


def flush(s, now):
    """Everything the session wants to send at now, as packets (all of it taken by the 'wire',
    polled until nothing is left: tx holds a packet or two at a time, as netio.Link polls)."""
    data = b""
    for _ in range(20):
        out = s.poll(now)
        if out is None:
            break
        data += bytes(out)
        s.sent(len(out))
    return packets(data)


def events(s):
    out = []
    while True:
        ev = s.next_event()
        if ev == mqtt.NONE:
            return out
        if ev == mqtt.MESSAGE:
            out.append((ev, bytes(s.topic), bytes(s.payload), s.qos))
        elif ev == mqtt.PUBACK:
            out.append((ev, s.packet_id))
        elif ev == mqtt.DISCONNECTED:
            out.append((ev, s.reason))
        else:
            out.append((ev,))


def connected_session(now=1000, **kw):
    """A session through CONNECT, CONNACK, birth, SUBSCRIBE and SUBACK; the birth acknowledged."""
    s = new_session(**kw)
    assert s.poll(now) is None and s.want_link
    s.link_up(now)
    assert [p[0] for p in flush(s, now)] == [1]
    s.receive(connack())
    assert events(s) == [(mqtt.CONNECTED,)]
    sent = flush(s, now)
    assert [p[0] for p in sent] == [3, 8]
    birth_pid = publish_fields(sent[0][2], sent[0][1])[1]
    sub_pid = (sent[1][2][0] << 8) | sent[1][2][1]
    s.receive(suback(sub_pid) + puback(birth_pid))
    assert events(s) == []
    assert s.poll(now) is None  # the poll that notes the bytes' arrival time
    return s


def reconnect(s, now):
    """Drop the link and bring the same session back to connected (the VM collects no garbage
    within a test: tests that need many fresh connections reuse one session)."""
    s.link_down(now)
    events(s)
    while not s.want_link:
        now += 1000
        s.poll(now)
    s.link_up(now)
    flush(s, now)
    s.receive(connack())
    assert events(s) == [(mqtt.CONNECTED,)]
    sent = flush(s, now)
    birth_pid = publish_fields(sent[0][2], sent[0][1])[1]
    sub_pid = (sent[1][2][0] << 8) | sent[1][2][1]
    s.receive(suback(sub_pid) + puback(birth_pid))
    assert events(s) == []
    s.poll(now)
    return now


# -- the codec -------------------------------------------------------------------------------


def test_remaining_length_at_every_boundary():
    cases = [
        (0, b"\x00"),
        (127, b"\x7f"),
        (128, b"\x80\x01"),
        (16383, b"\xff\x7f"),
        (16384, b"\x80\x80\x01"),
        (2097151, b"\xff\xff\x7f"),
        (2097152, b"\x80\x80\x80\x01"),
        (268435455, b"\xff\xff\xff\x7f"),
    ]
    buf = bytearray(8)
    for value, encoded in cases:
        end = mqtt.encode_length(buf, 2, value)
        assert bytes(buf[2:end]) == encoded, value
        assert mqtt.length_size(value) == len(encoded)
        assert mqtt.decode_length(encoded, 0, len(encoded)) == value
        # every shorter prefix asks for more bytes
        for cut in range(len(encoded)):
            assert mqtt.decode_length(encoded, 0, cut) == -1


def test_remaining_length_refusals():
    for bad in (-1, 268435456):
        try:
            mqtt.encode_length(bytearray(8), 0, bad)
        except ValueError:
            continue
        raise AssertionError("encoded %d" % bad)
    for bad in (b"\x80\x80\x80\x80\x01", b"\x80\x00", b"\xff\x80\x00"):
        try:
            mqtt.decode_length(bad, 0, len(bad))
        except mqtt.MalformedPacket:
            continue
        raise AssertionError("decoded %r" % bad)


def test_connect_packet_byte_for_byte():
    s = mqtt.Session(
        "c1",
        b"t/s",
        b"t/c",
        username="u",
        password="pw",
        keepalive_s=30,
        clean_session=False,
        will_payload=b"off",
    )
    s.poll(0)
    s.link_up(0)
    expected = (
        b"\x10\x1f"  # CONNECT, remaining length 31
        b"\x00\x04MQTT\x04"  # protocol name and level 4 (3.1.1)
        b"\xec"  # username, password, will retain, will QoS 1, will; clean session off
        b"\x00\x1e"  # keepalive 30 s
        b"\x00\x02c1\x00\x03t/s\x00\x03off\x00\x01u\x00\x02pw"
    )
    assert bytes(s.poll(0)) == expected


def test_topics_and_names():
    from relaypump.uplink_build import MqttConfigError, topic  # (the boot's: built once)

    assert topic("jia", "relay1", "telemetry") == TELEMETRY
    for bad in ("", "a/b", "a+", "#", "x" * 33, "sp ace", 7):
        try:
            topic(bad, "relay1", "cmd")
        except MqttConfigError as e:
            assert str(e).startswith("mqtt.site")
            continue
        raise AssertionError("accepted site %r" % (bad,))


# -- connect, birth, subscribe -----------------------------------------------------------------


def test_connect_birth_and_subscribe_in_order():
    s = new_session(birth_payload=b'{"state":"online"}')
    assert s.poll(0) is None
    assert s.want_link and s.link_epoch == 1
    assert s.poll(5) is None  # no link yet: nothing to send
    s.link_up(10)
    sent = flush(s, 10)
    assert [p[0] for p in sent] == [1]
    assert events(s) == []
    s.receive(connack(present=1))
    assert events(s) == [(mqtt.CONNECTED,)] and s.connected and s.session_present
    sent = flush(s, 20)
    assert [(p[0], p[1]) for p in sent] == [(3, 0x3), (8, 0x2)]  # birth QoS 1 retained, SUBSCRIBE
    topic, pid, payload = publish_fields(sent[0][2], sent[0][1])
    assert topic == STATUS and payload == b'{"state":"online"}' and pid
    body = sent[1][2]
    assert body[2:] == b"\x00\x18" + CMD + b"\x01"  # one filter, QoS 1
    s.receive(suback((body[0] << 8) | body[1], 1) + puback(pid))
    assert events(s) == []  # the birth's PUBACK is the session's own
    assert s.stray_acks == 0 and s.in_flight == 0


def test_subscription_refused_is_an_error_event():
    s = new_session()
    s.poll(0)
    s.link_up(0)
    flush(s, 0)
    s.receive(connack())
    events(s)
    sub = flush(s, 0)[1][2]
    s.receive(suback((sub[0] << 8) | sub[1], 0x80))
    assert events(s) == [(mqtt.SUBSCRIBE_REFUSED,)]
    assert s.sub_refused == 1 and s.connected  # telemetry still flows


def test_refused_connack_backs_off_and_retries():
    rand = Rand(0)
    s = new_session(random_below=rand, backoff_min_ms=1000)
    s.poll(0)
    s.link_up(0)
    flush(s, 0)
    s.receive(connack(code=5))  # not authorised
    assert events(s) == [(mqtt.DISCONNECTED, mqtt.REFUSED)]
    assert s.refused_code == 5 and not s.want_link
    assert s.poll(499) is None and not s.want_link
    s.poll(500)  # base 1000: 500 + random(0)
    assert s.want_link and s.link_epoch == 2


def test_connect_timeout_without_link_or_connack():
    s = new_session(connect_timeout_ms=5000)
    s.poll(0)
    s.poll(4999)
    assert s.want_link
    s.poll(5000)
    assert not s.want_link
    assert events(s) == [(mqtt.DISCONNECTED, mqtt.CONNECT_TIMEOUT)]
    s.poll(10000)
    s.link_up(10000)
    flush(s, 10000)
    s.poll(14999)
    assert s.want_link
    s.poll(15000)  # a link but no CONNACK
    assert events(s) == [(mqtt.DISCONNECTED, mqtt.CONNECT_TIMEOUT)]


# -- QoS 1 out ---------------------------------------------------------------------------------


def test_publish_is_acknowledged_and_retransmitted_with_dup_until_then():
    s = connected_session(now=1000, retry_ms=20000)
    pid = s.publish(TELEMETRY, b"frame-1")
    assert pid > 0 and s.in_flight == 1
    sent = flush(s, 1000)
    assert len(sent) == 1 and sent[0][1] == 0x2  # QoS 1, no DUP, not retained
    assert publish_fields(sent[0][2], sent[0][1]) == (TELEMETRY, pid, b"frame-1")
    assert flush(s, 20999) == []  # not before retry_ms
    again = flush(s, 21000)
    assert len(again) == 1 and again[0][1] == 0xA  # DUP set, same packet id, same bytes
    assert again[0][2] == sent[0][2]
    assert s.retransmissions == 1
    s.receive(puback(pid))
    assert events(s) == [(mqtt.PUBACK, pid)]
    assert s.in_flight == 0
    assert flush(s, 45000) == []
    assert flush(s, 81000) == [(12, 0, b"")]  # 60 s after the last send: a ping
    s.receive(puback(pid))  # the broker's ack of the duplicate
    assert events(s) == [] and s.stray_acks == 1


def test_birth_can_carry_state_and_qos0_needs_a_connection():
    s = new_session()
    assert s.publish(TELEMETRY, b"q", qos=0) == mqtt.OFFLINE
    s.set_birth(b'{"state":"online","fw":"0.1.0"}')
    s.poll(0)
    s.link_up(0)
    flush(s, 0)
    s.receive(connack())
    events(s)
    birth = flush(s, 0)[0]
    assert birth[1] == 0x3  # QoS 1, retained
    assert publish_fields(birth[2], birth[1])[2] == b'{"state":"online","fw":"0.1.0"}'
    assert s.publish(TELEMETRY, b"q", qos=0) == 0
    assert flush(s, 0) == [(3, 0, b"\x00\x1e" + TELEMETRY + b"q")]
    try:
        s.set_birth(bytes(600))
    except ValueError:
        pass
    else:
        raise AssertionError("a birth over max_packet was taken")


def test_window_full_too_big_and_packet_ids():
    s = connected_session(inflight=3, max_packet=128)
    ids = [s.publish(TELEMETRY, b"x") for _ in range(3)]
    assert len(set(ids)) == 3 and all(0 < i < 65536 for i in ids)
    assert s.publish(TELEMETRY, b"x") == mqtt.FULL
    assert s.publish(TELEMETRY, b"y" * 200) == mqtt.FULL  # full first
    flush(s, 1000)
    s.receive(puback(ids[1]))  # out of order: its slot waits for the oldest
    assert events(s) == [(mqtt.PUBACK, ids[1])]
    assert s.publish(TELEMETRY, b"x") == mqtt.FULL
    s.receive(puback(ids[0]))
    events(s)
    assert s.in_flight == 1
    assert s.publish(TELEMETRY, b"y" * 200) == mqtt.TOO_BIG
    new = s.publish(TELEMETRY, b"z")
    assert new > 0 and new != ids[2]
    assert s.publish(TELEMETRY, b"q", qos=0) == 0


def test_slots_sized_to_the_largest_publish_still_carry_it_and_resend_it_with_dup():
    from relaypump.uplink_build import publish_size

    frame = bytes(range(80))  # a telemetry frame's size
    size = publish_size(len(TELEMETRY), len(frame))
    assert size == 1 + 1 + 2 + len(TELEMETRY) + 2 + 80
    s = connected_session(inflight=2, max_packet=256, slot_size=size, retry_ms=500)
    assert s.slot_size == size and len(s.rx_view()) == 256  # max_packet: the receive buffer
    a = s.publish(TELEMETRY, frame)
    b = s.publish(TELEMETRY, frame[:24])
    assert a > 0 and b > 0
    assert s.publish(TELEMETRY, frame + b"x") == mqtt.FULL  # full first
    sent = flush(s, 1000)
    assert [publish_fields(body, flags) for _, flags, body in sent] == [
        (TELEMETRY, a, frame),
        (TELEMETRY, b, frame[:24]),
    ]
    again = flush(s, 1600)  # not acknowledged within retry_ms: both again, with DUP
    assert [(flags & 8, publish_fields(body, flags)[2]) for _, flags, body in again] == [
        (8, frame),
        (8, frame[:24]),
    ]
    s.receive(puback(a) + puback(b))
    assert events(s) == [(mqtt.PUBACK, a), (mqtt.PUBACK, b)]
    assert s.publish(TELEMETRY, frame + b"x") == mqtt.TOO_BIG  # over the slot, not max_packet
    assert s.publish(TELEMETRY, frame + b"xyz", qos=0) == mqtt.TOO_BIG
    # what is sent and what is taken in are sized apart: a slot above max_packet is fine
    assert new_session(max_packet=64, slot_size=129).slot_size == 129
    for bad in (15, 16385):
        try:
            new_session(slot_size=bad)
        except ValueError as e:
            assert "slot_size" in str(e)
        else:
            raise AssertionError("slot_size %d was taken" % bad)


def test_packet_ids_wrap_and_skip_ids_in_flight():
    s = connected_session(inflight=2)
    s._next_id = 65534
    a = s.publish(TELEMETRY, b"a")
    b = s.publish(TELEMETRY, b"b")
    assert (a, b) == (65535, 1)
    flush(s, 1000)
    s.receive(puback(a))
    events(s)
    s._next_id = 0  # the next id would be 1, still in flight
    assert s.publish(TELEMETRY, b"c") == 2


def test_reconnect_resends_the_window_in_order_with_dup_after_birth_and_subscribe():
    rand = Rand(0)
    s = connected_session(now=1000, random_below=rand, backoff_min_ms=2000)
    ids = [s.publish(TELEMETRY, b"m%d" % n) for n in range(3)]
    first = flush(s, 1000)
    assert [p[1] for p in first] == [2, 2, 2]
    s.link_down(1500)  # the socket died
    assert events(s) == [(mqtt.DISCONNECTED, mqtt.LINK_LOST)]
    later = s.publish(TELEMETRY, b"m3")  # queued while offline
    assert later > 0 and s.in_flight == 4
    s.poll(2499)
    assert not s.want_link
    s.poll(2500)  # 1500 + 2000 / 2 + 0
    assert s.want_link
    s.link_up(2600)
    flush(s, 2600)
    s.receive(connack(present=1))
    assert events(s) == [(mqtt.CONNECTED,)]
    sent = flush(s, 2600)
    assert [p[0] for p in sent] == [3, 8, 3, 3, 3, 3]
    assert publish_fields(sent[0][2], sent[0][1])[0] == STATUS and sent[0][1] & 8 == 0
    resent = [publish_fields(p[2], p[1]) for p in sent[2:]]
    assert [r[1] for r in resent] == ids + [later]
    assert [r[2] for r in resent] == [b"m0", b"m1", b"m2", b"m3"]
    assert [p[1] & 8 for p in sent[2:]] == [8, 8, 8, 0]  # DUP only on those sent before


def test_backoff_is_exponential_jittered_and_capped():
    for value, low in ((0, True), (10**9, False)):
        rand = Rand(value)
        s = new_session(random_below=rand, backoff_min_ms=1000, backoff_max_ms=16000)
        now = 0
        delays = []
        for _ in range(8):
            s.poll(now)
            assert s.want_link
            s.link_down(now)
            events(s)
            delays.append(s.last_delay_ms)
            now += s.last_delay_ms
        bases = [1000, 2000, 4000, 8000, 16000, 16000, 16000, 16000]
        if low:
            assert delays == [b // 2 for b in bases]
        else:
            assert delays == bases
        assert rand.asked == [b // 2 + 1 for b in bases]
    # a random in between stays between the bounds, and an accepted CONNACK starts over
    seed = 12345

    def lcg(n):
        nonlocal seed
        seed = (seed * 75 + 74) % 65537
        return seed % n

    s = new_session(random_below=lcg, backoff_min_ms=500, backoff_max_ms=60000)
    now = 0
    for k in range(12):
        s.poll(now)
        s.link_down(now)
        base = min(60000, 500 << k)
        assert base // 2 <= s.last_delay_ms <= base
        now += s.last_delay_ms
    s.poll(now)
    s.link_up(now)
    flush(s, now)
    s.receive(connack())
    events(s)
    s.link_down(now)
    assert 250 <= s.last_delay_ms <= 500


# -- keepalive and dead links ------------------------------------------------------------------


def test_keepalive_pings_and_a_dead_link_is_dropped_at_one_and_a_half_keepalives():
    s = connected_session(now=0, keepalive_s=10)
    assert flush(s, 9999) == []
    assert flush(s, 10000) == [(12, 0, b"")]  # PINGREQ
    assert flush(s, 12000) == []  # one ping outstanding
    s.receive(PINGRESP)
    assert events(s) == []
    s.poll(12500)  # the PINGRESP's time is taken by the next poll
    assert flush(s, 20000) == [(12, 0, b"")]  # nothing sent for 10 s
    assert flush(s, 22499) == []
    assert s.poll(22500) is None  # silence since the PINGRESP, but a ping is out
    s.poll(27499)
    assert s.connected
    s.poll(27500)  # 1.5 x 10 s since the last byte received (12500)
    assert not s.connected and not s.want_link
    assert events(s) == [(mqtt.DISCONNECTED, mqtt.DEAD_LINK)]


def test_traffic_in_counts_as_alive_and_publishing_counts_as_sending():
    s = connected_session(now=0, keepalive_s=10)
    for t in range(0, 60000, 4000):
        pid = s.publish(TELEMETRY, b"x")
        sent = flush(s, t)
        assert [p[0] for p in sent] == [3]  # no PINGREQ while PUBACKs come back
        s.receive(puback(pid))
        assert events(s) == [(mqtt.PUBACK, pid)]
    assert s.connected


def test_ticks_wrap_around():
    start = 0x3FFFFFFF - 3000
    s = connected_session(now=start, keepalive_s=5)
    pid = s.publish(TELEMETRY, b"w")
    flush(s, start)
    wrapped = (start + 6000) & 0x3FFFFFFF  # past 2**30
    sent = flush(s, wrapped)
    assert [p[0] for p in sent] == [12]
    s.poll((start + 7499) & 0x3FFFFFFF)
    assert s.connected
    s.poll((start + 7500) & 0x3FFFFFFF)
    assert not s.connected
    assert pid and s.in_flight == 1


# -- QoS 0/1 in, any split ---------------------------------------------------------------------


def test_incoming_messages_in_every_split_and_pubacks():
    stream = (
        publish_in(CMD, b"cmd-1", qos=1, pid=7)
        + publish_in(CMD, b"", qos=0)
        + PINGRESP
        + publish_in(CMD, b"x" * 300, qos=1, pid=8, retain=True)
    )
    want = [
        (mqtt.MESSAGE, CMD, b"cmd-1", 1),
        (mqtt.MESSAGE, CMD, b"", 0),
        (mqtt.MESSAGE, CMD, b"x" * 300, 1),
    ]
    s = connected_session()
    now = 1000
    step = 6 if ON_MICROPYTHON else 1  # the VM collects no garbage within a test
    for cut in list(range(0, 40, step)) + [len(stream) - 1, len(stream)]:
        now = reconnect(s, now)
        got = []
        for part in (stream[:cut], stream[cut:]):
            for k in range(0, len(part), 97):  # and in chunks of 97 bytes
                assert s.receive(part[k : k + 97]) == len(part[k : k + 97])
                got += events(s)
        assert got == want, cut
        assert flush(s, now) == [(4, 0, b"\x00\x07"), (4, 0, b"\x00\x08")]
    reconnect(s, now)
    one = bytearray(1)
    for b in stream:  # byte by byte
        one[0] = b
        s.receive(one)
        got = events(s)
        if got:
            assert got[0] in want


def test_receive_takes_a_prefix_and_the_rest_later():
    s = connected_session()
    data = bytearray(publish_in(CMD, b"abc", qos=1, pid=3) + b"garbage-not-taken")
    assert s.receive(data, 10) == 10
    assert events(s) == []
    rest = data[10:-17]
    assert s.receive(rest) == len(rest)
    assert events(s) == [(mqtt.MESSAGE, CMD, b"abc", 1)]


def test_full_receive_buffer_and_puback_queue_apply_back_pressure():
    s = connected_session(max_packet=128)
    one = publish_in(CMD, b"p" * 20, qos=1, pid=1)
    data = b"".join(publish_in(CMD, b"p" * 20, qos=1, pid=n) for n in range(1, 13))
    taken = s.receive(data)
    assert taken == 128
    assert s.rx_room() == 0
    got = events(s)
    assert len(got) == 128 // len(one)
    fed = taken
    while fed < len(data):
        fed += s.receive(data[fed:])
        got += events(s)
        flush(s, 1000)  # PUBACKs leave, more can be acknowledged
    flush(s, 1000)
    got += events(s)
    assert len(got) == 12
    assert s.malformed == 0 and s.connected


def test_oversize_message_is_skipped_and_acknowledged():
    s = connected_session(max_packet=128)
    big = publish_in(CMD, b"B" * 400, qos=1, pid=9)
    small = publish_in(CMD, b"after", qos=1, pid=10)
    stream = big + small
    for k in range(0, len(stream), 50):
        s.receive(stream[k : k + 50])
        got = events(s)
        if got:
            assert got == [(mqtt.MESSAGE, CMD, b"after", 1)]
    assert s.oversize == 1 and s.connected
    assert flush(s, 1000) == [(4, 0, b"\x00\x09"), (4, 0, b"\x00\x0a")]


def read_in(s, data):
    """A link reading straight into the session (netio.Link): data in reads of what fits."""
    at = 0
    while at < len(data):
        room = s.rx_room()
        if not room:
            return at
        n = min(room, len(data) - at)
        s.rx_view()[:n] = data[at : at + n]
        s.received(n)
        at += n
    return at


def test_reads_straight_into_the_session_take_what_receive_takes():
    stream = (
        publish_in(CMD, b"cmd-1", qos=1, pid=7)
        + publish_in(CMD, b"B" * 400, qos=1, pid=9)  # over max_packet: skipped, acknowledged
        + PINGRESP
        + publish_in(CMD, b"after", qos=1, pid=10)
    )
    want = [(mqtt.MESSAGE, CMD, b"cmd-1", 1), (mqtt.MESSAGE, CMD, b"after", 1)]
    for chunk in (50, 97, 1000):
        s = connected_session(max_packet=128)
        got = []
        for k in range(0, len(stream), chunk):
            part = stream[k : k + chunk]
            fed = 0
            while fed < len(part):
                fed += read_in(s, part[fed:])
                got += events(s)
        assert got == want, chunk
        assert s.oversize == 1 and s.connected
        assert flush(s, 1000) == [(4, 0, b"\x00\x07"), (4, 0, b"\x00\x09"), (4, 0, b"\x00\x0a")]
    s.link_down(2000)  # nothing listens: the bytes of a dropped link are not kept
    events(s)
    room = s.rx_room()
    late = publish_in(CMD, b"late", qos=1, pid=11)
    assert read_in(s, late) == len(late)
    assert events(s) == [] and s.rx_room() == room


def test_an_idle_read_view_allocates_nothing():
    s = connected_session()
    read_in(s, publish_in(CMD, b"abc", qos=1, pid=3))
    events(s)
    s.rx_view()

    def idle():
        for _ in range(50):
            s.rx_view()

    used = bytes_allocated(idle)
    assert used <= (0 if ON_MICROPYTHON else 600), used


# -- malformed input ---------------------------------------------------------------------------


def test_malformed_and_unexpected_packets_drop_the_link_and_are_counted():
    bad = [
        (b"\x30\x80\x00", mqtt.MALFORMED),  # remaining length not shortest
        (b"\x30\xff\xff\xff\xff\x01", mqtt.MALFORMED),  # 5-byte remaining length
        (b"\x36\x05\x00\x01a\x00\x01", mqtt.MALFORMED),  # QoS 3
        (b"\x38\x04\x00\x01ab", mqtt.MALFORMED),  # QoS 0 with DUP
        (b"\x32\x05\x00\x01a\x00\x00", mqtt.MALFORMED),  # packet id 0
        (b"\x30\x03\x00\x05a", mqtt.MALFORMED),  # topic longer than the packet
        (b"\x30\x02\x00\x00", mqtt.MALFORMED),  # empty topic
        (b"\x30\x04\x00\x01#x", mqtt.MALFORMED),  # wildcard in a topic name
        (b"\x30\x01\x00", mqtt.MALFORMED),  # no room for a topic length
        (b"\x41\x02\x00\x01", mqtt.MALFORMED),  # PUBACK with flags
        (b"\x40\x03\x00\x01\x00", mqtt.MALFORMED),  # PUBACK of 3 bytes
        (b"\xd0\x01\x00", mqtt.MALFORMED),  # PINGRESP with a body
        (b"\x90\x04\x00\x01\x01\x01", mqtt.MALFORMED),  # SUBACK with two codes
        (b"\x20\x02\x00\x00", mqtt.PROTOCOL),  # a second CONNACK
        (b"\x34\x05\x00\x01a\x00\x01", mqtt.PROTOCOL),  # QoS 2
        (b"\x62\x02\x00\x01", mqtt.PROTOCOL),  # PUBREL
        (b"\x10\x00", mqtt.PROTOCOL),  # CONNECT from the server
        (b"\x90\x03\x12\x34\x00", mqtt.PROTOCOL),  # SUBACK for no SUBSCRIBE
        (b"\xe0\x00", mqtt.PROTOCOL),  # DISCONNECT from the server
        (b"\x80" + b"\xff\xff\x7f", mqtt.MALFORMED),  # a huge SUBSCRIBE
    ]
    s = connected_session()
    now = 1000
    for n, (data, reason) in enumerate(bad):
        s.receive(data)
        assert events(s) == [(mqtt.DISCONNECTED, reason)], data
        assert s.malformed + s.protocol_errors == n + 1
        assert isinstance(s.last_error, mqtt.MalformedPacket)  # or the ProtocolViolation below it
        assert not s.want_link and s.poll(now) is None
        s.receive(b"anything after the drop")  # stale bytes are ignored
        assert events(s) == []
        now = reconnect(s, now)
    s = new_session()
    s.poll(0)
    s.link_up(0)
    flush(s, 0)
    s.receive(puback(1))  # before CONNACK
    assert events(s) == [(mqtt.DISCONNECTED, mqtt.PROTOCOL)]
    s = new_session()
    s.poll(0)
    s.link_up(0)
    s.receive(b"\x20\x02\x00\x09")  # CONNACK return code 9
    assert events(s) == [(mqtt.DISCONNECTED, mqtt.MALFORMED)]


def test_random_garbage_never_raises():
    seed = 1
    s = connected_session()
    now = 1000
    data = bytearray(40)
    for _ in range(15 if ON_MICROPYTHON else 60):
        now = reconnect(s, now)
        for _ in range(6):
            n = seed % 40 + 1
            for i in range(n):
                seed = (seed * 75 + 74) % 65537  # small ints only (no heap in the VM)
                data[i] = seed & 0xFF
            s.receive(data, n)
            events(s)
            s.poll(now)
            if not s.want_link:
                break


# -- closing, allocation, config ---------------------------------------------------------------


def test_close_sends_disconnect_and_stays_off_until_opened():
    s = connected_session()
    s.close()
    out = s.poll(1000)
    assert bytes(out) == b"\xe0\x00"
    s.sent(2)
    assert events(s) == [(mqtt.DISCONNECTED, mqtt.CLOSED)]
    assert not s.want_link
    assert s.poll(10**6) is None and not s.want_link
    s.open()
    s.poll(10**6)
    assert s.want_link


def test_idle_poll_allocates_nothing():
    s = connected_session(now=0, keepalive_s=60)
    pid = s.publish(TELEMETRY, b"telemetry frame")
    flush(s, 0)
    s.receive(puback(pid))
    events(s)

    def idle():
        for t in range(100, 20000, 100):
            s.poll(t)
            s.next_event()

    used = bytes_allocated(idle)
    assert used <= (0 if ON_MICROPYTHON else 600), used
    offline = new_session()
    offline.poll(0)
    offline.link_down(0)

    def backing_off():
        for t in range(1, 400, 10):
            offline.poll(t)
            offline.next_event()

    used = bytes_allocated(backing_off)
    assert used <= (0 if ON_MICROPYTHON else 600), used


def test_publish_and_ack_cycle_allocation_is_small():
    s = connected_session(now=0)
    payload = bytes(60)

    def cycle():
        for t in range(10):
            pid = s.publish(TELEMETRY, payload)
            out = s.poll(t)
            s.sent(len(out))
            s.receive(puback(pid))
            s.next_event()

    used = bytes_allocated(cycle) // 10
    assert used <= (200 if ON_MICROPYTHON else 3000), used


def test_config_section():
    from relaypump import uplink_build, uplink_config  # loaded with a config / to build only

    cfg = uplink_config.mqtt_section({"host": "10.0.0.5", "site": "jia", "station": "relay1"})
    assert cfg["port"] == 1883 and cfg["keepalive_s"] == 60 and not cfg["clean_session"]
    assert cfg["client_id"] == "rp-jia-relay1"
    s = uplink_build.session_from_config(cfg)
    assert s.status_topic == STATUS and s.command_topic == CMD
    assert cfg["max_packet"] == 256 and s.slot_size == 256  # nothing known: slots of max_packet
    assert len(s.rx_view()) == 256
    s = uplink_build.session_from_config(cfg, payload_max=80, payload_in_max=63)
    # the largest frame on the longest topic; the receive buffer the largest command
    assert s.slot_size == uplink_build.publish_size(len(TELEMETRY), 80)
    assert len(s.rx_view()) == uplink_build.publish_size(len(CMD), 63) == 93
    assert len(s._slots) == 4 * s.slot_size + uplink_build.publish_size(len(STATUS), 6)
    s.set_birth(b"online")  # fits its room; a longer birth does not
    try:
        s.set_birth(b"online!")
    except ValueError as e:
        assert "birth" in str(e)
    else:
        raise AssertionError("a birth over its room was taken")
    # long names: a telemetry slot above max_packet (128) still holds a telemetry frame
    long = uplink_config.mqtt_section(
        {"host": "b", "site": "s" * 32, "station": "t" * 32, "max_packet": 128, "client_id": "c"}
    )
    s = uplink_build.session_from_config(long, payload_max=80, payload_in_max=63)
    longest = uplink_build.topic("s" * 32, "t" * 32, "telemetry")  # 85 characters
    assert s.slot_size == 1 + 2 + 2 + len(longest) + 2 + 80 and len(s.rx_view()) == 128
    assert s.publish(longest, bytes(80)) > 0
    tls = uplink_config.mqtt_section(
        {"host": "b", "site": "s", "station": "t", "tls": True, "ca_file": "/ca.pem"}
    )
    assert tls["port"] == 8883 and tls["server_hostname"] == "b"
    bad = [
        ({"site": "s", "station": "t"}, "mqtt.host: missing"),
        ({"host": "b", "site": "s", "station": "t", "tls": True}, "mqtt.ca_file"),
        ({"host": "b", "site": "s/x", "station": "t"}, "mqtt.site"),
        ({"host": "b", "site": "s", "station": "t", "keepalive_s": 1}, "mqtt.keepalive_s"),
        ({"host": "b", "site": "s", "station": "t", "port": "1883"}, "mqtt.port"),
        ({"host": "b", "site": "s", "station": "t", "qos": 2}, "mqtt.qos: unknown key"),
        ({"host": "b", "site": "s", "station": "t", "tls": 1}, "mqtt.tls"),
        ({"host": "b", "site": "s", "station": "t", "backoff_max_s": 0}, "mqtt.backoff_max_s"),
    ]
    for doc, start in bad:
        try:
            uplink_config.mqtt_section(doc)
        except uplink_config.MqttConfigError as e:
            assert str(e).startswith(start), str(e)
            continue
        raise AssertionError("accepted %r" % (doc,))
