"""Firmware uplink codec (generated firmware/relaypump/uplink.py) against the golden vectors.

Runs on CPython (pytest) and inside the MicroPython VM: plain test functions, plain asserts,
binascii instead of bytes.fromhex, and a small LCG instead of `random` so both runs see the same
fuzz cases.
"""

import binascii

from relaypump import uplink
from support import load_vector

T = {name: i for i, name in enumerate(uplink.TELEMETRY_FIELDS)}  # field name -> tuple index

VECTORS = load_vector("uplink")
KEY = binascii.unhexlify(VECTORS["key_hex"])
VM_HEAP_KIB = 128  # measured: 47 KB live + at most 24 KB per test (the fuzz tests)
KINDS = {
    "telemetry": uplink.KIND_TELEMETRY,
    "event": uplink.KIND_EVENT,
    "command": uplink.KIND_COMMAND,
    "ack": uplink.KIND_ACK,
}


def _frame(vector):
    return binascii.unhexlify(vector["hex"])


def _names(vector):
    kind = KINDS[vector["kind"]]
    if kind == uplink.KIND_TELEMETRY:
        return uplink.TELEMETRY_FIELDS
    if kind == uplink.KIND_EVENT:
        return uplink.EVENT_FIELDS
    if kind == uplink.KIND_ACK:
        return uplink.ACK_FIELDS
    return uplink.COMMAND_FIELDS[vector["fields"]["command_type"]]


def _values(vector):
    fields = vector["fields"]
    return tuple(fields[name] for name in _names(vector))


def _encode(kind, values):
    buf = bytearray(uplink.TELEMETRY_SIZE)  # the largest frame
    if kind == uplink.KIND_TELEMETRY:
        n = uplink.encode_telemetry(buf, values)
    elif kind == uplink.KIND_EVENT:
        n = uplink.encode_event(buf, values)
    elif kind == uplink.KIND_ACK:
        n = uplink.encode_ack(buf, values)
    else:
        n = uplink.encode_command(buf, values, KEY)
    return bytes(buf[:n])


def test_the_agent_side_names_the_telemetry_length_and_leaves_the_rest_to_uplink_extra():
    # the agent builds telemetry from a list of TELEMETRY_VALUES; the decoders, the command
    # encoder and the field names are uplink_extra's, reached through uplink as before
    assert uplink.TELEMETRY_VALUES == len(uplink.TELEMETRY_FIELDS)
    for name in ("decode_telemetry", "decode_frame", "encode_command", "COMMAND_FIELDS"):
        assert name not in uplink.__dict__ and getattr(uplink, name) is not None
    try:
        uplink.no_such_name  # noqa: B018
    except AttributeError:
        pass
    else:
        raise AssertionError("an unknown name was found")


def test_vectors_decode_to_their_fields():
    for vector in VECTORS["frames"]:
        kind, values = uplink.decode_frame(_frame(vector), KEY)
        assert kind == KINDS[vector["kind"]], vector["name"]
        assert tuple(values) == _values(vector), vector["name"]


def test_vectors_encode_to_their_bytes():
    for vector in VECTORS["frames"]:
        frame = _encode(KINDS[vector["kind"]], _values(vector))
        assert frame == _frame(vector), vector["name"]


def test_frame_sizes():
    assert uplink.TELEMETRY_SIZE == 80
    assert uplink.EVENT_SIZE == 24
    assert uplink.ACK_SIZE == 21
    assert uplink.COMMAND_SIZES[uplink.COMMAND_SETPOINT] == 59
    assert uplink.COMMAND_MAX_SIZE == 63


def test_rejected_vectors_raise_their_typed_error():
    for vector in VECTORS["rejected"]:
        expected = getattr(uplink, vector["error"])
        try:
            uplink.decode_frame(_frame(vector), KEY)
        except uplink.UplinkError as err:
            assert type(err) is expected, (vector["name"], err)
        else:
            raise AssertionError("accepted " + vector["name"])


def test_a_typed_error_is_one_class_made_on_first_use():
    # the codec makes its typed errors when first raised or named (a class is ~0.1 KiB of heap)
    try:
        uplink.frame_kind(b"XY" + bytes(14))
    except uplink.UplinkError as err:
        raised = type(err)
    assert raised.__name__ == "BadMagic" and raised is uplink.BadMagic
    assert issubclass(uplink.BadLength, uplink.UplinkError) and uplink.BadLength is uplink.BadLength
    assert issubclass(uplink.UplinkError, ValueError)
    try:
        uplink.NoSuchError  # noqa: B018
    except AttributeError:
        pass
    else:
        raise AssertionError("a name that is not a typed error")


def test_per_kind_decoder_refuses_other_kinds():
    event = _frame(VECTORS["frames"][4])
    try:
        uplink.decode_telemetry(event)
    except uplink.WrongKind:
        pass
    else:
        raise AssertionError("telemetry decoder accepted an event")


def test_hmac_matches_rfc4231():
    # RFC 4231 test cases 2 (short key) and 6 (key longer than the block)
    tag = uplink.hmac_sha256(b"Jefe", b"what do ya want for nothing?")
    assert binascii.hexlify(tag) == (
        b"5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    )
    tag = uplink.hmac_sha256(
        b"\xaa" * 131, b"Test Using Larger Than Block-Size Key - Hash Key First"
    )
    assert binascii.hexlify(tag) == (
        b"60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
    )


def test_short_key_is_refused():
    frame = _frame(VECTORS["frames"][7])
    try:
        uplink.decode_command(frame, b"short")
    except ValueError as err:
        assert not isinstance(err, uplink.UplinkError)
    else:
        raise AssertionError("accepted a 5-byte key")


def test_encoder_refuses_values_that_do_not_fit():
    values = list(_values(VECTORS["frames"][0]))
    buf = bytearray(uplink.TELEMETRY_SIZE)
    for index, bad in (
        (T["pump1_speed_pct_x100"], 0x10000),
        (T["suction_kpa_x10"], -0x8001),
        (T["station_id"], -1),
        (T["flow_m3h_x10"], 12.5),
    ):
        wrong = list(values)
        wrong[index] = bad
        try:
            uplink.encode_telemetry(buf, wrong)
        except uplink.FieldRange:
            pass
        else:
            raise AssertionError(f"encoded {bad!r} at {index}")
    try:
        uplink.encode_telemetry(buf, values[:-1])
    except uplink.FieldRange:
        pass
    else:
        raise AssertionError("encoded too few values")


def test_encoder_refuses_unknown_command_type():
    values = list(_values(VECTORS["frames"][7]))
    values[uplink.I_COMMAND_COMMAND_TYPE] = 99
    try:
        uplink.encode_command(bytearray(uplink.COMMAND_MAX_SIZE), values, KEY)
    except uplink.UnknownCommand:
        pass
    else:
        raise AssertionError("encoded command type 99")


class _Lcg:
    """Deterministic numbers, same on CPython and MicroPython; stays a small int (no heap)."""

    def __init__(self, seed):
        self.state = seed % 65537

    def below(self, n):
        self.state = (self.state * 75 + 74) % 65537  # ZX81 generator
        return self.state % n


_WORK = bytearray(96)  # mutated frames are built here: the fuzz allocates little per case


def _mutate(rng, frame):
    """Write a damaged copy of frame into _WORK; returns its length."""
    n = len(frame)
    _WORK[:n] = frame
    how = rng.below(5)
    if how == 0:  # flip one to three bytes
        for _flip in range(1 + rng.below(3)):
            _WORK[rng.below(n)] ^= 1 + rng.below(255)
    elif how == 1:  # cut
        n = rng.below(n + 1)
    elif how == 2:  # extend
        for _extra in range(1 + rng.below(4)):
            _WORK[n] = rng.below(256)
            n += 1
    elif how == 3:  # keep the header, randomise the rest
        for i in range(4, n):
            _WORK[i] = rng.below(256)
    else:  # random bytes of random length
        n = rng.below(len(_WORK))
        for i in range(n):
            _WORK[i] = rng.below(256)
    return n


def _fuzz(seed, kind, cases):
    rng = _Lcg(seed)
    frames = [_frame(v) for v in VECTORS["frames"] if KINDS[v["kind"]] == kind]
    view = memoryview(_WORK)
    for _case in range(cases):
        original = frames[rng.below(len(frames))]
        n = _mutate(rng, original)
        try:
            decoded_kind = uplink.decode_frame(view[:n], KEY)[0]
        except uplink.UplinkError:
            continue
        # a changed command must never verify
        assert decoded_kind != uplink.KIND_COMMAND or bytes(view[:n]) == original


# Several fuzz tests, not one: the VM only collects garbage between tests.
def test_fuzz_telemetry_raises_only_typed_errors():
    _fuzz(1, uplink.KIND_TELEMETRY, 100)


def test_fuzz_event_and_ack_raise_only_typed_errors():
    _fuzz(2, uplink.KIND_EVENT, 50)
    _fuzz(3, uplink.KIND_ACK, 50)


def test_fuzz_commands_raise_only_typed_errors():
    _fuzz(4, uplink.KIND_COMMAND, 100)
