"""pumplog import: the simulator's frame file (pumpsim's telemetry.bin) becomes a log that lists,
plots (the same panels from the same frames) and verifies like a recorded one; bytes that are
not whole frames are refused."""

import subprocess
import sys
from pathlib import Path

import pytest
from replay_logs import PUMPLOG
from uplink_frames import T0, ack, event, telemetry

from host_tools.sim.telemetry_log import read_telemetry
from host_tools.uplink import pumplog
from host_tools.uplink.logfile import LogReader, verify

PUMPSIM = str(Path(sys.executable).parent / "pumpsim")
SCENARIO = Path(__file__).resolve().parents[3] / "host_tools/sim/scenarios/jia_faults.toml"


def run(*args):
    return subprocess.run([*map(str, args)], capture_output=True, text=True, timeout=300)


def test_a_simulated_run_imports_plots_and_verifies(tmp_path):
    sim = tmp_path / "sim"
    done = run(PUMPSIM, "--scenario", SCENARIO, "--hours", "0.25", "--out", sim)
    assert done.returncode == 0, done.stderr
    log = tmp_path / "sim.rplog"
    done = run(PUMPLOG, "import", sim / "telemetry.bin", "--site", "jia", "--station", "relay1",
               "-o", log)  # fmt: skip
    assert done.returncode == 0, done.stderr
    frames = (sim / "telemetry.bin").read_bytes()
    assert b"".join(r.payload for r in LogReader(log)) == frames
    assert verify(log).ok
    decoded = read_telemetry(sim / "telemetry.bin")
    rebuilt = pumplog.rebuild_run(LogReader(log), None, None, None)
    assert list(rebuilt.samples["suction_kpa"]) == [d["suction_kpa_x10"] / 10 for d in decoded]
    assert list(rebuilt.speeds[0]) == [d["pumps"][0]["speed_pct_x100"] / 100 for d in decoded]
    done = run(PUMPLOG, "plot", log, "-o", tmp_path / "day.png")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "day.png").read_bytes()[:4] == b"\x89PNG"


def test_import_takes_every_kind_and_refuses_a_cut_frame(tmp_path):
    frames = [telemetry(1, 0, T0), event(1, 1, T0 + 5), ack(1, 2, T0 + 7), telemetry(1, 3, T0 + 10)]
    src = tmp_path / "frames.bin"
    src.write_bytes(b"".join(frames))
    log = tmp_path / "x.rplog"
    done = run(PUMPLOG, "import", src, "--site", "s", "--station", "n", "-o", log)
    assert done.returncode == 0, done.stderr
    got = list(LogReader(log))
    assert [(r.kind_name, r.payload) for r in got] == list(
        zip(["telemetry", "event", "ack", "telemetry"], frames, strict=True)
    )
    assert [r.receive_us for r in got] == [(T0 + d) * 1_000_000 for d in (0, 5, 7, 10)]
    src.write_bytes(b"".join(frames)[:-1])
    done = run(PUMPLOG, "import", src, "--site", "s", "--station", "n", "-o", tmp_path / "y.rplog")
    assert done.returncode == 3
    at = sum(len(f) for f in frames[:3])
    assert done.stderr == f"pumplog: {src}: a frame cut short at byte {at}; nothing imported\n"
    assert not (tmp_path / "y.rplog").exists()


@pytest.mark.parametrize("junk", [b"XX\x01\x01" + bytes(76), b"RP\x01\x03" + bytes(60)])
def test_import_refuses_what_is_not_a_telemetry_event_or_ack_frame(tmp_path, junk):
    src = tmp_path / "frames.bin"
    src.write_bytes(telemetry() + junk)
    done = run(PUMPLOG, "import", src, "--site", "s", "--station", "n", "-o", tmp_path / "y.rplog")
    assert done.returncode == 3
    assert done.stderr == f"pumplog: {src}: not an uplink frame at byte 80; nothing imported\n"
