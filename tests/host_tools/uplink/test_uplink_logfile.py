"""The telemetry log format (host_tools/uplink/logfile.py): records, CRC, torn tails, the index,
verify, and the recorder's duplicate window."""

import os
import zlib

import pytest
from uplink_frames import T0, event, telemetry, with_header

from host_tools.uplink import logfile
from host_tools.uplink.logfile import (
    KIND_EVENT,
    KIND_STATUS,
    KIND_TELEMETRY,
    MAGIC,
    CorruptLog,
    CorruptRecord,
    LogReader,
    LogWriter,
    verify,
)
from host_tools.uplink.recorder import Recorder, SeqWindow

RECV_US = (T0 + 5) * 1_000_000
BASE = telemetry(suction_kpa_x10=1600)


def write_log(path, count, stations=("relay1", "relay2"), every=50, step_s=10, start=T0):
    """count telemetry records, stations round robin, seq per station, one frame each step_s."""
    with LogWriter(path, index_every=every) as w:
        for i in range(count):
            n = i % len(stations)
            seq = i // len(stations)
            frame = with_header(BASE, n + 1, seq, start + seq * step_s)
            w.append(RECV_US + i, KIND_TELEMETRY, "jia", stations[n], frame)
    return path


def test_records_round_trip_with_their_fields(tmp_path):
    path = tmp_path / "a.rplog"
    frames = [with_header(BASE, 1, s, T0 + 10 * s) for s in range(5)]
    with LogWriter(path) as w:
        for i, f in enumerate(frames):
            w.append(RECV_US + i, KIND_TELEMETRY, "jia", "relay1", f, flags=logfile.FLAG_DUP)
        w.append(RECV_US + 9, KIND_STATUS, "jia", "relay1", b"offline", logfile.FLAG_RETAINED)
        w.append(RECV_US + 10, KIND_EVENT, "jia", "relay1", event(seq=5, timestamp_s=T0 + 51))
    records = list(LogReader(path))
    assert [r.payload for r in records[:5]] == frames
    assert [r.receive_us for r in records] == [RECV_US + i for i in range(5)] + [
        RECV_US + 9,
        RECV_US + 10,
    ]
    assert {(r.site, r.station) for r in records} == {("jia", "relay1")}
    assert [r.kind_name for r in records] == ["telemetry"] * 5 + ["status", "event"]
    assert records[0].flags == logfile.FLAG_DUP and records[5].flags == logfile.FLAG_RETAINED
    # record time: the frame's timestamp_s; a status message has the receive second
    assert [r.time_s for r in records] == [T0 + 10 * s for s in range(5)] + [T0 + 5, T0 + 51]
    assert records[5].frame_seq is None and records[6].frame_seq == 5
    # the documented layout, byte for byte: length, body, CRC of both
    raw = path.read_bytes()
    assert raw[:8] == MAGIC
    length = int.from_bytes(raw[8:12], "big")
    body = raw[12 : 12 + length]
    assert body[:8] == RECV_US.to_bytes(8, "big") and body[8] == KIND_TELEMETRY
    assert body[10:14] == b"\x03jia" and body[14:21] == b"\x06relay1" and body[21:] == frames[0]
    crc = int.from_bytes(raw[12 + length : 16 + length], "big")
    assert crc == zlib.crc32(raw[8 : 12 + length])


def test_unsynced_frame_time_falls_back_to_the_receive_time(tmp_path):
    path = tmp_path / "a.rplog"
    with LogWriter(path) as w:
        w.append(RECV_US, KIND_TELEMETRY, "jia", "relay1", with_header(BASE, 1, 0, 1234))
    assert next(iter(LogReader(path))).time_s == T0 + 5


@pytest.mark.parametrize("bit", [0, 7, 100, 200])
def test_crc_catches_a_flipped_bit(tmp_path, bit):
    path = write_log(tmp_path / "a.rplog", 10)
    raw = bytearray(path.read_bytes())
    record_size = (len(raw) - len(MAGIC)) // 10
    at = len(MAGIC) + 3 * record_size + bit // 8  # inside the fourth record
    raw[at] ^= 1 << (bit % 8)
    path.write_bytes(bytes(raw))
    reader = LogReader(path)
    with pytest.raises(CorruptRecord) as err:
        list(reader)
    assert err.value.offset == len(MAGIC) + 3 * record_size
    report = verify(path)
    assert report.crc_errors == [len(MAGIC) + 3 * record_size]
    assert report.records == 9 and not report.ok
    # valid records follow the damage: a writer refuses the file instead of cutting them off
    with pytest.raises(CorruptLog, match="valid records follow"):
        LogWriter(path, index_every=50)
    assert path.read_bytes() == bytes(raw)


def test_a_torn_tail_is_truncated_on_reopen_at_every_cut(tmp_path):
    whole = write_log(tmp_path / "whole.rplog", 7).read_bytes()
    record_size = (len(whole) - len(MAGIC)) // 7
    six = len(whole) - record_size
    for cut in range(1, record_size):
        path = tmp_path / f"cut{cut}.rplog"
        path.write_bytes(whole[: six + cut])
        reader = LogReader(path)
        assert len(list(reader)) == 6 and reader.tail_bytes == cut  # not yielded, reported
        with LogWriter(path, index_every=50) as w:
            assert w.truncated == cut
            w.append(RECV_US, KIND_TELEMETRY, "jia", "relay1", with_header(BASE, 1, 99, T0))
        records = list(LogReader(path))
        assert len(records) == 7 and records[-1].frame_seq == 99
        assert verify(path).crc_errors == []


def test_a_complete_last_record_with_garbage_is_a_torn_tail(tmp_path):
    path = write_log(tmp_path / "a.rplog", 5)
    raw = bytearray(path.read_bytes())
    raw[-20:] = bytes(20)  # the disk kept the length but not the last bytes
    path.write_bytes(bytes(raw))
    with pytest.raises(CorruptRecord):
        list(LogReader(path))  # a reader never yields it
    with LogWriter(path) as w:
        assert w.truncated > 0
    assert len(list(LogReader(path))) == 4


def test_seek_by_time_uses_the_index(tmp_path):
    path = write_log(tmp_path / "a.rplog", 2000, every=100)  # 1000 s per block of 100
    reader = LogReader(path)
    assert len(reader.index) == 19  # the last 100 records are the open block
    everything = list(reader)
    for start in (T0, T0 + 1234, T0 + 5000, T0 + 9985, T0 + 20000):
        want = [r for r in everything if r.time_s >= start]
        assert list(reader.records(start_s=start)) == want
    # whole blocks before the time are skipped: seek lands on the block holding it
    offset = reader.seek(T0 + 5000)
    assert offset > len(MAGIC)
    assert min(r.time_s for r in reader.records_from(offset)) <= T0 + 5000
    block = next(e for e in reader.index if e.offset == offset)
    assert block.min_s <= T0 + 5000 <= block.max_s
    window = list(reader.records(start_s=T0 + 100, end_s=T0 + 200))
    assert [r.time_s for r in window] == sorted(2 * [T0 + 100 + 10 * k for k in range(10)])


def test_blocks_end_after_an_hour_of_frame_time_and_late_frames_are_found(tmp_path):
    path = tmp_path / "a.rplog"
    with LogWriter(path, index_every=10_000) as w:
        for k in range(100):  # one frame a minute: 100 minutes
            w.append(RECV_US, KIND_TELEMETRY, "jia", "relay1", with_header(BASE, 1, k, T0 + 60 * k))
        # a station's outbox flushed late: frames from the first minutes arrive now
        for k in range(3):
            w.append(RECV_US, KIND_TELEMETRY, "jia", "relay2", with_header(BASE, 2, k, T0 + 60 * k))
        w.append(RECV_US, KIND_TELEMETRY, "jia", "relay1", with_header(BASE, 1, 100, T0 + 3 * 3600))
    reader = LogReader(path)
    assert [e.count for e in reader.index] == [60, 43]  # ends at T0+3600, then at T0+3h
    assert reader.index[1].min_s == T0 and reader.index[1].max_s == T0 + 99 * 60
    late = [r for r in reader.records(start_s=T0, end_s=T0 + 180) if r.station == "relay2"]
    assert len(late) == 3


def test_a_lost_or_damaged_index_is_rebuilt_from_the_log(tmp_path):
    path = write_log(tmp_path / "a.rplog", 1000, every=100)
    idx = logfile.index_path(path)
    good = idx.read_bytes()
    assert len(LogReader(path).index) == 9
    idx.write_bytes(good[: 4 * logfile.INDEX_SIZE + 17])  # torn in the fifth entry
    LogWriter(path, index_every=100).close()
    assert idx.read_bytes() == good
    idx.unlink()
    LogWriter(path, index_every=100).close()
    assert idx.read_bytes() == good
    damaged = bytearray(good)
    damaged[2 * logfile.INDEX_SIZE + 3] ^= 0x10  # a bit of the third entry
    idx.write_bytes(bytes(damaged))
    assert len(LogReader(path).index) == 2  # the reader trusts only the valid prefix
    LogWriter(path, index_every=100).close()
    assert idx.read_bytes() == good
    assert verify(path).ok


def test_reopen_appends_and_keeps_blocks_consistent(tmp_path):
    path = tmp_path / "a.rplog"
    for part in range(3):
        with LogWriter(path, index_every=64) as w:
            for i in range(100):
                seq = part * 100 + i
                w.append(
                    RECV_US, KIND_TELEMETRY, "jia", "relay1", with_header(BASE, 1, seq, T0 + seq)
                )
    reader = LogReader(path)
    assert [r.frame_seq for r in reader] == list(range(300))
    assert [e.count for e in reader.index] == [64] * 4
    report = verify(path)
    assert report.ok and report.records == 300 and report.index_entries == 4


def test_verify_reports_duplicates_and_gaps_per_station(tmp_path):
    path = tmp_path / "a.rplog"
    with LogWriter(path) as w:
        for seq in [0, 1, 2, 2, 5, 6, 6, 7]:
            w.append(RECV_US, KIND_TELEMETRY, "jia", "relay1", with_header(BASE, 1, seq, T0 + seq))
        for seq in [2**32 - 2, 2**32 - 1, 0, 1]:  # relay2's counter wrapped: no gap
            w.append(RECV_US, KIND_TELEMETRY, "jia", "relay2", with_header(BASE, 2, seq, T0))
        # relay2's event shares its counter: seq 2
        w.append(RECV_US, KIND_EVENT, "jia", "relay2", event(station_id=2, seq=2))
    report = verify(path)
    assert report.duplicates == {("jia", "relay1", False): 2}
    assert report.gaps == {("jia", "relay1", False): [(3, 4)]}
    assert "jia/relay1: seq missing 3..4" in report.lines()


def test_seq_window_drops_repeats_and_survives_a_wrap():
    w = SeqWindow(8)
    assert [w.duplicate(s) for s in (10, 11, 12, 11, 10, 13, 9)] == [
        False, False, False, True, True, False, False,
    ]  # fmt: skip
    assert w.duplicate(9)
    assert not w.duplicate(3) and w.stale == 1  # older than the window: recorded, counted
    w = SeqWindow(8)
    for s in (2**32 - 2, 2**32 - 1, 0, 1):
        assert not w.duplicate(s)
    assert w.duplicate(2**32 - 1) and w.duplicate(0) and not w.duplicate(2)
    with pytest.raises(ValueError):
        SeqWindow(100)


def test_the_recorder_rebuilds_its_window_from_the_log(tmp_path):
    path = tmp_path / "a.rplog"
    topic = "relaypump/jia/relay1/telemetry"
    with LogWriter(path, index_every=64) as w:
        r = Recorder(w, window=256)
        for seq in range(200):
            assert r.take(topic, with_header(BASE, 1, seq, T0 + seq))
        assert not r.take(topic, with_header(BASE, 1, 150, T0 + 150))
        assert r.take("relaypump/jia/relay1/status", b"online")
        assert r.take("relaypump/jia/relay1/status", b"online")  # no seq: always recorded
    with LogWriter(path, index_every=64) as w:  # a new process: its window comes from the log
        r = Recorder(w, window=256)
        assert not r.take(topic, with_header(BASE, 1, 199, T0 + 199))
        assert not r.take(topic, with_header(BASE, 1, 120, T0 + 120))
        assert r.take(topic, with_header(BASE, 1, 200, T0 + 200))
        # a command's counter is another stream than the station's seq
        assert r.take("relaypump/jia/relay1/cmd", with_header(BASE, 1, 199, T0))
        assert r.duplicates == 2
    assert verify(path).ok
    assert len(list(LogReader(path))) == 204


def test_a_file_that_is_not_a_log_is_refused(tmp_path):
    path = tmp_path / "x.bin"
    path.write_bytes(os.urandom(64))
    with pytest.raises(logfile.NotALog):
        LogReader(path)
    with pytest.raises(logfile.NotALog):
        LogWriter(path)


def test_one_writer_at_a_time_and_a_cut_short_creation_starts_again(tmp_path):
    path = tmp_path / "a.rplog"
    with LogWriter(path):
        with pytest.raises(logfile.LogError, match="another writer"):
            LogWriter(path)
    path.write_bytes(MAGIC[:3])  # the creation was cut short
    with LogWriter(path) as w:
        w.append(RECV_US, KIND_TELEMETRY, "jia", "relay1", BASE)
    assert len(list(LogReader(path))) == 1
    path.write_bytes(b"")
    with pytest.raises(logfile.NotALog):
        LogReader(path)


def test_pumprecord_verify_and_dump(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    tool = str(Path(sys.executable).parent / "pumprecord")
    path = write_log(tmp_path / "a.rplog", 40, every=10)
    out = subprocess.run([tool, "verify", str(path)], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout == "records: 40\nindex entries: 3\n"
    out = subprocess.run(
        [tool, "dump", str(path), "--from", str(T0 + 100), "--to", "2026-05-28T20:30:00"],
        capture_output=True, text=True,
    )  # fmt: skip
    lines = out.stdout.splitlines()
    assert out.returncode == 0 and len(lines) == 2 * 10  # 10 s steps from T0+100 to T0+200
    assert lines[0].endswith("jia/relay1 telemetry 80 B seq 10 t 1780000100")
    raw = bytearray(path.read_bytes())
    raw[500] ^= 0x40
    path.write_bytes(bytes(raw))
    out = subprocess.run([tool, "verify", str(path)], capture_output=True, text=True)
    assert out.returncode == 1 and "CRC error at offset" in out.stdout


def test_messages_on_unexpected_topics_are_kept_whole(tmp_path):
    path = tmp_path / "a.rplog"
    long_site = "é" * 200  # 400 bytes of UTF-8: too long for a name byte
    topics = [
        "relaypump/jia/relay1/debug",
        f"relaypump/{long_site}/relay1/telemetry",
        "RP/looks/like/a-frame",
        "relaypump/jia/relay1/telemetry",
    ]
    with LogWriter(path) as w:
        r = Recorder(w)
        for t in topics:
            assert r.take(t, BASE, receive_us=RECV_US)
    records = list(LogReader(path))
    assert [rec.topic for rec in records] == topics
    assert all(rec.message == BASE for rec in records)
    assert [rec.kind_name for rec in records] == ["other"] * 3 + ["telemetry"]
    assert [rec.frame_seq for rec in records] == [None, None, None, 0]
    assert [rec.time_s for rec in records] == [T0 + 5] * 3 + [T0]
