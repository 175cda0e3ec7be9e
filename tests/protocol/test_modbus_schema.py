"""protocol/modbus.py against the golden vectors, its own round trips, and fuzzing.

Rules under test are in protocol/modbus.py's docstring; the vectors' valid frames were built by
pymodbus, so the vector tests here also pin byte order, CRC order and bit packing.
"""

import json
from pathlib import Path

import pytest
from construct import ChecksumError, ConstructError
from hypothesis import given
from hypothesis import strategies as st
from strategies import addresses, modbus_requests, words

from protocol import modbus

VECTORS = json.loads(
    (Path(__file__).parents[2] / "protocol" / "vectors" / "modbus.json").read_text()
)
FRAMES = VECTORS["frames"]
REJECTED = VECTORS["rejected"]
BY_NAME = {vector["name"]: vector for vector in FRAMES}


def request_count(vector):
    """The count of the request a response vector answers (None when the request has none)."""
    return BY_NAME[vector["request"]]["fields"].get("count") if "request" in vector else None


# --- golden vectors -------------------------------------------------------------------------------


def test_vectors_cover_every_function_in_both_directions_and_exceptions():
    seen = {(v["direction"], v["function"], "exception_code" in v["fields"]) for v in FRAMES}
    for function in modbus.FUNCTIONS:
        assert ("request", function, False) in seen
        assert ("response", function, False) in seen
        assert ("response", function, True) in seen
    reasons = {v["error"] for v in REJECTED}
    assert {"crc", "truncated", "byte_count", "oversized"} <= reasons


@pytest.mark.parametrize("vector", FRAMES, ids=lambda v: v["name"])
def test_vector_builds_byte_identical(vector):
    if vector["direction"] == "request":
        frame = modbus.build_request(vector["unit"], vector["function"], **vector["fields"])
    else:
        frame = modbus.build_response(vector["unit"], vector["function"], **vector["fields"])
    assert frame.hex() == vector["hex"]


@pytest.mark.parametrize("vector", FRAMES, ids=lambda v: v["name"])
def test_vector_parses_to_its_fields(vector):
    frame = bytes.fromhex(vector["hex"])
    if vector["direction"] == "request":
        parsed = modbus.parse_request(frame)
    else:
        parsed = modbus.parse_response(vector["function"], frame, count=request_count(vector))
    assert parsed == {"unit": vector["unit"], "function": vector["function"], **vector["fields"]}


@pytest.mark.parametrize("vector", FRAMES, ids=lambda v: v["name"])
def test_vector_parses_with_the_construct_struct_itself(vector):
    adu = modbus.RequestADU if vector["direction"] == "request" else modbus.ResponseADU
    frame = bytes.fromhex(vector["hex"])
    parsed = adu.parse(frame)
    assert parsed.frame.value.unit == vector["unit"]
    assert parsed.frame.value.function & 0x7F == vector["function"]
    assert parsed.crc == modbus.crc16(frame[:-2])
    assert adu.build(parsed) == frame


@pytest.mark.parametrize("vector", REJECTED, ids=lambda v: v["name"])
def test_rejected_vector_raises_its_typed_error(vector):
    frame = bytes.fromhex(vector["hex"])
    with pytest.raises(modbus.ModbusFrameError) as caught:
        if vector["direction"] == "request":
            modbus.parse_request(frame)
        else:
            modbus.parse_response(vector["function"], frame, count=request_count(vector))
    assert caught.value.reason == vector["error"]
    assert isinstance(caught.value, ConstructError)


def test_construct_struct_rejects_a_wrong_crc_with_a_construct_error():
    frame = bytearray.fromhex(BY_NAME["read_holding_registers_request"]["hex"])
    frame[-1] ^= 0xFF
    with pytest.raises(ChecksumError):
        modbus.RequestADU.parse(bytes(frame))


def test_crc16_check_value_and_wire_order():
    # The catalogued check value of CRC-16/MODBUS is over the ASCII digits 1..9.
    assert modbus.crc16(b"123456789") == 0x4B37
    frame = modbus.build_request(0x11, 3, address=0x6B, count=3)
    assert frame.hex() == "1103006b00037687"  # spec example: CRC low byte 0x87 last


def test_reason_names_are_distinct_per_error_class():
    classes = [
        modbus.CrcError,
        modbus.TruncatedFrame,
        modbus.FrameLengthError,
        modbus.OversizedFrame,
        modbus.ByteCountError,
        modbus.CountError,
        modbus.FrameValueError,
        modbus.UnsupportedFunction,
        modbus.UnexpectedFunction,
    ]
    assert len({cls.reason for cls in classes}) == len(classes)


# --- building refuses what it cannot encode -------------------------------------------------------


@pytest.mark.parametrize(
    "direction, function, fields, error",
    [
        ("request", 3, {"address": 0, "count": 126}, modbus.CountError),
        ("request", 3, {"address": 0, "count": 0}, modbus.CountError),
        ("request", 1, {"address": 0, "count": 2001}, modbus.CountError),
        ("request", 15, {"address": 0, "bits": [True] * 1969}, modbus.CountError),
        ("request", 15, {"address": 0, "bits": []}, modbus.CountError),
        ("request", 16, {"address": 0, "registers": [1] * 124}, modbus.CountError),
        ("request", 5, {"address": 0, "value": 1}, modbus.FrameValueError),
        ("request", 7, {}, modbus.UnsupportedFunction),
        ("request", 3, {"address": 0}, modbus.ModbusFrameError),
        ("request", 16, {"address": 0, "registers": [1], "count": 2}, modbus.ModbusFrameError),
        ("response", 3, {"registers": [1] * 126}, modbus.ByteCountError),
        ("response", 1, {"bits": []}, modbus.ByteCountError),
        ("response", 5, {"address": 0, "value": 0xFF00}, modbus.FrameValueError),
    ],
)
def test_build_refuses_unencodable_fields(direction, function, fields, error):
    build = modbus.build_request if direction == "request" else modbus.build_response
    with pytest.raises(error):
        build(1, function, **fields)


def test_build_refuses_out_of_range_integers_with_construct_errors():
    with pytest.raises(ConstructError):
        modbus.build_request(256, 3, address=0, count=1)
    with pytest.raises(ConstructError):
        modbus.build_request(1, 6, address=0, value=0x10000)
    with pytest.raises(ConstructError):
        modbus.build_request(1, 3, address=-1, count=1)


def test_parse_refuses_non_bytes():
    with pytest.raises(modbus.ModbusFrameError):
        modbus.parse_request("0103006b00037417")


# --- round trips ----------------------------------------------------------------------------------

units = st.integers(0, 255)


def requests():
    return modbus_requests(units)


@st.composite
def responses(draw):
    """(unit, function, fields, count of the request answered or None)."""
    function = draw(st.sampled_from(modbus.FUNCTIONS))
    if draw(st.integers(0, 4)) == 0:
        return draw(units), function, {"exception_code": draw(st.integers(1, 255))}, None
    address = draw(addresses)
    if function in modbus.BIT_READS:
        bits = draw(st.lists(st.booleans(), min_size=1, max_size=modbus.MAX_READ_BITS))
        return draw(units), function, {"bits": bits}, len(bits)
    if function in modbus.REGISTER_READS:
        registers = draw(st.lists(words, min_size=1, max_size=modbus.MAX_READ_REGISTERS))
        return draw(units), function, {"registers": registers}, len(registers)
    if function == modbus.WRITE_SINGLE_COIL:
        return draw(units), function, {"address": address, "value": draw(st.booleans())}, None
    if function == modbus.WRITE_SINGLE_REGISTER:
        return draw(units), function, {"address": address, "value": draw(words)}, None
    limit = modbus.MAX_WRITE_BITS if function == 15 else modbus.MAX_WRITE_REGISTERS
    return draw(units), function, {"address": address, "count": draw(st.integers(1, limit))}, None


@given(requests())
def test_request_round_trip(request):
    unit, function, fields = request
    frame = modbus.build_request(unit, function, **fields)
    assert len(frame) <= modbus.MAX_ADU
    assert frame[-2] | frame[-1] << 8 == modbus.crc16(frame[:-2])
    assert modbus.parse_request(frame) == {"unit": unit, "function": function, **fields}


@given(responses())
def test_response_round_trip(response):
    unit, function, fields, count = response
    frame = modbus.build_response(unit, function, **fields)
    assert len(frame) <= modbus.MAX_ADU
    assert modbus.parse_response(function, frame, count=count) == {
        "unit": unit,
        "function": function,
        **fields,
    }


@given(responses())
def test_bit_response_without_count_gives_whole_bytes(response):
    unit, function, fields, _ = response
    frame = modbus.build_response(unit, function, **fields)
    parsed = modbus.parse_response(function, frame)
    if "bits" in fields:
        assert len(parsed["bits"]) == 8 * ((len(fields["bits"]) + 7) // 8)
        assert parsed["bits"][: len(fields["bits"])] == fields["bits"]
        assert not any(parsed["bits"][len(fields["bits"]) :])  # we pad with zeros


# --- fuzz: bad input gives typed errors, never anything else --------------------------------------


def with_crc(content: bytes) -> bytes:
    crc = modbus.crc16(content)
    return content + bytes((crc & 0xFF, crc >> 8))


def decode_all_ways(frame: bytes) -> list:
    """Run every decoder over frame; only ModbusFrameError may escape (as a value here)."""
    results = []
    for decode in [modbus.parse_request] + [
        (lambda f, fn=fn: modbus.parse_response(fn, f)) for fn in modbus.FUNCTIONS
    ]:
        try:
            results.append(decode(frame))
        except modbus.ModbusFrameError as exc:
            results.append(exc)
    return results


def assert_canonical(frame: bytes) -> None:
    """Whatever parses re-builds to a frame that parses to the same fields."""
    request, *answers = decode_all_ways(frame)
    if isinstance(request, dict):
        fields = {k: v for k, v in request.items() if k not in ("unit", "function")}
        rebuilt = modbus.build_request(request["unit"], request["function"], **fields)
        assert modbus.parse_request(rebuilt) == request
    for answer in answers:
        if isinstance(answer, dict):
            fields = {k: v for k, v in answer.items() if k not in ("unit", "function")}
            rebuilt = modbus.build_response(answer["unit"], answer["function"], **fields)
            assert modbus.parse_response(answer["function"], rebuilt) == answer


@given(st.binary(max_size=300))
def test_random_bytes_only_raise_typed_errors(data):
    decode_all_ways(data)


@given(st.integers(0, 255), st.sampled_from(range(256)), st.binary(max_size=260))
def test_random_content_with_valid_crc_only_raises_typed_errors(unit, function, payload):
    frame = with_crc(bytes((unit, function)) + payload)
    decode_all_ways(frame)
    assert_canonical(frame)


mutations = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 300), st.integers(1, 255)),
    st.tuples(st.just("insert"), st.integers(0, 300), st.integers(0, 255)),
    st.tuples(st.just("delete"), st.integers(0, 300), st.just(0)),
    st.tuples(st.just("truncate"), st.integers(0, 300), st.just(0)),
)


def mutate(frame: bytes, edits, recrc: bool) -> bytes:
    content = bytearray(frame[:-2] if recrc else frame)
    for kind, where, value in edits:
        at = where % (len(content) + 1)
        if kind == "flip" and at < len(content):
            content[at] ^= value
        elif kind == "insert":
            content.insert(at, value)
        elif kind == "delete" and at < len(content):
            del content[at]
        elif kind == "truncate":
            del content[at:]
    return with_crc(bytes(content)) if recrc else bytes(content)


@given(st.sampled_from(FRAMES), st.lists(mutations, min_size=1, max_size=4), st.booleans())
def test_mutated_frames_only_raise_typed_errors(vector, edits, recrc):
    frame = mutate(bytes.fromhex(vector["hex"]), edits, recrc)
    decode_all_ways(frame)
    if recrc and len(frame) >= 4:
        assert_canonical(frame)


@given(st.sampled_from(FRAMES), st.integers(0, 10_000), st.integers(1, 255))
def test_any_single_corrupted_byte_without_crc_fix_is_a_crc_error(vector, where, flip):
    frame = bytearray.fromhex(vector["hex"])
    frame[where % len(frame)] ^= flip
    with pytest.raises(modbus.CrcError):
        if vector["direction"] == "request":
            modbus.parse_request(bytes(frame))
        else:
            modbus.parse_response(vector["function"], bytes(frame))
