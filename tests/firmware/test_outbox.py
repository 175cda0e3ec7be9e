"""The durable outbox: order, acks, a full ring, reboots, and a power loss at every byte of a write.

A small in-memory file system (FlashFS, files as bytearrays with seek/readinto and "r+b") stands in
for the board's flash so a power loss can be injected after any number of bytes; the real file
system is used too (a temporary directory on CPython, MEMFS inside the MicroPython VM).
"""

import os

from relaypump import outbox, uplink
from relaypump.codes import EVENT_PUMP_STARTED, EVENT_TELEMETRY_DROPPED
from relaypump.wallclock import UNSYNCED_LIMIT, WallClock
from support import ON_MICROPYTHON, broker_answer, bytes_allocated

VM_HEAP_KIB = 512  # the fake flash copies whole files and the VM cannot collect inside a test
STATION = 7
T0 = 1767225600  # 2026-01-01 00:00:00 UTC


class PowerLoss(Exception):
    pass


class _File:
    def __init__(self, fs, path):
        self.fs = fs
        self.path = path
        self.pos = 0

    def seek(self, pos, whence=0):
        self.pos = pos
        return pos

    def write(self, data):
        fs = self.fs
        data = bytes(data)
        budget = fs.bytes_before_crash
        if budget is not None and len(data) > budget:
            data = data[:budget]
            fs.bytes_before_crash = None
            self._put(data)
            raise PowerLoss("power lost while writing " + self.path)
        if budget is not None:
            fs.bytes_before_crash = budget - len(data)
        self._put(data)
        fs.bytes_written += len(data)
        return len(data)

    def _put(self, data):
        f = self.fs.files[self.path]
        end = self.pos + len(data)
        if end > len(f):
            f.extend(bytes(end - len(f)))
        f[self.pos : end] = data
        self.pos = end

    def read(self):
        data = bytes(self.fs.files[self.path][self.pos :])
        self.pos += len(data)
        return data

    def readinto(self, buf):
        data = self.fs.files[self.path][self.pos : self.pos + len(buf)]
        buf[: len(data)] = data
        self.pos += len(data)
        return len(data)

    def flush(self):
        pass

    def close(self):
        pass


class FlashFS:
    """Files in a dict of bytearrays; rename replaces (littlefs)."""

    def __init__(self):
        self.files = {}
        self.bytes_before_crash = None
        self.bytes_written = 0

    def open(self, path, mode):
        if "w" in mode:
            self.files[path] = bytearray()
        elif path not in self.files:
            raise OSError(2, "ENOENT " + path)
        return _File(self, path)

    def rename(self, old, new):
        if old not in self.files:
            raise OSError(2, "ENOENT " + old)
        self.files[new] = self.files.pop(old)

    def remove(self, path):
        if path not in self.files:
            raise OSError(2, "ENOENT " + path)
        del self.files[path]

    def copy(self):
        other = FlashFS()
        for path in self.files:
            other.files[path] = bytearray(self.files[path])
        return other


def synced_clock(now_ms=0):
    clock = WallClock()
    clock.set_time(T0, now_ms)
    return clock


def telemetry(mark):
    """A telemetry frame told apart by its suction value (seq and time are the outbox's)."""
    values = [STATION, 0, 0, mark, 0, 0, 0, 0, 0, 0, 1, 0, 0] + [0] * 18
    buf = bytearray(uplink.TELEMETRY_SIZE)
    uplink.encode_telemetry(buf, values)
    return buf


def event(mark, code=EVENT_PUMP_STARTED):
    buf = bytearray(uplink.EVENT_SIZE)
    uplink.encode_event(buf, [STATION, 0, 0, code, 1, 1, mark])
    return buf


def open_box(fs, clock=None, now_ms=0, segments=1, **kw):
    return outbox.Outbox(
        fs, "/ob", STATION, clock or synced_clock(), now_ms, segments, fs.open, **kw
    )


def describe(frame):
    """(kind, mark, seq, timestamp) of a frame."""
    kind, values = uplink.decode_frame(bytes(frame), b"")
    if kind == uplink.KIND_TELEMETRY:
        return ("T", values[3], values[1], values[2])
    return ("E", values[6], values[1], values[2], values[3])


def drain(box, now_ms=0, ack=True):
    """Every frame the box hands out, in order; acknowledged unless ack is False."""
    got = []
    while True:
        token = box.take(now_ms)
        if not token:
            return got
        got.append(describe(box.frame))
        if ack:
            assert box.acked(token)


def marks(frames):
    return [(f[0], f[1]) for f in frames]


def test_frames_leave_in_order_with_their_seq_and_time():
    fs = FlashFS()
    box = open_box(fs)
    box.append(telemetry(1), 0)
    box.append(event(2), 1500)
    box.append(telemetry(3), 10000)
    got = drain(box, 10000)
    assert marks(got) == [("T", 1), ("E", 2), ("T", 3)]
    seqs = [f[2] for f in got]
    assert seqs == [seqs[0], seqs[0] + 1, seqs[0] + 2]
    assert [f[3] for f in got] == [T0, T0 + 1, T0 + 10]
    assert box.pending == 0 and box.take(0) == 0


def test_a_frame_leaves_only_through_its_ack_and_survives_a_reboot():
    fs = FlashFS()
    box = open_box(fs)
    for mark in range(5):
        box.append(telemetry(mark), mark * 10000)
    first = box.take(0)
    second = box.take(0)
    assert describe(box.frame)[1] == 1
    assert box.acked(first)
    assert not box.acked(first)  # once
    box.flush(50000)
    # reboot: the unacknowledged ones (the one handed out, too) come back in order
    again = open_box(fs)
    got = drain(again)
    assert marks(got) == [("T", 1), ("T", 2), ("T", 3), ("T", 4)]
    del second


def test_a_frame_given_back_goes_out_again_in_its_place():
    box = open_box(FlashFS())
    for mark in range(3):
        box.append(telemetry(mark), 0)
    first = box.take(0)
    second = box.take(0)
    assert box.give_back(second) and not box.give_back(second)
    assert box.acked(first)
    assert marks(drain(box)) == [("T", 1), ("T", 2)]
    box.append(telemetry(3), 0)
    box.take(0)
    box.rewind()  # a new session: what was handed out waits again
    assert marks(drain(box)) == [("T", 3)]


def test_acks_not_yet_saved_are_sent_again_at_least_once():
    fs = FlashFS()
    box = open_box(fs, save_ms=60000)
    for mark in range(3):
        box.append(telemetry(mark), 0)
    drain(box)
    assert not box.poll(30000)  # the mark moved, but save_ms has not passed
    again = open_box(fs.copy())
    assert marks(drain(again)) == [("T", 0), ("T", 1), ("T", 2)]  # same seq: receivers drop them
    assert box.poll(60000)
    assert drain(open_box(fs)) == []


def test_out_of_order_acks_and_drops_do_not_come_back_after_a_flush():
    fs = FlashFS()
    box = open_box(fs)
    for mark in range(4):
        box.append(telemetry(mark), 0)
    tokens = [box.take(0) for _ in range(4)]
    assert box.acked(tokens[2]) and box.acked(tokens[1])  # above the mark: the gone list
    box.flush(0)
    assert len(fs.files["/ob.hdr.b"]) < 64  # a small header: inlined by littlefs
    assert marks(drain(open_box(fs.copy()))) == [("T", 0), ("T", 3)]
    # without the flush they would come again (at least once)
    fs2 = FlashFS()
    box = open_box(fs2)
    for mark in range(4):
        box.append(telemetry(mark), 0)
    tokens = [box.take(0) for _ in range(4)]
    box.acked(tokens[2])
    assert marks(drain(open_box(fs2))) == [("T", m) for m in range(4)]


def test_seq_never_repeats_across_reboots_also_for_frames_outside_the_outbox():
    fs = FlashFS()
    seen = []
    for boot in range(4):
        box = open_box(fs)
        seen.append(box.next_seq())  # an ack
        box.append(telemetry(boot), 0)
        # frames of earlier boots come again (not flushed): same seq, receivers drop them
        seen += [f[2] for f in drain(box) if f[1] == boot]
        seen.append(box.next_seq())
        # no flush: power lost
    assert len(set(seen)) == len(seen)
    assert seen == sorted(seen)


def test_seq_lease_is_saved_before_it_runs_out():
    fs = FlashFS()
    box = open_box(fs)
    start = box.next_seq()
    for _ in range(outbox.LEASE + 3):
        last = box.next_seq()
    assert last == start + outbox.LEASE + 3
    assert open_box(fs).next_seq() > last


def test_a_lost_header_does_not_make_seq_repeat():
    fs = FlashFS()
    box = open_box(fs)
    for mark in range(3):
        box.append(telemetry(mark), 0)
    for path in list(fs.files):
        if ".hdr" in path:
            del fs.files[path]
    again = open_box(fs)
    got = drain(again)
    assert marks(got) == [("T", 0), ("T", 1), ("T", 2)]
    assert again.next_seq() > got[-1][2]


def test_a_lost_header_does_not_let_a_later_boot_correct_an_earlier_boots_times():
    fs = FlashFS()
    box = open_box(fs, WallClock(), hold_unsynced_ms=0)
    box.append(telemetry(1), 7000)  # unsynced, boot 1
    for path in list(fs.files):
        if ".hdr" in path:
            del fs.files[path]
    again = open_box(fs, synced_clock())
    assert again.boot == 2
    assert drain(again, 7000)[0][3] == 7  # still the marker, not a time made from another boot


def test_a_full_ring_drops_the_oldest_telemetry_never_an_event_and_reports_it():
    fs = FlashFS()
    box = open_box(fs)
    cap = box.capacity
    assert cap == outbox.SEGMENT_SLOTS - 1
    box.append(event(100), 0)
    for mark in range(cap - 1):
        box.append(telemetry(mark), 0)
    assert box.pending == cap
    box.append(event(101), 0)  # drops telemetry 0
    box.append(telemetry(500), 0)  # drops telemetry 1
    assert box.dropped_telemetry == 2 and box.pending == cap
    got = drain(box, ack=False)
    assert got[0][:2] == ("E", 100)
    assert ("T", 0) not in marks(got) and ("T", 1) not in marks(got)
    assert marks(got)[-2:] == [("E", 101), ("T", 500)]
    # the link comes back: acks make room, the next append first reports the total
    box.rewind()
    drain(box)
    box.append(telemetry(600), 0)
    got = drain(box)
    assert got[0][0] == "E" and got[0][4] == EVENT_TELEMETRY_DROPPED and got[0][1] == 2
    assert marks(got)[1:] == [("T", 600)]
    # the count and the report survive a reboot: nothing reported twice while nothing new dropped
    box.flush(0)
    again = open_box(fs)
    assert again.dropped_telemetry == 2
    again.append(telemetry(700), 0)
    assert marks(drain(again)) == [("T", 700)]


def test_frames_encoded_in_the_outbox_room_go_out_whole_also_behind_a_drop_report():
    fs = FlashFS()
    box = open_box(fs)
    for mark in range(box.capacity + 1):  # one telemetry dropped: a report is due
        box.append(telemetry(mark), 0)
    assert box.dropped_telemetry == 1
    drain(box)  # room for the report and the frame
    frame = box.room(uplink.KIND_TELEMETRY)
    frame[:] = telemetry(900)  # encoded in place (as station_uplink does with the codec)
    assert box.append(frame, 0)
    frame = box.room(uplink.KIND_EVENT)
    frame[:] = event(901)
    assert box.append(frame, 0)
    got = drain(box)
    assert got[0][0] == "E" and got[0][4] == EVENT_TELEMETRY_DROPPED  # the report first
    assert marks(got)[1:] == [("T", 900), ("E", 901)]  # then the frames, whole
    seqs = [f[2] for f in got]
    assert seqs == sorted(seqs) and len(set(seqs)) == 3


def test_a_ring_full_of_events_refuses_the_newest_and_counts_it():
    fs = FlashFS()
    box = open_box(fs)
    for mark in range(box.capacity):
        box.append(event(mark), 0)
    assert not box.append(event(999), 0)
    assert not box.append(telemetry(999), 0)
    assert box.dropped_events == 1 and box.dropped_telemetry == 1
    got = drain(box, ack=False)
    assert marks(got) == [("E", m) for m in range(box.capacity)]  # every event kept, in order


def test_bad_frames_are_refused_with_a_typed_error():
    box = open_box(FlashFS())
    for bad in (b"", bytes(10), telemetry(1)[:40], event(1) + b"\x00"):
        try:
            box.append(bad, 0)
        except outbox.OutboxError:
            continue
        raise AssertionError("accepted %r" % bad)
    ack = bytearray(uplink.ACK_SIZE)
    uplink.encode_ack(ack, [STATION, 0, 0, 1, 0])
    try:
        box.append(ack, 0)
        raise AssertionError("took an ack")
    except outbox.OutboxError as err:
        assert "kind 4" in str(err)


def test_segments_outside_what_the_ring_can_number_are_refused():
    for segments in (0, 106):  # a ring entry numbers its slot in 12 bits: 105 x 39 = 4095 slots
        try:
            open_box(FlashFS(), segments=segments)
        except ValueError as err:
            assert "1..105" in str(err)
            continue
        raise AssertionError("took %d segments" % segments)


def test_the_largest_ring_numbers_its_last_slot():
    fs = FlashFS()
    box = open_box(fs, segments=105)
    box._last_written = box.slots - 3  # the next appends go into the last two slots, then slot 0
    for mark in range(3):
        box.append(event(mark) if mark == 1 else telemetry(mark), mark)
    box.give_back(box.take(0))  # handed out and back: its state bits change, its slot does not
    assert box.waiting() == 3
    again = open_box(fs, segments=105)  # and as loaded from the segment files
    assert marks(drain(box)) == marks(drain(again)) == [("T", 0), ("E", 1), ("T", 2)]


def _state(fs):
    """What a reboot would send: marks in order, the dropped total."""
    box = open_box(fs.copy())
    return marks(drain(box, ack=False)), box.dropped_telemetry


def _power_loss_at_every_byte(prepare, frame, vm_bytes=(0, 12, 20, 60, 100, 103)):
    fs = FlashFS()
    box = prepare(fs)
    before = _state(fs)
    box.append(frame, 0)  # the same append, no crash, once: what it writes
    after = _state(fs)
    assert after != before
    # every byte on CPython; in the VM (no garbage collection inside a test) the field borders
    every = range(outbox.SLOT_SIZE)
    for k in vm_bytes if ON_MICROPYTHON else every:
        crashed = FlashFS()
        box = prepare(crashed)
        crashed.bytes_before_crash = k
        try:
            box.append(frame, 0)
            raise AssertionError("no power loss at byte %d" % k)
        except PowerLoss:
            pass
        assert _state(crashed) == before, k


def test_power_loss_at_any_byte_of_an_append_keeps_the_previous_ring():
    def prepare(fs):
        box = open_box(fs)
        for mark in range(3):
            box.append(telemetry(mark), 0)
        token = box.take(0)
        box.acked(token)  # the freed slot's old entry is covered by the (unsaved) ack only
        box.append(event(9), 0)
        return box

    _power_loss_at_every_byte(prepare, telemetry(77))


def test_power_loss_at_any_byte_of_an_append_into_a_full_ring():
    def prepare(fs):
        box = open_box(fs)
        box.append(event(100), 0)
        for mark in range(box.capacity - 1):
            box.append(telemetry(mark), 0)
        return box

    _power_loss_at_every_byte(prepare, telemetry(77), (20, 100))


def test_power_loss_in_an_append_that_saves_the_seq_lease():
    def prepare(fs):
        box = open_box(fs)
        box.append(telemetry(1), 0)
        while box._seq < box._lease:  # the next append must save a new lease first
            box.next_seq()
        return box

    fs = FlashFS()
    box = prepare(fs)
    used = box._seq - 1  # the last seq handed out
    before = _state(fs)
    written = fs.bytes_written
    box.append(telemetry(2), 0)
    total = fs.bytes_written - written
    assert total > outbox.SLOT_SIZE  # the header, then the slot
    step = 7 if ON_MICROPYTHON else 1
    for k in range(0, total, step):
        crashed = FlashFS()
        box = prepare(crashed)
        crashed.bytes_before_crash = k
        try:
            box.append(telemetry(2), 0)
            raise AssertionError("no power loss at byte %d" % k)
        except PowerLoss:
            pass
        assert _state(crashed) == before, k
        assert open_box(crashed).next_seq() > used, k  # no seq handed out before comes again


def test_a_full_ring_found_at_boot_drops_its_oldest_telemetry_once():
    fs = FlashFS()
    box = open_box(fs)
    for mark in range(box.capacity):
        box.append(telemetry(mark), 0)
    box.append(telemetry(900), 0)  # writes the spare slot, drops telemetry 0
    # power lost now: every slot on flash holds a waiting entry
    again = open_box(fs)
    assert again.pending == again.capacity
    assert again.dropped_telemetry == 1  # the append that dropped it had counted it already
    got = marks(drain(again, ack=False))
    assert got[0] == ("T", 1) and got[-1] == ("T", 900)


def test_a_corrupt_slot_read_back_is_skipped_and_counted():
    fs = FlashFS()
    box = open_box(fs)
    for mark in range(3):
        box.append(telemetry(mark), 0)
    fs.files["/ob.0"][outbox.SLOT_SIZE + 30] ^= 0x40  # the second frame decays
    assert marks(drain(box)) == [("T", 0), ("T", 2)]
    assert box.corrupt == 1


def _set_serial(fs, slot, serial):
    """Give a stored slot another serial (its CRC made again), as a long-lived ring would have."""
    import struct

    from relaypump import storage

    data = fs.files["/ob.0"]
    at = slot * outbox.SLOT_SIZE
    struct.pack_into(">I", data, at, serial)
    struct.pack_into(">I", data, at + 100, storage.crc32(bytes(data[at : at + 100])))


def test_the_ring_spans_at_most_65535_serials():
    # RAM keeps serials mod 2**16: an entry may not be older than 65535 serials. Reached only by
    # a frame the broker never acknowledges while 65535 others go through; made here on flash.
    fs = FlashFS()
    box = open_box(fs)
    box.append(event(1), 0)
    box.append(telemetry(2), 0)
    box.append(telemetry(3), 0)
    _set_serial(fs, 0, 100)
    _set_serial(fs, 1, 100 + 65534)  # the oldest may be 65534 older than the newest
    _set_serial(fs, 2, 100 + 65534 + 70000)  # here the first two are beyond the span
    box = open_box(fs.copy())
    assert box.pending == 1 and box.dropped_events == 1 and box.dropped_telemetry == 1
    token = box.take(0)
    assert token == 100 + 65534 + 70000 and describe(box.frame)[:2] == ("T", 3)
    fs.files["/ob.0"][2 * outbox.SLOT_SIZE : 3 * outbox.SLOT_SIZE] = bytes(outbox.SLOT_SIZE)
    box = open_box(fs)  # the event 65534 older than the telemetry: both kept
    assert box.pending == 2 and box.dropped_events == 0
    token = box.take(0)
    assert token == 100 and describe(box.frame)[:2] == ("E", 1)
    # one more would make the event too old: the new frame is refused (an event never drops)
    assert not box.append(telemetry(4), 0) and box.dropped_telemetry == 1
    assert box.acked(token)
    assert box.append(telemetry(5), 0)  # the telemetry is now the oldest: within the span
    got = []
    while True:
        token = box.take(0)
        if not token:
            break
        got.append((token, describe(box.frame)[:2]))
        box.acked(token)
    report = ("E", 1)  # TELEMETRY_DROPPED, total 1: ahead of the next frame
    assert got == [(100 + 65534, ("T", 2)), (100 + 65535, report), (100 + 65536, ("T", 5))]
    # when the oldest is telemetry, it is dropped (and counted) to keep the span
    fs2 = FlashFS()
    box = open_box(fs2)
    box.append(telemetry(6), 0)
    box.append(telemetry(7), 0)
    _set_serial(fs2, 0, 100)
    _set_serial(fs2, 1, 100 + 65534)
    box = open_box(fs2)
    assert box.append(telemetry(8), 0) and box.dropped_telemetry == 1
    assert marks(drain(box)) == [("T", 7), ("T", 8)]


def test_frames_before_the_first_sync_are_held_then_corrected():
    fs = FlashFS()
    clock = WallClock()
    box = open_box(fs, clock, now_ms=1000, hold_unsynced_ms=120000)
    box.append(telemetry(1), 5000)
    box.append(telemetry(2), 15000)
    assert box.take(20000) == 0  # held: the clock is not set
    clock.set_time(T0, 25000)
    got = drain(box, 25000)
    assert [f[3] for f in got] == [T0 - 20, T0 - 10]


def test_a_held_take_reads_no_slot():
    fs = FlashFS()
    clock = WallClock()
    opened = []

    def opener(path, mode):
        opened.append(path)
        return fs.open(path, mode)

    box = outbox.Outbox(fs, "/ob", STATION, clock, 1000, 1, opener, hold_unsynced_ms=120000)
    box.append(telemetry(1), 5000)
    opened.clear()
    assert box.take(20000) == 0  # held: a frame of this boot, the clock not set
    assert opened == []
    used = bytes_allocated(lambda: box.take(20000))
    assert used == 0 if ON_MICROPYTHON else used < 1024, used
    clock.set_time(T0, 25000)
    assert box.take(25000) and opened == ["/ob.0"]  # read once the clock is set
    assert describe(box.frame)[3] == T0 - 20


def test_unsynced_frames_go_out_marked_after_the_hold_or_after_a_reboot():
    fs = FlashFS()
    clock = WallClock()
    box = open_box(fs, clock, now_ms=0, hold_unsynced_ms=60000)
    box.append(telemetry(1), 5000)
    got = drain(box, 61000, ack=False)
    assert got[0][3] == 5 and got[0][3] < UNSYNCED_LIMIT
    # an earlier boot's unsynced frame cannot be corrected: it goes out marked, not held
    again = open_box(fs, WallClock())
    assert drain(again, 0)[0][3] == 5
    # nor given a wrong time by a clock set in a later boot
    again2 = open_box(fs, synced_clock())
    assert drain(again2, 0)[0][3] == 5
    again2.flush(0)
    assert drain(open_box(fs, synced_clock()), 0) == []


def test_segments_fill_one_after_another_and_writes_are_one_slot():
    fs = FlashFS()
    box = open_box(fs, segments=3)
    written = fs.bytes_written
    for mark in range(outbox.SEGMENT_SLOTS + 2):
        box.append(telemetry(mark), 0)
    per_frame = (fs.bytes_written - written) / (outbox.SEGMENT_SLOTS + 2)
    assert outbox.SLOT_SIZE <= per_frame < outbox.SLOT_SIZE + 2  # + a header save per lease
    assert len(fs.files["/ob.0"]) == outbox.SEGMENT_SLOTS * outbox.SLOT_SIZE
    assert len(fs.files["/ob.1"]) == 2 * outbox.SLOT_SIZE
    assert marks(drain(open_box(fs, segments=3)))[-1] == ("T", outbox.SEGMENT_SLOTS + 1)


def _scratch_dir():
    try:
        import tempfile

        return tempfile.mkdtemp()
    except ImportError:  # MicroPython: MEMFS
        path = "/scratch_outbox"
        try:
            os.mkdir(path)
        except OSError:
            pass
        return path


def test_the_real_file_system():
    directory = _scratch_dir()
    base = directory + "/ob"
    try:
        box = outbox.Outbox(os, base, STATION, synced_clock(), 0, 2)
        for mark in range(outbox.SEGMENT_SLOTS + 5):
            box.append(telemetry(mark), 0)
        token = box.take(0)
        box.acked(token)
        box.flush(0)
        again = outbox.Outbox(os, base, STATION, synced_clock(), 0, 2)
        got = marks(drain(again))
        assert got == [("T", m) for m in range(1, outbox.SEGMENT_SLOTS + 5)]
    finally:
        for name in os.listdir(directory):
            os.remove(directory + "/" + name)
        os.rmdir(directory)


def test_allocation_per_frame_is_small():
    fs = FlashFS()
    box = open_box(fs)
    frame = telemetry(1)
    box.append(frame, 0)
    drain(box)

    def one_frame():
        box.append(frame, 0)
        token = box.take(0)
        box.acked(token)

    used = bytes_allocated(one_frame)
    # the fake file system's own copies dominate; the outbox adds a few small objects
    assert used < (2048 if ON_MICROPYTHON else 8192), used
    box.flush(0)

    def idle_tick():  # what the runtime calls every tick with nothing to send or save
        box.poll(500)
        box.take(500)
        box.clock.due(500)

    used = bytes_allocated(idle_tick)
    assert used == 0 if ON_MICROPYTHON else used < 1024, used


# -- the outbox carried by the MQTT session (mqtt.py), a broker played here --------------------


class Broker:
    """Answers what the session sends: CONNACK, SUBACK, PINGRESP, and a PUBACK for every QoS 1
    PUBLISH; keeps the frames published on the telemetry topic."""

    def __init__(self):
        self.frames = []

    def serve(self, s, now):
        for _ in range(50):
            out = s.poll(now)
            if out is None:
                return
            s.sent(len(out))
            reply, published = broker_answer(bytes(out))
            self.frames += [payload for topic, payload in published if topic == TOPIC]
            if reply:
                s.receive(reply)


TOPIC = b"relaypump/jia/relay1/telemetry"


def session():
    from relaypump import mqtt

    return mqtt.Session(
        "rp-relay1", b"relaypump/jia/relay1/status", b"relaypump/jia/relay1/cmd", inflight=4
    )


def carry(box, s, tokens, now):
    """The runtime's part: frames into the session's window while it has room; PUBACKs out."""
    from relaypump import mqtt

    while s.in_flight < s.inflight:
        token = box.take(now)
        if not token:
            break
        pid = s.publish(TOPIC, box.frame)
        if pid <= 0:
            box.give_back(token)
            break
        tokens[pid] = token
    while True:
        ev = s.next_event()
        if ev == mqtt.NONE:
            return
        if ev == mqtt.PUBACK and s.packet_id in tokens:
            assert box.acked(tokens.pop(s.packet_id))


def run_link(box, s, tokens, broker, now, up):
    if up and not s.connected:
        s.link_up(now)
    for _ in range(20):
        carry(box, s, tokens, now)
        if up:
            broker.serve(s, now)
        carry(box, s, tokens, now)


def test_an_outage_and_a_reboot_lose_nothing_through_the_session():
    fs = FlashFS()
    box = open_box(fs)
    s = session()
    broker = Broker()
    tokens = {}
    now = 0
    for mark in range(5):  # link up: each frame out and acknowledged
        box.append(telemetry(mark), now)
        run_link(box, s, tokens, broker, now, True)
        now += 10000
    assert box.pending == 0
    s.link_down(now)  # the broker goes away for a while
    for mark in range(5, 25):
        box.append(telemetry(mark), now)
        run_link(box, s, tokens, broker, now, False)
        now += 10000
    assert box.pending == 20 and s.in_flight == 4  # the window full, the rest on flash
    # power lost: a new outbox and a new session from what is on flash
    box = open_box(fs)
    s = session()
    tokens = {}
    run_link(box, s, tokens, broker, now, True)
    box.append(telemetry(25), now)
    run_link(box, s, tokens, broker, now, True)
    assert box.pending == 0
    seen = {}
    for frame in broker.frames:
        f = describe(frame)
        seen.setdefault(f[2], f[1])  # a receiver keeps one frame per seq
    assert [seen[seq] for seq in sorted(seen)] == list(range(26))  # all, in order, once each
    assert len(broker.frames) == 31  # 0..4 twice: acknowledged, but the ack mark was not saved yet


def test_random_operations_match_a_plain_model():
    """Appends (telemetry and events), takes, acks in any order, give-backs, rewinds and reboots
    against a list-based model of the rules: order, drops, reports, what a take hands out."""
    fs = FlashFS()
    box = open_box(fs)
    cap = box.capacity
    model = []  # [mark, kind, out, token] in append order
    dropped = [0, 0]  # telemetry, events
    reported = [0, 0]
    seed = [12345]

    def rand(n):
        seed[0] = (seed[0] * 1103515245 + 12345) & 0x7FFFFFFF
        return (seed[0] >> 8) % n

    def model_append(mark, kind):
        if len(model) >= cap:
            olds = [e for e in model if e[1] == "T"]
            if not olds:
                dropped[0 if kind == "T" else 1] += 1
                return
            model.remove(olds[0])
            dropped[0] += 1
        model.append([mark, kind, False, 0])

    steps = 100 if ON_MICROPYTHON else 3000  # the VM collects no garbage within a test
    for step in range(steps):
        op = rand(100)
        if op < 45:
            kind = "T" if rand(5) else "E"
            for which in (0, 1):  # the reports the outbox puts in first, when there is room
                if dropped[which] > reported[which] and len(model) + 2 <= cap:
                    model.append([dropped[which], "E", False, 0])
                    reported[which] = dropped[which]
            model_append(step, kind)
            box.append(telemetry(step) if kind == "T" else event(step), 0)
        elif op < 70:
            token = box.take(0)
            waiting = [e for e in model if not e[2]]
            if not waiting:
                assert token == 0, step
                continue
            assert token, step
            got = describe(box.frame)
            assert (got[0], got[1]) == (waiting[0][1], waiting[0][0]), step
            waiting[0][2] = True
            waiting[0][3] = token
        elif op < 90:
            out = [e for e in model if e[2]]
            if out:
                entry = out[rand(len(out))]
                assert box.acked(entry[3]), step
                model.remove(entry)
        elif op < 94:
            out = [e for e in model if e[2]]
            if out:  # the newest handed out goes back (the session refused it)
                assert box.give_back(out[-1][3]), step
                out[-1][2] = False
        elif op < 97:
            box.rewind()
            for e in model:
                e[2] = False
        else:
            box.flush(0)
            box = open_box(fs)
            for e in model:
                e[2] = False
        assert box.pending == len(model), step
        assert (box.dropped_telemetry, box.dropped_events) == tuple(dropped), step
    box.rewind()
    assert [(f[0], f[1]) for f in drain(box)] == [(e[1], e[0]) for e in model]


def test_config_section():  # last: it loads the config's code (VM heap)
    from relaypump import uplink_config

    assert uplink_config.outbox_section(None) == {
        "segments": 12,
        "save_s": 60,
        "hold_unsynced_s": 120,
        "telemetry_s": 10,
    }
    assert uplink_config.outbox_section({"segments": 2, "hold_unsynced_s": 0})["segments"] == 2
    bad = [
        ([], "outbox: must be an object"),
        ({"segment": 2}, "outbox.segment: unknown key"),
        ({"segments": 0}, "outbox.segments: must be a whole number in 1..64"),
        ({"telemetry_s": 1.5}, "outbox.telemetry_s: must be a whole number in 1..3600"),
        ({"save_s": True}, "outbox.save_s: must be a whole number"),
    ]
    for doc, start in bad:
        try:
            uplink_config.outbox_section(doc)
        except outbox.OutboxError as e:
            assert str(e).startswith(start), str(e)
            continue
        raise AssertionError("took %r" % (doc,))
