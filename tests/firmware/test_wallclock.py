"""The wall clock: SNTP request/reply (replies built here with struct), the unsynced marker, the
ticks wrap, resync timing and the checks that keep a stray or forged datagram out."""

import struct

from relaypump import wallclock
from relaypump.ticks import TICKS_MASK
from relaypump.wallclock import UNSYNCED_LIMIT, WallClock

NTP_TO_UNIX = 2208988800
T0 = 1767225600  # 2026-01-01 00:00:00 UTC


def server_reply(request, rx_unix_ms, tx_unix_ms, first=0x24, stratum=2, era=0):
    """What an NTP server answers: leap 0 / version 4 / mode 4 by default, originate = the
    request's transmit field, receive and transmit times as NTP seconds + fraction."""

    def ntp(unix_ms):
        seconds = unix_ms // 1000 + NTP_TO_UNIX - era * 2**32
        frac = ((unix_ms % 1000) << 32) // 1000
        return seconds, frac

    rx = ntp(rx_unix_ms)
    tx = ntp(tx_unix_ms)
    head = struct.pack(">BBbbII4s", first, stratum, 6, -20, 0, 0, b"GPS\x00")
    return (
        head
        + struct.pack(">II", *ntp(tx_unix_ms - 5000))  # reference time
        + bytes(request[40:48])  # originate = our cookie
        + struct.pack(">IIII", rx[0], rx[1], tx[0], tx[1])
    )


def asked(clock, now_ms):
    buf = bytearray(wallclock.NTP_SIZE)
    assert clock.request(buf, now_ms) == 48
    return buf


def test_the_request_is_a_client_request_with_a_cookie():
    clock = WallClock()
    one = bytes(asked(clock, 1000))
    two = bytes(asked(clock, 1000))
    assert one[0] == 0x23 and one[1:40] == bytes(39)  # leap 0, version 4, mode 3
    assert one[40:48] != two[40:48]  # each request its own cookie


def test_a_reply_sets_the_clock_to_the_servers_time_plus_half_the_network_delay():
    clock = WallClock()
    assert not clock.synced and clock.due(0)
    req = asked(clock, 10000)
    # server got it 30 ms after it left (its clock), held it 4 ms; the answer came 64 ms in all
    rx = T0 * 1000 + 250
    reply = server_reply(req, rx, rx + 4)
    assert clock.reply(reply, 10064)
    assert clock.synced and clock.syncs == 1
    # network round trip 60 ms: at arrival the time is T0 + 0.254 + 0.030 s
    assert clock.stamp(10064) == T0
    assert clock.stamp(10064 + 715) == T0  # 0.284 + 0.715 = 0.999
    assert clock.stamp(10064 + 716) == T0 + 1
    assert clock.wall_at(10064 - 285, 10064) == T0 - 1  # ticks before the reply, same boot
    assert not clock.due(10064)


def test_before_the_first_sync_frames_get_the_ticks_marker():
    clock = WallClock()
    assert clock.stamp(123456) == 123
    assert clock.stamp(TICKS_MASK) == TICKS_MASK // 1000 < UNSYNCED_LIMIT
    assert clock.wall_at(0, 1000) is None


def test_stray_or_bad_replies_change_nothing():
    rx = T0 * 1000
    cases = []
    clock = WallClock()
    req = asked(clock, 0)
    good = server_reply(req, rx, rx)
    cases.append(("no request out", WallClock(), good, 10))
    for at in range(24, 32):  # the originate time no longer our cookie: its tick, 0 or "RP"
        other = bytearray(good)
        other[at] ^= 1
        cases.append(("another cookie (byte %d)" % at, clock, bytes(other), 10))
    cases.append(("client mode", clock, server_reply(req, rx, rx, first=0x23), 10))
    cases.append(("broadcast mode", clock, server_reply(req, rx, rx, first=0x25), 10))
    cases.append(("version 2", clock, server_reply(req, rx, rx, first=0x14), 10))
    cases.append(("unsynchronised", clock, server_reply(req, rx, rx, first=0xE4), 10))
    cases.append(("kiss of death", clock, server_reply(req, rx, rx, stratum=0), 10))
    cases.append(("stratum 16", clock, server_reply(req, rx, rx, stratum=16), 10))
    cases.append(("short", clock, good[:47], 10))
    cases.append(("late", clock, good, clock.max_rtt_ms + 1))
    cases.append(("1970", clock, server_reply(req, 5000, 5000), 10))
    for name, c, data, at in cases:
        before = c.rejected
        assert not c.reply(data, at), name
        assert not c.synced and c.rejected == before + 1, name
    assert clock.reply(good, 10)  # the good one still works
    assert clock.stamp(10) == T0


def test_ntp_era_one_after_2036():
    clock = WallClock()
    req = asked(clock, 0)
    unix_2040 = 2208988800 * 1000  # 2040-01-01
    assert clock.reply(server_reply(req, unix_2040, unix_2040, era=1), 0)
    assert clock.stamp(0) == 2208988800


def test_the_clock_survives_the_ticks_wrap():
    clock = WallClock()
    start = TICKS_MASK - 5000  # 5 s before the wrap
    clock.set_time(T0, start)
    hour = 3600000
    now = start
    for h in range(1, 24 * 30 + 1):  # a month, read every hour
        now = (now + hour) & TICKS_MASK
        assert clock.stamp(now) == T0 + h * 3600
    assert clock.wall_at((now - 2000) & TICKS_MASK, now) == T0 + 24 * 30 * 3600 - 2


def test_resync_and_retry_timing():
    clock = WallClock(retry_ms=15000, resync_ms=3600000)
    req = asked(clock, 0)
    assert not clock.due(14999) and clock.due(15000)  # unanswered: ask again
    req = asked(clock, 15000)
    assert clock.reply(server_reply(req, T0 * 1000, T0 * 1000), 15010)
    assert not clock.due(15010 + 3599999) and clock.due(15010 + 3600000)


def test_a_later_sync_may_step_the_clock_and_is_counted():
    clock = WallClock()
    clock.set_time(T0, 0)
    clock.set_time(T0 + 1, 1000)  # on time: no step
    assert clock.steps == 0
    clock.set_time(T0 + 100, 2000)
    assert clock.steps == 1 and clock.stamp(2000) == T0 + 100
    try:
        clock.set_time(12345, 3000)
        raise AssertionError("took a time before 2001")
    except ValueError:
        pass


def test_config_section():  # last: it loads the config's code (VM heap)
    from relaypump import uplink_config

    assert uplink_config.ntp_section(None) == {
        "server": "pool.ntp.org",
        "resync_s": 3600,
        "max_rtt_ms": 2000,
    }
    for doc, field in (
        ({"server": ""}, "ntp.server"),
        ({"resync_s": 5}, "ntp.resync_s"),
        ({"max_rtt_ms": 2.5}, "ntp.max_rtt_ms"),
        ({"sever": "x"}, "ntp.sever"),
    ):
        try:
            uplink_config.ntp_section(doc)
        except ValueError as err:
            assert str(err).startswith(field), str(err)
            continue
        raise AssertionError("took %r" % doc)
