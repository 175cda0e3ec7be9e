"""The durable outbox: telemetry and event frames wait on flash until the broker acknowledges them.

    box = Outbox(fs, "/outbox", station_id, clock)   # loads what the last boot left
    box.append(frame, at_ms)      # a telemetry or event frame made at tick at_ms (now, or an
                                  # event's own tick); the outbox sets its seq and its time
    frame = box.room(kind)        # where to encode a frame of that kind (KIND_TELEMETRY or
                                  # KIND_EVENT) before append(frame, ...): no buffer of one's own
    token = box.take(now_ms)      # the oldest frame not yet handed out: box.frame (memoryview)
    box.acked(token)              # its PUBACK came: it leaves the ring
    box.give_back(token)          # the session had no room for it: it waits again, in order
    box.rewind()                  # a new session: everything handed out and unacknowledged again
    box.poll(now_ms)              # saves what has left now and then (flush(now_ms): at once)
    box.next_seq()                # a seq for a frame that does not go through the outbox (acks)

Rules:
- Order: frames leave in the order they were appended (``serial``, a number given to each entry);
  the outbox sets each frame's seq (one per-station counter shared with ``next_seq``) and its
  timestamp_s (``clock.stamp``). seq never repeats across reboots: the header holds a lease (the
  next LEASE numbers) saved before any of them is used, and a boot starts at the saved lease.
- A frame leaves the ring only through ``acked``. Across a broker outage and a reboot nothing is
  lost until the ring is full. When it is full (capacity = slots - 1, one slot always kept free),
  a new frame drops the oldest telemetry that waits (an event is never dropped); when only events
  wait, the new frame itself is refused (counted as a dropped telemetry or event). The totals
  (``dropped_telemetry``, ``dropped_events``, since the outbox files were made) are reported by
  the outbox itself: an event TELEMETRY_DROPPED / EVENTS_DROPPED carrying the new total goes in
  ahead of the next frame once there is room for it. A total is cumulative, so a report sent
  twice (after a reboot) says nothing false.
- Frames made before the clock was set carry the unsynced marker (wallclock.py). ``take`` holds
  such a frame of this boot back while the clock is unset, for at most hold_unsynced_ms after the
  outbox was loaded (known by its serial, without reading its slot: every frame of this boot is
  unsynced while the clock is), and replaces the marker with the real time once the clock is
  set. A frame left unsynced by an earlier boot cannot be corrected (ticks do not survive a
  reboot) and goes out marked.
- At least once: what has left is saved by ``poll`` at most every save_ms (and by ``flush``), not
  on every PUBACK: the ack mark (every serial up to it has left) and the serials above it that
  left out of order (acknowledged out of order, or dropped), up to GONE_MAX of them. Entries that
  left after the last save, or beyond GONE_MAX, and are still on flash, are sent again after a
  power loss; receivers drop them by (station, seq). After a flush nothing comes back.

Persistence (``fs``/``opener`` as storage.py: an os-like module and an open-like function):
- ``<base>.0`` .. ``<base>.<segments-1>``: segment files of SEGMENT_SLOTS fixed slots of SLOT_SIZE
  bytes each (39 x 104 = 4056 B: one 4 KiB erase block; see "Cost" for why not one big file).
  A slot (big-endian): serial u32 (0 = never written), ticks_ms u32 (when appended), boot u16
  (the boot that appended it), flags u8 (bit 0: timestamp unsynced), frame length u8, dropped
  telemetry total u32, dropped events total u32, the frame (80 bytes, zero-padded), CRC-32 of
  the 100 bytes before it.
- ``<base>.hdr``: two generations through storage.save (``RPS1 ...`` framing): boot u16, seq
  lease u32, ack mark u32, reported telemetry total u32, reported events total u32, then a u32
  for each serial that left above the mark (none as a rule, at most GONE_MAX = 32): 18 bytes.
- A slot is only ever written where no waiting entry is (the free slot), with one write of its
  104 bytes then a sync. A power loss at any byte of it leaves a slot that fails its CRC (or an
  old entry the ack mark already covers): the ring loads as it was before the append. Loading
  takes the slots whose CRC holds, whose serial is above the ack mark and whose frame is a
  telemetry or event frame, in serial order; the dropped totals are the highest any valid slot
  recorded. A ring found with every slot waiting (power lost after a full-ring append and before
  the next) drops its oldest telemetry again, which that append had already counted.
- A slot that fails its CRC when it is read back for sending (flash decay) is discarded and
  counted in ``corrupt``.
- Span: RAM keeps serials mod 2**16, so no entry may be more than 65535 serials older than the
  next one. Only a frame the broker never acknowledges while 65535 others go through gets that
  old (7.6 days of telemetry); then, as when the ring is full, the oldest telemetry is dropped, or,
  when the oldest is an event, the new frame is refused (both counted). A ring loaded with
  entries beyond the span drops them (counted).

Cost (default: 12 segments = 468 slots, 467 frames = 77 min of telemetry at 10 s, 48 KiB flash):
- Per frame appended: 104 bytes written to one segment file, one sync. On littlefs (RP2, ESP32)
  a write into an existing file is copy-on-write from the block written to the end of the file,
  and even an append copies the file's last partial block: a durable small write costs at least
  one block. A segment is one block, so a frame costs exactly one 4 KiB block: 1 sector erase +
  16 page programs of 256 B (4096 B programmed), plus the file's metadata commit (about 50 B
  appended to the directory's metadata pair, which is erased once it fills: about once per 80
  commits). One big ring file would cost on average half the file (5-6 blocks) per frame.
- Per ack: nothing on flash. The ack mark: one header save (a ~45 B file, small enough to be
  inlined in the directory's metadata by littlefs: two metadata commits for write + rename, no
  block of its own) per save_ms (60 s) while frames are acknowledged.
- Per day at the default cadence (telemetry every 10 s, events rare, each frame acknowledged
  within its period): 8,640 frames = 898,560 B into segment files + 1,440 header saves (~56 KB)
  = ~955 KB asked of the file system (host_tools/bench/outbox.py counts it: 955,053 B, 8,640
  block writes, 1,440 saves). On flash: 8,640 block erases and 35.4 MB programmed for the
  frames, plus ~150 metadata-pair erases (~10,000 commits of ~50 B, a pair erased per ~80) --
  ~8,800 erases a day. littlefs levels wear over its free blocks only (dynamic wear levelling):
  an RP2 Pico (1,408 KiB file system, ~300 blocks free with the firmware's .mpy files and the
  config) takes ~29 erases per block per day: 100,000-cycle NOR flash lasts ~9 years; a Pico W
  (848 KiB, ~160 free) ~55 a day, ~5 years; an ESP32 with 4 MB flash (~2 MB, ~480 free) ~18 a
  day, ~15 years. A write-behind of telemetry while the broker acknowledges promptly would cut
  this ~100-fold at the price of the last seconds of telemetry on a power loss; not done: the
  issue asks that nothing be lost across a reboot.
- RAM: per slot its serial mod 2**16 (2 B) and three bits (in use, handed out, telemetry):
  1.1 KiB for 468 slots, plus one slot buffer (104 B) that append writes and take reads back
  (``frame`` is a view into it): 2.0 KiB in all in the VM (host_tools/bench/outbox.py:
  vm_heap_outbox_object; a ring of slots in serial order beside it took 2.9 KiB). At most 4095
  slots (105 segments). Loading reads the segments twice (the newest serial first).
- Order without a ring: the serials say it. Appends go to the free slot after the last one
  written, so the entry after a known one (the last handed out, the oldest) is, as a rule, in
  the next slot with the next serial, checked first; else (after a drop, an out-of-order ack, a
  give-back, a corrupt slot, at load) a walk over every slot's bits finds the oldest (468 slots:
  59 bytes of bits, a serial compared per entry).
- Time per frame: ``outbox_write_ms`` (host_tools/bench/outbox.py, in the VM on MEMFS: CPU only;
  a board adds its flash erase, ~45 ms for a 4 KiB sector on an RP2's QSPI flash, and programs).
"""

import struct

from micropython import const

# codes.X, not imported names, and formats written where they are used: each name of the module
# is a slot of its dict (RAM, frozen or not)
from relaypump import codes, storage, uplink
from relaypump.ticks import ticks_diff as _ticks_diff

SLOT_SIZE = const(104)
SEGMENT_SLOTS = const(39)  # 39 x 104 = 4056 B <= one 4 KiB erase block
LEASE = const(4096)  # seq numbers reserved per header save
_FRAME_AT = const(20)
_CRC_AT = const(100)
# a slot's meta data before its frame: ">IIHBBII" (see Persistence)
GONE_MAX = const(32)  # entries that left out of order, remembered in the header
# the header: ">HIIII", then one u32 per serial in the gone list
_HEADER_SIZE = const(18)
_FLAG_UNSYNCED = const(1)
_KIND_AT = const(3)
_SEQ_AT = const(8)
_TIME_AT = const(12)
_CODE_AT = const(16)
_VALUE_AT = const(20)
_KIND_TELEMETRY = const(1)
_KIND_EVENT = const(2)
_SPAN = const(65535)  # serials an entry may be older than the next one (RAM keeps them mod 2**16)

_MAX_SLOTS = const(4095)
# what _oldest looks for
_ANY = const(0)
_WAITING = const(1)  # not handed out
_TELEMETRY = const(2)


class OutboxError(ValueError):
    """A frame the outbox does not take (not a telemetry or event frame)."""


class Outbox:
    def __init__(
        self,
        fs,
        base,
        station_id,
        clock,
        now_ms=0,
        segments=12,
        opener=open,
        save_ms=60000,
        hold_unsynced_ms=120000,
    ):
        if not 1 <= segments <= _MAX_SLOTS // SEGMENT_SLOTS:
            raise ValueError("outbox segments must be 1..%d" % (_MAX_SLOTS // SEGMENT_SLOTS))
        self.fs = fs
        self.base = base
        self.clock = clock
        self.opener = opener
        self.save_ms = save_ms
        self.hold_unsynced_ms = hold_unsynced_ms
        self.segments = segments
        n = segments * SEGMENT_SLOTS
        self.slots = n
        self.capacity = n - 1
        # the index: per slot its entry's serial mod 2**16 (_full() makes the whole serial) and
        # three bits: an entry is in it, it is handed out (no PUBACK yet), it is telemetry
        from array import array

        self._serial = array("H", bytes(2 * n))
        self._busy = bytearray((n + 7) >> 3)
        self._out = bytearray((n + 7) >> 3)
        self._tele = bytearray((n + 7) >> 3)
        self._oldest = -1  # the slot of the oldest entry (-1: none)
        self._taken = 0  # the serial last handed out while no older entry waits (0: unknown)
        self._taken_slot = 0
        # one slot's bytes, written by append, read back by take: box.frame is a view into it
        self._buf = bytearray(SLOT_SIZE)
        view = memoryview(self._buf)
        self._telemetry_view = view[_FRAME_AT : _FRAME_AT + uplink.TELEMETRY_SIZE]
        self._event_view = view[_FRAME_AT : _FRAME_AT + uplink.EVENT_SIZE]
        self._crc_view = view[:_CRC_AT]
        # the frame take() handed out (a view into the slot buffer), until the next take or append
        self.frame = b""  # type: bytes | memoryview
        self.station_id = station_id  # for the drop reports (made when one is due: rare)
        self.pending = 0  # entries waiting or handed out
        self.dropped_telemetry = 0
        self.dropped_events = 0
        self.corrupt = 0
        self.saves = 0
        self._reported_telemetry = 0
        self._reported_events = 0
        self._next_serial = 1
        self._mark = 0  # ack mark: every serial <= it has left
        self._gone = [0] * GONE_MAX  # serials above the mark that have left too (0: none)
        self.gone_overflow = 0  # such entries not remembered: sent again after a power loss
        self._dirty = False  # the mark or the gone list differ from the saved header
        self._saved_ms = now_ms
        self._loaded_ms = now_ms
        self._last_written = n - 1
        self._header_gen = 0
        self._made = bytearray(segments)  # segment files found at load (or made since)
        self._load(now_ms)

    # --- loading --------------------------------------------------------------------------------
    def _load(self, now_ms):
        got = storage.read_latest(self.fs, self.base + ".hdr", _parse_header, self.opener)
        boot = lease = mark = 0
        if got is not None:
            self._header_gen = got[0] + 1
            boot, lease, mark, self._reported_telemetry, self._reported_events = got[1][:5]
            for g in range(len(got[1]) - 5):
                self._gone[g] = got[1][5 + g]
        self._seq = lease
        self._lease = lease
        self._mark = mark
        self._top_seq = -1
        self._top_boot = boot
        # two passes: the newest serial first, so that the entries can be kept mod 2**16
        self._next_serial = self._read_slots(mark, None) + 1
        self._read_slots(mark, self._load_slot)
        self._oldest = self._find_oldest(_ANY)
        # this boot's number: above any the slots carry (ticks of another boot are never used)
        self.boot = (self._top_boot + 1) & 0xFFFF
        self._boot_serial = self._next_serial  # this boot's entries are numbered from here
        if self._top_seq >= self._seq:  # a lost header must not make seq numbers repeat
            self._seq = (self._top_seq + 1) & 0xFFFFFFFF
        if self.pending > self.capacity:
            self._drop_oldest_telemetry(False)
        self._save_header(now_ms, (self._seq + LEASE) & 0xFFFFFFFF)

    def _read_slots(self, top, load):
        """Every slot whose CRC holds: the highest serial (from `top` up), or each to `load`."""
        for k in range(self.segments):
            data = storage.read_file("%s.%d" % (self.base, k), self.opener)
            if data is None:
                continue
            self._made[k] = 1
            for j in range(SEGMENT_SLOTS):
                at = j * SLOT_SIZE
                if at + SLOT_SIZE > len(data):
                    break
                slot = memoryview(data)[at:]
                if storage.crc32(slot[:_CRC_AT]) != struct.unpack_from(">I", slot, _CRC_AT)[0]:
                    continue
                if load is not None:
                    load(k * SEGMENT_SLOTS + j, slot)
                elif struct.unpack_from(">I", slot, 0)[0] > top:
                    top = struct.unpack_from(">I", slot, 0)[0]
        return top

    def _load_slot(self, i, slot):
        serial, _, boot, _, length, dropped_t, dropped_e = struct.unpack_from(">IIHBBII", slot, 0)
        if serial == 0:
            return
        if boot > self._top_boot:
            self._top_boot = boot
        self.dropped_telemetry = max(self.dropped_telemetry, dropped_t)
        self.dropped_events = max(self.dropped_events, dropped_e)
        seq = struct.unpack_from(">I", slot, _FRAME_AT + _SEQ_AT)[0]
        if seq > self._top_seq:
            self._top_seq = seq
        kind = slot[_FRAME_AT + _KIND_AT]
        if serial <= self._mark or serial in self._gone:
            return
        if kind not in (_KIND_TELEMETRY, _KIND_EVENT):
            return
        if length != (uplink.TELEMETRY_SIZE if kind == _KIND_TELEMETRY else uplink.EVENT_SIZE):
            return
        if self._next_serial - serial > _SPAN:  # beyond the span (rules): counted as dropped
            self._refuse(kind)
            return
        self._serial[i] = serial & 0xFFFF
        self._set(i, kind == _KIND_TELEMETRY)
        self.pending += 1
        if kind == _KIND_EVENT:
            code = struct.unpack_from(">H", slot, _FRAME_AT + _CODE_AT)[0]
            value = struct.unpack_from(">i", slot, _FRAME_AT + _VALUE_AT)[0]
            if code == codes.EVENT_TELEMETRY_DROPPED and value > self._reported_telemetry:
                self._reported_telemetry = value
            elif code == codes.EVENT_EVENTS_DROPPED and value > self._reported_events:
                self._reported_events = value

    # --- header ---------------------------------------------------------------------------------
    def _save_header(self, now_ms, lease):
        gone = [serial for serial in self._gone if serial]
        payload = struct.pack(
            ">HIIII" + "I" * len(gone),
            self.boot,
            lease,
            self._mark,
            self._reported_telemetry,
            self._reported_events,
            *gone,
        )
        storage.save(self.fs, self.base + ".hdr", payload, self._header_gen, self.opener)
        self._header_gen += 1
        self._lease = lease
        self._dirty = False
        self._saved_ms = now_ms
        self.saves += 1

    def next_seq(self, now_ms=0):
        """The next frame seq (also for frames that bypass the outbox, e.g. acks)."""
        if self._seq >= self._lease:
            self._save_header(now_ms, (self._seq + LEASE) & 0xFFFFFFFF)  # before the number is used
        seq = self._seq
        if seq == 0xFFFFFFFF:  # wraps (after 1,300 years of telemetry): the lease restarts at 0
            self._seq = self._lease = 0
        else:
            self._seq = seq + 1  # no mask: a mask with a long int allocates on MicroPython
        return seq

    def poll(self, now_ms):
        """Save the ack mark when it moved and save_ms passed; True when saved."""
        if not self._dirty:
            return False
        if _ticks_diff(now_ms, self._saved_ms) < self.save_ms:
            return False
        self._save_header(now_ms, self._lease)
        return True

    def flush(self, now_ms):
        """Save the ack mark now (before a planned reset)."""
        if self._dirty:
            self._save_header(now_ms, self._lease)

    # --- appending ------------------------------------------------------------------------------
    def room(self, kind):
        """A view of the slot buffer to encode a telemetry (kind 1) or event (2) frame into, then
        append it: the caller needs no frame buffer of its own. Valid until the next take."""
        return self._telemetry_view if kind == _KIND_TELEMETRY else self._event_view

    def append(self, frame, now_ms):
        """Store a telemetry or event frame (its seq and time are set here); False if refused."""
        n = len(frame)
        kind = frame[_KIND_AT] if n > _KIND_AT else 0
        if kind == _KIND_TELEMETRY:
            if n != uplink.TELEMETRY_SIZE:
                raise OutboxError("telemetry frame of %d bytes, expected 80" % n)
        elif kind == _KIND_EVENT:
            if n != uplink.EVENT_SIZE:
                raise OutboxError("event frame of %d bytes, expected 24" % n)
        else:
            raise OutboxError("frame kind %d: the outbox takes telemetry and events" % kind)
        # the drop totals not reported yet go in first, as events (rare), each only with room
        # for it and the frame after it (a report drops nothing)
        telemetry = self.dropped_telemetry > self._reported_telemetry
        events = self.dropped_events > self._reported_events
        if telemetry or events:
            if frame is self._telemetry_view or frame is self._event_view:  # encoded in room()
                frame = bytes(frame)  # the reports go through the same buffer
            if telemetry and self.pending + 2 <= self.capacity:
                self._report(codes.EVENT_TELEMETRY_DROPPED, self.dropped_telemetry, now_ms)
                self._reported_telemetry = self.dropped_telemetry
            if events and self.pending + 2 <= self.capacity:
                self._report(codes.EVENT_EVENTS_DROPPED, self.dropped_events, now_ms)
                self._reported_events = self.dropped_events
        return self._append(frame, n, kind, now_ms)

    def _report(self, code, total, now_ms):
        """A drop report: the event `code` carrying the total (seq and time set by _append)."""
        report = bytearray(uplink.EVENT_SIZE)
        value = total if total < 0x7FFFFFFF else 0x7FFFFFFF
        uplink.encode_event(report, [self.station_id, 0, 0, code, codes.SEVERITY_WARNING, 0, value])
        self._append(report, uplink.EVENT_SIZE, _KIND_EVENT, now_ms)

    def _append(self, frame, n, kind, now_ms):
        if self.pending >= self.capacity and not self._drop_oldest_telemetry(True):
            return self._refuse(kind)
        while self.pending and self._next_serial - self._full(self._serial[self._oldest]) >= _SPAN:
            oldest = self._oldest
            if not self._tele[oldest >> 3] & (1 << (oldest & 7)):
                return self._refuse(kind)  # an event that old is never dropped
            self._release(oldest)  # the oldest telemetry, too old to keep
            self.dropped_telemetry += 1
        # the free slot after the last one written (capacity keeps one free)
        n_slots = self.slots
        busy = self._busy
        i = self._last_written
        for _ in range(n_slots):
            i = i + 1 if i + 1 < n_slots else 0
            if not busy[i >> 3] & (1 << (i & 7)):
                break
        # its last entry can no longer come back: its gone mark goes (a mark of another serial
        # with the same 16 bits may go too: that entry would then be sent again after a power
        # loss, which receivers drop; the saved list may keep it: harmless, serials never repeat)
        low = self._serial[i]
        if low:  # (0: a slot never written)
            for g in range(GONE_MAX):
                if self._gone[g] & 0xFFFF == low:
                    self._gone[g] = 0
        slot = self._buf
        self.frame = b""  # the buffer is no longer the frame taken
        serial = self._next_serial
        unsynced = not self.clock.synced
        struct.pack_into(
            ">IIHBBII",
            slot,
            0,
            serial,
            now_ms,
            self.boot,
            _FLAG_UNSYNCED if unsynced else 0,
            n,
            self.dropped_telemetry,
            self.dropped_events,
        )
        if frame is not self._telemetry_view and frame is not self._event_view:  # else in place
            slot[_FRAME_AT : _FRAME_AT + n] = frame  # n is its length (frame[:n] is a copy)
        for j in range(_FRAME_AT + n, _CRC_AT):
            slot[j] = 0
        struct.pack_into(">I", slot, _FRAME_AT + _SEQ_AT, self.next_seq(now_ms))
        struct.pack_into(">I", slot, _FRAME_AT + _TIME_AT, self.clock.stamp(now_ms))
        struct.pack_into(">I", slot, _CRC_AT, storage.crc32(self._crc_view))
        self._write_slot(i, slot)
        self._next_serial = serial + 1
        self._serial[i] = serial & 0xFFFF
        self._last_written = i
        self._set(i, kind == _KIND_TELEMETRY)
        if not self.pending:
            self._oldest = i
        self.pending += 1
        return True

    def _refuse(self, kind):
        if kind == _KIND_TELEMETRY:
            self.dropped_telemetry += 1
        else:
            self.dropped_events += 1
        return False

    def _full(self, low):
        """The whole serial of an entry in the ring from its 16 bits (it is within _SPAN)."""
        n = self._next_serial
        return n - ((n - low) & 0xFFFF)

    def _write_slot(self, i, data):
        path = "%s.%d" % (self.base, i // SEGMENT_SLOTS)
        k = i // SEGMENT_SLOTS
        if self._made[k]:
            f = self.opener(path, "r+b")
        else:  # a segment that was missing or unreadable at load: made, slots written as they come
            f = self.opener(path, "w+b")
            self._made[k] = 1
        try:
            f.seek((i % SEGMENT_SLOTS) * SLOT_SIZE)
            f.write(data)
            storage._sync(self.fs, f)
        finally:
            f.close()

    # --- the index ---------------------------------------------------------------------------
    def _set(self, i, telemetry):
        """Slot i holds a new entry, waiting."""
        bit = 1 << (i & 7)
        self._busy[i >> 3] |= bit
        self._out[i >> 3] &= ~bit
        if telemetry:
            self._tele[i >> 3] |= bit
        else:
            self._tele[i >> 3] &= ~bit

    def _find_oldest(self, want):
        """The slot of the oldest entry (_ANY), of the oldest waiting one (_WAITING) or of the
        oldest telemetry (_TELEMETRY); -1 if there is none. A walk over every slot: the callers
        try the slot after a known entry first, which is the one asked for as a rule."""
        busy = self._busy
        out = self._out
        tele = self._tele
        serials = self._serial
        low = self._next_serial & 0xFFFF
        best = -1
        age = 0
        for k in range(len(busy)):
            bits = busy[k]
            if want == _WAITING:
                bits &= ~out[k]
            elif want == _TELEMETRY:
                bits &= tele[k]
            i = k << 3
            while bits:
                if bits & 1:
                    a = (low - serials[i]) & 0xFFFF  # serials back from the next one (>= 1)
                    if a > age:
                        age = a
                        best = i
                bits >>= 1
                i += 1
        return best

    def _follows(self, i, serial):
        """The slot after i if it holds the entry of serial + 1 (appended next: the rule), else -1."""
        j = i + 1 if i + 1 < self.slots else 0
        if self._busy[j >> 3] & (1 << (j & 7)) and self._serial[j] == (serial + 1) & 0xFFFF:
            return j
        return -1

    def _find(self, token):
        """The slot of the entry with serial `token`, or -1 (from the oldest on: PUBACKs come for
        the oldest entries as a rule)."""
        if not self.pending:
            return -1
        low = token & 0xFFFF
        busy = self._busy
        serials = self._serial
        n = self.slots
        i = self._oldest
        for _ in range(n):
            if serials[i] == low and busy[i >> 3] & (1 << (i & 7)):
                return i if self._full(low) == token else -1
            i = i + 1 if i + 1 < n else 0
        return -1

    def _drop_oldest_telemetry(self, count):
        i = self._find_oldest(_TELEMETRY)
        if i < 0:
            return False
        self._release(i)
        if count:
            self.dropped_telemetry += 1
        return True

    def _release(self, i):
        """The entry in slot i leaves the ring."""
        serial = self._full(self._serial[i])
        self._busy[i >> 3] &= ~(1 << (i & 7))
        self.pending -= 1
        if i == self._oldest:
            self._oldest = self._follows(i, serial) if self.pending else -1
            if self._oldest < 0 and self.pending:
                self._oldest = self._find_oldest(_ANY)
        # the ack mark: just below the oldest entry still in the ring
        if self.pending:
            mark = self._full(self._serial[self._oldest]) - 1
        else:
            mark = self._next_serial - 1
        if mark != self._mark:
            self._mark = mark
            self._dirty = True
            for g in range(GONE_MAX):
                if self._gone[g] and self._gone[g] <= mark:
                    self._gone[g] = 0  # the mark covers it now
        if serial > mark:  # left out of order: remembered, or it would come back after a reset
            for g in range(GONE_MAX):
                if not self._gone[g]:
                    self._gone[g] = serial
                    self._dirty = True
                    return
            self.gone_overflow += 1

    # --- sending --------------------------------------------------------------------------------
    def take(self, now_ms):
        """Hand out the oldest waiting frame: its token (> 0) with the bytes in ``frame`` (valid
        until the next take or append), or 0."""
        while self.pending:
            i = -1
            if self._taken:  # every entry up to it is handed out: the next one follows it
                i = self._follows(self._taken_slot, self._taken)
                if i >= 0 and self._out[i >> 3] & (1 << (i & 7)):
                    i = -1
            if i < 0:
                i = self._find_oldest(_WAITING)
                if i < 0:
                    return 0
            token = self._take_slot(i, now_ms)
            if token > 0:
                self._taken = token
                self._taken_slot = i
                return token
            if token == -2:  # held back until the clock is set
                return 0
            # -1: a corrupt slot was discarded; look again
        return 0

    def _take_slot(self, i, now_ms):
        self.frame = b""
        if (
            not self.clock.synced
            and self._full(self._serial[i]) >= self._boot_serial
            and _ticks_diff(now_ms, self._loaded_ms) < self.hold_unsynced_ms
        ):
            # held, without reading the slot: every frame of this boot is unsynced until the
            # clock is set (a held take is asked again every second; a read was ~0.2 KiB)
            return -2
        slot = self._buf
        path = "%s.%d" % (self.base, i // SEGMENT_SLOTS)
        ok = False
        try:
            f = self.opener(path, "rb")
            try:
                f.seek((i % SEGMENT_SLOTS) * SLOT_SIZE)
                ok = f.readinto(slot) == SLOT_SIZE
            finally:
                f.close()
        except OSError:
            pass
        if (
            not ok
            or storage.crc32(self._crc_view) != struct.unpack_from(">I", slot, _CRC_AT)[0]
            or struct.unpack_from(">I", slot, 0)[0] & 0xFFFF != self._serial[i]
        ):
            self.corrupt += 1
            self._release(i)
            return -1
        ticks, boot, flags, n = struct.unpack_from(">IHBB", slot, 4)
        if flags & _FLAG_UNSYNCED and boot == self.boot:
            if self.clock.synced:  # the frame's time, in the buffer (its CRC is checked already)
                wall = self.clock.wall_at(ticks, now_ms)
                struct.pack_into(">I", slot, _FRAME_AT + _TIME_AT, wall)
        self._out[i >> 3] |= 1 << (i & 7)
        self.frame = self._telemetry_view if n == uplink.TELEMETRY_SIZE else self._event_view
        return self._full(self._serial[i])

    def acked(self, token):
        """The frame handed out as token was acknowledged: it leaves. False if not in the ring."""
        i = self._find(token)
        if i < 0:
            return False
        self._release(i)
        return True

    def give_back(self, token):
        """A frame handed out that the session refused (no room): it waits again, in its place."""
        i = self._find(token)
        if i < 0 or not self._out[i >> 3] & (1 << (i & 7)):
            return False
        self._out[i >> 3] &= ~(1 << (i & 7))
        self._taken = 0
        return True

    def rewind(self):
        """Every frame handed out and not acknowledged waits again (a new session)."""
        out = self._out
        for k in range(len(out)):
            out[k] = 0
        self._taken = 0

    def waiting(self):
        """Entries not yet handed out."""
        count = 0
        busy = self._busy
        out = self._out
        for k in range(len(busy)):
            bits = busy[k] & ~out[k]
            while bits:
                count += bits & 1
                bits >>= 1
        return count


def _parse_header(payload):
    extra = len(payload) - _HEADER_SIZE
    if extra < 0 or extra % 4 or extra > 4 * GONE_MAX:
        raise ValueError("outbox header of %d bytes" % len(payload))
    return struct.unpack(">HIIII" + "I" * (extra // 4), payload)
