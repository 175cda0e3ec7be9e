"""The event ring: order, overflow (oldest dropped and counted), clamping, no allocation per push."""

from relaypump import codes
from relaypump.events import EventRing
from support import ON_MICROPYTHON, bytes_allocated

VM_HEAP_KIB = 96


def test_events_come_out_oldest_first():
    ring = EventRing(4)
    assert ring.peek() is None and ring.pop() is None and not ring.discard()
    ring.push(codes.EVENT_SUCTION_LOW, codes.SEVERITY_WARNING, 0, 1534, 1000)
    ring.push(codes.EVENT_DRY_RUN, codes.SEVERITY_ALARM, 2, 312, 2000)
    assert ring.count == 2
    assert ring.peek() == (codes.EVENT_SUCTION_LOW, codes.SEVERITY_WARNING, 0, 1534, 1000)
    assert ring.count == 2  # peek leaves it
    assert ring.pop() == (codes.EVENT_SUCTION_LOW, codes.SEVERITY_WARNING, 0, 1534, 1000)
    assert ring.pop() == (codes.EVENT_DRY_RUN, codes.SEVERITY_ALARM, 2, 312, 2000)
    assert ring.pop() is None
    assert ring.count == 0 and ring.dropped == 0 and ring.pushed == 2


def test_overflow_overwrites_the_oldest_and_counts_the_drops():
    ring = EventRing(3)
    for n in range(1, 8):  # 7 events into 3 slots
        ring.push(n, 0, 0, n * 10, n)
    assert ring.count == 3
    assert ring.dropped == 4
    assert ring.pushed == 7
    assert [ring.pop()[0] for _ in range(3)] == [5, 6, 7]
    assert ring.pop() is None
    # the ring keeps working after wrapping around
    ring.push(9, 1, 1, -5, 99)
    assert ring.pop() == (9, 1, 1, -5, 99)


def test_peek_into_copies_without_removing_and_discard_removes():
    ring = EventRing(2)
    out = [None] * 5
    assert not ring.peek_into(out)
    ring.push(codes.EVENT_STATION_LOCKOUT, codes.SEVERITY_CRITICAL, 0, 3, 123456)
    assert ring.peek_into(out)
    assert out == [codes.EVENT_STATION_LOCKOUT, codes.SEVERITY_CRITICAL, 0, 3, 123456]
    assert ring.count == 1
    assert ring.discard()
    assert ring.count == 0


def test_values_are_clamped_to_the_frame_fields():
    ring = EventRing(4)
    ring.push(1, 0x1FF, 0x103, 2**40, 2**31 + 5)
    ring.push(1, 0, 0, -(2**40), 0)
    first = ring.pop()
    assert first[1] == 0xFF and first[2] == 0x03
    assert first[3] == 0x7FFFFFFF
    assert first[4] == (2**31 + 5) & 0x3FFFFFFF
    assert ring.pop()[3] == -0x80000000


def test_capacity_must_be_positive():
    try:
        EventRing(0)
    except ValueError:
        return
    raise AssertionError("a ring of 0 events was accepted")


def test_push_on_a_full_ring_allocates_nothing():
    ring = EventRing(8)
    for n in range(8):
        ring.push(n, 0, 0, n, n)

    def burst():
        for n in range(100):
            ring.push(codes.EVENT_SUCTION_LOW, 2, 1, n, n)

    used = bytes_allocated(burst)
    if ON_MICROPYTHON:
        assert used == 0, used
    else:
        assert used < 2000, used  # CPython: ints above 256 are objects; no per-push buffers
    assert ring.dropped == 100
