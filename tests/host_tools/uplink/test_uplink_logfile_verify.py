"""logfile.verify's one pass over the mapped log against the plain record-by-record reading it
replaced (decode_at, Record, a set per stream): the same Report for sound logs and for every kind
of damage; LogReader.count against counting records(); and the fixed offsets they read a frame's
head at are protocol/uplink.py's."""

import random
import zlib

import pytest
from uplink_frames import T0, ack, event, telemetry, with_header

from host_tools.uplink import logfile
from host_tools.uplink.logfile import (
    INDEX_ENTRY,
    INDEX_SIZE,
    KIND_ACK,
    KIND_CMD,
    KIND_EVENT,
    KIND_OTHER,
    KIND_STATUS,
    KIND_TELEMETRY,
    MAGIC,
    CorruptRecord,
    LogReader,
    LogWriter,
    Report,
    decode_at,
    index_path,
    verify,
)
from protocol import uplink


def reference_verify(path) -> Report:
    """verify as the format's rules say it, one Record at a time."""
    reader = LogReader(path)
    data = reader.data
    report = Report(index_entries=len(reader.index))
    seqs: dict[tuple, list[int]] = {}
    damage = []  # (from, to) of each CRC error up to where a sound record follows
    pos = len(MAGIC)
    while pos < len(data):
        try:
            record, nxt = decode_at(data, pos)
        except CorruptRecord:
            report.crc_errors.append(pos)
            nxt = logfile._valid_after(data, pos)
            damage.append((pos, len(data) if nxt is None else nxt))
            if nxt is None:
                report.tail_bytes = len(data) - pos
                break
            pos = nxt
            continue
        if record is None:
            report.tail_bytes = len(data) - pos
            break
        report.records += 1
        if record.frame_seq is not None and record.kind != KIND_STATUS:
            seqs.setdefault(logfile.stream_key(record), []).append(record.frame_seq)
        pos = nxt
    for entry in reader.index:
        end = entry.offset + entry.length
        if any(a < end and b > entry.offset for a, b in damage):
            continue
        try:
            times = [r.time_s for r in reader._scan(entry.offset, end, None, None)]
        except CorruptRecord:
            times = None
        if (
            times is None
            or len(times) != entry.count
            or ((min(times), max(times)) != (entry.min_s, entry.max_s))
        ):
            report.index_problems.append(f"block at {entry.offset} disagrees with its records")
    for key, got in seqs.items():
        if len(got) > len(set(got)):
            report.duplicates[key] = len(got) - len(set(got))
        ranges = logfile._missing(set(got))
        if ranges:
            report.gaps[key] = ranges
    return report


STATIONS = [("jia", "relay1"), ("jia", "relay2"), ("oulu", "pump-ä"), ("", "")]


def random_log(path, rng: random.Random, count: int, every: int):
    """Stations with their own counters (one near the wrap), each kind, the commands' own
    counter, status and foreign-topic messages, unsynced clocks, repeats and holes."""
    next_seq = {s: rng.choice([0, 5, 2**32 - 3]) for s in STATIONS}
    command_seq = 100
    with LogWriter(path, index_every=every) as w:
        for i in range(count):
            site, station = rng.choice(STATIONS)
            recv = (T0 + i) * 1_000_000 + rng.randrange(1_000_000)
            roll = rng.random()
            if roll < 0.05:
                w.append(recv, KIND_STATUS, site, station, rng.choice([b"online", b"offline"]))
                continue
            if roll < 0.08:
                w.append(recv, KIND_OTHER, "", "", b"some/other/topic\0" + bytes(rng.randrange(9)))
                continue
            if roll < 0.11:
                command_seq += rng.choice([1, 1, 0, 3])
                w.append(recv, KIND_CMD, site, station, with_header(ack(), 1, command_seq, T0 + i))
                continue
            seq = next_seq[(site, station)]
            next_seq[(site, station)] = (seq + rng.choice([1] * 30 + [0, 2, 5])) % 2**32
            stamp = T0 + i * 10 if rng.random() > 0.02 else 1234  # a clock not yet set
            kind, frame = rng.choice(
                [(KIND_TELEMETRY, telemetry()), (KIND_EVENT, event()), (KIND_ACK, ack())]
            )
            w.append(recv, kind, site, station, with_header(frame, 7, seq, stamp))
    return path


def damage(path, rng: random.Random, how: str) -> None:
    raw = bytearray(path.read_bytes())
    if how == "bits":
        for _ in range(rng.randrange(1, 4)):
            raw[rng.randrange(len(MAGIC), len(raw))] ^= 1 << rng.randrange(8)
    elif how == "torn":
        del raw[len(raw) - rng.randrange(1, 40) :]
    elif how == "garbage":
        raw += bytes(rng.randrange(256) for _ in range(rng.randrange(1, 60)))
    elif how == "length":  # a length field made impossible
        raw[len(MAGIC) : len(MAGIC) + 4] = (1 << 31).to_bytes(4, "big")
    path.write_bytes(bytes(raw))
    if how == "index":  # an entry that counts wrong, with a valid CRC (read_index keeps it)
        idx = bytearray(index_path(path).read_bytes())
        k = rng.randrange(len(idx) // INDEX_SIZE) * INDEX_SIZE
        fields = list(INDEX_ENTRY.unpack_from(idx, k))
        fields[rng.choice([2, 4, 5])] += 1
        entry = INDEX_ENTRY.pack(*fields)
        idx[k : k + INDEX_SIZE] = entry + zlib.crc32(entry).to_bytes(4, "big")
        index_path(path).write_bytes(bytes(idx))


@pytest.mark.parametrize("how", ["none", "bits", "torn", "garbage", "length", "index"])
@pytest.mark.parametrize("seed", range(6))
def test_verify_gives_the_record_by_record_report(tmp_path, how, seed):
    rng = random.Random(f"{how}{seed}")
    every = rng.choice([7, 50] if how == "index" else [7, 50, 4096])  # 4096: all one open block
    path = random_log(tmp_path / "a.rplog", rng, rng.randrange(60, 600), every)
    damage(path, rng, how)
    expected = reference_verify(path)
    assert verify(path) == expected
    if how == "none":
        assert expected.records and (expected.duplicates or expected.gaps)


@pytest.mark.parametrize("how", ["none", "bits", "torn", "length"])
@pytest.mark.parametrize("seed", range(4))
def test_count_is_what_records_yields_and_refuses_what_it_refuses(tmp_path, how, seed):
    rng = random.Random(f"count{how}{seed}")
    path = random_log(tmp_path / "a.rplog", rng, rng.randrange(60, 600), rng.choice([7, 50]))
    damage(path, rng, how)
    times = [T0 + rng.randrange(-100, 7000) for _ in range(2)]
    kinds_choices = [{KIND_TELEMETRY}, {KIND_STATUS, KIND_EVENT, KIND_ACK, KIND_OTHER}]
    for lo, hi in [(None, None), (min(times), None), (None, max(times)), sorted(times)]:
        for kinds in kinds_choices:
            counted, listed = LogReader(path), LogReader(path)
            try:
                want = sum(1 for r in listed.records(lo, hi) if r.kind in kinds)
            except CorruptRecord as err:
                with pytest.raises(CorruptRecord) as got:
                    counted.count(kinds, lo, hi)
                assert got.value.offset == err.offset
                continue
            assert counted.count(kinds, lo, hi) == want
            assert counted.tail_bytes == listed.tail_bytes


def test_a_long_clean_run_and_a_wrapped_counter_need_no_set(tmp_path):
    path = tmp_path / "a.rplog"
    with LogWriter(path, index_every=100) as w:
        for i in range(1000):
            seq = (2**32 - 500 + i) % 2**32
            w.append(
                T0 * 10**6, KIND_TELEMETRY, "jia", "r1", with_header(telemetry(), 1, seq, T0 + i)
            )
    report = verify(path)
    assert report.ok and report.records == 1000 and report.index_entries == 9
    assert report == reference_verify(path)


def test_frame_head_reads_the_protocols_header():
    for build, frame in [
        (uplink.telemetry, telemetry(3, 77, T0 + 5)),
        (uplink.event, event(3, 77, T0 + 5)),
        (uplink.ack, ack(3, 77, T0 + 5)),
    ]:
        parsed = uplink.parse(build, frame)
        head = (parsed.station_id, parsed.seq, parsed.timestamp_s)
        assert logfile.frame_head(frame) == head == (3, 77, T0 + 5)
        assert logfile._SEQ_TS.unpack_from(frame, logfile._SEQ_AT) == head[1:]
        assert len(frame) >= logfile._FRAME_HEAD.size == uplink.HEADER_SIZE
