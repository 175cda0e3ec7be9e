"""The Modbus RTU master codec: requests, stream decoding, resynchronisation, typed errors.

Runs on CPython (pytest) and inside the MicroPython VM (one pytest item per test).
"""

from relaypump import modbus as mb
from support import ON_MICROPYTHON, bytes_allocated

VM_HEAP_KIB = 96


def frame(hex_body):
    """hex of unit+PDU -> the full ADU with its CRC appended (low byte first)."""
    body = bytes.fromhex(hex_body)
    crc = mb.crc16(body)
    return body + bytes((crc & 0xFF, crc >> 8))


def expect_error(master, error_type, now_ms=10_000):
    try:
        master.poll(now_ms)
    except error_type as e:
        return e
    raise AssertionError("expected " + error_type.__name__)


def test_crc_of_the_specification_example():
    # Modbus over serial line V1.02, and every device manual: 01 03 00 00 00 0A -> C5 CD.
    assert mb.crc16(bytes.fromhex("01030000000a")) == 0xCDC5
    assert mb.crc16(b"123456789") == 0x4B37  # CRC-16/MODBUS check value


def test_requests_for_every_function_code():
    m = mb.RtuMaster()
    assert bytes(m.read_coils(1, 0x13, 0x25)) == frame("010100130025")
    assert bytes(m.read_discrete_inputs(2, 0xC4, 22)) == frame("020200c40016")
    assert bytes(m.read_holding_registers(17, 0x6B, 3)) == frame("1103006b0003")
    assert bytes(m.read_input_registers(17, 8, 1)) == frame("110400080001")
    assert bytes(m.write_coil(17, 0xAC, True)) == frame("110500acff00")
    assert bytes(m.write_coil(17, 0xAC, False)) == frame("110500ac0000")
    assert bytes(m.write_register(17, 1, 3)) == frame("110600010003")
    bits = [True, False, True, True, False, False, True, True, True, False]
    assert bytes(m.write_coils(17, 0x13, bits)) == frame("110f0013000a02cd01")
    assert bytes(m.write_registers(17, 1, [0x000A, 0x0102])) == frame("11100001000204000a0102")


def test_a_read_under_a_memo_slot_is_the_same_frame_its_crc_made_once():
    m = mb.RtuMaster(memo=2)
    status = frame("1103006b0003")
    inputs = frame("020200c40016")
    for _ in range(3):  # the first pass makes the CRCs, the next ones take them from the memo
        assert bytes(m.read(mb.READ_HOLDING_REGISTERS, 17, 0x6B, 3, 0)) == status
        assert m.response_length() == 5 + 6
        assert bytes(m.read_input_registers(17, 8, 1)) == frame("110400080001")  # no memo
        assert bytes(m.read(mb.READ_DISCRETE_INPUTS, 2, 0xC4, 22, 1)) == inputs
        assert m.response_length() == 5 + 3
    m.receive(frame("0202030a1100"))  # the memo's request is answered as any other
    assert m.poll(0) == mb.DONE and m.bit(1) and not m.bit(0)
    for function in (0, 5, 16):
        try:
            m.read(function, 1, 0, 1, -1)
        except ValueError as e:
            assert "function" in str(e)
            continue
        raise AssertionError("accepted a read of function %d" % function)


def test_arguments_outside_the_protocol_are_refused():
    m = mb.RtuMaster()
    for call in (
        lambda: m.read_holding_registers(0, 0, 1),
        lambda: m.read_holding_registers(248, 0, 1),
        lambda: m.read_holding_registers(1, 0, 126),
        lambda: m.read_holding_registers(1, 0, 0),
        lambda: m.read_coils(1, 0, 2001),
        lambda: m.read_input_registers(1, 0x10000, 1),
        lambda: m.write_register(1, 0, 0x10000),
        lambda: m.write_register(1, 0, -1),
        lambda: m.write_registers(1, 0, [0] * 124),
        lambda: m.write_coils(1, 0, [True] * 1969),
    ):
        try:
            call()
        except ValueError:
            continue
        raise AssertionError("accepted an out-of-range argument")


def test_small_buffers_refuse_a_longer_request_by_its_count():
    m = mb.RtuMaster(tx_size=13, rx_size=64)  # fc16 of two registers, responses up to 64 B
    assert bytes(m.write_registers(17, 1, [0x000A, 0x0102])) == frame("11100001000204000a0102")
    assert bytes(m.read_holding_registers(17, 0x6B, 3)) == frame("1103006b0003")
    try:
        m.write_registers(17, 1, [1, 2, 3])
    except ValueError as e:
        assert "count 3 outside 1..2" in str(e), str(e)
    else:
        raise AssertionError("a write longer than the buffer was accepted")
    try:
        m.write_coils(17, 1, [True] * 33)
    except ValueError as e:
        assert "count 33 outside 1..32" in str(e), str(e)
    else:
        raise AssertionError("a coil write longer than the buffer was accepted")
    assert bytes(m.read_input_registers(17, 8, 29)) == frame("110400080" + "01d")  # 63 B back
    for read, most in (
        (lambda: m.read_holding_registers(17, 0, 30), "count 30 outside 1..29"),
        (lambda: m.read_coils(17, 0, 473), "count 473 outside 1..472"),
    ):
        try:
            read()
        except ValueError as e:
            assert most in str(e), str(e)
        else:
            raise AssertionError("a read whose response does not fit was accepted")


def test_buffers_too_small_for_a_write_and_its_echo_are_refused_by_name():
    for kwargs, name in (({"rx_size": 7}, "rx_size 7"), ({"tx_size": 7}, "tx_size 7")):
        try:
            mb.RtuMaster(**kwargs)
        except ValueError as e:
            assert name in str(e), str(e)
        else:
            raise AssertionError("accepted %r" % kwargs)
    m = mb.RtuMaster(tx_size=8, rx_size=8)  # the smallest: a write's 8 B echo fits
    req = bytes(m.write_register(17, 1, 5))
    m.poll(0)
    assert m.receive(req) == 8
    assert m.poll(1) == mb.DONE


def test_read_registers_response_in_one_piece():
    m = mb.RtuMaster()
    m.read_holding_registers(17, 0x6B, 3)
    response = frame("110306022b00000064")
    assert m.poll(0) == mb.PENDING
    assert m.receive(response) == len(response)
    assert m.poll(1) == mb.DONE
    assert m.values() == [0x022B, 0, 0x64]
    assert m.register(2) == 0x64
    assert m.count() == 3


def test_response_split_byte_by_byte():
    m = mb.RtuMaster()
    m.read_input_registers(3, 0, 2)
    m.poll(0)
    response = frame("030404fffe8000")
    for k in range(len(response)):
        assert m.receive(response[k : k + 1]) == 1
        assert m.poll(k) == (mb.DONE if k == len(response) - 1 else mb.PENDING)
    assert m.values() == [0xFFFE, 0x8000]


def test_bits_are_unpacked_lsb_first():
    m = mb.RtuMaster()
    m.read_coils(1, 0x13, 10)
    m.receive(frame("010102cd01"))
    assert m.poll(0) == mb.DONE
    assert m.values() == [True, False, True, True, False, False, True, True, True, False]
    assert m.bit(8) is True


def test_write_responses_are_checked_against_the_request():
    m = mb.RtuMaster()
    m.write_registers(17, 1, [10, 258])
    m.receive(frame("111000010002"))
    assert m.poll(0) == mb.DONE
    assert m.values() == (1, 2)
    m.write_register(17, 1, 3)
    m.receive(frame("110600010004"))  # echoes another value
    expect_error(m, mb.UnexpectedResponse)


def test_garbage_before_the_response_is_skipped_and_counted():
    m = mb.RtuMaster()
    m.read_holding_registers(5, 0, 1)
    m.poll(0)
    noise = b"\x00\xff\x05\x17\x42"
    assert m.receive(noise + frame("0503021234")) == len(noise) + 7
    assert m.poll(1) == mb.DONE
    assert m.values() == [0x1234]
    assert m.garbage_bytes == len(noise)


def test_corrupt_frame_then_a_good_one_resynchronises():
    m = mb.RtuMaster()
    m.read_holding_registers(5, 0, 1)
    m.poll(0)
    bad = bytearray(frame("0503021234"))
    bad[3] ^= 0x40
    m.receive(bytes(bad))
    assert m.poll(1) == mb.PENDING
    m.receive(frame("0503024321"))
    assert m.poll(2) == mb.DONE
    assert m.values() == [0x4321]
    assert m.crc_errors == 1


def test_crc_error_reported_at_the_deadline():
    m = mb.RtuMaster(timeout_ms=50)
    m.read_holding_registers(5, 0, 1)
    m.poll(0)
    bad = bytearray(frame("0503021234"))
    bad[-1] ^= 1
    m.receive(bytes(bad))
    assert m.poll(49) == mb.PENDING
    expect_error(m, mb.CrcError, now_ms=50)
    assert m.poll(51) == mb.IDLE  # the transaction is over


def test_silence_times_out_with_the_bytes_received():
    m = mb.RtuMaster(timeout_ms=100)
    m.read_holding_registers(5, 0, 4)
    m.poll(1000)
    m.receive(b"\x05\x03")
    e = expect_error(m, mb.ModbusTimeout, now_ms=1100)
    assert e.received == 2 and e.unit == 5 and e.function == 3
    assert str(e) == "unit 5 function 3: no response (2 bytes received)"
    assert m.timeouts == 1


def test_deadline_survives_ticks_wrap_around():
    period = 1 << 30
    m = mb.RtuMaster(timeout_ms=100)
    m.read_holding_registers(5, 0, 1)
    m.poll(period - 30)
    assert m.poll(period - 1) == mb.PENDING
    assert m.poll(60) == mb.PENDING  # 90 ms after the request, across the wrap
    expect_error(m, mb.ModbusTimeout, now_ms=70)


def test_exception_response_is_typed():
    m = mb.RtuMaster()
    m.read_holding_registers(9, 0xFFF0, 100)
    m.receive(frame("098302"))
    e = expect_error(m, mb.ExceptionResponse)
    assert (e.unit, e.function, e.code) == (9, 3, 2)
    assert m.exceptions == 1


def test_answer_from_another_unit_is_unexpected():
    m = mb.RtuMaster(timeout_ms=100)
    m.read_holding_registers(5, 0, 1)
    m.poll(0)
    m.receive(frame("0603021234"))
    assert m.poll(50) == mb.PENDING  # unit 5 may still answer
    expect_error(m, mb.UnexpectedResponse, now_ms=100)
    assert m.unexpected_frames == 1


def test_wrong_byte_count_is_unexpected():
    m = mb.RtuMaster(timeout_ms=100)
    m.read_holding_registers(5, 0, 2)
    m.poll(0)
    m.receive(frame("050302abcd"))
    expect_error(m, mb.UnexpectedResponse, now_ms=100)


def test_local_echo_of_the_request_is_skipped():
    m = mb.RtuMaster()
    request = bytes(m.read_holding_registers(5, 0, 1))
    m.poll(0)
    m.receive(request + frame("0503020007"))
    assert m.poll(1) == mb.DONE
    assert m.values() == [7]
    assert m.crc_errors == 0 and m.garbage_bytes == 0


def test_bytes_after_the_response_are_not_consumed():
    m = mb.RtuMaster()
    m.read_holding_registers(5, 0, 1)
    response = frame("0503020007")
    assert m.receive(response + b"\x01\x02\x03") == len(response)
    assert m.poll(0) == mb.DONE
    assert m.receive(b"\x00") == 0  # nothing is pending any more


def test_long_garbage_does_not_overflow_or_stall():
    m = mb.RtuMaster()
    m.read_holding_registers(5, 0, 1)
    m.poll(0)
    junk = bytes((k * 37 + 11) & 0xFF for k in range(200))
    for _ in range(6):  # 1200 bytes through a 512-byte buffer
        m.receive(junk)
    m.receive(frame("0503020102"))
    assert m.poll(1) == mb.DONE
    assert m.values() == [0x0102]


def test_after_a_timeout_the_line_must_be_silent_for_the_timeout():
    # A late answer to the timed-out request (RTU has no transaction id) must not be taken for
    # the answer to the next request of the same shape: the master is not ready until the line
    # has been quiet for timeout_ms, and bytes meanwhile start the silence again.
    m = mb.RtuMaster(timeout_ms=30)
    assert m.ready(0)
    m.read_holding_registers(2, 0xC417, 1)
    m.poll(0)
    expect_error(m, mb.ModbusTimeout, now_ms=30)
    assert not m.ready(31) and not m.ready(59) and m.settled_ms() == 60
    late = frame("0203020f07")  # the answer to the request that timed out
    assert m.receive(late) == 0  # nothing pending: discarded
    assert not m.ready(62) and m.settled_ms() == 92  # the silence starts again
    assert not m.ready(91) and m.ready(92) and m.ready(93)
    m.read_holding_registers(2, 0xC421, 1)  # the same shape at another address
    m.poll(93)
    m.receive(frame("0203023333"))
    assert m.poll(94) == mb.DONE and m.register(0) == 0x3333


def test_crc_and_unexpected_failures_settle_too_an_exception_answer_does_not():
    m = mb.RtuMaster(timeout_ms=20)
    m.read_holding_registers(5, 0, 1)
    m.poll(0)
    m.receive(frame("0603021234"))  # another unit's frame
    expect_error(m, mb.UnexpectedResponse, now_ms=20)
    assert not m.ready(20) and m.ready(40)
    m.write_register(5, 1, 3)
    m.poll(40)
    m.receive(frame("050600010004"))  # echoes another value: ends at once
    expect_error(m, mb.UnexpectedResponse, now_ms=41)
    assert not m.ready(60) and m.ready(61)
    m.read_holding_registers(5, 0, 1)
    m.poll(61)
    m.receive(frame("058302"))
    expect_error(m, mb.ExceptionResponse, now_ms=62)
    assert m.ready(62)  # a complete answer: nothing more will come
    assert m.receive(b"\x05\x03") == 0 and m.ready(62)  # strays on a settled line: discarded


def test_the_silence_survives_ticks_wrap_around():
    period = 1 << 30
    m = mb.RtuMaster(timeout_ms=100)
    m.read_holding_registers(5, 0, 1)
    m.poll(period - 150)
    expect_error(m, mb.ModbusTimeout, now_ms=period - 50)
    assert not m.ready(period - 1) and not m.ready(49)  # 99 ms quiet, across the wrap
    assert m.settled_ms() == 50 and m.ready(50)


def test_a_transaction_allocates_little():
    # Requests are built in the preallocated buffer and handed out as a view made once per length;
    # responses are copied into the receive buffer and decoded in place.
    m = mb.RtuMaster()
    response = frame("050308000100020003ffff")

    def twenty_transactions():
        for _ in range(20):
            if not m.ready(0):
                raise AssertionError("a healthy line waits for nothing")
            m.read_holding_registers(5, 0, 4)
            m.poll(0)
            m.receive(response)
            m.poll(1)
            m.register(3)

    twenty_transactions()  # warm up (CPython caches, first-use allocations)
    per_transaction = bytes_allocated(twenty_transactions) // 20
    assert per_transaction <= (0 if ON_MICROPYTHON else 400), per_transaction
