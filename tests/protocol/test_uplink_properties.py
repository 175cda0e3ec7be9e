"""Property tests: construct schema, fast decoder and generated firmware codec agree byte for byte.

- construct build -> firmware decode gives the values back; firmware encode == construct build.
- fast decoder == construct parse on every valid frame (single and batch APIs).
- random bytes and mutated valid frames: every decoder raises only typed errors, and all three
  give the same answer (same error class, or the same values).
"""

import struct

from hypothesis import given
from hypothesis import strategies as st
from relaypump import uplink as firmware

from protocol import fast, layout, uplink

KEY = bytes(range(0x40, 0x60))
LAYOUTS = layout.layouts()
TELEMETRY = layout.layout("telemetry")
ENCODERS = {
    uplink.Kind.TELEMETRY: firmware.encode_telemetry,
    uplink.Kind.EVENT: firmware.encode_event,
    uplink.Kind.ACK: firmware.encode_ack,
    uplink.Kind.COMMAND: lambda buf, values: firmware.encode_command(buf, values, KEY),
}
ERRORS = (uplink.UplinkError, firmware.UplinkError)


def values_of(lay: layout.Layout):
    """Strategy: flat values that fit lay (the command type fixed to lay's)."""
    parts = []
    for f in lay.values:
        if f.path == ("command_type",):
            parts.append(st.just(lay.command_type))
        else:
            low, high = layout.CODE_RANGES[f.code]
            parts.append(st.integers(low, high))
    return st.tuples(*parts)


frames = st.sampled_from(LAYOUTS).flatmap(lambda lay: st.tuples(st.just(lay), values_of(lay)))


def construct_build(lay: layout.Layout, values) -> bytes:
    kind = uplink.Kind(lay.kind)
    return uplink.build(uplink.FRAMES[kind], layout.to_container(lay, values), KEY)


def firmware_encode(lay: layout.Layout, values) -> bytes:
    buf = bytearray(firmware.COMMAND_MAX_SIZE + firmware.TELEMETRY_SIZE)
    n = ENCODERS[uplink.Kind(lay.kind)](buf, values)
    return bytes(buf[:n])


@given(frames)
def test_construct_build_then_firmware_decode(frame):
    lay, values = frame
    data = construct_build(lay, values)
    assert len(data) == lay.size
    kind, decoded = firmware.decode_frame(data, KEY)
    assert kind == lay.kind
    assert decoded == values


@given(frames)
def test_firmware_encode_is_byte_identical_to_construct(frame):
    lay, values = frame
    data = firmware_encode(lay, values)
    assert data == construct_build(lay, values)
    kind, container = uplink.parse_any(data, KEY)
    assert layout.from_container(lay, container) == values


@given(frames)
def test_fast_decoder_equals_construct_parse(frame):
    lay, values = frame
    data = construct_build(lay, values)
    kind, container = uplink.parse_any(data, KEY)
    assert fast.decode(data, KEY) == (kind, container)
    assert fast.decode_kind(kind, data, KEY) == container
    if kind == uplink.Kind.TELEMETRY:
        assert fast.decode_telemetry(data) == container
        assert fast.decode_telemetry_tuple(data) == values


@given(st.lists(values_of(TELEMETRY), max_size=20))
def test_fast_batch_equals_single_frames(rows):
    buffer = b"".join(construct_build(TELEMETRY, row) for row in rows)
    assert list(fast.decode_telemetry_many(buffer)) == rows
    assert list(fast.decode_telemetry_many(bytearray(buffer))) == rows
    columns = fast.telemetry_columns(buffer)
    assert list(columns) == list(fast.TELEMETRY_FIELDS)
    for i, name in enumerate(fast.TELEMETRY_FIELDS):
        assert columns[name] == tuple(row[i] for row in rows)


def outcome(decode):
    """('ok', value) or ('error', class name); anything but a typed error propagates."""
    try:
        return "ok", decode()
    except ERRORS as err:
        return "error", type(err).__name__


def assert_decoders_agree(data: bytes) -> None:
    by_construct = outcome(lambda: uplink.parse_any(data, KEY))
    by_fast = outcome(lambda: fast.decode(data, KEY))
    by_firmware = outcome(lambda: firmware.decode_frame(data, KEY))
    assert by_construct[0] == by_fast[0] == by_firmware[0], (by_construct, by_fast, by_firmware)
    if by_construct[0] == "error":
        assert by_construct[1] == by_fast[1] == by_firmware[1]
        return
    kind, container = by_construct[1]
    assert by_fast[1] == (kind, container)
    lay = (
        layout.command_layouts()[container["command_type"]]
        if kind == uplink.Kind.COMMAND
        else layout.layout(kind.name.lower())
    )
    assert by_firmware[1] == (kind, layout.from_container(lay, container))


@given(st.binary(max_size=100))
def test_random_bytes_get_typed_errors_everywhere(data):
    assert_decoders_agree(data)


@given(st.binary(min_size=0, max_size=80).map(lambda tail: b"RP\x01" + tail))
def test_random_bytes_behind_a_valid_prefix(data):
    assert_decoders_agree(data)


@given(
    frames,
    st.lists(st.tuples(st.integers(0, 200), st.integers(1, 255)), min_size=1, max_size=3),
    st.integers(-3, 3),
)
def test_mutated_frames_get_the_same_answer_everywhere(frame, flips, resize):
    lay, values = frame
    original = construct_build(lay, values)
    data = bytearray(original)
    for at, xor in flips:
        data[at % len(data)] ^= xor
    data = data[: len(data) + resize] if resize < 0 else data + bytes(resize)
    assert_decoders_agree(bytes(data))
    if lay.tag_size and data != original:  # a changed command never verifies
        assert outcome(lambda: firmware.decode_frame(bytes(data), KEY))[0] == "error"


@given(frames, st.integers(0, 40), st.integers())
def test_firmware_encoder_refuses_values_that_do_not_fit(frame, index, bad):
    lay, values = frame
    index %= len(values)
    code = lay.values[index].code
    low, high = layout.CODE_RANGES[code]
    if low <= bad <= high or lay.values[index].path == ("command_type",):
        return
    wrong = values[:index] + (bad,) + values[index + 1 :]
    outcome_ = outcome(lambda: firmware_encode(lay, wrong))
    assert outcome_ == ("error", "FieldRange")
    assert outcome(lambda: construct_build(lay, wrong)) == ("error", "FieldRange")


def test_decode_format_matches_the_size():
    for lay in LAYOUTS:
        assert struct.calcsize(lay.decode_format) == lay.size
