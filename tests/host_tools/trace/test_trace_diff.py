"""pumpsim diff: one trace through two firmware folders, each in a process of its own; a changed
threshold shows as the first divergence, identical firmware as none."""

import json
import shutil

import pytest

from host_tools.sim import cli, trace_diff
from host_tools.sim.agent_controller import REPO

FIRMWARE = REPO / "firmware"


@pytest.fixture(scope="module")
def dip(tmp_path_factory):
    """Four minutes: the suction falls 1.5 kPa/s from 2:00 to 150 kPa (below the limit)."""
    path = tmp_path_factory.mktemp("trace") / "dip.csv"
    rows = [f"{t},{300 if t < 120 else max(150, 300 - 1.5 * (t - 120)):g}" for t in range(241)]
    path.write_text("t_s,suction_kpa\n" + "\n".join(rows) + "\n")
    return path


def firmware_copy(folder):
    shutil.copytree(FIRMWARE / "relaypump", folder / "relaypump")
    shutil.copy(FIRMWARE / "station.json", folder / "station.json")
    return folder


def test_a_changed_threshold_default_is_the_first_divergence(tmp_path, dip, capsys):
    """The copy's firmware defaults the suction slowdown band to 60 kPa (its station.json leaves
    the key out; the shipped one sets 30): it warns of the falling suction 20 s earlier."""
    new = firmware_copy(tmp_path / "new")
    config = new / "relaypump" / "config.py"
    line = '_num(doc, out, path, "suction_slowdown_kpa", 0.0, 500.0, 30.0)'
    assert line in config.read_text()
    config.write_text(config.read_text().replace(line, line.replace("30.0)", "60.0)")))
    station = json.loads((new / "station.json").read_text())
    del station["protection"]["suction_slowdown_kpa"]
    (new / "station.json").write_text(json.dumps(station))
    out = tmp_path / "out"
    args = ["diff", str(dip), "--old", str(FIRMWARE), "--new", str(new), "--out", str(out)]
    assert cli.main(args) == 1
    text = (out / "diff.txt").read_text()
    assert text in capsys.readouterr().out
    first = text.split("First divergence: ")[1].splitlines()
    assert first[0].startswith("00:02:2"), text  # 300 - 1.5 (t - 120) = 159 + 60 kPa at 2:21
    assert "old: event SUCTION_LOW" in first[1] and "at 00:02:4" in first[1], text
    assert "new: event SUCTION_LOW" in first[2] and "at 00:02:2" in first[2], text
    assert "Verdict: the decisions differ" in text
    old_log, new_log = trace_diff.load(out / "old.jsonl"), trace_diff.load(out / "new.jsonl")
    assert old_log.header["firmware_sha"] != new_log.header["firmware_sha"]
    assert new_log.header["firmware"] == str(new.resolve())


def test_identical_firmware_has_no_divergence(tmp_path, dip, capsys):
    same = firmware_copy(tmp_path / "same")
    out = tmp_path / "out"
    args = ["diff", str(dip), "--old", str(FIRMWARE), "--new", str(same), "--out", str(out)]
    assert cli.main(args) == 0
    text = (out / "diff.txt").read_text()
    assert "First divergence: none" in text and "First speed divergence: none" in text
    assert "Verdict: no divergence\n" in text
    old_log, new_log = (trace_diff.load(out / f"{n}.jsonl") for n in ("old", "new"))
    assert old_log.decisions == new_log.decisions and old_log.speeds == new_log.speeds
    assert any(r.get("code") == "SUCTION_TRIP" for r in old_log.decisions)


def test_a_folder_without_firmware_is_refused(tmp_path, dip, capsys):
    out = tmp_path / "out"
    args = ["diff", str(dip), "--old", str(tmp_path), "--new", str(FIRMWARE), "--out", str(out)]
    assert cli.main(args) == cli.EXIT_REFUSED
    assert "--old" in capsys.readouterr().err and not out.exists()


def record(t, kind, **more):
    return {"t": t, "kind": kind, **more}


def test_first_divergence_rules():
    a = [record(1.0, "start", pump=1), record(5.0, "event", code="X", subject=0, value=1)]
    same_later = [record(1.8, "start", pump=1), record(5.0, "event", code="X", subject=0, value=9)]
    assert trace_diff.first_divergence(a, same_later, 1.0) is None  # value is not compared
    assert trace_diff.first_divergence(a, same_later, 0.5) == (0, a[0], same_later[0])
    other = [record(1.0, "start", pump=2)]
    assert trace_diff.first_divergence(a, other, 1.0) == (0, a[0], other[0])
    assert trace_diff.first_divergence(a, a[:1], 1.0) == (1, a[1], None)
    gone, added = trace_diff.only_in_one(a, a[1:], 1.0)
    assert gone == a[:1] and added == []
    gone, added = trace_diff.only_in_one(a, same_later, 0.5)  # too late to pair: both listed
    assert gone == a[:1] and added == same_later[:1]
