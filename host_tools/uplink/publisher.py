"""A bulk QoS 1 publisher over MQTT 3.1.1 for pumpreplay: packets packed straight into one output
buffer, PUBACKs read in bulk, no object per message.

Why not paho-mqtt (the other tools' client, host_tools/uplink/broker.py): per message paho makes
an MQTTMessage and a MessageInfo (with its Condition), and per PUBACK a Properties and a
ReasonCode, reading each packet with three recv calls; about 25 us of CPU a frame (36,000 frames
per CPU second measured with the log's reading), where a season's replay wants 20,000 frames
a wall second on a shared machine. This client does only what a replay needs:

- CONNECT (clean session, client id, user name and password, keepalive); CONNACK: a refusal is a
  ToolError naming the reason (exit 4). Plain TCP, or TLS with the CA given (the broker's
  certificate and host name checked, as paho's tls_set does).
- PUBLISH QoS 1, retain off, in publish order over the one connection (MQTT keeps a client's QoS 1
  messages in order towards each subscriber); packet ids 1..65535 in turn, at most ``window``
  (<= 65535) awaiting their PUBACK, so no id is in use twice. A PUBACK for an id not in flight,
  or any packet a publisher does not expect, is a protocol error (ToolError, exit 4).
- Output is buffered: it leaves when 64 KiB are queued and at every ``pump`` (every wait), so a
  burst goes out in full segments and nothing is held back while the replay waits.
- Keepalive: a PINGREQ after keepalive/2 s without sending; the broker closing the connection,
  or an error on it, is a ToolError naming how many messages were acknowledged. So is a broker
  that stays silent (frozen: its kernel still takes the bytes) for 1.5 x keepalive (60 s with
  keepalive 0) while a PUBACK or a PINGRESP is awaited, as MQTT's keepalive rule has it for the
  server; the replay would otherwise wait for the window forever.
- ``stop``: a list a signal handler appends to; a full window waits for the broker only until
  then (Interrupted), so a broker that stopped acknowledging cannot hold a Ctrl-C.
"""

from __future__ import annotations

import select
import socket
import ssl
import struct
import time

from host_tools.uplink import broker

FLUSH_AT = 1 << 16  # bytes queued before they are sent without waiting for a pump
_PUBACK = 0x40
_PINGRESP = 0xD0
_CONNACK_REASONS = {
    1: "unacceptable protocol version",
    2: "client identifier rejected",
    3: "server unavailable",
    4: "bad user name or password",
    5: "not authorized",
}


class Interrupted(Exception):
    """A signal asked the replay to stop."""


def _str16(text: str | bytes) -> bytes:
    raw = text.encode() if isinstance(text, str) else text
    return struct.pack(">H", len(raw)) + raw


def _remaining(n: int) -> bytes:
    """MQTT's variable-length 'remaining length'."""
    out = bytearray()
    while True:
        n, digit = n >> 7, n & 0x7F
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def connect_packet(client_id: str, keepalive: int, user: str | None, password: str | None):
    flags = 0x02  # clean session
    payload = _str16(client_id)
    if user is not None:
        flags |= 0x80
        payload += _str16(user)
        if password is not None:
            flags |= 0x40
            payload += _str16(password)
    var = _str16("MQTT") + struct.pack(">BBH", 4, flags, keepalive)
    return b"\x10" + _remaining(len(var) + len(payload)) + var + payload


class Publisher:
    """QoS 1 publishes with at most `window` awaiting their PUBACK (see the module's rules)."""

    def __init__(self, args, window: int, stop: list | None = None):
        if not 1 <= window <= 65535:
            raise ValueError("window must be 1..65535")
        self.args = args
        self.window = window
        self.stop = [] if stop is None else stop
        self.inflight = 0
        self.published = 0
        self.acked = 0
        self.sock: socket.socket | None = None
        self._out = bytearray()
        self._in = bytearray()
        self._mid = 0
        self._waiting: set[int] = set()  # packet ids awaiting their PUBACK
        self._heads: dict[str, bytes] = {}  # topic -> its PUBLISH's topic name field
        self._keepalive = 0
        self._last_sent = 0.0
        self._ping_out = False  # a PINGREQ awaits its PINGRESP
        self._heard = 0.0  # the broker's last bytes, or when the wait for them began

    # ---- connection -----------------------------------------------------------------------

    def connect(self, host: str, port: int, keepalive: int, timeout: float = 10.0) -> None:
        args = self.args
        context = broker.ca_context(args.ca) if args.ca else None  # a bad CA file: exit 2
        secret = broker.password(args)  # an unreadable file, or one without --user: exit 2
        try:
            sock = socket.create_connection((host, port), timeout=timeout)
            if context is not None:
                sock = context.wrap_socket(sock, server_hostname=host)
        except (OSError, ssl.SSLError) as err:
            raise broker.ToolError(
                f"cannot reach the broker at {host}:{port}: {err.strerror or err}", code=4
            ) from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        user = args.user
        self.sock = sock
        self._keepalive = keepalive
        self._answer_s = 1.5 * keepalive if keepalive else 60.0
        self._out += connect_packet(args.client_id or "", keepalive, user, secret if user else None)
        try:
            sock.sendall(self._out)
            del self._out[:]
            connack = self._read_exactly(4, timeout)
        except TimeoutError:
            raise broker.ToolError(
                f"no answer from the broker within {timeout:g} s", code=4
            ) from None
        except OSError as err:
            raise broker.ToolError(
                f"the broker went away while connecting: {err}", code=4
            ) from None
        if connack is None:
            raise broker.ToolError("the broker closed the connection before its CONNACK", code=4)
        if connack[0] != 0x20 or connack[1] != 2:
            raise broker.ToolError(f"the broker answered CONNECT with {connack.hex()}", code=4)
        if connack[3]:
            why = _CONNACK_REASONS.get(connack[3], f"code {connack[3]}")
            raise broker.ToolError(f"the broker refused the connection: {why}", code=4)
        sock.setblocking(False)
        self._last_sent = time.monotonic()

    def _read_exactly(self, n: int, timeout: float) -> bytes | None:
        """n bytes, None when the broker closes first (TimeoutError after timeout s)."""
        assert self.sock is not None
        self.sock.settimeout(timeout)
        got = b""
        while len(got) < n:
            part = self.sock.recv(n - len(got))
            if not part:
                return None
            got += part
        return got

    def _lost(self, why: str) -> broker.ToolError:
        return broker.ToolError(
            f"lost the broker after {self.acked} acknowledged messages ({why})", code=4
        )

    # ---- I/O ------------------------------------------------------------------------------

    def _send(self) -> None:
        """Send what the socket takes now (never blocks)."""
        out = self._out
        while out:
            try:
                sent = self.sock.send(out)  # type: ignore[union-attr]
            except (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
                return
            except OSError as err:
                raise self._lost(str(err)) from None
            del out[:sent]
            self._last_sent = time.monotonic()

    def _receive(self) -> None:
        """Read everything there is, handle every whole packet."""
        sock = self.sock
        buf = self._in
        while True:
            try:
                data = sock.recv(1 << 16)  # type: ignore[union-attr]
            except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                break
            except OSError as err:
                raise self._lost(str(err)) from None
            if not data:
                raise self._lost("the broker closed the connection")
            buf += data
            self._heard = time.monotonic()
        waiting = self._waiting
        pos, end = 0, len(buf)
        while end - pos >= 2:
            kind, length = buf[pos], buf[pos + 1]
            if kind == _PUBACK and length == 2:  # the stream is almost all PUBACKs
                if end - pos < 4:
                    break
                mid = (buf[pos + 2] << 8) | buf[pos + 3]
                if mid not in waiting:
                    raise self._lost(f"PUBACK for packet id {mid}, which is not in flight")
                waiting.discard(mid)
                pos += 4
            elif kind == _PINGRESP and length == 0:
                self._ping_out = False
                pos += 2
            else:
                raise self._lost(f"unexpected packet {bytes(buf[pos : pos + 8]).hex()}")
        del buf[:pos]
        self.acked += self.inflight - len(waiting)
        self.inflight = len(waiting)

    def pump(self, timeout: float) -> None:
        """Send what is queued, wait up to timeout for the broker, read what it sent, keepalive."""
        if self.sock is None:
            raise self._lost("not connected")
        now = time.monotonic()
        if self._keepalive and now - self._last_sent >= self._keepalive / 2:
            self._awaiting(now)
            self._ping_out = True
            self._out += b"\xc0\x00"  # PINGREQ
        self._send()
        pending = isinstance(self.sock, ssl.SSLSocket) and self.sock.pending()
        writing = [self.sock] if self._out else []
        ready, _, _ = select.select([self.sock], writing, [], 0 if pending else timeout)
        if ready or pending:
            self._receive()
        self._send()
        if (self.inflight or self._ping_out) and time.monotonic() - self._heard > self._answer_s:
            raise self._lost(f"no answer for {self._answer_s:g} s")

    def _awaiting(self, now: float) -> None:
        """Something is sent that wants an answer: when nothing else did, the wait starts now."""
        if not self.inflight and not self._ping_out:
            self._heard = now

    # ---- publishing -----------------------------------------------------------------------

    def publish(self, topic: str, payload: bytes) -> None:
        if self.inflight >= self.window:  # full: wait until half is acknowledged (bursts)
            while self.inflight > self.window // 2:
                self.pump(0.5)
                if self.stop:
                    raise Interrupted
        if not self.inflight and not self._ping_out:
            self._heard = time.monotonic()
        head = self._heads.get(topic)
        if head is None:
            head = self._heads[topic] = _str16(topic)
        mid = self._mid % 65535 + 1
        self._mid = mid
        self._waiting.add(mid)
        out = self._out
        out.append(0x32)  # PUBLISH, QoS 1, retain off
        length = len(head) + 2 + len(payload)
        if length < 128:
            out.append(length)
        else:
            out += _remaining(length)
        out += head
        out.append(mid >> 8)
        out.append(mid & 0xFF)
        out += payload
        self.inflight += 1
        self.published += 1
        if len(out) >= FLUSH_AT:
            self._send()

    def drain(self, timeout: float) -> bool:
        """Until every publish is acknowledged (True) or timeout (False)."""
        deadline = time.monotonic() + timeout
        while self.inflight > 0 and time.monotonic() < deadline:
            self.pump(0.1)
        return self.inflight == 0

    def disconnect(self) -> None:
        if self.sock is None:
            return
        try:
            self.sock.settimeout(1.0)  # what is still queued, then DISCONNECT
            self.sock.sendall(bytes(self._out) + b"\xe0\x00")
        except OSError:
            pass
        finally:
            self.sock.close()
            self.sock = None
