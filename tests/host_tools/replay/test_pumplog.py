"""pumplog on real logs: list, cut, merge, verify, export (CSV in engineering units), plot (the
simulator's picture); a damaged log is refused by every subcommand with one line and exit 3."""

import csv
import subprocess

import pytest
from replay_logs import PUMPLOG, make_log
from uplink_frames import T0, telemetry, with_header

from host_tools.uplink import pumplog
from host_tools.uplink.logfile import LogReader, LogWriter, verify


def pumplog_run(*args):
    return subprocess.run([PUMPLOG, *map(str, args)], capture_output=True, text=True, timeout=120)


@pytest.fixture
def log(tmp_path):
    path = tmp_path / "day.rplog"
    written = make_log(path, frames=400, index_every=32)  # 2 stations x 200 frames, 2000 s
    return path, written


def test_list_names_stations_span_and_kinds(log):
    path, written = log
    done = pumplog_run("list", path)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert f"{path}: {len(written)} records" in out
    # 200 frames per station: seq 0..199, every 7th an event (seq%7==6), then every 11th an ack
    events = sum(1 for s in range(200) if s % 7 == 6)
    acks = sum(1 for s in range(200) if s % 7 != 6 and s % 11 == 10)
    tele = 200 - events - acks
    line = f"status 1, telemetry {tele}, event {events}, ack {acks}"
    assert f"  jia/relay2: 2026-05-28T20:26:40Z .. 2026-05-28T20:59:50Z: {line}" in out
    assert f"  jia/relay1: 2026-05-28T20:26:40Z .. 2026-05-28T20:59:50Z: {line}, cmd 1" in out
    assert "  other/topic: " in out and "other 1" in out
    assert "records per kind: status 2, telemetry" in out


def test_cut_keeps_the_slice_whole(log, tmp_path):
    path, written = log
    out = tmp_path / "cut.rplog"
    done = pumplog_run("cut", path, "--from", "+10m", "--to", T0 + 1200, "-o", out)
    assert done.returncode == 0, done.stderr
    want = [w for w in written if w[5] is not None and T0 + 600 <= w[5] < T0 + 1200]
    assert len(want) == 120
    got = list(LogReader(out))
    assert [(r.kind_name, r.site, r.station, r.payload, r.receive_us) for r in got] == [
        w[:5] for w in want
    ]
    assert verify(out).ok
    again = pumplog_run("cut", path, "--from", "+10m", "-o", out)
    assert again.returncode == 2 and "exists" in again.stderr  # never over a file


def test_merge_orders_by_time_and_drops_duplicates_only(tmp_path):
    a, b, out = tmp_path / "a.rplog", tmp_path / "b.rplog", tmp_path / "ab.rplog"
    base = make_log(tmp_path / "src.rplog", frames=40, extras=False)
    frames = [w for w in base if w[0] != "status"]
    kinds = {"telemetry": 1, "event": 2, "ack": 3}
    # two recorders' logs that overlap: a has frames 0..29, b has 20..39 (received later)
    with LogWriter(a) as wa, LogWriter(b) as wb:
        for i, (kind, site, station, payload, us, _) in enumerate(frames):
            if i < 30:
                wa.append(us, kinds[kind], site, station, payload)
            if i >= 20:
                wb.append(us + 5000, kinds[kind], site, station, payload)
        # same seq, other bytes (a restarted counter): kept
        restarted = with_header(frames[0][3], 1, 0, T0 + 5000)
        wb.append((T0 + 5000) * 1_000_000, 1, "jia", "relay1", restarted)
    done = pumplog_run("merge", a, b, "-o", out)
    assert done.returncode == 0, done.stderr
    assert "10 duplicates dropped" in done.stdout
    got = list(LogReader(out))
    assert len(got) == len(frames) + 1
    times = [r.time_s for r in got]
    assert times == sorted(times)
    assert {(r.station, r.payload) for r in got} == {(f[2], f[3]) for f in frames} | {
        ("relay1", restarted)
    }
    assert verify(out).records == len(got) and not verify(out).crc_errors


def test_verify_passes_a_sound_log_and_reports_gaps(log, tmp_path):
    path, _ = log
    done = pumplog_run("verify", path)
    assert done.returncode == 0, done.stdout
    assert done.stdout.splitlines() == verify(path).lines()
    gap = tmp_path / "gap.rplog"
    with LogWriter(gap) as w:
        for seq in (0, 1, 2, 5, 6):
            w.append(T0 * 10**6, 1, "jia", "relay1", with_header(telemetry(), 1, seq, T0 + seq))
    done = pumplog_run("verify", gap)
    assert done.returncode == 1
    assert "jia/relay1: seq missing 3..4" in done.stdout


def damaged(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    "args",
    [
        ("list",),
        ("cut", "-o", "{out}"),
        ("merge", "-o", "{out}"),
        ("export", "--csv", "{out}"),
        ("plot", "-o", "{out}", "--station", "jia/relay1"),
    ],  # fmt: skip
)
def test_a_damaged_log_is_refused_with_one_line(log, tmp_path, args):
    path, _ = log
    damaged(path)
    out = tmp_path / "out.file"
    argv = [args[0], path, *(a.format(out=out) for a in args[1:])]
    done = pumplog_run(*argv)
    assert done.returncode == 3, done
    assert len(done.stderr.splitlines()) == 1
    assert done.stderr.startswith(f"pumplog: {path}: damaged: record at offset ")
    assert not out.exists()


def test_verify_of_a_damaged_log_reports_the_crc_error(log):
    path, _ = log
    damaged(path)
    done = pumplog_run("verify", path)
    assert done.returncode == 1
    assert "CRC error at offset" in done.stdout


def test_not_a_log_is_refused(tmp_path):
    path = tmp_path / "x.rplog"
    path.write_bytes(b"hello, world")
    for sub in ("list", "verify"):
        done = pumplog_run(sub, path)
        assert done.returncode == 3 and "not a telemetry log" in done.stderr


def test_export_csv_in_engineering_units(log, tmp_path):
    path, written = log
    out = tmp_path / "day.csv"
    done = pumplog_run("export", path, "--csv", out, "--station", "jia/relay2", "--to", "+100s")
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(out.open()))
    want = [w for w in written if w[0] == "telemetry" and w[2] == "relay2" and w[5] < T0 + 100]
    assert len(rows) == len(want) == 9  # seq 0..9 but seq 6 is an event
    header = next(csv.reader(out.open()))
    assert header[:9] == ["time_utc", "site", "station", "station_id", "seq", "timestamp_s",
                          "suction_kpa", "discharge_kpa", "remote_dp_kpa"]  # fmt: skip
    assert "pump3_energy_kwh" in header and "alarm_bits" in header and len(header) == 34
    first = rows[0]
    assert first["time_utc"] == "2026-05-28T20:26:40Z" and first["station_id"] == "2"
    assert first["suction_kpa"] == "161.2" and first["discharge_kpa"] == "447.5"
    assert first["remote_dp_kpa"] == ""  # no reading
    assert first["supply_temp_c"] == "90.12" and first["flow_m3h"] == "812.3"
    assert first["station_energy_kwh"] == "12345.6" and first["mode"] == "1"
    assert first["pump1_speed_pct"] == "82.50" and first["pump1_power_kw"] == "74.5"
    assert first["pump1_state"] == "4" and first["pump3_state"] == "0"
    assert [r["seq"] for r in rows] == ["0", "1", "2", "3", "4", "5", "7", "8", "9"]


def test_plot_draws_the_simulator_picture_from_telemetry(log, tmp_path):
    path, written = log
    out = tmp_path / "day.png"
    done = pumplog_run("plot", path, "-o", out, "--station", "jia/relay1")
    assert done.returncode == 0, done.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    run = pumplog.rebuild_run(LogReader(path), None, None, ("jia", "relay1"))
    tele = [w for w in written if w[0] == "telemetry" and w[2] == "relay1"]
    assert len(run.samples["t_s"]) == len(tele)
    assert run.samples["t_s"][0] == T0 % 86400
    assert run.samples["suction_kpa"][0] == pytest.approx(161.2)
    assert run.samples["total_power_kw"][0] == pytest.approx(74.5)
    assert len(run.speeds) == 2  # slot 3 is absent in every frame
    several = pumplog_run("plot", path, "-o", out)
    assert several.returncode == 2 and "2 stations" in several.stderr


# ---- an operator's mistakes: one line naming what is wrong, a documented exit status ------------


def pumplog_main(capsys, *args):
    code = pumplog.main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_an_output_that_cannot_be_written_is_one_line_naming_it(log, tmp_path, capsys):
    path, _ = log
    missing = tmp_path / "no-such-dir"
    for command in (
        ("export", path, "--csv", missing / "x.csv"),
        ("cut", path, "-o", missing / "c.rplog"),
        ("plot", path, "--station", "jia/relay1", "-o", missing / "p.png"),
    ):
        code, _, err = pumplog_main(capsys, *command)
        assert code == 2
        assert err == f"pumplog: cannot write {command[-1]}: No such file or directory\n"
    code, _, err = pumplog_main(capsys, "export", path, "--csv", tmp_path)
    assert code == 2 and err == f"pumplog: cannot write {tmp_path}: Is a directory\n"
    code, _, err = pumplog_main(capsys, "list", tmp_path)
    assert code == 2 and err == f"pumplog: {tmp_path}: Is a directory\n"


def test_cut_with_to_before_from_names_the_times_as_given(log, tmp_path, capsys):
    path, _ = log
    out = tmp_path / "cut.rplog"
    args = ("--from", "2026-05-28T20:40", "--to", "2026-05-28T20:30:00Z", "-o", out)
    code, _, err = pumplog_main(capsys, "cut", path, *args)
    assert code == 2
    assert err == "pumplog: --to 2026-05-28T20:30:00Z is not after --from 2026-05-28T20:40\n"
    assert not out.exists()


@pytest.mark.parametrize("when", ["1e30", "inf", "-5", "+99999999999d", "5000-01-01"])
def test_a_time_outside_what_a_log_holds_is_a_usage_error(log, tmp_path, capsys, when):
    path, _ = log
    code, _, err = pumplog_main(capsys, "cut", path, "--from", when, "-o", tmp_path / "c.rplog")
    assert code == 2 and err.count("\n") == 1 and err.startswith(f"pumplog: {when!r}: ")


def test_import_names_must_be_one_topic_level(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        pumplog.main(["import", str(tmp_path / "t.bin"), "--site", "jia/x", "--station", "r1",
                      "-o", str(tmp_path / "i.rplog")])  # fmt: skip
    assert exit_.value.code == 2
    assert "argument --site: 'jia/x': a name of 1..255 bytes without /, + or #" in (
        capsys.readouterr().err
    )
