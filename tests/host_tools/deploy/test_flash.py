"""make flash / make console refuse clearly: no board, not a serial device, a refused config."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from host_tools.deploy import flash
from host_tools.deploy.flash import DEFAULT_STATION, DeployError, check_port, validate_station
from host_tools.deploy.virtual_board import VirtualBoard

REPO = Path(__file__).resolve().parents[3]


def deploy(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "host_tools.deploy", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("command", ["flash", "console"])
@pytest.mark.parametrize(
    "port, says",
    [
        ("", "no board: PORT is not set"),
        ("/dev/ttyNOBOARD9", "no board at /dev/ttyNOBOARD9: no such device"),
        ("/dev/null", "no board at /dev/null: not a serial device (not a tty)"),
        ("{file}", "no board at {file}: not a serial device"),
    ],
)
def test_no_board_is_one_clear_line_and_a_failure(command, port, says, tmp_path):
    file = tmp_path / "not-a-port"
    file.write_text("")
    port, says = port.format(file=file), says.format(file=file)
    done = deploy(command, "--port", port)
    assert done.returncode == 1
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{command}: {says}"), done.stderr
    assert "make flash" not in done.stderr  # make console's hint named the other target


@pytest.mark.parametrize(
    "station, says",
    [
        ("", "flash: no station config: STATION is empty (default firmware/station.json)"),
        ("{tmp}", "flash: station config {tmp}: is a folder, not a file"),
    ],
)
def test_an_empty_or_folder_station_is_one_clear_line(station, says, tmp_path):
    master, slave = os.openpty()  # a port that passes its check: the config is next
    try:
        done = deploy(
            "flash", "--port", os.ttyname(slave), "--station", station.format(tmp=tmp_path)
        )
    finally:
        os.close(master)
        os.close(slave)
    assert done.returncode == 1
    assert done.stderr == says.format(tmp=tmp_path) + "\n"


def test_a_bundle_folder_that_cannot_be_written_is_one_clear_line(tmp_path):
    in_the_way = tmp_path / "a-file"
    in_the_way.write_text("")
    done = deploy("bundle", "--board", "rp2", "--out", str(in_the_way))
    assert done.returncode == 1
    assert done.stderr.startswith(f"bundle: cannot write {in_the_way}/rp2/"), done.stderr
    assert done.stderr.endswith(": Not a directory\n") and done.stderr.count("\n") == 1


@pytest.mark.parametrize("port", ["/dev/null", "/dev/ttyNOBOARD9"])
def test_the_bench_without_a_board_is_one_clear_line(port):
    """make bench-hil PORT=... (pytest --bench-port): refused before the bench's reference run."""
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "tests/host_tools/hil"]
        + ["--bench-port", port],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == pytest.ExitCode.USAGE_ERROR, done.stdout[-2000:]
    assert done.stderr.startswith(f"ERROR: --bench-port: no board at {port}: "), done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and done.stdout == "", done.stderr


def test_the_console_without_a_terminal_is_one_clear_line():
    master, slave = os.openpty()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "host_tools.deploy", "console", "--port", os.ttyname(slave)],
            cwd=REPO,
            stdin=subprocess.DEVNULL,  # a script, an IDE, CI: no terminal to set up
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        os.close(master)
        os.close(slave)
    assert done.returncode == 1
    assert (
        done.stderr
        == "console: the console needs a terminal (stdin is not one): run it from a shell\n"
    )


def test_a_pty_nobody_serves_is_refused_after_the_first_contact_time(monkeypatch):
    """mpremote reads a pty without a timeout: without a limit of its own, flash waited 300 s."""
    monkeypatch.setattr(flash, "FIRST_CONTACT_S", 2.0)
    master, slave = os.openpty()  # nobody answers on master
    port = os.ttyname(slave)
    try:
        with pytest.raises(DeployError) as refused:
            flash.flash(port, say=lambda *_: None)
    finally:
        os.close(master)
        os.close(slave)
    assert str(refused.value) == (
        f"mpremote on {port}: no answer within 2 s (no MicroPython on the port?)"
    )


def test_a_pty_is_a_port():
    master, slave = os.openpty()
    try:
        assert check_port(os.ttyname(slave)) == os.ttyname(slave)
        link = Path(tempfile.mkdtemp()) / "port"
        link.symlink_to(os.ttyname(slave))
        assert check_port(str(link)) == os.ttyname(slave)  # mpremote gets the device
    finally:
        os.close(master)
        os.close(slave)


def test_the_shipped_station_config_is_valid():
    assert validate_station(DEFAULT_STATION)["station"]["id"] >= 1


def test_a_refused_config_names_the_field_and_nothing_reaches_the_board(tmp_path):
    doc = json.loads(DEFAULT_STATION.read_text())
    doc["speed"]["min_pct"] = 150
    station = tmp_path / "station.json"
    station.write_text(json.dumps(doc))
    with pytest.raises(DeployError, match=r"speed\.min_pct"):
        validate_station(station)
    with VirtualBoard(tmp_path / "flash") as board:
        assert board.wait_console(">>> ", timeout=20)  # an empty board: the REPL
        before = board.console_size()
        done = deploy("flash", "--port", board.repl_path, "--station", str(station))
        assert done.returncode == 1
        assert "speed.min_pct" in done.stderr and len(done.stderr.splitlines()) == 1
        assert board.console_size() == before  # not even a Ctrl-C reached the board
    assert list((tmp_path / "flash").iterdir()) == []


def test_romfs_deploy_refuses_a_board_without_romfs_and_leaves_it_untouched(tmp_path):
    """make flash ROMFS=1 on a board whose MicroPython has no ROMFS (the virtual board runs
    1.27, without vfs.rom_ioctl; so do stock ESP32 and RP2 builds): one line, exit 1, asked with
    the real mpremote romfs query, and nothing reaches the board's file system."""
    flash = tmp_path / "flash"
    with VirtualBoard(flash) as board:
        assert board.wait_console(">>> ", timeout=20)
        done = deploy("flash", "--port", board.repl_path, "--romfs")
        assert done.returncode == 1
        lines = done.stderr.splitlines()
        assert len(lines) == 1, done.stderr
        assert lines[0].startswith(f"flash: no ROMFS on the board at {board.repl_path}: its "
                                   "MicroPython has no ROMFS"), lines  # fmt: skip
        assert "deploy without ROMFS=1" in lines[0]
        assert board.wait_console(">>> ", timeout=20)  # still answering
    assert sorted(p.name for p in flash.iterdir()) == []  # no /no_agent, no bundle


def test_make_flash_passes_romfs_on(tmp_path):
    """ROMFS=1 reaches the deploy command (make -n: the command line make would run)."""
    done = subprocess.run(
        ["make", "-n", "flash", "PORT=/dev/ttyX", "ROMFS=1"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    line = next(ln for ln in done.stdout.splitlines() if "host_tools.deploy flash" in ln)
    assert line.rstrip().endswith("--romfs"), line
