"""The virtual board of CI: mpremote deploys to it as to a board, it boots what was copied.

One board for the module (python -m host_tools.deploy.virtual_board offers the same from the
command line): `python -m host_tools.deploy flash` (what `make flash PORT=...` runs) deploys over
its REPL pty, then the console, mpremote exec, the RS-485 pty, the watchdog and a reset are
looked at in turn, on the deployed board.
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest
from relaypump.modbus import crc16

from host_tools.deploy.bundle import FIRMWARE
from host_tools.deploy.virtual_board import VirtualBoard

REPO = Path(__file__).resolve().parents[3]
STARTED = "runtime: agent of station 1 running"


def run(*argv: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *argv], cwd=REPO, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("virtual_board")
    with VirtualBoard(
        tmp / "flash", repl_link=tmp / "repl", bus_link=tmp / "bus", heap_kib=1024
    ) as board:
        done = run(
            "host_tools.deploy", "flash", "--port", str(tmp / "repl"),
            "--bundles", str(tmp / "bundles"), "--firmware", str(FIRMWARE),
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        board.flash_output = done.stdout
        assert board.wait_console(STARTED, timeout=30), board.console_text()
        yield board


def mpremote(board: VirtualBoard, *args: str) -> subprocess.CompletedProcess[str]:
    return run("mpremote", "connect", board.repl_path, *args, timeout=60)


def test_flash_deploys_and_the_board_boots_the_agent_from_what_was_copied(deployed):
    board = deployed
    assert "copied" in board.flash_output and "sizes checked on the board" in board.flash_output
    flash = board.flash_dir
    assert (flash / "main.py").read_bytes() == (FIRMWARE / "main.py").read_bytes()
    assert (flash / "station.json").read_bytes() == (FIRMWARE / "station.json").read_bytes()
    assert (flash / "relaypump" / "agent.mpy").exists() and (
        flash / "boards" / "virtual.mpy"
    ).exists()
    assert not (flash / "no_agent").exists()
    # each mpremote session soft-resets first; the prepare and the last session end with a reset
    assert board.resets[:6] == ["power-on", "soft", "hard", "soft", "soft", "hard"]
    console = board.console_text()
    assert console.rindex("runtime: start, reset cause hard") < console.rindex(STARTED)


def test_flash_over_a_running_agent_keeps_its_watchdog_out_of_the_copy(deployed):
    board = deployed
    deadline = time.monotonic() + 20  # the test before left it in the REPL: the watchdog's reset
    while not board.agent_running and time.monotonic() < deadline:
        time.sleep(0.1)
    assert board.agent_running
    mark, resets = board.console_size(), len(board.resets)
    done = run("host_tools.deploy", "flash", "--port", board.repl_path, "--board", "virtual",
               "--bundles", str(board.flash_dir.parent / "bundles"))  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    console = board.console_text()[mark:]
    assert "main: stopped; the watchdog resets the board in 8 s" in console  # Ctrl-C
    assert "main: /no_agent exists, the agent is not started" in console  # the copy: no watchdog
    assert board.wait_console(STARTED, timeout=20, start=mark)
    assert board.resets[resets:] == ["soft", "hard", "soft", "soft", "hard"]  # no "watchdog"


def test_the_agent_polls_its_drives_on_the_rs485_pty(deployed):
    fd = os.open(deployed.bus_path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    try:
        data = b""
        deadline = time.monotonic() + 5
        while len(data) < 8 and time.monotonic() < deadline:
            if select.select([fd], [], [], 0.5)[0]:
                data += os.read(fd, 256)
    finally:
        os.close(fd)
    frame = data[:8]  # a read request: unit, function, address, count, CRC
    assert len(frame) == 8 and frame[1] in (3, 4), data.hex()
    assert crc16(frame[:6]) == int.from_bytes(frame[6:], "little")


def test_mpremote_exec_runs_on_the_board_and_the_watchdog_resets_it_afterwards(deployed):
    board = deployed
    resets = len(board.resets)
    done = mpremote(
        board, "exec", "import sys, os; print(sys.platform, sorted(os.listdir('/relaypump'))[:2])"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "webassembly ['__init__.mpy', 'agent.mpy']"
    assert "main: stopped; the watchdog resets the board in 8 s" in board.console_text()
    # Ctrl-C stopped the agent, but not its watchdog: 8 s later the board resets and boots again.
    mark = board.console_size()
    assert board.wait_console("runtime: start, reset cause watchdog", timeout=15, start=mark)
    assert board.resets[resets:] == ["soft", "watchdog"]
    assert board.wait_console(STARTED, timeout=15, start=mark)


def test_a_failing_exec_gives_the_traceback_and_a_non_zero_exit(deployed):
    done = mpremote(deployed, "exec", "open('/no/such/file')")
    assert done.returncode == 1
    assert "OSError: [Errno 2] ENOENT" in done.stdout + done.stderr


def test_the_friendly_repl_evaluates_a_line_and_soft_resets_on_ctrl_d(deployed):
    board = deployed  # mpremote left it in the friendly REPL (Ctrl-B)
    fd = os.open(board.repl_path, os.O_RDWR | os.O_NOCTTY)
    try:
        mark = board.console_size()
        os.write(fd, b"21 * 2\r")
        assert board.wait_console("21 * 2\r\n42\r\n>>> ", timeout=10, start=mark)
        os.write(fd, b"\x04")  # soft reset: main.py runs again
        assert board.wait_console("MPY: soft reboot\r\n", timeout=10, start=mark)
        assert board.wait_console("runtime: start, reset cause soft", timeout=15, start=mark)
        assert board.wait_console(STARTED, timeout=15, start=mark)
    finally:
        os.close(fd)


def test_reset_reboots_from_the_flash_and_files_written_survive_it(deployed):
    board = deployed
    mark = board.console_size()
    done = mpremote(board, "exec", "open('/marker.txt', 'w').write('kept')", "+", "reset")
    assert done.returncode == 0, done.stderr
    assert board.wait_console("runtime: start, reset cause hard", timeout=15, start=mark)
    assert board.wait_console(STARTED, timeout=15, start=mark)
    assert (board.flash_dir / "marker.txt").read_text() == "kept"
    done = mpremote(board, "fs", "cat", ":/marker.txt", "+", "fs", "rm", ":/marker.txt")
    assert done.returncode == 0 and "kept" in done.stdout, done.stderr


def test_flash_refuses_a_board_of_another_kind_and_leaves_it_running(deployed):
    board = deployed
    resets = len(board.resets)
    done = run("host_tools.deploy", "flash", "--port", board.repl_path, "--board", "esp32")
    assert done.returncode == 1
    line = f"flash: BOARD=esp32 but the board at {board.repl_path} is virtual (webassembly)"
    assert done.stderr.strip().splitlines() == [line]
    assert board.resets[resets:] == ["soft"]  # mpremote's; no /no_agent, no reset
    assert not (board.flash_dir / "no_agent").exists()


def test_the_command_line_board_serves_mpremote_and_stops_on_sigterm(tmp_path):
    repl, bus = tmp_path / "repl", tmp_path / "bus"
    proc = subprocess.Popen(
        [sys.executable, "-m", "host_tools.deploy.virtual_board", "--flash", str(tmp_path / "f"),
         "--repl-link", str(repl), "--bus", str(bus)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith(f"virtual board: console {repl}, RS-485 {bus}"), first
        done = run("mpremote", "connect", str(repl), "exec", "print(2 ** 10)", timeout=60)
        assert done.returncode == 0 and done.stdout.strip() == "1024", done.stderr
    finally:
        proc.terminate()
        assert proc.wait(timeout=30) == 0
    assert not repl.exists() and not bus.exists()  # its links go with it


BROKEN_MAIN = """
import sys, time
from boards.virtual import Board


class Broken:  # a runtime whose second step raises, as an agent bug would
    steps = 0

    def step(self):
        Broken.steps += 1
        if Broken.steps == 2:
            raise ValueError("agent broke")
        return 1000


def fatal(err):  # main.py's handler, with a short delay
    print("main: fatal error, reset in 100 ms")
    sys.print_exception(err)
    time.sleep_ms(100)
    import machine

    machine.reset()


print("main: boot")
Board().run(Broken())
"""


def test_an_exception_in_a_step_goes_to_main_py_fatal_and_resets_the_board(tmp_path):
    flash = tmp_path / "flash"
    (flash / "boards").mkdir(parents=True)
    for name in ("__init__.py", "virtual.py"):
        (flash / "boards" / name).write_bytes((FIRMWARE / "boards" / name).read_bytes())
    (flash / "main.py").write_text(BROKEN_MAIN)
    with VirtualBoard(flash) as board:
        assert board.wait_console("ValueError: agent broke", timeout=20)
        console = board.console_text()
        assert "main: fatal error, reset in 100 ms\r\nTraceback (most recent call last):" in console
        assert board.wait_console("main: boot", timeout=20, start=len(console))  # booted again
        assert board.resets[:2] == ["power-on", "hard"]
