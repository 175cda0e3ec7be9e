"""Suite-wide settings: hypothesis profiles (CI runs more examples, never a deadline on these noisy
machines), and the order: the hardware-in-the-loop bench first.

`make test` runs the suite on two pytest-xdist workers, a test file's tests on one worker
(--dist loadfile: a module's VM, served pty or virtual board stays with it), files in collection
order (--no-loadscope-reorder). The HIL bench (tests/host_tools/hil) is 4 min of real time at a few
% of a core: first, it runs beside the rest on the other worker instead of after it.
"""

import os
import signal
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile("dev", max_examples=100, deadline=None)
settings.register_profile(
    "ci", max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("ci" if os.environ.get("CI") else "dev")

# A shell that starts the suite in the background (`make test &` without job control) ignores
# SIGINT, and an ignored signal stays ignored in every process started from it: the tests that stop
# a pumpsim, trace, pumpmon or bridge process with Ctrl-C would wait for it in vain.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

# The firmware package is installed (pyproject.toml); tests/ holds shared helpers (strategies.py).
sys.path.insert(0, str(Path(__file__).resolve().parent))


def pytest_addoption(parser):
    parser.addoption(
        "--bench-port",
        default=None,
        metavar="DEVICE",
        help="serial device (RS-485 adapter) of a real board running the agent, for the "
        "hardware-in-the-loop tests in tests/host_tools/hil (default: the virtual board)",
    )


def pytest_configure(config):
    """A --bench-port with no board possible behind it (make bench-hil PORT=/dev/null): one line,
    before the in-process reference run and seven errors with pyserial's tracebacks."""
    port = config.getoption("--bench-port")
    if port:
        from host_tools.deploy.flash import DeployError, check_port

        try:
            check_port(port)
        except DeployError as err:
            raise pytest.UsageError(f"--bench-port: {err}") from None


HIL = "tests/host_tools/hil/"
HIL_KPIS = Path(__file__).resolve().parents[1] / "build" / "hil" / "kpis.txt"
_STARTED = pytest.StashKey[float]()


def pytest_collection_modifyitems(items):
    items.sort(key=lambda item: not item.nodeid.startswith(HIL))  # stable: the rest keeps its order


def pytest_sessionstart(session):
    session.config.stash[_STARTED] = time.time()


def pytest_terminal_summary(terminalreporter, config):
    """The HIL bench's figures, when it ran in this session (from the file its fixture wrote: what
    a pytest-xdist worker prints does not reach the terminal)."""
    started = config.stash.get(_STARTED, None)
    if started is not None and HIL_KPIS.exists() and HIL_KPIS.stat().st_mtime >= started:
        terminalreporter.write_sep("-", "hardware-in-the-loop bench")
        terminalreporter.write(HIL_KPIS.read_text())
