"""The uplink's socket layer: one TCP (optionally TLS) connection for an mqtt.Session, never
blocking. Only what MicroPython's ``socket``, ``select`` and ``ssl`` offer (CPython's modules have
the same names and run it in the host tests).

    link = Link(session, host, port, ca_file=None, server_hostname=None)
    link.step(now_ms)     # timers, connect, TLS handshake, read, write: as far as it goes now
    while (ev := session.next_event()) != mqtt.NONE: ...   # after every step
    link.wait(ms)         # optional: sleep until the socket has bytes (or ms passed)

Rules:
- The session decides (want_link, link_epoch); the link follows: it opens a socket when the
  session wants a link for a new epoch, closes it when the session no longer wants it (or wants a
  newer one), and reports link_up when TCP (and TLS) is established, link_down on EOF, a reset,
  a refused connect or a failed handshake (an end found while reading is reported at the start of
  the next step, so the events of the bytes before it come first). Timeouts are the session's
  (connect_timeout_ms).
- The socket is non-blocking from creation: connect returns at once (EINPROGRESS) and its outcome
  is read from select.poll (POLLOUT; POLLERR/POLLHUP or SO_ERROR where there is one = failed).
- Name resolution (getaddrinfo) blocks on a board; the address is resolved once and cached until a
  connect fails. An IP literal as host never blocks.
- TLS when ca_file is given: the broker's certificate must chain to that CA (PEM) and name
  server_hostname (default host); the context is made once. The handshake is non-blocking: with
  do_handshake() where the socket has it (CPython), else driven by the first reads and writes
  (MicroPython's ssl, which returns None while it would block).
- Reads go straight into the session's receive buffer (session.rx_view / received: no buffer
  of the link's own), no more than the session's rx_room (events drained make room); writes are
  session.poll's view, partial writes reported with session.sent(n). A read or write that would
  block is not an error.
Allocation: a step with nothing to read or write allocates nothing on MicroPython (readinto
returns None); CPython raises BlockingIOError for the same and allocates.
"""

import errno
import select
import socket

from micropython import const

TYPE_CHECKING = False
if TYPE_CHECKING:  # mypy only (MicroPython has no typing)
    from typing import Any  # noqa: F401  (used in type comments)

_CLOSED = const(0)
_CONNECTING = const(1)
_HANDSHAKE = const(2)
_UP = const(3)

_AGAIN = (
    errno.EAGAIN,
    getattr(errno, "EWOULDBLOCK", errno.EAGAIN),
    errno.EINPROGRESS,
    getattr(errno, "EALREADY", 114),
    115,  # EINPROGRESS on Linux / MicroPython's unix port
    119,  # EINPROGRESS of lwIP (ESP32)
)


class Link:
    def __init__(self, session, host, port, ca_file=None, server_hostname=None):
        self.session = session
        self.host = host
        self.port = port
        self.server_hostname = server_hostname or host
        self._ctx = None  # type: Any
        self._want_errors = ()
        if ca_file:
            import ssl

            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.verify_mode = ssl.CERT_REQUIRED  # type: ignore[attr-defined]  # (not in the stubs)
            ctx.load_verify_locations(cafile=ca_file)
            self._ctx = ctx
            want = []
            for name in ("SSLWantReadError", "SSLWantWriteError"):
                if hasattr(ssl, name):
                    want.append(getattr(ssl, name))
            self._want_errors = tuple(want)
        self._addr = None
        self._sock = None  # type: Any
        self._poller = None  # type: Any
        self._state = _CLOSED
        self._epoch = 0
        self._lost = False  # a read ended the connection; link_down is due
        self._readinto = None  # type: Any
        self._write = None  # type: Any
        self._cpython = False
        # counters
        self.opened = 0
        self.failed = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self.last_error = None

    @property
    def up(self):
        return self._state == _UP

    @property
    def socket(self):
        """The open socket (None while closed): a runtime that waits on its UART and on this with
        one select.poll registers it again whenever it changes."""
        return self._sock

    def step(self, now_ms):
        s = self.session
        if self._lost:
            self._lost = False
            s.link_down(now_ms)
        s.poll(now_ms)
        if self._state != _CLOSED and (not s.want_link or self._epoch != s.link_epoch):
            self.close()
        if self._state == _CLOSED and s.want_link and self._epoch != s.link_epoch:
            self._epoch = s.link_epoch
            self._open(now_ms)
        if self._state == _CONNECTING:
            self._check_connect(now_ms)
        if self._state == _HANDSHAKE:
            self._handshake(now_ms)
        if self._state == _UP:
            self._read(now_ms)
        if self._state == _UP:
            self._flush(now_ms)

    def wait(self, timeout_ms):
        """Block until the socket is readable (or writable while connecting) or timeout_ms pass."""
        if self._poller is None or self._state == _CLOSED:
            if timeout_ms > 0:
                self._sleep(timeout_ms)
            return
        if hasattr(self._poller, "ipoll"):
            for _ in self._poller.ipoll(timeout_ms):
                break
        else:
            self._poller.poll(timeout_ms)

    def _sleep(self, ms):
        import time

        if hasattr(time, "sleep_ms"):
            time.sleep_ms(ms)
        else:
            time.sleep(ms / 1000)

    def close(self):
        """Close the socket now (no DISCONNECT: session.close() is the polite way)."""
        sock = self._sock
        self._sock = None
        self._state = _CLOSED
        self._readinto = None
        self._write = None
        if self._poller is not None and sock is not None:
            try:
                self._poller.unregister(sock)
            except (OSError, KeyError, ValueError):
                pass
        self._poller = None
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass

    def abort(self, now_ms):
        """Kill the connection as a dying link would (no DISCONNECT) and tell the session."""
        self.close()
        self.session.link_down(now_ms)

    def _fail(self, now_ms, error):
        self.failed += 1
        self.last_error = error
        self.close()
        self.session.link_down(now_ms)

    def _lose(self, error):
        """The connection ended while reading: the session hears of it at the next step, after
        the application has taken the events of the bytes that came before the end."""
        self.failed += 1
        self.last_error = error
        self.close()
        self._lost = True

    def _open(self, now_ms):
        try:
            if self._addr is None:
                info = socket.getaddrinfo(self.host, self.port, 0, socket.SOCK_STREAM)[0]
                self._addr = (info[0], info[-1])
            family, addr = self._addr
            sock = socket.socket(family, socket.SOCK_STREAM)
        except OSError as e:
            self._addr = None
            self._fail(now_ms, e)
            return
        self._sock = sock
        self._state = _CONNECTING
        self.opened += 1
        sock.setblocking(False)
        try:
            sock.connect(addr)
        except OSError as e:
            if not self._would_block(e):
                self._addr = None
                self._fail(now_ms, e)
                return
        poller = select.poll()
        poller.register(sock, select.POLLOUT)
        self._poller = poller

    def _check_connect(self, now_ms):
        events = 0
        for entry in self._poller.poll(0):
            events |= entry[1]
        if not events:
            return
        sock = self._sock
        err = 0
        if hasattr(sock, "getsockopt") and hasattr(socket, "SO_ERROR"):
            err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err or events & (select.POLLERR | select.POLLHUP):
            self._addr = None
            self._fail(now_ms, OSError(err or errno.ECONNREFUSED, "connect failed"))
            return
        self._poller.modify(sock, select.POLLIN)
        if self._ctx is None:
            self._ready(now_ms)
            return
        self._poller.unregister(sock)  # CPython's wrap_socket takes the descriptor over
        try:
            self._sock = self._ctx.wrap_socket(
                sock, server_hostname=self.server_hostname, do_handshake_on_connect=False
            )
        except OSError as e:
            self._poller = None
            self._fail(now_ms, e)
            return
        self._poller.register(self._sock, select.POLLIN)
        self._state = _HANDSHAKE

    def _handshake(self, now_ms):
        sock = self._sock
        if not hasattr(sock, "do_handshake"):
            self._ready(now_ms)  # MicroPython: the first writes and reads complete it
            return
        try:
            sock.do_handshake()
        except OSError as e:
            if not self._would_block(e):
                self._fail(now_ms, e)
            return
        self._ready(now_ms)

    def _ready(self, now_ms):
        sock = self._sock
        self._cpython = hasattr(sock, "recv_into")
        if self._cpython:
            self._readinto = sock.recv_into
            self._write = sock.send
        else:
            self._readinto = sock.readinto
            self._write = sock.write
        self._state = _UP
        self.session.link_up(now_ms)

    def _would_block(self, e):
        if self._want_errors and isinstance(e, self._want_errors):
            return True
        return e.args[0] in _AGAIN if e.args else False

    def _read(self, now_ms):
        s = self.session
        readinto = self._readinto
        for _ in range(8):
            room = s.rx_room()
            if not room:
                return
            try:
                n = readinto(s.rx_view(), room)
            except OSError as e:
                if not self._would_block(e):
                    self._lose(e)
                return
            if n is None:
                return  # MicroPython: nothing waiting
            if n == 0:
                self._lose(OSError("connection closed by the broker"))
                return
            self.bytes_in += n
            s.received(n)

    def _flush(self, now_ms):
        s = self.session
        write = self._write
        for _ in range(4):
            out = s.poll(now_ms)
            if out is None:
                return
            try:
                n = write(out)
            except OSError as e:
                if not self._would_block(e):
                    self._fail(now_ms, e)
                return
            if not n:
                return  # would block (MicroPython: None)
            self.bytes_out += n
            s.sent(n)
            if n < len(out):
                return
