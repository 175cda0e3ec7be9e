"""Host-side tools (CPython): MicroPython VM runner, simulator, recorder, bench, deploy.

The firmware package (firmware/relaypump) is MicroPython code that also runs on CPython; host tools
use it as it is (the agent in the simulator, the generated uplink codec), so firmware/ goes on
sys.path here once.
"""

import sys
from pathlib import Path

FIRMWARE_DIR = Path(__file__).resolve().parents[1] / "firmware"
if str(FIRMWARE_DIR) not in sys.path:
    sys.path.insert(0, str(FIRMWARE_DIR))
