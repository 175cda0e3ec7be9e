"""make firmware: one bundle per board, compiled per architecture, sizes listed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from host_tools.deploy.bundle import BOARDS, FIRMWARE, build, files

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("firmware")
    done = subprocess.run(
        [sys.executable, "-m", "host_tools.deploy", "bundle", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return out, done.stdout


def test_every_board_gets_the_agent_its_own_board_files_and_main_py(bundles):
    out, _ = bundles
    modules = {p.stem for p in (FIRMWARE / "relaypump").glob("*.py")}
    for board, spec in BOARDS.items():
        names = {name for name, _ in files(out / board)}
        assert {f"relaypump/{m}.mpy" for m in modules} <= names
        assert {f"boards/{b}.mpy" for b in spec.board_files} | {"main.py"} <= names
        others = {f"boards/{p.stem}.mpy" for p in (FIRMWARE / "boards").glob("*.py")}
        assert not (names & (others - {f"boards/{b}.mpy" for b in spec.board_files})), board
        assert not any(n.endswith(".py") and n != "main.py" for n in names)
        assert (out / board / "main.py").read_bytes() == (FIRMWARE / "main.py").read_bytes()


def test_sizes_are_listed_per_file_and_in_total(bundles):
    out, listing = bundles
    for board, spec in BOARDS.items():
        rows = files(out / board)
        arch = f"-march={spec.march}" if spec.march else "no -march"
        assert f"{board} (" in listing and arch in listing
        for name, size in rows:
            assert f"{size:7d}  {name}" in listing
        total = sum(size for _, size in rows)
        assert f"{total:7d}  total, {len(rows)} files" in listing


def test_bytecode_mpy_is_the_same_for_every_architecture(bundles):
    """The claim of bundle.py: no native code, so -march changes no byte."""
    out, _ = bundles
    for name, _ in files(out / "esp32"):
        if name.startswith("relaypump/"):
            data = (out / "esp32" / name).read_bytes()
            assert (
                data == (out / "rp2" / name).read_bytes() == (out / "virtual" / name).read_bytes()
            )


def test_a_file_mpy_cross_refuses_stops_the_build(tmp_path):
    firmware = tmp_path / "firmware"
    (firmware / "relaypump").mkdir(parents=True)
    (firmware / "boards").mkdir()
    for name in ("__init__", "virtual"):
        (firmware / "boards" / f"{name}.py").write_text("")
    (firmware / "main.py").write_text("")
    (firmware / "relaypump" / "broken.py").write_text("def f(:\n")
    with pytest.raises(Exception, match="relaypump/broken.py"):
        build("virtual", tmp_path / "out", firmware)
