"""The telemetry log: every message a recorder took from the broker, append-only, CRC-checked.

File format, version 1 (all integers big-endian)
================================================

Log file ``<name>`` (any name; ``.rplog`` by convention)::

    offset  size  field
    0       8     magic b"RPLOG\\x00\\x01\\x00" (format version 1)
    8       ...   records, back to back, nothing between them

Record::

    0       4     L: body length (u32), BODY_MIN <= L <= BODY_MAX
    4       L     body:
                    0   8   receive time, microseconds since 1970-01-01 UTC (u64)
                    8   1   topic kind (KINDS: 0 status, 1 telemetry, 2 event, 3 ack, 4 cmd,
                            255 another topic)
                    9   1   flags: bit 0 retained, bit 1 delivered with the MQTT DUP flag
                    10  1   s: site name length (0..255), then s bytes of UTF-8
                    ..  1   n: station name length (0..255), then n bytes of UTF-8
                    ..      the payload as the broker delivered it (an uplink frame of
                            protocol/uplink.py, or a status message): the rest of the body.
                            Kind 255 (any topic that is not relaypump/<site>/<station>/<kind>
                            with a known kind and names of at most 255 bytes): empty names,
                            and the payload is the whole topic (UTF-8), a zero byte, then the
                            message: nothing the broker delivered is lost
    4+L     4     CRC-32 (zlib.crc32, the IEEE polynomial) of the 4 length bytes and the body

The site and station are the topic's levels (relaypump/<site>/<station>/<kind>): the identity the
broker's ACL vouches for. The frame keeps its own station_id, seq and timestamp_s.

Record time: the frame's timestamp_s when the payload is an uplink frame (magic b"RP") whose
timestamp is set (>= 1,000,000,000); otherwise the receive time in whole seconds (status
messages, frames made before the station's clock was set, undecodable payloads).

Index file ``<name>.idx``: derived data (rebuilt from the log when missing or damaged). The log is
cut into consecutive blocks; a block ends after ``index_every`` records, or before a record whose
time is an hour or more after the block's first record's time. When a block ends, one 36-byte
entry is appended::

    0   8   offset of the block's first record in the log (u64)
    8   8   length of the block in bytes (u64): the next block starts at offset + length
    16  4   records in the block (u32)
    20  4   first record's time (u32, s)
    24  4   lowest record time in the block (u32, s)
    28  4   highest record time in the block (u32, s)
    32  4   CRC-32 of the 32 bytes before

The records after the last entry are the open block (not indexed yet). Frames can arrive out of
time order (a station's outbox flushed after an outage), so seeking uses each block's lowest and
highest time: ``records(start_s=T)`` skips whole blocks whose highest time is below T and yields
every record with time >= T in log order.

Rules
-----
- Append-only: a writer only adds records at the end (and index entries at the end of the .idx).
  One writer per log: it holds an exclusive flock on the log file while it is open.
- Crash safety: records are written through a buffer; ``flush`` hands them to the OS (a recorder
  acknowledges messages to the broker only after that), ``sync`` adds an fsync. A crash can leave
  a torn tail: an incomplete last record, or a complete-looking one that fails its CRC. Opening a
  log for writing finds it and truncates it (``LogWriter.truncated`` says how many bytes), but only
  when nothing valid follows: a bad record with valid records after it is damage in the middle
  of the log, and the writer refuses the file (CorruptLog) instead of cutting good records.
- Never a silent mis-read: a reader raises CorruptRecord (with the offset) at a record that fails
  its CRC or has an impossible length; an incomplete record at the very end is not yielded and is
  reported in ``LogReader.tail_bytes`` (a live writer may be in the middle of it).
- ``verify`` reads everything and reports: records, CRC failures (and resynchronises past them),
  torn tail, index entries that disagree with the log, and per station: duplicates and gaps of
  seq (the station's one counter, shared by its telemetry, event and ack frames; commands carry
  the control room's own numbers and are checked apart).
"""

from __future__ import annotations

import bisect
import fcntl
import mmap
import os
import struct
import zlib
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

MAGIC = b"RPLOG\x00\x01\x00"
HEAD = struct.Struct(">I")  # body length
BODY_FIXED = struct.Struct(">QBBB")  # receive time, kind, flags, site length
CRC = struct.Struct(">I")
BODY_MIN = BODY_FIXED.size + 1  # a body with empty names and no payload
BODY_MAX = 1 << 20  # no MQTT payload the recorder takes is this large
NAME_MAX = 255  # bytes of UTF-8 (one length byte)
INDEX_ENTRY = struct.Struct(">QQIIII")
INDEX_SIZE = INDEX_ENTRY.size + 4
INDEX_EVERY = 4096
BLOCK_SPAN_S = 3600
UNSYNCED_BELOW = 1_000_000_000  # timestamp_s below this: the station's clock was not set

KIND_STATUS, KIND_TELEMETRY, KIND_EVENT, KIND_ACK, KIND_CMD, KIND_OTHER = 0, 1, 2, 3, 4, 255
KINDS = {
    "status": KIND_STATUS,
    "telemetry": KIND_TELEMETRY,
    "event": KIND_EVENT,
    "ack": KIND_ACK,
    "cmd": KIND_CMD,
}
KIND_NAMES = {v: k for k, v in KINDS.items()} | {KIND_OTHER: "other"}
FLAG_RETAINED = 1
FLAG_DUP = 2

_FRAME_HEAD = struct.Struct(">2sBBIII")  # magic, version, kind, station_id, seq, timestamp_s
_SEQ_TS = struct.Struct(">II")  # seq, timestamp_s of a frame's head
_SEQ_AT = 8  # their offset in it
_VERIFY_HEAD = struct.Struct(">IQBBB")  # body length, then the body's receive time, kind, flags, s


class LogError(ValueError):
    """Base of the log's typed errors."""


class NotALog(LogError):
    """The file does not start with the log's magic."""


class CorruptRecord(LogError):
    """A record fails its CRC or has an impossible length (``offset`` says where)."""

    def __init__(self, offset: int, why: str):
        super().__init__(f"record at offset {offset}: {why}")
        self.offset = offset
        self.why = why


class CorruptLog(LogError):
    """Damage with valid records after it: not a torn tail, nothing is truncated."""


@dataclass(frozen=True)
class Record:
    offset: int  # of the record in the log
    receive_us: int
    kind: int
    flags: int
    site: str
    station: str
    payload: bytes

    @property
    def kind_name(self) -> str:
        return KIND_NAMES.get(self.kind, "other")

    @property
    def time_s(self) -> int:
        return record_time(self.payload, self.receive_us, self.kind)

    @property
    def topic(self) -> str:
        """The message's topic (kind 255 records carry it in front of the message)."""
        if self.kind == KIND_OTHER:
            return self.payload.split(b"\0", 1)[0].decode("utf-8", "replace")
        return f"relaypump/{self.site}/{self.station}/{self.kind_name}"

    @property
    def message(self) -> bytes:
        """The message as the broker delivered it."""
        if self.kind == KIND_OTHER:
            return self.payload.split(b"\0", 1)[1] if b"\0" in self.payload else b""
        return self.payload

    @property
    def frame_seq(self) -> int | None:
        """The uplink frame's seq, or None when the payload is not an uplink frame."""
        head = frame_head(self.payload) if self.kind != KIND_OTHER else None
        return None if head is None else head[1]


def frame_head(payload) -> tuple[int, int, int] | None:
    """(station_id, seq, timestamp_s) of an uplink frame's header, or None for anything else."""
    if len(payload) < _FRAME_HEAD.size or payload[0] != 0x52 or payload[1] != 0x50:  # b"RP"
        return None
    return _FRAME_HEAD.unpack_from(payload)[3:]


def record_time(payload, receive_us: int, kind: int = KIND_TELEMETRY) -> int:
    head = frame_head(payload) if kind != KIND_OTHER else None
    if head is not None and head[2] >= UNSYNCED_BELOW:
        return head[2]
    return receive_us // 1_000_000


def encode_record(
    receive_us: int, kind: int, flags: int, site: str, station: str, payload
) -> bytes:
    """One record's bytes (length, body, CRC)."""
    return _Codec().encode(receive_us, kind, flags, site, station, payload)


class _Codec:
    """Record encoding with the names' bytes cached per (site, station)."""

    def __init__(self):
        self._names: dict[tuple[str, str], bytes] = {}

    def encode(self, receive_us: int, kind: int, flags: int, site: str, station: str, payload):
        names = self._names.get((site, station))
        if names is None:
            s, n = site.encode(), station.encode()
            if len(s) > NAME_MAX or len(n) > NAME_MAX:
                raise LogError(
                    f"names are at most {NAME_MAX} bytes: {site[:40]!r}/{station[:40]!r}"
                )
            names = bytes((len(s),)) + s + bytes((len(n),)) + n
            self._names[(site, station)] = names
        body = b"".join((struct.pack(">QBB", receive_us, kind, flags), names, payload))
        if len(body) > BODY_MAX:
            raise LogError(f"payload of {len(payload)} bytes is over the record limit")
        head = HEAD.pack(len(body))
        return b"".join((head, body, CRC.pack(zlib.crc32(body, zlib.crc32(head)))))


def decode_at(data, offset: int) -> tuple[Record | None, int]:
    """The record at offset of data: (record, next offset); (None, offset) when data ends inside
    it (incomplete). CorruptRecord for a bad length or CRC."""
    end = len(data)
    if offset + HEAD.size > end:
        return None, offset
    (length,) = HEAD.unpack_from(data, offset)
    if not BODY_MIN <= length <= BODY_MAX:
        raise CorruptRecord(offset, f"impossible body length {length}")
    stop = offset + HEAD.size + length + CRC.size
    if stop > end:
        return None, offset
    body_at = offset + HEAD.size
    (crc,) = CRC.unpack_from(data, stop - CRC.size)
    if zlib.crc32(data[offset : stop - CRC.size]) != crc:
        raise CorruptRecord(offset, "CRC mismatch")
    receive_us, kind, flags, s = BODY_FIXED.unpack_from(data, body_at)
    pos = body_at + BODY_FIXED.size
    body_end = stop - CRC.size
    if pos + s + 1 > body_end:
        raise CorruptRecord(offset, "site name runs past the body")
    site = bytes(data[pos : pos + s]).decode("utf-8", "replace")
    pos += s
    n = data[pos]
    pos += 1
    if pos + n > body_end:
        raise CorruptRecord(offset, "station name runs past the body")
    station = bytes(data[pos : pos + n]).decode("utf-8", "replace")
    pos += n
    payload = bytes(data[pos:body_end])
    return Record(offset, receive_us, kind, flags, site, station, payload), stop


def _valid_after(data, offset: int) -> int | None:
    """The first offset after `offset` where a complete record passes its CRC, or None."""
    for pos in range(offset + 1, len(data) - HEAD.size - BODY_MIN - CRC.size + 1):
        try:
            record, _ = decode_at(data, pos)
        except CorruptRecord:
            continue
        if record is not None:
            return pos
    return None


@dataclass
class IndexEntry:
    offset: int
    length: int
    count: int
    first_s: int
    min_s: int
    max_s: int

    def encode(self) -> bytes:
        raw = INDEX_ENTRY.pack(
            self.offset, self.length, self.count, self.first_s, self.min_s, self.max_s
        )
        return raw + CRC.pack(zlib.crc32(raw))


def index_path(path: Path) -> Path:
    return Path(str(path) + ".idx")


def read_index(path: Path, log_size: int) -> list[IndexEntry]:
    """The valid prefix of the index: entries whose CRC holds, that chain from the log's first
    record (each block starts where the previous one ended) and that end inside the log."""
    try:
        raw = index_path(path).read_bytes()
    except FileNotFoundError:
        return []
    entries: list[IndexEntry] = []
    expect = len(MAGIC)
    for pos in range(0, len(raw) - INDEX_SIZE + 1, INDEX_SIZE):
        chunk = raw[pos : pos + INDEX_SIZE]
        if zlib.crc32(chunk[:-4]) != CRC.unpack_from(chunk, INDEX_SIZE - 4)[0]:
            break
        entry = IndexEntry(*INDEX_ENTRY.unpack_from(chunk))
        if entry.offset != expect or entry.offset + entry.length > log_size or not entry.count:
            break
        entries.append(entry)
        expect = entry.offset + entry.length
    return entries


class _Block:
    """The open block: where it starts, its record count and times."""

    def __init__(self, offset: int):
        self.offset = offset
        self.count = 0
        self.first_s = self.min_s = self.max_s = 0

    def ends_before(self, t: int, every: int) -> bool:
        return self.count >= every or (self.count > 0 and t >= self.first_s + BLOCK_SPAN_S)

    def add(self, t: int) -> None:
        if self.count == 0:
            self.first_s = self.min_s = self.max_s = t
        else:
            self.min_s = min(self.min_s, t)
            self.max_s = max(self.max_s, t)
        self.count += 1

    def entry(self, end: int) -> IndexEntry:
        return IndexEntry(
            self.offset, end - self.offset, self.count, self.first_s, self.min_s, self.max_s
        )


def _torn_magic(path: Path) -> bool:
    """An empty file, or one holding part of the magic (its creation was cut short)."""
    if path.stat().st_size >= len(MAGIC):
        return False
    return MAGIC.startswith(path.read_bytes())


class LogWriter:
    """Appends records to a log (made when missing); see the module's rules for reopening."""

    def __init__(self, path, index_every: int = INDEX_EVERY, buffer_size: int = 1 << 20):
        self.path = Path(path)
        self.index_every = index_every
        self.truncated = 0  # bytes of torn tail cut off when the log was opened
        self._codec = _Codec()
        if not self.path.exists() or _torn_magic(self.path):
            with open(self.path, "wb") as f:
                f.write(MAGIC)
                f.flush()
                os.fsync(f.fileno())
            index_path(self.path).write_bytes(b"")
        # O_APPEND: every write lands at the end, also after _recover truncates a torn tail
        self._file = open(self.path, "ab", buffering=buffer_size)
        try:
            fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._file.close()
            raise LogError(f"{self.path}: another writer has it open") from None
        entries, block, size = self._recover()
        self.size = size
        self.block = block
        self.indexed = entries
        self._index = open(index_path(self.path), "ab")
        self.records_written = 0

    def _recover(self) -> tuple[list[IndexEntry], _Block, int]:
        size = self.path.stat().st_size
        with open(self.path, "rb") as f:
            magic = f.read(len(MAGIC))
            if magic != MAGIC:
                raise NotALog(f"{self.path}: not a telemetry log (magic {magic!r})")
            # the last indexed block is read again too: its entry may have reached the disk
            # before its records did (a power loss)
            entries = read_index(self.path, size)[:-1]
            start = entries[-1].offset + entries[-1].length if entries else len(MAGIC)
            f.seek(start)
            tail = f.read()
        with open(index_path(self.path), "ab") as f:
            f.truncate(len(entries) * INDEX_SIZE)  # a torn or stale index tail goes
        block = _Block(start)
        new_entries = []
        pos = 0  # in tail
        while pos < len(tail):
            try:
                record, nxt = decode_at(tail, pos)
            except CorruptRecord as err:
                if _valid_after(tail, pos) is not None:
                    raise CorruptLog(
                        f"{self.path}: bad record at offset {start + pos} ({err.why}),"
                        " and valid records follow"
                    ) from err
                record = None
            if record is None:  # torn tail: cut it off
                self.truncated = len(tail) - pos
                with open(self.path, "r+b") as f:
                    f.truncate(start + pos)
                    os.fsync(f.fileno())
                break
            t = record.time_s
            if block.ends_before(t, self.index_every):
                new_entries.append(block.entry(start + pos))
                block = _Block(start + pos)
            block.add(t)
            pos = nxt
        if new_entries:  # blocks the index had not recorded (it lagged, or was lost)
            with open(index_path(self.path), "ab") as f:
                f.write(b"".join(e.encode() for e in new_entries))
        return entries + new_entries, block, start + pos

    def append(
        self,
        receive_us: int,
        kind: int,
        site: str,
        station: str,
        payload,
        flags: int = 0,
        time_s: int | None = None,
    ) -> int:
        """Add one record (buffered); returns its offset. time_s: its record time when the
        caller already has it (as record_time computes it)."""
        t = record_time(payload, receive_us, kind) if time_s is None else time_s
        block = self.block
        if block.ends_before(t, self.index_every):
            entry = block.entry(self.size)
            # the index entry may only name bytes the OS has: the log's buffer goes first
            self._file.flush()
            self._index.write(entry.encode())
            self._index.flush()
            self.indexed.append(entry)
            block = self.block = _Block(self.size)
        block.add(t)
        raw = self._codec.encode(receive_us, kind, flags, site, station, payload)
        self._file.write(raw)
        offset = self.size
        self.size += len(raw)
        self.records_written += 1
        return offset

    def flush(self) -> None:
        """Every record appended so far is in the OS (survives this process, not a power loss)."""
        self._file.flush()

    def sync(self) -> None:
        """flush, then fsync the log and the index."""
        self._file.flush()
        os.fsync(self._file.fileno())
        os.fsync(self._index.fileno())

    def close(self) -> None:
        if not self._file.closed:
            self.sync()
            self._file.close()
            self._index.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class LogReader:
    """Reads a log (the whole file is read into memory when opened)."""

    def __init__(self, path):
        self.path = Path(path)
        with open(self.path, "rb") as f:
            if os.fstat(f.fileno()).st_size < len(MAGIC):
                raise NotALog(f"{self.path}: not a telemetry log (shorter than its magic)")
            # mapped, not read: seeking by time touches only the blocks it reads
            self.data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        if self.data[: len(MAGIC)] != MAGIC:
            raise NotALog(f"{self.path}: not a telemetry log (magic {self.data[:8]!r})")
        self.index = read_index(self.path, len(self.data))
        self.tail_bytes = 0  # an incomplete record at the end (torn, or being written)

    def records(self, start_s: int | None = None, end_s: int | None = None) -> Iterator[Record]:
        """Records in log order; with start_s/end_s only those with start_s <= time_s < end_s
        (whole index blocks outside the range are skipped)."""
        lo, hi = _bounds(start_s, end_s)
        for pos, stop in self._spans(lo, hi):
            yield from self._scan(pos, stop, lo, hi)

    def count(self, kinds, start_s: int | None = None, end_s: int | None = None) -> int:
        """How many of records(start_s, end_s) are of `kinds`, each CRC-checked as records()
        checks it (CorruptRecord; tail_bytes), without making a Record of each."""
        lo, hi = _bounds(start_s, end_s)
        return sum(self._count(pos, stop, lo, hi, kinds) for pos, stop in self._spans(lo, hi))

    def _spans(self, lo: int | None, hi: int | None) -> Iterator[tuple[int, int]]:
        """(from, to) of the parts of the log that may hold records with lo <= time < hi, in
        log order: the indexed blocks that overlap the range, then the open block."""
        pos = len(MAGIC)
        if lo is not None and hi is not None:
            for entry in self.index:
                if entry.max_s >= lo and entry.min_s < hi:
                    yield entry.offset, entry.offset + entry.length
                pos = entry.offset + entry.length
        yield pos, len(self.data)

    def records_from(self, offset: int) -> Iterator[Record]:
        """Records from a record boundary (an index entry's offset) to the end."""
        yield from self._scan(offset, len(self.data), None, None)

    def seek(self, start_s: int) -> int:
        """Offset of the first indexed block that may hold a record at or after start_s (the
        open block's offset when none does)."""
        for entry in self.index:
            if entry.max_s >= start_s:
                return entry.offset
        return self.index[-1].offset + self.index[-1].length if self.index else len(MAGIC)

    def _scan(self, pos: int, stop: int, lo, hi) -> Iterator[Record]:
        data = self.data
        while pos < stop:
            record, nxt = decode_at(data, pos)
            if record is None:
                self.tail_bytes = len(data) - pos
                return
            if lo is None or lo <= record.time_s < hi:
                yield record
            pos = nxt

    def _count(self, pos: int, stop: int, lo, hi, kinds) -> int:
        """_scan's records of `kinds` counted: the fixed head by struct, the CRC on a memoryview
        (as verify); what that does not take whole is decode_at's to judge."""
        data = self.data
        end, total = len(data), 0
        head, crc_of, stamp_of, crc32 = (
            _VERIFY_HEAD.unpack_from,
            CRC.unpack_from,
            _SEQ_TS.unpack_from,
            zlib.crc32,
        )
        with memoryview(data) as view:
            while pos < stop:
                if pos + _VERIFY_HEAD.size <= end:
                    length, receive_us, kind, _, s = head(data, pos)
                    nxt = pos + HEAD.size + length + CRC.size
                    n_at = pos + HEAD.size + BODY_FIXED.size + s
                    crc_at = nxt - CRC.size
                    if (
                        BODY_MIN <= length <= BODY_MAX
                        and nxt <= end
                        and n_at < crc_at
                        and n_at + 1 + data[n_at] <= crc_at
                        and crc32(view[pos:crc_at]) == crc_of(data, crc_at)[0]
                    ):
                        if kind in kinds:
                            if lo is None:
                                total += 1
                            else:
                                at = n_at + 1 + data[n_at]  # the payload
                                t = receive_us // 1_000_000
                                if (
                                    kind != KIND_OTHER
                                    and crc_at - at >= _FRAME_HEAD.size
                                    and data[at] == 0x52  # b"RP"
                                    and data[at + 1] == 0x50
                                ):
                                    stamp = stamp_of(data, at + _SEQ_AT)[1]
                                    if stamp >= UNSYNCED_BELOW:
                                        t = stamp
                                total += lo <= t < hi
                        pos = nxt
                        continue
                record, _ = decode_at(data, pos)  # raises CorruptRecord for damage
                if record is None:
                    self.tail_bytes = end - pos
                    return total
                raise AssertionError(f"count's fast path refused the sound record at {pos}")
        return total

    def __iter__(self) -> Iterator[Record]:
        return self.records()


def _bounds(start_s: int | None, end_s: int | None) -> tuple[int | None, int | None]:
    """A time range's bounds: (None, None) for none, else both (open ends made wide)."""
    if start_s is None and end_s is None:
        return None, None
    return (0 if start_s is None else start_s), (1 << 32 if end_s is None else end_s)


@dataclass
class Report:
    records: int = 0
    crc_errors: list[int] = field(default_factory=list)  # offsets
    tail_bytes: int = 0
    index_entries: int = 0
    index_problems: list[str] = field(default_factory=list)
    duplicates: dict[tuple, int] = field(default_factory=dict)  # (site, station, dir) -> count
    gaps: dict[tuple, list[tuple[int, int]]] = field(default_factory=dict)  # missing seq ranges

    @property
    def ok(self) -> bool:
        return not (self.crc_errors or self.index_problems or self.duplicates or self.gaps)

    def lines(self) -> list[str]:
        out = [f"records: {self.records}", f"index entries: {self.index_entries}"]
        out += [f"CRC error at offset {o}" for o in self.crc_errors]
        if self.tail_bytes:
            out.append(f"incomplete tail: {self.tail_bytes} bytes")
        out += [f"index: {p}" for p in self.index_problems]
        for key, n in sorted(self.duplicates.items()):
            out.append(f"{_who(key)}: {n} duplicate frame(s)")
        for key, ranges in sorted(self.gaps.items()):
            shown = ", ".join(f"{a}..{b}" if a != b else f"{a}" for a, b in ranges[:10])
            more = f" (+{len(ranges) - 10} more)" if len(ranges) > 10 else ""
            out.append(f"{_who(key)}: seq missing {shown}{more}")
        return out


def _who(key: tuple) -> str:
    site, station, commands = key
    return f"{site}/{station}{' commands' if commands else ''}"


def stream_key(record: Record) -> tuple[str, str, bool]:
    """Whose seq counter a frame carries: the station's, or the control room's (commands)."""
    return record.site, record.station, record.kind == KIND_CMD


def verify(path) -> Report:
    """Check every record's CRC, the index against the log, and per station seq duplicates and
    gaps (seq compared modulo 2**32 in arrival order; a gap is a range never seen).

    One pass over the mapped file without a Record per record (the season's 1.3 M): the fixed
    head by struct, the CRC by zlib.crc32 on a memoryview, each record's offset and time into
    arrays, each stream's seqs into an array; the index is then checked against those arrays
    and the seqs by one comparison with the run they would be without gaps or duplicates. A
    record the fast path does not take whole (damage, a torn tail, a name past its body) is
    decode_at's to judge, exactly as LogReader judges it."""
    reader = LogReader(path)
    data = reader.data
    report = Report(index_entries=len(reader.index))
    offsets, times = array("Q"), array("q")  # of every sound record, in log order
    streams: dict[tuple[bytes, bool], array] = {}  # (name bytes, commands) -> seqs
    head, crc_of, frame_seq_ts = _VERIFY_HEAD.unpack_from, CRC.unpack_from, _SEQ_TS.unpack_from
    crc32, end, pos = zlib.crc32, len(data), len(MAGIC)
    resumed: list[int] = []  # where the scan found a sound record again after each CRC error
    last_key: tuple[bytes, bool] | None = None
    add_offset, add_time, add_seq = offsets.append, times.append, None
    with memoryview(data) as view:
        while pos < end:
            if pos + _VERIFY_HEAD.size <= end:
                length, receive_us, kind, _, s = head(data, pos)
                stop = pos + HEAD.size + length + CRC.size
                names_at = pos + HEAD.size + BODY_FIXED.size - 1  # the site's length byte
                n_at = names_at + 1 + s
                crc_at = stop - CRC.size
                if (
                    BODY_MIN <= length <= BODY_MAX
                    and stop <= end
                    and n_at < crc_at
                    and n_at + 1 + data[n_at] <= crc_at
                    and crc32(view[pos:crc_at]) == crc_of(data, crc_at)[0]
                ):
                    at = n_at + 1 + data[n_at]  # the payload
                    t = receive_us // 1_000_000
                    if (
                        kind != KIND_OTHER
                        and crc_at - at >= _FRAME_HEAD.size
                        and data[at] == 0x52  # b"RP": an uplink frame
                        and data[at + 1] == 0x50
                    ):
                        seq, frame_t = frame_seq_ts(data, at + _SEQ_AT)
                        if frame_t >= UNSYNCED_BELOW:
                            t = frame_t
                        if kind != KIND_STATUS:
                            key = (data[names_at:at], kind == KIND_CMD)
                            if key != last_key:
                                last_key = key
                                add_seq = streams.setdefault(key, array("L")).append
                            add_seq(seq)  # type: ignore[misc]
                    add_offset(pos)
                    add_time(t)
                    pos = stop
                    continue
            try:  # not a whole sound record: decode_at's judgement
                record, nxt = decode_at(data, pos)
            except CorruptRecord:
                report.crc_errors.append(pos)
                nxt = _valid_after(data, pos)
                resumed.append(end if nxt is None else nxt)
                if nxt is None:
                    report.tail_bytes = end - pos
                    break
                pos = nxt
                continue
            if record is None:
                report.tail_bytes = end - pos
                break
            raise AssertionError(f"verify's fast path refused the sound record at {pos}")
    report.records = len(offsets)
    records_end = pos
    for entry in reader.index:
        stop = entry.offset + entry.length
        k = bisect.bisect_left(report.crc_errors, stop) - 1  # the last damage starting in it
        if k >= 0 and resumed[k] > entry.offset:
            continue  # damage reaches into it (reported above): its records cannot be trusted
        i, j = bisect.bisect_left(offsets, entry.offset), bisect.bisect_left(offsets, stop)
        if stop > records_end:  # past where the scan stopped (a length ran past the end)
            sound = _block_agrees(reader, entry)
        elif i == len(offsets) or offsets[i] != entry.offset or j - i != entry.count:
            sound = False
        else:  # its last record ends at its end: where the next record, or damage, begins
            after = offsets[j] if j < len(offsets) else records_end
            k = bisect.bisect_right(report.crc_errors, offsets[j - 1])
            if k < len(report.crc_errors):
                after = min(after, report.crc_errors[k])
            block = times[i:j]
            sound = after == stop and (min(block), max(block)) == (entry.min_s, entry.max_s)
        if not sound:
            report.index_problems.append(f"block at {entry.offset} disagrees with its records")
    by_station: dict[tuple, list[array]] = {}
    for (names, commands), seqs in streams.items():
        s = names[0]
        site = names[1 : 1 + s].decode("utf-8", "replace")
        station = names[2 + s :].decode("utf-8", "replace")
        by_station.setdefault((site, station, commands), []).append(seqs)
    for key, parts in by_station.items():
        if len(parts) == 1 and _in_sequence(parts[0]):
            continue  # no duplicate, no gap
        seen: set[int] = set()
        count = 0
        for seqs in parts:
            seen.update(seqs)
            count += len(seqs)
        if count > len(seen):
            report.duplicates[key] = count - len(seen)
        ranges = _missing(seen)
        if ranges:
            report.gaps[key] = ranges
    return report


def _block_agrees(reader: LogReader, entry: IndexEntry) -> bool:
    """The block's records, read on their own, are as many as it says, with its times."""
    try:
        times = [
            r.time_s for r in reader._scan(entry.offset, entry.offset + entry.length, None, None)
        ]
    except CorruptRecord:
        return False
    return len(times) == entry.count and (min(times, default=0), max(times, default=0)) == (
        entry.min_s,
        entry.max_s,
    )


def _in_sequence(seqs: array) -> bool:
    """seqs is first, first + 1, ... (modulo 2**32): no duplicate and no gap."""
    first, count = seqs[0], len(seqs)
    head = min(count, (1 << 32) - first)  # the rest wrapped to 0
    return seqs[:head] == array("L", range(first, first + head)) and seqs[head:] == array(
        "L", range(count - head)
    )


def _missing(seen: set[int]) -> list[tuple[int, int]]:
    """Missing ranges between the lowest and highest seq (a wrap at 2**32 is taken when the
    set spans more than half the range)."""
    if not seen:
        return []
    ordered = sorted(seen)
    # a counter that wrapped: the biggest hole is the wrap point, rotate the list there
    holes = [(ordered[(i + 1) % len(ordered)] - s) % (1 << 32) for i, s in enumerate(ordered)]
    start = (holes.index(max(holes)) + 1) % len(ordered) if len(ordered) > 1 else 0
    ordered = ordered[start:] + ordered[:start]
    out = []
    for a, b in zip(ordered, ordered[1:], strict=False):
        if (b - a) % (1 << 32) > 1:
            out.append(((a + 1) % (1 << 32), (b - 1) % (1 << 32)))
    return out
