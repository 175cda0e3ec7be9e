"""pumpreplay's pieces without a broker: times of --from/--to, --map and --kinds parsing, the
topic of a record, the progress line on a terminal and into a pipe, the window's default."""

import argparse
import io

import pytest

from host_tools.uplink.broker import ToolError
from host_tools.uplink.logfile import KIND_OTHER, Record
from host_tools.uplink.replay import (
    Progress,
    Topics,
    kinds_arg,
    mapping_arg,
    parse_when,
    parser,
    window_of,
)


def test_times_are_unix_seconds_iso_or_offsets_from_the_first_record():
    assert parse_when("1780000000") == 1_780_000_000
    assert parse_when("2026-05-28T20:26:40Z") == 1_780_000_000
    assert parse_when("2026-05-28T20:26:40") == 1_780_000_000  # no zone: UTC
    assert parse_when("2026-05-28T22:26:40+02:00") == 1_780_000_000
    assert parse_when("+90", 100) == 190
    assert parse_when("+15m", 100) == 1000
    assert parse_when("+2h", 0) == 7200
    assert parse_when("+1.5d", 0) == 129_600
    with pytest.raises(ValueError, match="offset like"):
        parse_when("yesterday")
    with pytest.raises(ValueError, match="needs a log"):
        parse_when("+1h", None)


def test_map_and_kinds_arguments():
    assert mapping_arg("jia/relay1=kvv/relay9") == (("jia", "relay1"), ("kvv", "relay9"))
    for bad in ("jia/relay1", "jia=kvv/relay9", "jia/relay1=kvv"):
        with pytest.raises(argparse.ArgumentTypeError):
            mapping_arg(bad)
    assert kinds_arg("telemetry,event") == {1, 2}
    assert kinds_arg("cmd,other") == {4, KIND_OTHER}
    with pytest.raises(argparse.ArgumentTypeError, match="unknown kind 'telemtry'"):
        kinds_arg("telemtry")


def test_topics_keep_or_map_identities():
    topics = Topics({("jia", "relay1"): ("kvv", "relay9")})
    rec = lambda kind, site, station, payload=b"": Record(0, 0, kind, 0, site, station, payload)  # noqa: E731
    assert topics.of(rec(1, "jia", "relay1")) == "relaypump/kvv/relay9/telemetry"
    assert topics.of(rec(0, "jia", "relay2")) == "relaypump/jia/relay2/status"
    assert topics.of(rec(KIND_OTHER, "", "", b"a/b\0x")) == "a/b"
    assert topics.unused() == []


def test_a_map_of_a_station_without_records_is_named():
    """A typo in --map renames nothing: said on stderr after the replay."""
    topics = Topics({("jia", "relay1"): ("kvv", "relay9"), ("jia", "rleay2"): ("kvv", "r2")})
    topics.of(Record(0, 0, 1, 0, "jia", "relay1", b""))
    topics.of(Record(0, 0, 1, 0, "jia", "relay2", b""))
    assert topics.unused() == ["--map jia/rleay2=kvv/r2: no record of jia/rleay2 replayed"]


def test_progress_into_a_pipe_is_a_line_per_ten_percent():
    out = io.StringIO()
    p = Progress(25, out, tty=False)
    for done in range(1, 26):
        if done >= p.next_at:
            p.update(done)
    p.close()
    lines = out.getvalue().splitlines()
    assert [line.split()[1] for line in lines] == [str(k) for k in range(10, 101, 10)]
    assert lines[0] == "pumpreplay: 10 % (3 of 25 frames)"
    assert lines[-1] == "pumpreplay: 100 % (25 of 25 frames)"


def test_progress_on_a_terminal_redraws_one_line():
    out = io.StringIO()
    p = Progress(2000, out, tty=True)
    calls = 0
    for done in range(1, 2001):
        if done >= p.next_at:
            p.update(done)
            calls += 1
    p.close()
    text = out.getvalue()
    assert calls <= 1001  # not a call per frame
    assert "\n" not in text[:-1] and text.endswith("\n")
    assert text.rstrip("\n").rsplit("\r", 1)[-1] == f"[{'#' * 20}] 100.0 %  2000/2000 frames"


def test_the_window_defaults_to_the_pace():
    def window(*argv):
        return window_of(parser().parse_args(["x.rplog", *argv]))

    assert window() == window("--speed", "60") == 100
    assert window("--as-fast-as-possible") == 10_000  # round trips cost a loaded machine most
    assert window("--as-fast-as-possible", "--window", "50") == window("--window", "50") == 50
    for bad in ("0", "65536"):
        with pytest.raises(ToolError, match="--window must be 1..65535"):
            window("--window", bad)
