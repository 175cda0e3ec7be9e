"""firmware/manifest.py freezes what a board boots; main.py's boot steps cover the agent's imports."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

FIRMWARE = Path(__file__).resolve().parents[3] / "firmware"
REPO = FIRMWARE.parent


def read_manifest() -> dict:
    """Run the manifest as MicroPython's build does, with its commands recorded."""
    seen: dict = {"include": [], "package": [], "module": [], "metadata": {}}
    commands = {
        "include": lambda path: seen["include"].append(path),
        "metadata": lambda **kw: seen["metadata"].update(kw),
        "package": lambda path, files=None, base_path=".", opt=None: seen["package"].append(
            (path, files)
        ),
        "module": lambda path, base_path=".", opt=None: seen["module"].append(path),
    }
    exec(compile((FIRMWARE / "manifest.py").read_text(), "manifest.py", "exec"), commands)
    return seen


def main_py() -> dict:
    namespace: dict = {"__name__": "main"}
    exec(compile((FIRMWARE / "main.py").read_text(), "main.py", "exec"), namespace)
    return namespace


def test_the_manifest_freezes_the_agent_the_board_files_and_main_py():
    seen = read_manifest()
    assert seen["include"] == ["$(PORT_DIR)/boards/manifest.py"]  # the port's own modules stay
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert seen["metadata"]["version"] == version and seen["metadata"]["description"]
    packages = dict(seen["package"])
    assert packages["relaypump"] is None  # the whole package
    assert (FIRMWARE / "relaypump" / "__init__.py").exists()
    for name in packages["boards"]:
        assert (FIRMWARE / "boards" / name).exists()
    assert seen["module"] == ["main.py"]
    main = main_py()
    for platform in ("esp32", "rp2"):  # every board file a frozen board can pick
        module = main["BOARDS"][platform].split(".")[1] + ".py"
        assert module in packages["boards"]
        assert "rs485.py" in packages["boards"] and "__init__.py" in packages["boards"]


def test_main_py_boot_steps_import_every_module_the_agent_needs():
    stages = main_py()["STAGES"]
    code = (
        "import sys\n"
        "import relaypump.runtime\n"
        "before = set(sys.modules)\n"
        "import relaypump.agent\n"
        "print(' '.join(sorted(m for m in set(sys.modules) - before if m.startswith('relaypump.'))))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=FIRMWARE, capture_output=True, text=True, check=True
    )
    needed = set(done.stdout.split())
    assert needed <= set(stages), needed - set(stages)
    assert all((FIRMWARE / (name.replace(".", "/") + ".py")).exists() for name in stages)
    assert stages[-1] == "relaypump.agent"
