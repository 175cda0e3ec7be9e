"""station_uplink.NtpLink (a board's SNTP over UDP) against a small SNTP server on loopback that
answers as a stratum-2 server does (RFC 5905 packet built with struct): the wall clock is set
from it, without the link ever blocking; a silent server leaves the clock unset and is asked
again after the retry time."""

import socket
import struct
import threading
import time

from relaypump.station_uplink import NtpLink
from relaypump.wallclock import WallClock

NTP_TO_UNIX = 2208988800


class SntpServer:
    def __init__(self, answer=True):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.answer = answer
        self.requests = 0
        self._stop = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self._stop:
            try:
                data, addr = self.sock.recvfrom(64)
            except OSError:
                continue
            self.requests += 1
            if not self.answer or len(data) < 48:
                continue
            now = time.time() + NTP_TO_UNIX
            sec, frac = int(now), int((now % 1) * 2**32)
            reply = struct.pack(">BBbbII4s", 0x24, 2, 6, -20, 0, 0, b"TEST")  # v4, server
            reply += struct.pack(">II", sec, frac)  # reference time
            reply += data[40:48]  # originate = the client's transmit time (its cookie)
            reply += struct.pack(">IIII", sec, frac, sec, frac)  # receive, transmit
            self.sock.sendto(reply, addr)

    def close(self):
        self._stop = True
        self.thread.join(1)
        self.sock.close()


def wait_for(predicate, timeout=30.0):  # wall time: generous for a loaded CI host
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def ticks():
    return int(time.monotonic() * 1000) & 0x3FFFFFFF


def test_the_clock_is_set_from_an_sntp_server_without_blocking():
    server = SntpServer()
    clock = WallClock()
    link = NtpLink(clock, {"server": "127.0.0.1"}, port=server.port)
    try:
        link.step(ticks())  # the request; the reply cannot be there yet
        assert server.requests <= 1 and not clock.synced
        deadline = time.monotonic() + 30
        while not clock.synced and time.monotonic() < deadline:
            link.step(ticks())  # non-blocking reads until the reply is there
            time.sleep(0.005)
        assert clock.synced and clock.syncs == 1 and link.errors == 0
        assert abs(clock.stamp(ticks()) - time.time()) <= 1
    finally:
        server.close()


def test_a_silent_server_leaves_the_clock_unset_and_is_asked_again_after_the_retry():
    server = SntpServer(answer=False)
    clock = WallClock(retry_ms=200)
    link = NtpLink(clock, {"server": "127.0.0.1"}, port=server.port)
    try:
        for now in range(0, 700, 10):  # the link's ms; a request at 0, 200, 400, 600
            link.step(now)
        wait_for(lambda: server.requests >= 4)
        time.sleep(0.1)  # anything more would have arrived by now
        assert server.requests == 4 and not clock.synced
    finally:
        server.close()
