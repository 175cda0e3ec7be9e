"""Deploy the agent to a board running MicroPython, and open its console: mpremote underneath.

``flash(port, station)``:
1. The port is checked (``check_port``): missing, not a device or not a tty -> DeployError "no
   board ...". The station's config is validated on the host with the firmware's own loader
   (relaypump.config.load_config_file): a refused config names the field and nothing is copied.
2. Prepare (one mpremote session): read ``sys.platform`` (-> which bundle; BOARD, when given, must
   match; the bundle is then built from the tree, bundle.py), create /no_agent and hard-reset. The agent's watchdog, once started, cannot be stopped
   and would reset the board in the middle of a copy that takes longer than its 8 s; after this
   reset main.py sees /no_agent and starts neither the agent nor the watchdog.
3. Copy (one mpremote session, retried while the board comes back from its reset): remove the old
   /relaypump and /boards (a stale .py would shadow its new .mpy), copy the bundle, main.py and the
   config as /station.json, list what the board holds and compare every size with the bundle,
   remove /no_agent, hard-reset: the board boots the new agent. The persistent state (/state.a,
   /state.b: run hours, starts, lockouts) stays.

``flash(..., romfs=True)`` (``make flash ROMFS=1``), for a board whose MicroPython has a ROMFS
partition: the bundle's packages go into the partition, where their .mpy files run in place (the
bytecode stays in flash; README, "How much heap"). Before anything else, ``mpremote romfs query``:
a board without ROMFS (stock ESP32 and RP2 builds) is refused in one line, untouched. Then step 2
as above; a partition smaller than the image is refused after it (the image is the board's
bundle), /no_agent removed again and reset: the old agent runs on. Step 3 writes the image
(``romfs deploy`` of an image made by ``romfs_image``), removes an earlier bundle's /relaypump and /boards from the
file system (they come first on sys.path and would shadow /rom), copies main.py and
/station.json, checks their sizes and resets; then the files in /rom are listed (the board
mounts the new image at boot) and compared with the bundle before /no_agent is removed.

A port where no MicroPython answers (a tty with nothing on it, a pty nobody serves) stops the
first session in one line: "could not enter raw repl" on a UART, no answer within FIRST_CONTACT_S
on a pty (mpremote reads a pty without a timeout).

``console(port)`` runs ``mpremote connect PORT repl`` after the same port check, from a terminal
only (mpremote's repl sets the terminal up and fails with a traceback without one).
mpremote is the pinned dev dependency (pyproject.toml), run as ``python -m mpremote``.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from host_tools.deploy.bundle import BOARDS, DEFAULT_OUT, FIRMWARE, BundleError, build, files

REPO = Path(__file__).resolve().parents[2]
DEFAULT_STATION = REPO / "firmware" / "station.json"
SESSION_TIMEOUT_S = 300.0
# The first session: on a pty (/dev/pts/N) mpremote reads without a timeout, so a pty that no
# board serves would hold it for the whole SESSION_TIMEOUT_S.
FIRST_CONTACT_S = 60.0
BACK_AFTER_RESET_S = 15.0  # how long the board may take to come back from a reset

_PLATFORM = "import sys\nprint('platform', sys.platform)"
# Only on the expected kind of board (any when none is expected): /no_agent, then a reset.
_PREPARE = """import sys, time, machine
if sys.platform in %r:
    open('/no_agent', 'w').close()
    time.sleep_ms(100)
    machine.reset()
"""
_CLEAN = """import os
def _rm(p):
    try:
        mode = os.stat(p)[0]
    except OSError:
        return
    if mode & 0x4000:
        for n in os.listdir(p):
            _rm(p + '/' + n)
        os.rmdir(p)
    else:
        os.remove(p)
for _p in ('/relaypump', '/boards', '/main.py'):
    _rm(_p)
for _d in %r:
    os.mkdir(_d)
"""
_LIST = """import os
def _ls(p):
    if not os.stat(p)[0] & 0x4000:
        print('file', p[1:], os.stat(p)[6])
        return
    for n in os.listdir(p):
        _ls(p + '/' + n)
for _p in %r:
    _ls(_p)
"""


# What mpremote says while a board is still resetting (a USB port gone and back, a boot in progress).
_RETRY_ON = (
    "could not enter raw repl",
    "failed to access",
    "did not come back",
    "disconnected",
    "Errno 5",
)
RESET_SETTLE_S = 0.5  # let a reset begin before the next session knocks


class DeployError(Exception):
    """A deploy that must stop; str() is one line for the user."""


def check_port(port: str | None) -> str:
    """The port, if a board can be there; DeployError naming what is wrong otherwise."""
    if not port:
        raise DeployError("no board: PORT is not set (e.g. PORT=/dev/ttyUSB0)")
    if not os.path.exists(port):
        raise DeployError(f"no board at {port}: no such device (is the board plugged in?)")
    mode = os.stat(port).st_mode
    if not stat.S_ISCHR(mode):
        raise DeployError(f"no board at {port}: not a serial device")
    try:
        fd = os.open(port, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    except OSError as err:
        raise DeployError(f"no board at {port}: cannot open it ({err.strerror})") from None
    try:
        if not os.isatty(fd):
            raise DeployError(f"no board at {port}: not a serial device (not a tty)")
    finally:
        os.close(fd)
    # The device itself, not a link to it: on /dev/pts/N mpremote reads blocking instead of
    # polling every 10 ms (twice as fast with the virtual board); by-id links resolve too.
    return os.path.realpath(port)


def validate_station(path: str | os.PathLike[str]) -> dict:
    """The station's config as the board would load it; DeployError naming the field if refused."""
    from relaypump.config import ConfigError, load_config_file

    if not str(path).strip():
        raise DeployError("no station config: STATION is empty (default firmware/station.json)")
    if os.path.isdir(path):
        raise DeployError(f"station config {path}: is a folder, not a file")
    try:
        return load_config_file(str(path))
    except ConfigError as err:
        raise DeployError(f"station config {path} refused: {err}") from None


def mpremote(port: str, *args: str, timeout: float = SESSION_TIMEOUT_S) -> str:
    """One mpremote session; its stdout, or DeployError with mpremote's last words."""
    argv = [sys.executable, "-m", "mpremote", "connect", port, *args]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise DeployError(
            f"mpremote on {port}: no answer within {timeout:.0f} s (no MicroPython on the port?)"
        ) from None
    if done.returncode != 0:
        last = (done.stderr.strip() or done.stdout.strip() or "failed").splitlines()[-1]
        if "could not enter raw repl" in last:  # mpremote's words, kept: _RETRY_ON waits for them
            last = "no MicroPython REPL answered (could not enter raw repl)"
        raise DeployError(f"mpremote on {port}: {last}")
    return done.stdout


def romfs_image(tree: Path, out: Path) -> Path:
    """The ROMFS image of the directory `tree`, its .mpy files as they are (``--no-mpy``), made
    by the pinned mpremote (``romfs build``): what ``romfs deploy`` writes to a ROM partition."""
    argv = [sys.executable, "-m", "mpremote", "romfs", "--no-mpy", "-o", str(out), "build"]
    done = subprocess.run([*argv, str(tree)], capture_output=True, text=True)
    if done.returncode != 0:
        last = (done.stderr.strip() or done.stdout.strip() or "failed").splitlines()[-1]
        raise DeployError(f"mpremote romfs build of {tree}: {last}")
    return out


def romfs_partition(device: str, port: str) -> int:
    """Bytes of the board's first ROMFS partition (mpremote romfs query); DeployError if none."""
    out = mpremote(device, "romfs", "query", timeout=FIRST_CONTACT_S)
    for line in out.splitlines():
        if line.startswith("ROMFS0 partition has size "):
            return int(line.split()[4])
    why = "its MicroPython has no ROMFS" if "not enabled" in out else "it has no ROMFS partition"
    raise DeployError(
        f"no ROMFS on the board at {port}: {why} (a build with a ROM partition is needed, see "
        f"README 'A board'); deploy without ROMFS=1 to copy the .mpy files to its file system"
    )


def board_of(platform: str) -> str:
    for name, spec in BOARDS.items():
        if spec.platform == platform:
            return name
    raise DeployError(f"the board runs MicroPython for {platform!r}, no bundle for that")


def flash(
    port: str | None,
    station: str | os.PathLike[str] = DEFAULT_STATION,
    board: str | None = None,
    bundles: Path = DEFAULT_OUT,  # where the bundle is built
    firmware: Path = FIRMWARE,  # what it is built from
    say=print,
    romfs: bool = False,
) -> str:
    """Deploy to the board at `port` (see the module docstring); returns the board's name."""
    device = check_port(port)
    config = validate_station(station)
    say(f"station config {station}: valid (station {config['station']['id']})")
    partition = romfs_partition(device, port) if romfs else 0
    if romfs:
        say(f"board at {port}: a ROMFS partition of {partition} bytes")
    platforms = [BOARDS[board].platform] if board else [s.platform for s in BOARDS.values()]
    prepare = ["exec", _PLATFORM, "+", "exec", "--no-follow", _PREPARE % (platforms,)]
    out = mpremote(device, *prepare, timeout=FIRST_CONTACT_S)
    platform = next((ln.split()[1] for ln in out.splitlines() if ln.startswith("platform ")), "")
    found = board_of(platform)
    if board and board != found:  # the board was left as it was (no /no_agent, no reset)
        raise DeployError(f"BOARD={board} but the board at {port} is {found} ({platform})")
    try:
        bundle = build(found, bundles, firmware)  # the tree as it is now, never a stale bundle
    except BundleError as err:
        raise DeployError(str(err)) from None
    say(f"board at {port}: {found}; /no_agent set and reset, so no watchdog runs during the copy")
    if romfs:
        _flash_romfs(device, port, bundle, station, partition, say)
        return found
    # Directories made by the clean-up, then plain file copies (no `cp -r`: its idea of an
    # existing destination differs between mpremote versions and ports).
    dirs = sorted({"/" + p.parent.as_posix() for p in (Path(n) for n, _ in files(bundle))} - {"/."})
    copy = ["exec", _CLEAN % (tuple(dirs),)]
    for directory in dirs:
        names = sorted(str(p) for p in (bundle / directory[1:]).iterdir() if p.is_file())
        copy += ["+", "fs", "cp", *names, f":{directory}/"]
    for top in sorted(p for p in bundle.iterdir() if p.is_file()):
        copy += ["+", "fs", "cp", str(top), f":/{top.name}"]
    tops = tuple(dirs) + tuple("/" + p.name for p in bundle.iterdir() if p.is_file())
    copy += ["+", "fs", "cp", str(station), ":/station.json"]
    copy += ["+", "exec", _LIST % (tops + ("/station.json",),)]
    time.sleep(RESET_SETTLE_S)
    listing = _retry_after_reset(device, copy)
    expected = dict(files(bundle))
    expected["station.json"] = Path(station).stat().st_size
    _check_sizes(listing, expected, f"copy to {port}")
    say(f"copied {len(expected)} files, {sum(expected.values())} bytes, sizes checked on the board")
    mpremote(device, "exec", "import os\nos.remove('/no_agent')", "+", "reset")
    say("/no_agent removed and reset: the board boots the agent")
    return found


def _flash_romfs(
    device: str, port: str, bundle: Path, station: str | os.PathLike[str], partition: int, say
) -> None:
    """Step 3 of a ROMFS deploy (module docstring): the image, main.py and the config."""
    with tempfile.TemporaryDirectory(prefix="relaypump_romfs_") as tmp:
        tree = Path(tmp) / "rom"
        for entry in bundle.iterdir():  # the packages; main.py stays on the file system
            if entry.is_dir():
                shutil.copytree(entry, tree / entry.name)
        image = romfs_image(tree, Path(tmp) / "bundle.img")
        size = image.stat().st_size
        if size > partition:
            mpremote(device, "exec", "import os\nos.remove('/no_agent')", "+", "reset")
            raise DeployError(
                f"the ROMFS image ({size} bytes) does not fit the partition of the board at "
                f"{port} ({partition} bytes); nothing written, the board was reset to its agent"
            )
        say(f"ROMFS image {size} bytes of {partition}: writing it")
        copy = ["romfs", "deploy", str(image), "+", "exec", _CLEAN % ((),)]
        copy += ["+", "fs", "cp", str(bundle / "main.py"), ":/main.py"]
        copy += ["+", "fs", "cp", str(station), ":/station.json"]
        copy += ["+", "exec", _LIST % (("/main.py", "/station.json"),), "+", "reset"]
        time.sleep(RESET_SETTLE_S)
        listing = _retry_after_reset(device, copy)
    expected = {"main.py": (bundle / "main.py").stat().st_size}
    expected["station.json"] = Path(station).stat().st_size
    expected.update(("rom/" + name, n) for name, n in files(bundle) if name != "main.py")
    time.sleep(RESET_SETTLE_S)  # the board mounts the new image at /rom as it boots
    listing += _retry_after_reset(device, ["exec", _LIST % (("/rom",),)])
    _check_sizes(listing, expected, f"deploy to {port}")
    say(f"ROMFS holds {len(expected) - 2} files, main.py and the config copied; sizes checked")
    mpremote(device, "exec", "import os\nos.remove('/no_agent')", "+", "reset")
    say("/no_agent removed and reset: the board boots the agent from /rom")


def _check_sizes(listing: str, expected: dict[str, int], what: str) -> None:
    """The board's listing (_LIST's "file NAME SIZE" lines) against the sizes it must show."""
    on_board = {
        ln.split()[1]: int(ln.split()[2]) for ln in listing.splitlines() if ln.startswith("file ")
    }
    wrong = [name for name, size in expected.items() if on_board.get(name) != size]
    if wrong:
        raise DeployError(f"{what} incomplete: {', '.join(wrong)} missing or of another size")


def _retry_after_reset(device: str, args: list[str]) -> str:
    """mpremote, tried again while the board is still coming back from its reset."""
    deadline = time.monotonic() + BACK_AFTER_RESET_S
    while True:
        try:
            if not os.path.exists(device):  # a USB board: its port is gone while it resets
                raise DeployError(f"no board at {device}: it did not come back after its reset")
            return mpremote(device, *args)
        except DeployError as err:
            if time.monotonic() > deadline or not any(w in str(err) for w in _RETRY_ON):
                raise
            time.sleep(0.5)


def console(port: str | None) -> int:
    device = check_port(port)
    if not sys.stdin.isatty():  # mpremote's repl sets the terminal up: a traceback without one
        raise DeployError("the console needs a terminal (stdin is not one): run it from a shell")
    return subprocess.call([sys.executable, "-m", "mpremote", "connect", device, "repl"])
