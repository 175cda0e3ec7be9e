"""Suite-wide settings: hypothesis profiles (CI runs more examples, never a deadline on these noisy machines)."""

import os
import sys
from pathlib import Path

from hypothesis import HealthCheck, settings

settings.register_profile("dev", max_examples=100, deadline=None)
settings.register_profile(
    "ci", max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("ci" if os.environ.get("CI") else "dev")

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
