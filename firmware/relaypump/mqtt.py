"""MQTT 3.1.1 client session for the uplink: sans-IO, preallocated, never blocks (h11 style).

The session never touches a socket or a clock. The link layer (netio.py on a board and on CPython,
or a test) moves bytes and time in and out:

    session.poll(now_ms)  -> memoryview of bytes to send, or None; advances every timer
    session.sent(n)          n of those bytes left (a partial write is fine; the rest comes again)
    session.receive(data, n=-1) -> bytes taken (data[:n]; all of them while rx_room() allows)
                             or, with no copy: n = read_into(session.rx_view()); session.received(n)
    session.next_event()  -> NONE, CONNECTED, MESSAGE, PUBACK, DISCONNECTED or SUBSCRIBE_REFUSED
                             (call until NONE after receiving; details in attributes, below)
    session.want_link        True while the session wants a connection to the broker open;
    session.link_epoch       a new number for every connection it wants: a link made for an older
                             epoch is closed and a new one opened
    session.link_up(now_ms)  the TCP (and TLS) connection is open; link_down(now_ms): it is lost
    session.publish(topic, payload, qos=1, retain=False) -> packet id, 0 or a refusal (< 0)

Rules:
- Connect: CONNECT (3.1.1, level 4) with the client id, username/password when given, the clean
  session choice, the keepalive, and a retained QoS 1 last will on the status topic (the payload
  marks the station offline; the broker publishes it when the link dies without a DISCONNECT). The
  whole connect (TCP, TLS, CONNACK) must finish within connect_timeout_ms.
- On every CONNACK accepted: the retained QoS 1 birth message (set_birth; default b"online") goes
  out first, then the SUBSCRIBE to the command topic (QoS 1), then every unacknowledged QoS 1
  message of the window again, with DUP set, in the order they were published, then new ones.
  ``subscribed`` is True once the SUBACK granted it. A refusal (0x80) is the SUBSCRIBE_REFUSED
  event and counted (``sub_refused``); the session stays up (telemetry still flows) and
  subscribes again on the next connect. (Mosquitto 2.0 grants a subscription its ACL denies and
  filters at delivery instead.)
- QoS 1 out: ``publish`` encodes the packet once into one of ``inflight`` slots (slot_size bytes
  each: max_packet unless the application knows its largest packet, see
  uplink_build.session_from_config);
  it stays there until its PUBACK (event PUBACK with ``packet_id``). A message sent and not
  acknowledged within retry_ms is sent again with DUP on the same connection. Refusals: FULL (no
  free slot), TOO_BIG (over slot_size), OFFLINE (QoS 0 with no connection). Packet ids run
  1..65535, skipping ids in flight. A PUBACK for no message in flight is ignored and counted.
- In: PUBLISH QoS 0 and 1 (MESSAGE: ``topic``, ``payload`` memoryviews into the receive buffer,
  valid until the next call of next_event; ``qos``, ``retain``, ``dup``); a QoS 1 message is
  acknowledged (PUBACK) by the next poll. QoS 2 is never subscribed to and is a protocol error.
  A PUBLISH larger than max_packet is skipped (acknowledged when QoS 1, counted in ``oversize``).
- Keepalive: PINGREQ when nothing was sent for keepalive_ms, or nothing received for keepalive_ms;
  nothing at all received for 1.5 x keepalive_ms (no PINGRESP either) means a dead link: dropped,
  DISCONNECTED(DEAD_LINK), reconnect.
- Malformed input (bad remaining length, flags, lengths, a wildcard in a topic, packet id 0) and
  protocol violations (a packet the state does not allow, a SUBACK for another id, CONNACK twice)
  raise MalformedPacket / ProtocolViolation (a subclass) inside
  next_event only: they are counted
  (``malformed``, ``protocol_errors``, ``last_error``), the link is dropped (DISCONNECTED with
  MALFORMED or PROTOCOL) and next_event returns the event; no exception leaves the session.
- Reconnect: after any drop the next connect waits a jittered exponential backoff: attempt k (k
  drops since the last accepted CONNACK) waits base/2 + random_below(base/2 + 1) ms, base =
  min(backoff_max_ms, backoff_min_ms * 2**(k-1)). The first connect is immediate. A refused
  CONNACK (``refused_code`` 1..5) backs off the same way. The cap defaults to 30 s: after a
  broker restart a whole fleet is back within the cap (fleet bench: 500 stations reconnected in
  30.6 s and flushed an hour of outbox in 41.9 s; a 120 s cap took 119.5 s), and the jitter
  spreads the reconnects over it.
- ``close()`` sends DISCONNECT (the will is discarded by the broker) and stops; ``open()`` starts
  again.
- Time is a ticks value (ms modulo 2**30, relaypump.ticks); every deadline uses ticks_diff.
Allocation: buffers are made in the constructor: rx (max_packet), tx (one packet, a SUBSCRIBE and
a PINGREQ; acknowledgements wait for room) and the slots (inflight x slot_size, then the birth's:
birth_room bytes, or slot_size). An idle poll, and a poll with nothing due, allocate nothing;
sending returns one memoryview, a MESSAGE makes two.
Topics: relaypump/<site>/<station>/<kind> (uplink_build.topic); kinds status, telemetry, event,
ack, cmd. What only builds a session from the config (topic names, sizes) is in uplink_build.py,
a module the uplink drops again once built: on MicroPython every function here is heap for as
long as the agent runs.
"""

from micropython import const

from relaypump.ticks import TICKS_MASK as _TICKS_MASK
from relaypump.ticks import ticks_diff as _ticks_diff

# events (next_event)
NONE = const(0)
CONNECTED = const(1)
MESSAGE = const(2)
PUBACK = const(3)
DISCONNECTED = const(4)
SUBSCRIBE_REFUSED = const(5)

# DISCONNECTED reasons (``reason``)
LINK_LOST = const(1)  # the link layer reported the connection gone (EOF, reset, connect failed)
DEAD_LINK = const(2)  # nothing received for 1.5 x keepalive
CONNECT_TIMEOUT = const(3)  # no CONNACK (or no link) within connect_timeout_ms
REFUSED = const(4)  # CONNACK with a non-zero return code (``refused_code``)
MALFORMED = const(5)
PROTOCOL = const(6)
CLOSED = const(7)  # close() asked for it

# publish refusals
FULL = const(-1)
TOO_BIG = const(-2)
OFFLINE = const(-3)

_MAX_REMAINING = const(268435455)

# packet types (high nibble of the first byte)
_CONNACK = const(2)
_PUBLISH = const(3)
_PUBACK = const(4)
_SUBACK = const(9)
_PINGRESP = const(13)

# session states
_OFFLINE = const(0)  # no link; waiting for the backoff
_LINK_WANTED = const(1)  # waiting for the link layer's link_up
_CONNECTING = const(2)  # link up, CONNECT sent or due, waiting for CONNACK
_CONNECTED = const(3)
_CLOSING = const(4)  # DISCONNECT queued
_STOPPED = const(5)  # close()d

# slot states
_FREE = const(0)
_QUEUED = const(1)  # to be sent (again)
_SENT = const(2)  # on the wire, waiting for its PUBACK
_ACKED = const(3)  # acknowledged, freed once the slots before it are

_PUBACKS = const(8)  # incoming QoS 1 acknowledgements waiting for tx room


class MalformedPacket(Exception):
    """Bytes that are not an MQTT 3.1.1 packet from a server; the base of the session's typed
    errors (raised and caught inside next_event). Two classes, not three: a class is ~0.1 KiB of
    heap on MicroPython."""


class ProtocolViolation(MalformedPacket):
    """A well-formed packet the session's state does not allow."""


def length_size(n):
    """Bytes of the remaining-length field for a remaining length n."""
    if n < 128:
        return 1
    if n < 16384:
        return 2
    if n < 2097152:
        return 3
    return 4


def encode_length(buf, pos, n):
    """Write n as a remaining length (7 bits a byte, least significant first, bit 7 = more) at
    buf[pos]; returns the position after it."""
    if not 0 <= n <= _MAX_REMAINING:
        raise ValueError("remaining length %d outside 0..268435455" % n)
    while n >= 128:
        buf[pos] = (n & 0x7F) | 0x80
        n >>= 7
        pos += 1
    buf[pos] = n
    return pos + 1


def decode_length(buf, pos, end):
    """The remaining length encoded at buf[pos:end], or -1 when more bytes are needed.
    MalformedPacket for a fifth byte or a longer encoding than the value needs."""
    value = 0
    shift = 0
    for i in range(4):
        if pos + i >= end:
            return -1
        b = buf[pos + i]
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            if i and not b:
                raise MalformedPacket("remaining length not in its shortest form")
            return value
        shift += 7
    raise MalformedPacket("remaining length longer than 4 bytes")


def _utf8_field(buf, pos, data):
    n = len(data)
    buf[pos] = n >> 8
    buf[pos + 1] = n & 0xFF
    buf[pos + 2 : pos + 2 + n] = data
    return pos + 2 + n


def _bytes(value):
    return value.encode() if isinstance(value, str) else bytes(value)


class Session:
    """One client session. Construct with every option; nothing is allocated after that except the
    memoryviews handed out (and the birth payload when set_birth changes it)."""

    def __init__(
        self,
        client_id,
        status_topic,
        command_topic,
        username=None,
        password=None,
        keepalive_s=60,
        clean_session=True,
        will_payload=b"offline",
        birth_payload=b"online",
        inflight=4,
        max_packet=512,
        retry_ms=20000,
        connect_timeout_ms=15000,
        backoff_min_ms=1000,
        backoff_max_ms=30000,
        random_below=None,
        slot_size=0,
        birth_room=0,
    ):
        if not 5 <= keepalive_s <= 65535:
            raise ValueError("keepalive_s %d outside 5..65535" % keepalive_s)
        if not 1 <= inflight <= 64:
            raise ValueError("inflight %d outside 1..64" % inflight)
        if not 64 <= max_packet <= 16384:
            raise ValueError("max_packet %d outside 64..16384" % max_packet)
        slot_size = slot_size or max_packet
        if not 16 <= slot_size <= 16384:
            raise ValueError("slot_size %d outside 16..16384" % slot_size)
        if not 0 < backoff_min_ms <= backoff_max_ms:
            raise ValueError("backoff_min_ms must be > 0 and <= backoff_max_ms")
        self.status_topic = _bytes(status_topic)
        self.command_topic = _bytes(command_topic)
        self.keepalive_ms = keepalive_s * 1000  # dead after 1.5 times this without a byte in
        self.retry_ms = retry_ms
        self.connect_timeout_ms = connect_timeout_ms
        self.backoff_min_ms = backoff_min_ms
        self.backoff_max_ms = backoff_max_ms
        self._random_below = random_below  # None: the random module's
        self.slot_size = slot_size
        self.inflight = inflight

        self._connect = self._build_connect(
            _bytes(client_id),
            username,
            password,
            keepalive_s,
            clean_session,
            _bytes(will_payload),
        )
        # one packet, and room beside it for the SUBSCRIBE and a PINGREQ (PUBACKs wait for room)
        subscribe = 2 + 2 + 2 + len(self.command_topic) + 1
        # (the buffers are kept as views only: views slice without a copy, and each name kept
        # is a slot of the session's attribute table)
        self._tx = memoryview(bytearray(max(slot_size, len(self._connect)) + subscribe + 2))
        self._tx_start = 0
        self._tx_end = 0
        self._rx = memoryview(bytearray(max_packet))  # max_packet: its length
        self._free_view = self._rx  # rx_view's: the free room, from len(_rx) - its length on
        self._rx_start = 0
        self._rx_end = 0
        self._consumed = 0  # bytes of the packet last returned, released on the next call
        self._skip = 0  # bytes of an oversize packet still to discard
        self._rx_seen = False

        from array import array  # (a name of the module's dict for the constructor only)

        # slots 0..inflight-1: the window (a ring, oldest at _head); slot `inflight`: the birth
        n = inflight + 1
        # the birth's slot last: birth_room bytes (0: slot_size; the uplink sizes it to its own)
        self._slots = memoryview(bytearray(inflight * slot_size + (birth_room or slot_size)))
        self._slot_meta = array("H", bytes(4 * n))  # per slot: [2i] its length, [2i+1] its id
        self._slot_sent = array("i", bytes(4 * n))
        self._slot_state = bytearray(n)
        self._head = 0
        self.in_flight = 0  # QoS 1 messages waiting for their PUBACK (or for a connection)
        self._pubacks = array("H", bytes(2 * _PUBACKS))  # ids to acknowledge, first; 0: none
        self._next_id = 0
        self._sub_id = 0  # the SUBSCRIBE's packet id; -1: one is due
        self.set_birth(birth_payload)

        self._state = _OFFLINE
        self.want_link = False
        self.link_epoch = 0
        self._at = 0  # offline: when to connect again; connecting: when that began
        self._now = 0
        self._last_rx = 0
        self._last_tx = 0
        self._ping_out = False
        self._attempts = 0  # drops since the last accepted CONNACK (0: connect at once)

        # the last event's details
        self.topic = None
        self.payload = None
        self.qos = 0
        self.retain = False
        self.dup = False
        self.packet_id = 0
        self.reason = 0  # negative while the DISCONNECTED event is still to come
        self.session_present = False
        self.subscribed = False  # the command topic's SUBACK granted on this connection
        # counters (they only grow) and the last error
        self.connects = 0
        self.malformed = 0
        self.protocol_errors = 0
        self.retransmissions = 0
        self.oversize = 0
        self.stray_acks = 0
        self.sub_refused = 0
        self.refused_code = 0
        self.last_error = None
        self.last_delay_ms = 0

    # -- building packets ---------------------------------------------------------------------

    def _build_connect(self, client_id, username, password, keepalive_s, clean, will_payload):
        flags = 0x04 | 0x08 | 0x20  # will, will QoS 1, will retain
        if clean:
            flags |= 0x02
        rl = 10 + 2 + len(client_id) + 2 + len(self.status_topic) + 2 + len(will_payload)
        if username is not None:
            username = _bytes(username)
            flags |= 0x80
            rl += 2 + len(username)
        if password is not None:
            password = _bytes(password)
            flags |= 0x40
            rl += 2 + len(password)
        buf = bytearray(1 + length_size(rl) + rl)
        buf[0] = 0x10
        pos = encode_length(buf, 1, rl)
        pos = _utf8_field(buf, pos, b"MQTT")
        buf[pos] = 4  # protocol level 3.1.1
        buf[pos + 1] = flags
        buf[pos + 2] = keepalive_s >> 8
        buf[pos + 3] = keepalive_s & 0xFF
        pos = _utf8_field(buf, pos + 4, client_id)
        pos = _utf8_field(buf, pos, self.status_topic)
        pos = _utf8_field(buf, pos, will_payload)
        if username is not None:
            pos = _utf8_field(buf, pos, username)
        if password is not None:
            pos = _utf8_field(buf, pos, password)
        return bytes(buf)

    def _encode_publish(self, slot, topic, payload, qos, retain):
        """PUBLISH into a slot (QoS 1: packet id 0 for now, set when allocated); its length or 0."""
        tlen = len(topic)
        rl = 2 + tlen + (2 if qos else 0) + len(payload)
        size = 1 + length_size(rl) + rl
        buf = self._slots
        base = slot * self.slot_size
        if size > min(self.slot_size, len(buf) - base):  # (the birth's room may be smaller)
            return 0
        buf[base] = 0x30 | (qos << 1) | (1 if retain else 0)
        pos = _utf8_field(buf, encode_length(buf, base + 1, rl), topic)
        if qos:
            buf[pos] = 0
            buf[pos + 1] = 0
            pos += 2
        buf[pos : pos + len(payload)] = payload
        self._slot_meta[2 * slot] = size
        return size

    def set_birth(self, payload, retain=True):
        """The retained QoS 1 message published on the status topic at every (re)connect."""
        slot = self.inflight
        if not self._encode_publish(slot, self.status_topic, _bytes(payload), 1, retain):
            raise ValueError("birth message over its room (slot_size, or birth_room)")
        self._slot_state[slot] = _FREE
        self._slot_meta[2 * slot + 1] = 0

    def _alloc_id(self):
        pid = self._next_id
        meta = self._slot_meta
        states = self._slot_state
        while True:
            pid = pid + 1 if pid < 65535 else 1
            if pid == self._sub_id:
                continue
            for i in range(self.inflight + 1):
                if states[i] != _FREE and meta[2 * i + 1] == pid:
                    break
            else:
                self._next_id = pid
                return pid

    def _set_id(self, slot, pid):
        self._slot_meta[2 * slot + 1] = pid
        base = slot * self.slot_size
        buf = self._slots
        pos = base + 1
        while buf[pos] & 0x80:
            pos += 1
        pos += 3 + ((buf[pos + 1] << 8) | buf[pos + 2])  # past length, topic length, topic
        buf[pos] = pid >> 8
        buf[pos + 1] = pid & 0xFF

    # -- the application's side -------------------------------------------------------------

    def publish(self, topic, payload, qos=1, retain=False):
        """QoS 1: into the window (sent now or after the next connect, kept until its PUBACK);
        returns the packet id. QoS 0: sent only if connected, returns 0. Refusals are negative:
        FULL, TOO_BIG, OFFLINE."""
        if isinstance(topic, str):
            topic = topic.encode()
        if qos == 0:
            if self._state != _CONNECTED:
                return OFFLINE
            rl = 2 + len(topic) + len(payload)
            size = 1 + length_size(rl) + rl
            if size > self.slot_size:
                return TOO_BIG
            if not self._tx_make_room(size):
                return FULL
            tx = self._tx
            pos = self._tx_end
            tx[pos] = 0x31 if retain else 0x30
            pos = _utf8_field(tx, encode_length(tx, pos + 1, rl), topic)
            tx[pos : pos + len(payload)] = payload
            self._tx_end = pos + len(payload)
            self._last_tx = self._now
            return 0
        if self.in_flight == self.inflight:
            return FULL
        slot = (self._head + self.in_flight) % self.inflight
        if not self._encode_publish(slot, topic, payload, 1, retain):
            return TOO_BIG
        pid = self._alloc_id()
        self._set_id(slot, pid)
        self._slot_state[slot] = _QUEUED
        self.in_flight += 1
        return pid

    @property
    def connected(self):
        return self._state == _CONNECTED

    def close(self):
        """DISCONNECT (if connected) and stay off until open()."""
        if self._state == _CONNECTED and self._tx_make_room(2):
            self._tx[self._tx_end] = 0xE0
            self._tx[self._tx_end + 1] = 0
            self._tx_end += 2
            self._state = _CLOSING
        elif self._state != _STOPPED:
            self._stop(CLOSED)

    def open(self):
        """Connect again after close() (at once)."""
        if self._state == _STOPPED:
            self._state = _OFFLINE
            self._attempts = 0  # at once

    # -- the link layer's side ----------------------------------------------------------------

    def link_up(self, now_ms):
        if self._state != _LINK_WANTED:
            return
        self._state = _CONNECTING
        self._at = now_ms
        self._last_rx = now_ms
        self._reset_buffers()
        tx = self._tx
        n = len(self._connect)
        tx[0:n] = self._connect
        self._tx_end = n
        self._last_tx = now_ms

    def link_down(self, now_ms):
        if self._state in (_LINK_WANTED, _CONNECTING, _CONNECTED):
            self._now = now_ms
            self._drop(LINK_LOST)
        elif self._state == _CLOSING:
            self._stop(CLOSED)

    def rx_room(self):
        """Bytes receive() can take now (draining events with next_event makes more)."""
        return len(self._rx) - (self._rx_end - self._rx_start)

    def rx_view(self):
        """Where a link reads the next bytes (then received(n)), so it needs no buffer of its own:
        the receive buffer's free room, rx_room() bytes (a new view only when bytes came)."""
        if self._rx_start:
            self._compact()
        end = self._rx_end
        if end != len(self._rx) - len(self._free_view):
            self._free_view = self._rx[end:]
        return self._free_view

    def received(self, n):
        """n bytes were read into the view rx_view() gave: taken as receive() takes them."""
        if self._state not in (_CONNECTING, _CONNECTED, _CLOSING) or not n:
            return  # nothing is listening: stale bytes of a dropped link
        self._rx_seen = True
        end = self._rx_end
        if self._skip:
            off = min(self._skip, n)
            self._skip -= off
            n -= off
            if n:  # the rest of the packet skipped: what follows it moves down
                self._rx[end : end + n] = self._rx[end + off : end + off + n]
        self._rx_end = end + n

    def receive(self, data, n=-1):
        """Take data[:n] (all of data when n < 0); returns how many bytes were taken."""
        if n < 0:
            n = len(data)
        if self._state not in (_CONNECTING, _CONNECTED, _CLOSING) or not n:
            return n  # nothing is listening: stale bytes of a dropped link
        self._rx_seen = True
        off = 0
        if self._skip:
            off = min(self._skip, n)
            self._skip -= off
            if off == n:
                return n
        rx = self._rx
        end = self._rx_end
        if end + n - off > len(rx) and self._rx_start:
            self._compact()
            end = self._rx_end
        take = min(n - off, len(rx) - end)
        if take <= 0:
            return off
        if off == 0 and take == len(data):
            rx[end : end + take] = data
        else:
            rx[end : end + take] = memoryview(data)[off : off + take]
        self._rx_end = end + take
        return off + take

    def sent(self, n):
        if n:
            self._tx_start += n
            if self._tx_start >= self._tx_end:
                self._tx_start = 0
                self._tx_end = 0
        if self._state == _CLOSING and self._tx_end == 0:
            self._stop(CLOSED)

    def poll(self, now_ms):
        """Advance the timers and queue what is due; the bytes to send now (or None)."""
        self._now = now_ms
        state = self._state
        if state == _OFFLINE:
            if not self._attempts or _ticks_diff(now_ms, self._at) >= 0:
                self._state = _LINK_WANTED
                self.want_link = True
                self.link_epoch += 1
                self._at = now_ms
            return None
        if state == _STOPPED:
            return None
        if state == _LINK_WANTED or state == _CONNECTING:
            if _ticks_diff(now_ms, self._at) >= self.connect_timeout_ms:
                self._drop(CONNECT_TIMEOUT)
                return None
        if self._rx_seen:
            self._rx_seen = False
            self._last_rx = now_ms
        if state == _CONNECTED:
            if _ticks_diff(now_ms, self._last_rx) >= self.keepalive_ms * 3 // 2:
                self._drop(DEAD_LINK)
                return None
            self._queue_due(now_ms)
        if self._tx_end == self._tx_start:
            return None
        return self._tx[self._tx_start : self._tx_end]

    def _queue_due(self, now_ms):
        if self._pubacks[0]:
            self._queue_pubacks()
        birth = self.inflight
        if self._slot_state[birth] == _QUEUED and not self._send_slot(birth, now_ms):
            return
        if self._sub_id < 0 and not self._queue_subscribe():
            return
        retry = self.retry_ms
        states = self._slot_state
        sent_at = self._slot_sent
        n = self.inflight
        for k in range(self.in_flight):
            i = (self._head + k) % n
            st = states[i]
            if st == _SENT and _ticks_diff(now_ms, sent_at[i]) >= retry:
                states[i] = _QUEUED
                st = _QUEUED
            if st == _QUEUED and not self._send_slot(i, now_ms):
                return
        if _ticks_diff(now_ms, self._last_tx) >= self.keepalive_ms or (
            not self._ping_out and _ticks_diff(now_ms, self._last_rx) >= self.keepalive_ms
        ):
            if self._tx_make_room(2):
                self._tx[self._tx_end] = 0xC0
                self._tx[self._tx_end + 1] = 0
                self._tx_end += 2
                self._ping_out = True
                self._last_tx = now_ms

    def _send_slot(self, i, now_ms):
        size = self._slot_meta[2 * i]
        if not self._tx_make_room(size):
            return False
        base = i * self.slot_size
        end = self._tx_end
        slots = self._slots
        if slots[base] & 0x08:
            self.retransmissions += 1
        self._tx[end : end + size] = self._slots[base : base + size]
        slots[base] |= 0x08  # any later copy is a retransmission: DUP
        self._tx_end = end + size
        self._slot_state[i] = _SENT
        self._slot_sent[i] = now_ms & _TICKS_MASK
        self._last_tx = now_ms
        return True

    def _queue_pubacks(self):
        acks = self._pubacks
        k = 0
        while k < _PUBACKS and acks[k] and self._tx_make_room(4):
            tx = self._tx
            e = self._tx_end
            pid = acks[k]
            tx[e] = 0x40
            tx[e + 1] = 2
            tx[e + 2] = pid >> 8
            tx[e + 3] = pid & 0xFF
            self._tx_end = e + 4
            k += 1
        if k:
            for j in range(_PUBACKS):
                acks[j] = acks[j + k] if j + k < _PUBACKS else 0
            self._last_tx = self._now

    def _queue_subscribe(self):
        t = self.command_topic
        rl = 2 + 2 + len(t) + 1
        if not self._tx_make_room(2 + rl):
            return False
        tx = self._tx
        e = self._tx_end
        self._sub_id = 0
        pid = self._alloc_id()
        self._sub_id = pid
        tx[e] = 0x82
        tx[e + 1] = rl
        tx[e + 2] = pid >> 8
        tx[e + 3] = pid & 0xFF
        e = _utf8_field(tx, e + 4, t)
        tx[e] = 1  # requested QoS
        self._tx_end = e + 1
        self._last_tx = self._now
        return True

    def _tx_make_room(self, n):
        if len(self._tx) - self._tx_end >= n:
            return True
        start = self._tx_start
        if not start:
            return False
        used = self._tx_end - start
        if len(self._tx) - used < n:
            return False
        self._tx[0:used] = self._tx[start : self._tx_end]
        self._tx_start = 0
        self._tx_end = used
        return True

    def _compact(self):
        start = self._rx_start
        used = self._rx_end - start
        if used:
            self._rx[0:used] = self._rx[start : self._rx_end]
        self._rx_start = 0
        self._rx_end = used

    def _reset_buffers(self):
        self._tx_start = self._tx_end = 0
        self._rx_start = self._rx_end = 0
        self._consumed = 0
        self._skip = 0
        self._rx_seen = False
        for j in range(_PUBACKS):
            self._pubacks[j] = 0
        self._ping_out = False
        self.subscribed = False
        self.topic = None
        self.payload = None

    def _drop(self, reason):
        """Leave the link (the link layer closes it: want_link is False) and back off."""
        self._reset_buffers()
        self._state = _OFFLINE
        self.want_link = False
        self._sub_id = 0
        self.reason = -reason  # DISCONNECTED comes with the next next_event
        self._attempts += 1
        base = self.backoff_min_ms << min(self._attempts - 1, 20)
        if base > self.backoff_max_ms:
            base = self.backoff_max_ms
        if self._random_below is not None:
            jitter = self._random_below(base // 2 + 1)
        else:
            import random

            jitter = random.getrandbits(30) % (base // 2 + 1)
        delay = base // 2 + jitter
        self.last_delay_ms = delay
        self._at = (self._now + delay) & _TICKS_MASK

    def _stop(self, reason):
        self._reset_buffers()
        was_linked = self._state != _OFFLINE
        self._state = _STOPPED
        self.want_link = False
        if was_linked:
            self.reason = -reason

    # -- incoming packets -------------------------------------------------------------------

    def next_event(self):
        """The next event (NONE when there is none yet); its details in the attributes."""
        try:
            return self._next_event()
        except ProtocolViolation as e:  # first: it is a MalformedPacket too
            self.protocol_errors += 1
            self.last_error = e
            self._drop(PROTOCOL)
        except MalformedPacket as e:
            self.malformed += 1
            self.last_error = e
            self._drop(MALFORMED)
        return self._next_event()

    def _next_event(self):
        if self.reason < 0:
            self.reason = -self.reason
            return DISCONNECTED
        if self._consumed:
            self._rx_start += self._consumed
            self._consumed = 0
            self.topic = None
            self.payload = None
            if self._rx_start == self._rx_end:
                self._rx_start = self._rx_end = 0
        while True:
            if self._state not in (_CONNECTING, _CONNECTED, _CLOSING):
                return NONE
            rx = self._rx
            s = self._rx_start
            end = self._rx_end
            if end - s < 2:
                return NONE
            rl = decode_length(rx, s + 1, end)
            if rl < 0:
                return NONE
            h = 1 + length_size(rl)
            total = h + rl
            kind = rx[s] >> 4
            flags = rx[s] & 0x0F
            if total > len(rx):
                if kind != _PUBLISH:
                    raise MalformedPacket("packet type %d of %d bytes" % (kind, total))
                if not self._skip_oversize(s, h, end, total, flags):
                    return NONE
                continue
            if end - s < total:
                return NONE
            p = s + h
            if kind == _PUBLISH:
                if (flags >> 1) & 3 and self._pubacks[_PUBACKS - 1]:
                    return NONE  # no room to remember its PUBACK: after the next poll
                self._consumed = total
                return self._publish_in(p, rl, flags)
            if kind not in (_CONNACK, _PUBACK, _SUBACK, _PINGRESP):
                raise ProtocolViolation("packet type %d from a server" % kind)
            if flags:
                raise MalformedPacket("packet type %d with flags %d" % (kind, flags))
            self._rx_start = s + total
            if self._rx_start == end:
                self._rx_start = self._rx_end = 0
            if self._state == _CONNECTING:
                if kind != _CONNACK:
                    raise ProtocolViolation("packet type %d before CONNACK" % kind)
                return self._connack(rx, p, rl)
            if kind == _CONNACK:
                raise ProtocolViolation("a second CONNACK")
            if kind == _PINGRESP:
                if rl:
                    raise MalformedPacket("PINGRESP with remaining length %d" % rl)
                self._ping_out = False
                continue
            if rl < 2 or (kind == _PUBACK and rl != 2):
                raise MalformedPacket("packet type %d with remaining length %d" % (kind, rl))
            pid = (rx[p] << 8) | rx[p + 1]
            if kind == _SUBACK:
                code = self._suback(pid, rl, rx[p + 2] if rl > 2 else 0x80)
                if code:
                    return code
                continue
            if self._puback(pid):
                return PUBACK

    def _connack(self, rx, p, rl):
        if rl != 2 or rx[p] & 0xFE:
            raise MalformedPacket("CONNACK with remaining length %d, flags %d" % (rl, rx[p]))
        code = rx[p + 1]
        if code > 5:
            raise MalformedPacket("CONNACK return code %d" % code)
        if code:
            self.refused_code = code
            self._drop(REFUSED)
            return self._next_event()
        self.session_present = bool(rx[p] & 1)
        self._state = _CONNECTED
        self.connects += 1
        self._attempts = 0
        self._ping_out = False
        self._sub_id = -1  # the SUBSCRIBE is due
        states = self._slot_state
        birth = self.inflight
        states[birth] = _FREE  # a fresh birth each connect: new id, no DUP
        self._slots[birth * self.slot_size] &= 0xF7
        self._set_id(birth, self._alloc_id())
        states[birth] = _QUEUED
        for i in range(self.inflight):
            if states[i] == _SENT:
                states[i] = _QUEUED
        return CONNECTED

    def _suback(self, pid, rl, code):
        if rl != 3:
            raise MalformedPacket("SUBACK with %d return codes (one asked)" % (rl - 2))
        if pid != self._sub_id:
            raise ProtocolViolation("SUBACK for packet id %d" % pid)
        self._sub_id = 0
        self.subscribed = code < 0x80
        if code == 0x80:
            self.sub_refused += 1
            return SUBSCRIBE_REFUSED
        if code > 1:
            raise MalformedPacket("SUBACK return code %d" % code)
        return NONE

    def _puback(self, pid):
        states = self._slot_state
        meta = self._slot_meta
        birth = self.inflight
        if states[birth] != _FREE and meta[2 * birth + 1] == pid:
            states[birth] = _FREE
            return False
        n = self.inflight
        for k in range(self.in_flight):
            i = (self._head + k) % n
            st = states[i]
            if (
                meta[2 * i + 1] == pid
                and st != _ACKED
                and (st == _SENT or self._slots[i * self.slot_size] & 8)
            ):
                states[i] = _ACKED
                while self.in_flight and states[self._head] == _ACKED:
                    states[self._head] = _FREE
                    self._head = (self._head + 1) % n
                    self.in_flight -= 1
                self.packet_id = pid
                return True
        self.stray_acks += 1
        return False

    def _publish_in(self, p, rl, flags):
        rx = self._rx
        qos = (flags >> 1) & 3
        if qos == 3:
            raise MalformedPacket("PUBLISH with QoS 3")
        if qos == 2:
            raise ProtocolViolation("PUBLISH with QoS 2 (never subscribed)")
        if qos == 0 and flags & 8:
            raise MalformedPacket("PUBLISH QoS 0 with DUP")
        if rl < 2:
            raise MalformedPacket("PUBLISH without a topic")
        end = p + rl
        tlen = (rx[p] << 8) | rx[p + 1]
        t = p + 2
        p = t + tlen
        if not tlen or p + (2 if qos else 0) > end:
            raise MalformedPacket("PUBLISH topic length %d in %d bytes" % (tlen, rl))
        for i in range(t, p):
            c = rx[i]
            if c == 0x23 or c == 0x2B or c == 0:
                raise MalformedPacket("PUBLISH topic with a wildcard or NUL")
        if qos:
            pid = (rx[p] << 8) | rx[p + 1]
            if not pid:
                raise MalformedPacket("PUBLISH with packet id 0")
            acks = self._pubacks  # its PUBACK by the next poll (the caller saw room)
            for j in range(_PUBACKS):
                if not acks[j]:
                    acks[j] = pid
                    break
            self.packet_id = pid
            p += 2
        self.topic = rx[t : t + tlen]
        self.payload = rx[p:end]
        self.qos = qos
        self.retain = bool(flags & 1)
        self.dup = bool(flags & 8)
        return MESSAGE

    def _skip_oversize(self, s, h, end, total, flags):
        """Discard a PUBLISH over max_packet (acknowledged when QoS 1); False: need more bytes."""
        rx = self._rx
        qos = (flags >> 1) & 3
        p = s + h
        if end - p < 2:
            return False
        tlen = (rx[p] << 8) | rx[p + 1]
        need = 2 + tlen + (2 if qos else 0)
        if end - p < need and end - s < len(rx):
            return False
        if qos == 1 and end - p >= need:
            if self._pubacks[_PUBACKS - 1]:
                return False
            pid = (rx[p + need - 2] << 8) | rx[p + need - 1]
            if pid:  # (0 is no packet id: nothing to acknowledge)
                acks = self._pubacks
                for j in range(_PUBACKS):
                    if not acks[j]:
                        acks[j] = pid
                        break
        self.oversize += 1
        self._skip = total - (end - s)
        self._rx_start = self._rx_end = 0
        return True
