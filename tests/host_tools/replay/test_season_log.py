"""A heating season at reduced size: 20,000 frames of one station's 10 s telemetry (about 55 h)
written, indexed, verified, seeked by the hour and replayed through Mosquitto into a recorder's
log that holds the same frames. The full season (1.3 M frames) is host_tools/bench/season_log.py."""

import random

from replay_logs import records, run_replay, start_recorder, stop, wait_records, wait_subscribed

from host_tools.bench.season_log import PERIOD_S, SEASON_START, write_season
from host_tools.uplink.logfile import LogReader, verify

FRAMES = 20_000


def test_a_reduced_season_is_written_indexed_verified_seeked_and_replayed(
    broker, tmp_path, password_file
):
    log = tmp_path / "season.rplog"
    write_season(log, FRAMES)
    report = verify(log)
    assert report.ok, report.lines()
    assert report.records == FRAMES
    hours = FRAMES * PERIOD_S // 3600
    assert report.index_entries == hours  # one block an hour (360 frames), the last one open

    reader = LogReader(log)
    for hour in random.Random(7).sample(range(hours), 10):
        start = SEASON_START + 3600 * hour
        got = list(reader.records(start_s=start, end_s=start + 3600))
        assert [r.time_s for r in got] == list(range(start, start + 3600, PERIOD_S))
        assert got[0].offset == reader.seek(start)  # found through the index

    out = tmp_path / "replayed.rplog"
    rec = start_recorder(broker.port, out, password_file("recorder"))
    try:
        wait_subscribed(broker)
        done = run_replay(broker.port, log, password_file("replayer"), "--as-fast-as-possible",
                          "--window", "1000")  # fmt: skip
        assert done.returncode == 0, done.stderr
        wait_records(out, FRAMES, timeout=120)
    finally:
        stop(rec)
    assert records(out) == records(log)
    assert verify(out).ok
