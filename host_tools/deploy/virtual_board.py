"""The virtual board of CI: MicroPython (the WebAssembly VM) behind two ptys, as a board on USB.

    python -m host_tools.deploy.virtual_board --flash DIR --repl-link /tmp/vb-repl --bus /tmp/vb-bus

``--repl-link`` becomes a symlink to the pty of the board's console (REPL): ``make flash
PORT=/tmp/vb-repl`` deploys to it with mpremote, ``make console PORT=/tmp/vb-repl`` opens its REPL.
``--bus`` is the pty of its RS-485 UART: ``pumpsim serve --port /tmp/vb-bus`` is the station.
Tests use the class VirtualBoard (a context manager running the same loop in a thread).

The board:
- Flash: a host directory (``--flash``), copied into the VM's file system at "/" at every boot
  and written back before every reset and at exit (``MicroPythonVM.sync``), so what mpremote
  copied survives a reset and the board boots from it, state files included.
- Boot (power-on, hard reset, watchdog, soft reset in the friendly REPL): a fresh VM, then
  /main.py as __main__, as a board runs it (one VM request: main.py's gc.collect() between its
  boot steps collects nothing there, hence the generous heap).
  On this platform ("webassembly") main.py takes boards/virtual.py, whose ``run`` hands the
  runtime over; this loop then calls ``boards.virtual.step`` with the bus bytes received, writes
  the frame it returns to the bus pty and waits the us the runtime asked for (or until a byte
  arrives: the board interface's ``wait_us``): in the VM memory is collected only between requests, and time.sleep busy-waits.
- Watchdog: started with the board object; a reset when it is not fed for its timeout (8 s), also
  while the REPL is in use after Ctrl-C, as on hardware. A hard reset stops it; a soft one does not.
- machine.reset() (mpremote ``reset``; main.py after a fatal error) raises VirtualReset in the VM
  (vm_side/machine.py) and this loop resets the board.

What of the REPL is served (enough for mpremote 1.29: ``exec``, ``eval``, ``run``, ``fs`` (cp, ls,
cat, rm, mkdir, touch, sha256sum), ``reset``, ``soft-reset``, ``repl``):
- While the agent runs: Ctrl-C stops it (main.py's ``interrupted()`` message, then the friendly
  REPL); every other byte is dropped (the agent reads no stdin).
- Friendly REPL: banner and ``>>> ``, echo, backspace, Enter runs the line (an expression's repr
  is printed), Ctrl-A raw REPL, Ctrl-B banner, Ctrl-C new prompt, Ctrl-D soft reset (main.py
  runs). Not served: multi-line blocks, history, tab completion, escape sequences, paste mode.
- Raw REPL: "raw REPL; CTRL-B to exit\\r\\n>", code + Ctrl-D -> "OK", stdout, \\x04, the
  traceback, \\x04, ">"; Ctrl-D on an empty buffer soft-resets ("OK\\r\\nMPY: soft reboot\\r\\n",
  main.py does not run); Ctrl-A again, Ctrl-B, Ctrl-C. Raw-paste mode ("\\x05A\\x01" -> "R\\x01",
  window, flow control \\x01, end \\x04) is served: mpremote uses it for every command.
- Output is cooked as a board's (\\n -> \\r\\n). The port reports emscripten errno numbers
  (OSError: 44); the console prints them as a board does ("OSError: [Errno 2] ENOENT"), which
  mpremote's fs commands rely on.
- The file system is the VM's: besides the flash, ``ls /`` shows the VM's own directories (tmp,
  home, dev, proc, .vboard, .mpvm), which are neither copied back nor kept over a reset.
- A command runs to its end before the next byte is read (no Ctrl-C inside an ``exec``; the VM
  request has a deadline of EXEC_TIMEOUT_S, after which the board is reset).
"""

from __future__ import annotations

import argparse
import errno
import os
import re
import select
import signal
import struct
import sys
import threading
import time
import tty
from pathlib import Path

from host_tools.mpvm import MicroPythonVM, VMError

VM_SIDE = Path(__file__).resolve().with_name("vm_side")
SYSTEM_ENTRIES = ("tmp", "home", "dev", "proc", ".mpvm", ".vboard")  # not the board's flash
# The boot is one VM request, and the VM collects only between requests: the heap holds the
# boot's garbage too. The heap a board needs is measured by `make bench` (vm_boot.py), not here.
DEFAULT_HEAP_KIB = 512
EXEC_TIMEOUT_S = 30.0
PASTE_WINDOW = 4096
OUT_LIMIT = 1 << 16  # console output kept for a pty nobody reads
BANNER = (
    b"MicroPython v1.27.0 on 2025-12-10; relaypump virtual board with WebAssembly\r\n"
    b'Type "help()" for more information.\r\n'
)
RAW_BANNER = b"raw REPL; CTRL-B to exit\r\n>"
STEP = struct.Struct("<IB")
FED, FAILED = 1, 2
POWER_ON, HARD, WATCHDOG, SOFT = 1, 2, 3, 5  # machine.*_RESET of vm_side/machine.py
# emscripten's errno numbers -> the ones (and names) MicroPython prints on a board
_ERRNO = {44: "ENOENT", 20: "EEXIST", 31: "EISDIR", 54: "ENOTDIR", 55: "ENOTEMPTY", 28: "EINVAL",
          2: "EACCES", 8: "EBADF", 63: "EPERM", 51: "ENOSPC", 29: "EIO"}  # fmt: skip
_OSERROR = re.compile(r"OSError: (\d+)\b")

_RUN_MAIN_SRC = "exec(compile(open('/main.py').read(), '/main.py', 'exec'))"
_STATE_SRC = """import sys as _sys
_bv = _sys.modules.get('boards.virtual')
_st = [_bv is not None and _bv.board is not None, _bv is not None and _bv.runtime is not None,
       _bv.board.wdt_timeout_ms if _bv is not None and _bv.board is not None else 0]
del _sys, _bv
"""


def _errno_text(match: re.Match[str]) -> str:
    number = int(match.group(1))
    name = _ERRNO.get(number)
    if name is None:
        return match.group(0)
    return f"OSError: [Errno {getattr(errno, name)}] {name}"


def cooked(text: str) -> bytes:
    """Console text as a board sends it: \\r\\n line ends, errno numbers of a board."""
    text = _OSERROR.sub(_errno_text, text)
    return text.replace("\r\n", "\n").replace("\n", "\r\n").encode("utf-8", "replace")


def _open_pty(link: str | os.PathLike[str] | None) -> tuple[int, int, str]:
    master, slave = os.openpty()
    tty.setraw(slave)
    os.set_blocking(master, False)
    path = os.ttyname(slave)
    if link:
        link = Path(link)
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(path)
    return master, slave, path


class VirtualBoard:
    """The board; ``with VirtualBoard(flash_dir) as vb:`` runs it in a thread.

    ``repl_path`` / ``bus_path``: the pty devices (or the links given); ``console_text()``:
    everything the board wrote to its console; ``wait_console(text)``: until it appears."""

    def __init__(
        self,
        flash_dir: str | os.PathLike[str],
        repl_link: str | os.PathLike[str] | None = None,
        bus_link: str | os.PathLike[str] | None = None,
        heap_kib: int = DEFAULT_HEAP_KIB,
        console_log: str | os.PathLike[str] | None = None,
    ) -> None:
        self.flash_dir = Path(flash_dir).resolve()
        self.flash_dir.mkdir(parents=True, exist_ok=True)
        self.heap_kib = heap_kib
        self._repl_link, self._bus_link = repl_link, bus_link
        self._repl, self._repl_slave, repl_dev = _open_pty(repl_link)
        self._bus, self._bus_slave, bus_dev = _open_pty(bus_link)
        self._repl_dev, self._bus_dev = repl_dev, bus_dev
        self.repl_path = str(repl_link) if repl_link else repl_dev
        self.bus_path = str(bus_link) if bus_link else bus_dev
        self.vm: MicroPythonVM | None = None
        self.boots = 0
        self.resets: list[str] = []  # the cause of every boot, in order
        self._console = bytearray()
        self._out = bytearray()  # console output the pty has not taken yet
        self._log = open(console_log, "ab", buffering=0) if console_log else None
        self._changed = threading.Condition()
        self._mode = "off"  # off, running, friendly, raw, paste
        self._line = bytearray()
        self._paste_count = 0
        self._rx = bytearray()
        self._next_step = 0.0
        self._wdt_ms = 0  # > 0 while the watchdog runs
        self._last_feed = 0.0
        self._pending_reset = 0  # a reset cause, when machine.reset() ran
        self.error: Exception | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    def __enter__(self) -> VirtualBoard:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        """Power on and run the loop in a thread."""
        self._thread = threading.Thread(target=self.run, name="virtual-board", daemon=True)
        self._thread.start()

    def run(self) -> None:
        """Power on and serve until close() (or a signal) stops it. A failure of the board itself
        (no Node, a VM that cannot start) ends it, said on its console and kept in ``error``."""
        try:
            self._reset(POWER_ON)
            while not self._stop.is_set():
                self._serve_once()
        except Exception as err:
            self.error = err
            self._write(f"\r\nvirtual board: stopped: {err}\r\n".encode())
            raise

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=EXEC_TIMEOUT_S + 10)
        self._power_off()
        for fd in (self._repl, self._repl_slave, self._bus, self._bus_slave):
            try:
                os.close(fd)
            except OSError:
                pass
        for link, dev in ((self._repl_link, self._repl_dev), (self._bus_link, self._bus_dev)):
            if link and Path(link).is_symlink() and os.readlink(link) == dev:
                Path(link).unlink()  # only our own link (another board may have made it since)
        if self._log is not None:
            self._log.close()

    # -- console ---------------------------------------------------------------------------------

    @property
    def agent_running(self) -> bool:
        """main.py handed a runtime over and the loop steps it."""
        return self._mode == "running"

    def console_text(self) -> str:
        with self._changed:
            return self._console.decode("utf-8", "replace")

    def wait_console(self, text: str, timeout: float = 30.0, start: int = 0) -> bool:
        """Until `text` appears in the console output after offset `start`; False on timeout."""
        needle = text.encode()
        deadline = time.monotonic() + timeout
        with self._changed:
            while needle not in self._console[start:]:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(left)
            return True

    def console_size(self) -> int:
        with self._changed:
            return len(self._console)

    def _write(self, data: bytes) -> None:
        if not data:
            return
        with self._changed:
            self._console += data
            self._changed.notify_all()
        if self._log is not None:
            self._log.write(data)
        self._out += data
        self._flush()

    def _flush(self) -> None:
        """Write what the pty takes now; the loop writes the rest when it is writable. Nobody
        reading and the pty full: the oldest output goes, as on a USB port with no host."""
        try:
            while self._out:
                del self._out[: os.write(self._repl, self._out)]
        except OSError:  # BlockingIOError: full
            if len(self._out) > OUT_LIMIT:
                del self._out[: len(self._out) - OUT_LIMIT]

    # -- the loop --------------------------------------------------------------------------------

    def _serve_once(self) -> None:
        if self._pending_reset:
            cause, self._pending_reset = self._pending_reset, 0
            self._reset(cause)
            return
        now = time.monotonic()
        wait = 0.2
        if self._mode == "running":
            wait = max(0.0, min(wait, self._next_step - now))
        if self._wdt_ms:
            wait = max(0.0, min(wait, self._last_feed + self._wdt_ms / 1000 - now))
        ready, writable, _ = select.select(
            [self._repl, self._bus], [self._repl] if self._out else [], [], wait
        )
        if writable:
            self._flush()
        if self._bus in ready:
            self._rx += self._read(self._bus)
        if self._repl in ready:
            self._from_console(self._read(self._repl))
        if self._mode == "running" and (self._rx or time.monotonic() >= self._next_step):
            self._step()
        if self._wdt_ms and time.monotonic() > self._last_feed + self._wdt_ms / 1000:
            self._write(b"\r\n")
            self._reset(WATCHDOG)

    @staticmethod
    def _read(fd: int) -> bytes:
        try:
            return os.read(fd, 65536)
        except (BlockingIOError, OSError):
            return b""

    def _step(self) -> None:
        assert self.vm is not None
        rx, self._rx = bytes(self._rx), bytearray()
        try:
            reply = self.vm.call("boards.virtual.step", rx, timeout=EXEC_TIMEOUT_S)
        except VMError as err:
            self._write(cooked(err.out))
            if err.type == "VirtualReset":
                self._reset_from_vm(err)
            else:
                self._crashed(err)
            return
        self._write(cooked(self.vm.last_out))
        wait_us, flags = STEP.unpack_from(reply)
        frame = reply[STEP.size :]
        if frame:
            try:
                os.write(self._bus, frame)
            except OSError:
                pass  # nobody on the bus and its pty full: the frame is lost, as on a wire
        if flags & FED:
            self._last_feed = time.monotonic()
        self._next_step = time.monotonic() + wait_us / 1e6
        if flags & FAILED:  # main.py's handler: message, traceback, 5 s, machine.reset()
            self._mode = "off"
            self._exec_console("import boards.virtual as _bv\nfatal(_bv.failure)")

    # -- boot and reset --------------------------------------------------------------------------

    def _power_off(self) -> None:
        vm, self.vm = self.vm, None
        if vm is None:
            return
        try:
            if vm.alive:
                vm.sync("/", self.flash_dir, SYSTEM_ENTRIES)
        except VMError:
            pass
        vm.close()

    def _boot(self, cause: int) -> None:
        """A fresh VM from the flash; main.py unless a soft reset in the raw REPL."""
        self._power_off()
        while self._read(self._repl):  # what was sent before the reset is lost; what comes
            pass  # during the boot waits in the pty, as in a UART bridge's buffer
        self._mode = "off"
        self._rx.clear()
        self._line.clear()
        if cause != SOFT:
            self._wdt_ms = 0  # a hard reset stops the watchdog; a soft one does not
        self.boots += 1
        self.resets.append(
            {POWER_ON: "power-on", HARD: "hard", WATCHDOG: "watchdog", SOFT: "soft"}[cause]
        )
        self.vm = MicroPythonVM(
            heap_kib=self.heap_kib,
            mounts={self.flash_dir: "/", VM_SIDE: "/.vboard"},
            paths=("/.vboard",),
            timeout=EXEC_TIMEOUT_S,
        ).start()
        self.vm.exec(f"import machine\nmachine.cause = {cause}\ndel machine")

    def _reset(self, cause: int) -> None:
        self._boot(cause)
        self._run_main()

    def _run_main(self) -> None:
        """main.py as a board runs it after a reset (see the module docstring)."""
        vm = self.vm
        assert vm is not None
        if not (self.flash_dir / "main.py").exists():
            self._friendly()
            return
        if not self._exec_console(_RUN_MAIN_SRC):
            return  # reset
        vm.exec(_STATE_SRC)
        has_board, has_runtime, wdt_ms = vm.eval("_st")
        if has_board and wdt_ms:
            self._wdt_ms = wdt_ms
            self._last_feed = time.monotonic()
        if has_runtime:
            self._mode = "running"
            self._next_step = time.monotonic()
            # Collections happen between requests only when scheduled by the threshold.
            vm.exec("import gc\ngc.threshold(gc.mem_free() // 3)\ngc.collect()")
        else:
            self._friendly()

    def _friendly(self) -> None:
        self._mode = "friendly"
        self._line.clear()
        self._write(BANNER + b">>> ")

    def _crashed(self, err: VMError) -> None:
        """The VM hung or died: print what it said and reset (the watchdog's job on a board)."""
        self._write(cooked(err.traceback))
        self._reset(WATCHDOG)

    def _exec_console(self, src: str) -> bool:
        """Run src as the console would, printing output and traceback; False if it reset."""
        assert self.vm is not None
        try:
            self.vm.exec(src, timeout=EXEC_TIMEOUT_S)
        except VMError as err:
            self._write(cooked(err.out))
            if err.type == "VirtualReset":
                self._reset_from_vm(err)
                return False
            self._write(cooked(err.traceback))
            return True
        self._write(cooked(self.vm.last_out))
        return True

    def _reset_from_vm(self, err: VMError) -> None:
        """machine.reset() ran: the loop resets the board next (never from inside a boot)."""
        soft = bool(err.traceback) and "soft" in err.traceback.strip().splitlines()[-1]
        self._mode = "off"
        self._pending_reset = SOFT if soft else HARD

    # -- REPL ------------------------------------------------------------------------------------

    def _from_console(self, data: bytes) -> None:
        i = 0
        while i < len(data):
            mode = self._mode
            if mode == "paste":
                end = data.find(b"\x04", i)
                chunk = data[i:] if end < 0 else data[i:end]
                self._paste(chunk, end >= 0)
                i = len(data) if end < 0 else end + 1
                continue
            c = data[i]
            i += 1
            if mode == "running":
                if c == 0x03:
                    self._interrupt()
            elif mode == "friendly":
                self._friendly_char(c)
            elif mode == "raw":
                self._raw_char(c)
            # mode "off": a reset in progress; the byte is lost

    def _interrupt(self) -> None:
        self._mode = "off"
        self._write(b"\r\n")
        if self._exec_console("interrupted()"):
            self._friendly()

    def _friendly_char(self, c: int) -> None:
        line = self._line
        if c == 0x01:
            self._write(b"\r\n" + RAW_BANNER)
            self._mode = "raw"
            line.clear()
        elif c == 0x02:
            self._write(b"\r\n")
            self._friendly()
        elif c == 0x03:
            line.clear()
            self._write(b"\r\n>>> ")
        elif c == 0x04:
            if not line:
                self._write(b"\r\nMPY: soft reboot\r\n")
                self._reset(SOFT)
        elif c == 0x0D:
            self._write(b"\r\n")
            src = line.decode("utf-8", "replace")
            line.clear()
            if src.strip():
                code = (
                    f"try:\n _v = eval({src!r})\nexcept SyntaxError:\n _v = None\n exec({src!r})\n"
                    "if _v is not None:\n print(repr(_v))\ndel _v"
                )
                if not self._exec_console(code):
                    return
            self._write(b">>> ")
        elif c in (0x08, 0x7F):
            if line:
                del line[-1]
                self._write(b"\x08 \x08")
        elif c >= 0x20:
            line.append(c)
            self._write(bytes((c,)))

    def _raw_char(self, c: int) -> None:
        line = self._line
        if c == 0x01:
            if bytes(line) == b"\x05A":  # raw-paste request
                line.clear()
                self._mode = "paste"
                self._paste_count = 0
                self._write(b"R\x01" + struct.pack("<H", PASTE_WINDOW))
                return
            line.clear()
            self._write(RAW_BANNER)
        elif c == 0x02:
            line.clear()
            self._write(b"\r\n")
            self._friendly()
        elif c == 0x03:
            line.clear()
        elif c == 0x04:
            self._write(b"OK")
            if not line:
                self._write(b"\r\nMPY: soft reboot\r\n")
                self._boot(SOFT)
                self._mode = "raw"
                self._write(RAW_BANNER)
                return
            src = line.decode("utf-8", "replace")
            line.clear()
            self._raw_exec(src)
        else:
            line.append(c)

    def _paste(self, chunk: bytes, end: bool) -> None:
        before = self._paste_count // PASTE_WINDOW
        self._paste_count += len(chunk)
        self._line += chunk
        if not end:
            for _ in range(self._paste_count // PASTE_WINDOW - before):
                self._write(b"\x01")  # room for another window
            return
        self._write(b"\x04")
        src = self._line.decode("utf-8", "replace")
        self._line.clear()
        self._mode = "raw"
        self._raw_exec(src)

    def _raw_exec(self, src: str) -> None:
        assert self.vm is not None
        try:
            self.vm.exec(src, timeout=EXEC_TIMEOUT_S)
        except VMError as err:
            self._write(cooked(err.out))
            if err.type == "VirtualReset":
                self._reset_from_vm(err)
                return
            self._write(b"\x04" + cooked(err.traceback) + b"\x04>")
            if err.type in ("VMTimeout", "VMCrashed"):
                self._reset(WATCHDOG)
            return
        self._write(cooked(self.vm.last_out) + b"\x04\x04>")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m host_tools.deploy.virtual_board",
        description="A MicroPython board in the WebAssembly VM behind two ptys (REPL and RS-485 bus).",
    )
    parser.add_argument(
        "--flash", default="build/virtual-board/flash", help="its flash (default: %(default)s)"
    )
    parser.add_argument("--repl-link", required=True, help="symlink to create to the console pty")
    parser.add_argument(
        "--bus",
        "--bus-link",
        dest="bus_link",
        required=True,
        help="symlink to create to the RS-485 pty",
    )
    parser.add_argument(
        "--heap-kib", type=int, default=DEFAULT_HEAP_KIB, help="default: %(default)s"
    )
    parser.add_argument(
        "--console-log", help="also append everything the console prints to this file"
    )
    args = parser.parse_args(argv)
    board = VirtualBoard(args.flash, args.repl_link, args.bus_link, args.heap_kib, args.console_log)
    signal.signal(signal.SIGTERM, lambda *_: board._stop.set())
    print(
        f"virtual board: console {board.repl_path}, RS-485 {board.bus_path}, flash {board.flash_dir}"
    )
    print("Ctrl-C here stops it", flush=True)
    try:
        board.run()
    except KeyboardInterrupt:
        pass
    except Exception as err:
        print(f"virtual board: {err}", file=sys.stderr)
        return 1
    finally:
        board.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
