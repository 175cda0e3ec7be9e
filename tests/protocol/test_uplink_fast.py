"""The fast telemetry decoder's batch API: its errors, its edge cases, and that it is fast."""

import pytest

from protocol import fast, layout, uplink

TELEMETRY = layout.layout("telemetry")


def telemetry_frame(seq: int) -> bytes:
    values = [seq % 2**32 if f.path == ("seq",) else 0 for f in TELEMETRY.values]
    return uplink.build(uplink.telemetry, layout.to_container(TELEMETRY, values))


FRAMES = b"".join(telemetry_frame(i) for i in range(50))


def test_empty_buffer_gives_no_frames():
    assert list(fast.decode_telemetry_many(b"")) == []
    assert fast.telemetry_columns(b"") == {name: () for name in fast.TELEMETRY_FIELDS}


def test_batch_keeps_frame_order():
    assert fast.telemetry_columns(FRAMES)["seq"] == tuple(range(50))


@pytest.mark.parametrize(
    ("offset", "value", "error"),
    [(0, ord("X"), uplink.BadMagic), (2, 2, uplink.BadVersion), (3, 2, uplink.WrongKind)],
)
def test_batch_names_the_first_bad_frame(offset, value, error):
    data = bytearray(FRAMES)
    data[17 * 80 + offset] = value
    data[30 * 80 + offset] = value
    with pytest.raises(error, match="^frame 17: "):
        fast.decode_telemetry_many(data)


def test_batch_refuses_a_cut_last_frame():
    with pytest.raises(uplink.TruncatedFrame, match="^frame 49: "):
        fast.decode_telemetry_many(FRAMES[:-3])


def test_single_frame_errors_match_construct():
    for data in (FRAMES[:79], FRAMES[:81], b"RX" + FRAMES[2:80], FRAMES[:10]):
        with pytest.raises(uplink.UplinkError) as by_fast:
            fast.decode_telemetry(data)
        with pytest.raises(uplink.UplinkError) as by_construct:
            uplink.parse(uplink.telemetry, data)
        assert type(by_fast.value) is type(by_construct.value)
        with pytest.raises(type(by_construct.value)):
            fast.decode_telemetry_tuple(data)
