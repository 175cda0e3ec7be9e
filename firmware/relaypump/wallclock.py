"""The agent's wall clock: Unix time from an NTP server, carried on the board's ticks (sans-IO).

Source: NTP (RFC 5905, the SNTP client subset) over UDP port 123 to the configured server; the
runtime moves the 48-byte datagrams. Not the broker: MQTT 3.1.1 carries no time, and a time
message on a topic would be one more thing to trust. ``set_time`` takes a time from elsewhere (a
battery RTC, a test).

    clock.request(buf, now_ms)    fills buf[:48] with a client request; returns 48
    clock.reply(data, now_ms)     a datagram from the server: True when it set the clock
    clock.due(now_ms)             True when a request should go out (first sync, retry, resync)
    clock.stamp(now_ms)           timestamp_s for a frame made now
    clock.wall_at(ticks, now_ms)  Unix seconds of an earlier tick of this boot (fixing up frames)

Rules:
- Until the first sync ``synced`` is False and ``stamp`` returns the marker of an unsynced frame:
  ticks_ms // 1000 (below 1,073,742, far below UNSYNCED_LIMIT = 1e9 = 2001-09-09; the uplink
  schema reserves timestamps below it for this). The outbox stores each frame's ticks and replaces
  the marker with ``wall_at`` once the clock is set (same boot only: ticks do not survive a reboot).
- A reply is taken only when it answers our last request (its originate timestamp is the cookie
  we sent), is a server reply (mode 4) of version 3 or 4, is not "unsynchronised" (leap 3,
  stratum 0 or above 15), came back within max_rtt_ms, and says a time after UNSYNCED_LIMIT.
  Anything else is counted in ``rejected`` and changes nothing.
- The time at the reply's arrival is the server's transmit time plus half the round trip less the
  server's own hold (T3 + (rtt - (T3 - T2)) / 2), kept as whole seconds + ms at a reference tick.
  A later sync may step the clock either way (``steps`` counts steps over 2 s).
- NTP era: a transmit time below 2**31 s is taken as era 1 (after 2036-02-07).
- Ticks are the 2**30 ms ticks of relaypump.ticks. ``stamp``/``wall_at`` move the reference tick
  forward every hour, so the clock survives the ticks wrap as long as it is read at least every
  six days (the runtime reads it every telemetry period). ``wall_at`` is right for ticks less
  than six days old.
- Allocation: none while unsynced; a synced stamp makes one long int on MicroPython (Unix
  seconds exceed its 2**30 small ints), about 16 B.
"""

import struct

from micropython import const

from relaypump.ticks import ticks_diff as _ticks_diff

UNSYNCED_LIMIT = const(1000000000)  # timestamp_s below this: made before the clock was set
NTP_SIZE = const(48)
NTP_PORT = const(123)
_REBASE_MS = const(3600000)  # move the reference tick forward after an hour
_STEP_MS = const(2000)


def _frac_ms(frac):
    """An NTP fraction (1/2**32 s) in whole ms, rounded."""
    return (frac * 1000 + 0x80000000) >> 32


class WallClock:
    def __init__(self, max_rtt_ms=2000, retry_ms=15000, resync_ms=3600000):
        self.max_rtt_ms = max_rtt_ms
        self.retry_ms = retry_ms  # between requests while a request goes unanswered
        self.resync_ms = resync_ms  # between syncs once synced
        self.synced = False
        self.syncs = 0
        self.rejected = 0
        self.steps = 0
        self._ref_ticks = 0  # the tick at which the wall time was _ref_s + _ref_ms / 1000
        self._ref_s = 0
        self._ref_ms = 0
        self._asked_ms = -1  # the tick of our last request, its cookie (-1: none unanswered)
        self._synced_ms = 0

    # --- setting ------------------------------------------------------------------------------
    def set_time(self, unix_s, now_ms, ms=0):
        """The wall time at now_ms is unix_s + ms / 1000 (from any trusted source)."""
        if unix_s < UNSYNCED_LIMIT:
            raise ValueError("wall time %d is before 2001-09-09" % unix_s)
        if self.synced:
            drift = (unix_s - self.stamp(now_ms)) * 1000
            if drift > _STEP_MS or drift < -_STEP_MS:
                self.steps += 1
        self._ref_ticks = now_ms
        self._ref_s = unix_s
        self._ref_ms = ms
        self.synced = True
        self.syncs += 1
        self._synced_ms = now_ms
        self._asked_ms = -1

    def request(self, buf, now_ms):
        """A client request (version 4, mode 3) in buf[:48]; its transmit time is a cookie."""
        for i in range(NTP_SIZE):
            buf[i] = 0
        buf[0] = 0x23  # leap 0, version 4, mode 3 (client)
        # not a time (we have none): a value the reply must echo back as its originate time,
        # the request's tick and "RP"; a second request within the same ms takes the next tick
        # (its round trip then reads 1 ms long), so that no two requests in a row share one
        if now_ms == self._asked_ms:
            now_ms = (now_ms + 1) & 0x3FFFFFFF  # (ticks wrap at 2**30)
        struct.pack_into(">IHH", buf, 40, now_ms, 0, 0x5250)
        self._asked_ms = now_ms
        return NTP_SIZE

    def due(self, now_ms):
        if self._asked_ms >= 0:
            return _ticks_diff(now_ms, self._asked_ms) >= self.retry_ms
        if not self.synced:
            return True
        return _ticks_diff(now_ms, self._synced_ms) >= self.resync_ms

    def reply(self, data, now_ms):
        """Take a server's datagram; True when it set the clock."""
        asked = self._asked_ms
        if (
            asked < 0  # no request unanswered
            or len(data) < NTP_SIZE
            or data[0] & 7 != 4  # not a server's reply
            or (data[0] >> 3) & 7 not in (3, 4)  # not version 3 or 4
            or data[0] >> 6 == 3  # leap 3: unsynchronised
            or not 1 <= data[1] <= 15  # stratum 0: kiss-o'-death or unsynchronised
            # its originate time is not our cookie (request: the tick, 0, "RP"; a tuple, rare)
            or struct.unpack_from(">IHH", data, 24) != (asked, 0, 0x5250)
            or _ticks_diff(now_ms, asked) > self.max_rtt_ms
        ):
            self.rejected += 1
            return False
        rx_s, rx_frac, tx_s, tx_frac = struct.unpack_from(">IIII", data, 32)
        hold_ms = (tx_s - rx_s) * 1000 + _frac_ms(tx_frac) - _frac_ms(rx_frac)
        rtt_ms = _ticks_diff(now_ms, self._asked_ms) - hold_ms
        if rtt_ms < 0:
            rtt_ms = 0
        # (the numbers written here, not named: a name is a slot of the module's dict)
        if tx_s < 2147483648:  # half an era: era 1
            tx_s += 4294967296
        # 2208988800 s from 1900-01-01 (NTP) to 1970-01-01 (Unix)
        unix_ms = (tx_s - 2208988800) * 1000 + _frac_ms(tx_frac) + rtt_ms // 2
        if unix_ms < UNSYNCED_LIMIT * 1000:
            self.rejected += 1
            return False
        self.set_time(unix_ms // 1000, now_ms, unix_ms % 1000)
        return True

    # --- reading ------------------------------------------------------------------------------
    def _rebase(self, now_ms):
        d = _ticks_diff(now_ms, self._ref_ticks)
        if d >= _REBASE_MS:
            ms = self._ref_ms + d
            self._ref_s += ms // 1000
            self._ref_ms = ms % 1000
            self._ref_ticks = now_ms

    def stamp(self, now_ms):
        """timestamp_s of a frame made at now_ms: Unix seconds, or ticks // 1000 unsynced."""
        if not self.synced:
            return (now_ms & 0x3FFFFFFF) // 1000
        self._rebase(now_ms)
        return self._ref_s + (self._ref_ms + _ticks_diff(now_ms, self._ref_ticks)) // 1000

    def wall_at(self, ticks_ms, now_ms):
        """Unix seconds at an earlier tick of this boot; None while unsynced."""
        if not self.synced:
            return None
        self._rebase(now_ms)
        return self._ref_s + (self._ref_ms + _ticks_diff(ticks_ms, self._ref_ticks)) // 1000
