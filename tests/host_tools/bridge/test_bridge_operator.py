"""pumpbridge as an operator meets it: bad writes from SCADA, a broken state dir, bad option
values, the broker going away, a second bridge with the same client id. Each ends in one clear
line and a documented exit status (or the right result), never a traceback or a silent stop."""

import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from bridge_helpers import ROOT, BridgeProcess
from test_bridge_core import KEY, TOPIC, decoded, telemetry, values

from host_tools.uplink import sparkplug as sp
from host_tools.uplink.bridge import Bridge, main, next_bd_seq
from host_tools.uplink.broker import ToolError
from host_tools.uplink.pumpctl import StationKey

WAIT_S = 30.0  # a loaded CI host's bound; a passing test does not wait for it


def wait_for(predicate, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not predicate():
        assert time.monotonic() < deadline, f"no {what} within {WAIT_S} s"
        time.sleep(0.1)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_a_setpoint_that_is_not_a_number_is_refused_and_the_bridge_goes_on(tmp_path, value):
    keys = {("jia", "relay1"): StationKey("jia", "relay1", 7, KEY)}
    b = Bridge("jia", "pumpbridge", "jia", keys, tmp_path, log=[].append)
    b.connected(0.0)
    b.feed(TOPIC + "telemetry", telemetry(1), 1.0)
    dcmd = sp.encode(sp.Payload(1, None, [sp.Metric("setpoint", sp.DataType.DOUBLE, value)]))
    ((kind, report),) = decoded(b.feed("spBv1.0/jia/DCMD/pumpbridge/relay1", dcmd, 2.0))
    assert kind == "DDATA"  # nothing sent to the station
    result = values(report)["Command/Last Result"]
    assert result == f"refused: setpoint {value}: not a finite number of kPa"
    good = sp.encode(sp.Payload(1, None, [sp.Metric("setpoint", sp.DataType.DOUBLE, 110.0)]))
    cmd, _ = b.feed("spBv1.0/jia/DCMD/pumpbridge/relay1", good, 3.0)
    assert cmd.topic == TOPIC + "cmd"


def test_a_state_dir_that_is_a_file_is_one_line_exit_2(tmp_path, capsys):
    not_a_dir = tmp_path / "state"
    not_a_dir.write_text("")
    with pytest.raises(ToolError, match="state dir .*state: File exists"):
        next_bd_seq(not_a_dir, "jia", "pumpbridge")
    assert main(["--site", "jia", "--state-dir", str(not_a_dir)]) == 2
    assert capsys.readouterr().err.startswith("pumpbridge: state dir ")


@pytest.mark.parametrize(
    "option, value",
    [("--ttl", "0"), ("--ttl", "-5"), ("--ack-timeout", "nan"), ("--duration", "0")],
)
def test_times_that_are_not_positive_are_refused(tmp_path, capsys, option, value):
    with pytest.raises(SystemExit) as refused:
        main(["--site", "jia", "--state-dir", str(tmp_path), option, value])
    assert refused.value.code == 2
    assert f"argument {option}: must be more than 0" in capsys.readouterr().err


def test_a_bad_site_is_named_as_the_site(tmp_path, capsys):
    assert main(["--site", "ji+a", "--state-dir", str(tmp_path)]) == 2
    assert "site id 'ji+a'" in capsys.readouterr().err


def test_the_broker_going_away_is_logged_and_a_stop_then_is_clean(broker, bridge):
    broker.stop()
    wait_for(lambda: "lost the broker" in bridge.stderr(), "line about the lost broker")
    broker.start()
    wait_for(lambda: "connected again" in bridge.stderr(), "line about the broker back")
    broker.stop()
    wait_for(lambda: bridge.stderr().count("lost the broker") == 2, "second lost line")
    assert bridge.stop() == 0  # SIGTERM while the broker is away: no NDEATH to publish
    assert "Traceback" not in bridge.stderr()


def test_a_refused_login_is_one_line_exit_4(broker, tmp_path, capsys):
    wrong = tmp_path / "wrong.pw"
    wrong.write_text("not-the-password\n")
    argv = ["--site", "jia", "--port", str(broker.port), "--user", "bridge", "--password-file"]
    assert main([*argv, str(wrong), "--state-dir", str(tmp_path / "state")]) == 4
    assert (
        capsys.readouterr().err == "pumpbridge: the broker refused the connection: Not authorized\n"
    )


def test_an_undecodable_dcmd_is_logged_and_reported(tmp_path):
    log = []
    keys = {("jia", "relay1"): StationKey("jia", "relay1", 7, KEY)}
    b = Bridge("jia", "pumpbridge", "jia", keys, tmp_path, log=log.append)
    b.connected(0.0)
    b.feed(TOPIC + "telemetry", telemetry(1), 1.0)
    ((_, report),) = decoded(b.feed("spBv1.0/jia/DCMD/pumpbridge/relay1", b"\xff\xff", 2.0))
    assert values(report)["Command/Last Result"].startswith("refused: payload")
    assert log == ["DCMD relay1: refused: payload: truncated varint"]


def test_a_second_bridge_with_the_same_client_id_stops_rather_than_flap(
    broker, bridge, password_file, key_file, tmp_path
):
    state, log = tmp_path / "state", tmp_path / "second.err"
    second = BridgeProcess(broker.port, password_file("bridge"), key_file, state, log)
    second.start()
    try:
        procs = {"first": bridge, "second": second}
        wait_for(lambda: any(p.proc.poll() is not None for p in procs.values()), "bridge stop")
        (gone,) = [p for p in procs.values() if p.proc.poll() is not None]
        assert gone.proc.returncode == 4
        assert "is another client using client id 'pumpbridge'" in gone.stderr()
        assert "Traceback" not in gone.stderr()
        (kept,) = [p for p in procs.values() if p is not gone]
        assert kept.proc.poll() is None  # the other one goes on
    finally:
        second.close()


def test_every_bridge_option_says_its_default():
    from host_tools.uplink.bridge import parser

    p = parser()
    p.format_help()
    (own,) = [g for g in p._action_groups if g.title == "options"]  # the broker's are pumpctl's
    for action in own._group_actions:
        if action.dest not in ("help", "site"):  # --site is required
            assert action.help and "default" in action.help, action.dest


def has_socket(pid: int) -> bool:
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            if os.readlink(fd).startswith("socket:"):
                return True
        except OSError:  # closed meanwhile
            pass
    return False


def test_ctrl_c_while_the_broker_does_not_answer_is_one_line(broker, tmp_path):
    broker.freeze()  # accepts the connection (the kernel does), never answers it
    try:
        argv = [sys.executable, "-m", "host_tools.uplink.bridge", "--site", "jia", "--port"]
        proc = subprocess.Popen(
            [*argv, str(broker.port), "--state-dir", str(tmp_path / "state")],
            cwd=ROOT, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        wait_for(lambda: has_socket(proc.pid), "socket of the connection")  # imports done
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=WAIT_S)
    finally:
        broker.thaw()
    assert proc.returncode == 0
    assert err == "pumpbridge: stopped before the broker answered\n"
