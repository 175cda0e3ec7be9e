"""The firmware Modbus master against the shared golden vectors (protocol/vectors/modbus.json).

The vectors' valid frames were built by pymodbus and agree with protocol/modbus.py, so passing
here ties the firmware codec byte for byte to both. Runs on CPython and in the MicroPython VM.
Rejected request frames are for slaves and do not concern a master; rejected responses are fed
as a master sees them on the bus (these bytes, then silence) and must end in the vector's
master_error.
"""

from relaypump import modbus as mb
from support import load_vector

VM_HEAP_KIB = 128  # measured: the 42 KB vector file and every test fit

_VECTORS = load_vector("modbus")
_BY_NAME = {}
for _v in _VECTORS["frames"]:
    _BY_NAME[_v["name"]] = _v

_MASTER_ERRORS = {
    "crc": mb.CrcError,
    "timeout": mb.ModbusTimeout,
    "unexpected": mb.UnexpectedResponse,
}
_LATER_MS = 100_000  # well past any deadline


def _frames(direction):
    return [v for v in _VECTORS["frames"] if v["direction"] == direction]


def _send(master, request):
    """Make master issue the request a vector describes; returns its ADU as bytes."""
    fields = request["fields"]
    unit = request["unit"]
    function = request["function"]
    if function == mb.READ_COILS:
        adu = master.read_coils(unit, fields["address"], fields["count"])
    elif function == mb.READ_DISCRETE_INPUTS:
        adu = master.read_discrete_inputs(unit, fields["address"], fields["count"])
    elif function == mb.READ_HOLDING_REGISTERS:
        adu = master.read_holding_registers(unit, fields["address"], fields["count"])
    elif function == mb.READ_INPUT_REGISTERS:
        adu = master.read_input_registers(unit, fields["address"], fields["count"])
    elif function == mb.WRITE_SINGLE_COIL:
        adu = master.write_coil(unit, fields["address"], fields["value"])
    elif function == mb.WRITE_SINGLE_REGISTER:
        adu = master.write_register(unit, fields["address"], fields["value"])
    elif function == mb.WRITE_MULTIPLE_COILS:
        adu = master.write_coils(unit, fields["address"], fields["bits"])
    elif function == mb.WRITE_MULTIPLE_REGISTERS:
        adu = master.write_registers(unit, fields["address"], fields["registers"])
    else:
        raise AssertionError("no master call for function " + str(function))
    return bytes(adu)


def _expected_values(response):
    """What values() returns for a response vector's fields."""
    fields = response["fields"]
    function = response["function"]
    if function <= mb.READ_DISCRETE_INPUTS:
        return fields["bits"]
    if function <= mb.READ_INPUT_REGISTERS:
        return fields["registers"]
    if function == mb.WRITE_SINGLE_COIL:
        return (fields["address"], 0xFF00 if fields["value"] else 0)
    if function == mb.WRITE_SINGLE_REGISTER:
        return (fields["address"], fields["value"])
    return (fields["address"], fields["count"])


def _outcome(master, frame):
    """Feed frame to a master awaiting its response, then let the deadline pass.

    Returns mb.DONE or the exception the transaction ended with.
    """
    assert master.poll(0) == mb.PENDING  # arms the deadline, as the runtime does after sending
    assert master.receive(frame) == len(frame)
    for now in (1, _LATER_MS):
        try:
            state = master.poll(now)
        except mb.ModbusError as error:
            return error
        if state == mb.DONE:
            return state
        assert state == mb.PENDING
    raise AssertionError("still pending after the deadline")


def test_vector_file_has_requests_responses_and_rejections():
    assert len(_frames("request")) >= 8
    assert len(_frames("response")) >= 16
    assert len([v for v in _VECTORS["rejected"] if "master_error" in v]) >= 5


def test_crc16_agrees_with_every_vector():
    for vector in _VECTORS["frames"]:
        frame = bytes.fromhex(vector["hex"])
        crc = mb.crc16(frame[:-2])
        assert frame[-2] == crc & 0xFF and frame[-1] == crc >> 8, vector["name"]


def test_requests_are_built_byte_identical():
    built = 0
    for request in _frames("request"):
        master = mb.RtuMaster()
        if request["unit"] == 0:
            continue  # broadcast: checked by the next test
        assert _send(master, request) == bytes.fromhex(request["hex"]), request["name"]
        built += 1
    assert built >= 15


def test_the_master_refuses_broadcast_requests():
    # A master expecting a response cannot broadcast (unit 0 gets no answer): it refuses, typed.
    broadcasts = [v for v in _frames("request") if v["unit"] == 0]
    assert broadcasts
    for request in broadcasts:
        try:
            _send(mb.RtuMaster(), request)
        except ValueError:
            continue
        raise AssertionError("broadcast accepted: " + request["name"])


def test_responses_decode_to_the_vector_fields():
    for response in _frames("response"):
        if "exception_code" in response["fields"]:
            continue  # exception responses: next test
        master = mb.RtuMaster()
        _send(master, _BY_NAME[response["request"]])
        outcome = _outcome(master, bytes.fromhex(response["hex"]))
        assert outcome == mb.DONE, (response["name"], outcome)
        assert master.values() == _expected_values(response), response["name"]


def test_exception_responses_raise_with_their_code():
    seen = set()
    for response in _frames("response"):
        if "exception_code" not in response["fields"]:
            continue
        master = mb.RtuMaster()
        _send(master, _BY_NAME[response["request"]])
        error = _outcome(master, bytes.fromhex(response["hex"]))
        assert isinstance(error, mb.ExceptionResponse), (response["name"], error)
        assert error.code == response["fields"]["exception_code"]
        assert error.function == response["function"]
        assert error.unit == response["unit"]
        seen.add(response["function"])
    assert len(seen) == 8


def test_rejected_responses_end_in_their_typed_error():
    checked = 0
    for rejected in _VECTORS["rejected"]:
        if "master_error" not in rejected:
            continue  # a malformed request: a slave's business
        master = mb.RtuMaster()
        _send(master, _BY_NAME[rejected["request"]])
        error = _outcome(master, bytes.fromhex(rejected["hex"]))
        expected = _MASTER_ERRORS[rejected["master_error"]]
        assert isinstance(error, expected), (rejected["name"], error)
        checked += 1
    assert checked >= 10


def test_rejected_response_split_byte_by_byte_ends_the_same_way():
    # The master reads a stream: how the bytes are split must not change the outcome.
    for rejected in _VECTORS["rejected"]:
        if "master_error" not in rejected:
            continue
        frame = bytes.fromhex(rejected["hex"])
        master = mb.RtuMaster()
        _send(master, _BY_NAME[rejected["request"]])
        assert master.poll(0) == mb.PENDING
        error = None
        for k in range(len(frame)):
            master.receive(frame[k : k + 1])
            try:
                master.poll(1)
            except mb.ModbusError as caught:
                error = caught
                break
        if error is None:
            try:
                master.poll(_LATER_MS)
            except mb.ModbusError as caught:
                error = caught
        assert isinstance(error, _MASTER_ERRORS[rejected["master_error"]]), rejected["name"]


def test_a_good_response_after_a_rejected_one_in_the_same_window_is_taken():
    # Resynchronisation: a CRC-failed copy followed by the good frame still completes.
    checked = 0
    for rejected in _VECTORS["rejected"]:
        if rejected.get("master_error") != "crc":
            continue
        good = None
        for response in _frames("response"):
            if (
                response.get("request") == rejected["request"]
                and "exception_code" not in response["fields"]
            ):
                good = response
        master = mb.RtuMaster()
        _send(master, _BY_NAME[rejected["request"]])
        assert master.poll(0) == mb.PENDING
        master.receive(bytes.fromhex(rejected["hex"]))
        master.receive(bytes.fromhex(good["hex"]))
        assert master.poll(1) == mb.DONE, rejected["name"]
        assert master.values() == _expected_values(good)
        checked += 1
    assert checked >= 2
