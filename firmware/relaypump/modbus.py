"""Modbus RTU master codec: sans-IO, preallocated, runs on MicroPython and CPython.

The master builds one request, the runtime puts it on the RS-485 wire, feeds whatever bytes come back
into ``receive`` (in any split) and calls ``poll(now_ms)`` until it returns DONE or raises.

Rules of the wire (Modbus over serial line V1.02, RTU mode):
- ADU = unit (1..247) + function + data + CRC-16/MODBUS (polynomial 0xA001 reflected, init 0xFFFF,
  sent low byte first). An ADU is at most 256 bytes.
- A response has the unit and function of the request. Its length follows from the request:
    01/02 read bits       unit fc n data[n] crc      n = ceil(count / 8)      5 + n bytes
    03/04 read registers  unit fc n data[n] crc      n = 2 * count            5 + n bytes
    05/06 write single    echo of the request                                 8 bytes
    15/16 write multiple  unit fc address quantity crc (echo of both)         8 bytes
    exception             unit fc|0x80 code crc                               5 bytes
Decoding constraints (how the byte stream is read):
- Bytes that cannot start the expected response are garbage: skipped one at a time and counted.
- A candidate that fails its CRC is skipped by one byte (resynchronisation) and remembered, so a
  deadline that passes without a good response reports CrcError rather than a bare timeout.
- A write response whose echo does not match the request ends the transaction with
  UnexpectedResponse at once. When the deadline passes without a good response, the kept bytes are
  searched for any CRC-valid frame (another unit, another function, a wrong byte count): if one is
  there the error is UnexpectedResponse, else CrcError if a candidate failed its CRC, else
  ModbusTimeout. Other units' frames therefore cost a timeout, never a wrong value.
- A byte-for-byte echo of our own request (adapters with local echo) is skipped. For 05/06 the
  echo equals the response: on such adapters the runtime must drop its echo itself.
- Bytes after a complete response are not consumed: ``receive`` returns how many it took.
- ``now_ms`` is a ticks value (time.ticks_ms() on a board, a virtual clock in the simulator); the
  deadline arithmetic is modulo 2**30 like MicroPython's ticks_diff, so it survives wrap-around.
Late answers (an RTU response carries no address and no transaction id, so nothing in it says
which request it answers):
- A transaction that ends without its answer (timeout, CRC error, unexpected frame) leaves the
  line unsettled: the device may still be answering it. ``ready(now_ms)`` is then False until the
  line has been silent for ``timeout_ms`` (the failed transaction's own); bytes that arrive
  meanwhile are discarded and start the silence again. The caller sends nothing while ``ready`` is
  False. Without this a late answer to request A (a retry's, or the one before it) is taken for
  the answer to the next request of the same unit, function and byte count (another address's
  value). An exception answer is a complete answer: no wait after it.
- Bytes that arrive while no transaction is pending are discarded (``receive`` returns 0; the
  runtime's 3.5-character gap still keeps a request off a line that is talking).
- Cost: the wait only follows a failure: at least ``timeout_ms`` more per failed attempt (a late
  answer costs its restart of the silence). A healthy transaction waits for nothing more and
  allocates nothing.
"""

from micropython import const

from relaypump.ticks import ticks_diff as _ticks_diff

READ_COILS = const(1)
READ_DISCRETE_INPUTS = const(2)
READ_HOLDING_REGISTERS = const(3)
READ_INPUT_REGISTERS = const(4)
WRITE_SINGLE_COIL = const(5)
WRITE_SINGLE_REGISTER = const(6)
WRITE_MULTIPLE_COILS = const(15)
WRITE_MULTIPLE_REGISTERS = const(16)

IDLE = const(0)
PENDING = const(1)
DONE = const(2)

MAX_ADU = const(256)
_RX_SIZE = const(512)
_TICKS_PERIOD = const(0x40000000)
DEFAULT_TIMEOUT_MS = const(200)


class ModbusError(Exception):
    """Base of every error a transaction can end with."""


class CrcError(ModbusError):
    """Frames arrived but none passed its CRC before the deadline."""


class ModbusTimeout(ModbusError):
    """No valid response before the deadline; ``received`` bytes came in meanwhile. The text is
    made by str() only: a lost device times out on every probe, and the fieldbus keeps the
    error's kind, not its text (the message made each time was ~0.1 KiB of the loop's heap)."""

    def __init__(self, unit, function, received):
        super().__init__(unit, function, received)
        self.unit = unit
        self.function = function
        self.received = received

    def __str__(self):
        return "unit %d function %d: no response (%d bytes received)" % self.args


class ExceptionResponse(ModbusError):
    """The device answered with a Modbus exception code (1 illegal function, 2 address, 3 value...)."""

    def __init__(self, unit, function, code):
        super().__init__("unit %d function %d: exception code %d" % (unit, function, code))
        self.unit = unit
        self.function = function
        self.code = code


class UnexpectedResponse(ModbusError):
    """A valid frame that does not answer our request (other unit, function, length or echo)."""


# The byte table of CRC-16/MODBUS (reflected polynomial 0xA001) split into its low and high bytes:
# with the CRC kept as two bytes, a step is two lookups and two xors, every value a byte (no shift
# or mask, and in CPython no int object made per byte). Literals, not built at import: frozen,
# they stay in flash (built, they were ~0.5 KiB of heap). tests/firmware/test_modbus_crc.py
# builds them from the polynomial.
_CRC_LOW = (
    b"\x00\xc1\x81\x40\x01\xc0\x80\x41\x01\xc0\x80\x41\x00\xc1\x81\x40"
    b"\x01\xc0\x80\x41\x00\xc1\x81\x40\x00\xc1\x81\x40\x01\xc0\x80\x41"
    b"\x01\xc0\x80\x41\x00\xc1\x81\x40\x00\xc1\x81\x40\x01\xc0\x80\x41"
    b"\x00\xc1\x81\x40\x01\xc0\x80\x41\x01\xc0\x80\x41\x00\xc1\x81\x40"
    b"\x01\xc0\x80\x41\x00\xc1\x81\x40\x00\xc1\x81\x40\x01\xc0\x80\x41"
    b"\x00\xc1\x81\x40\x01\xc0\x80\x41\x01\xc0\x80\x41\x00\xc1\x81\x40"
    b"\x00\xc1\x81\x40\x01\xc0\x80\x41\x01\xc0\x80\x41\x00\xc1\x81\x40"
    b"\x01\xc0\x80\x41\x00\xc1\x81\x40\x00\xc1\x81\x40\x01\xc0\x80\x41"
    b"\x01\xc0\x80\x41\x00\xc1\x81\x40\x00\xc1\x81\x40\x01\xc0\x80\x41"
    b"\x00\xc1\x81\x40\x01\xc0\x80\x41\x01\xc0\x80\x41\x00\xc1\x81\x40"
    b"\x00\xc1\x81\x40\x01\xc0\x80\x41\x01\xc0\x80\x41\x00\xc1\x81\x40"
    b"\x01\xc0\x80\x41\x00\xc1\x81\x40\x00\xc1\x81\x40\x01\xc0\x80\x41"
    b"\x00\xc1\x81\x40\x01\xc0\x80\x41\x01\xc0\x80\x41\x00\xc1\x81\x40"
    b"\x01\xc0\x80\x41\x00\xc1\x81\x40\x00\xc1\x81\x40\x01\xc0\x80\x41"
    b"\x01\xc0\x80\x41\x00\xc1\x81\x40\x00\xc1\x81\x40\x01\xc0\x80\x41"
    b"\x00\xc1\x81\x40\x01\xc0\x80\x41\x01\xc0\x80\x41\x00\xc1\x81\x40"
)
_CRC_HIGH = (
    b"\x00\xc0\xc1\x01\xc3\x03\x02\xc2\xc6\x06\x07\xc7\x05\xc5\xc4\x04"
    b"\xcc\x0c\x0d\xcd\x0f\xcf\xce\x0e\x0a\xca\xcb\x0b\xc9\x09\x08\xc8"
    b"\xd8\x18\x19\xd9\x1b\xdb\xda\x1a\x1e\xde\xdf\x1f\xdd\x1d\x1c\xdc"
    b"\x14\xd4\xd5\x15\xd7\x17\x16\xd6\xd2\x12\x13\xd3\x11\xd1\xd0\x10"
    b"\xf0\x30\x31\xf1\x33\xf3\xf2\x32\x36\xf6\xf7\x37\xf5\x35\x34\xf4"
    b"\x3c\xfc\xfd\x3d\xff\x3f\x3e\xfe\xfa\x3a\x3b\xfb\x39\xf9\xf8\x38"
    b"\x28\xe8\xe9\x29\xeb\x2b\x2a\xea\xee\x2e\x2f\xef\x2d\xed\xec\x2c"
    b"\xe4\x24\x25\xe5\x27\xe7\xe6\x26\x22\xe2\xe3\x23\xe1\x21\x20\xe0"
    b"\xa0\x60\x61\xa1\x63\xa3\xa2\x62\x66\xa6\xa7\x67\xa5\x65\x64\xa4"
    b"\x6c\xac\xad\x6d\xaf\x6f\x6e\xae\xaa\x6a\x6b\xab\x69\xa9\xa8\x68"
    b"\x78\xb8\xb9\x79\xbb\x7b\x7a\xba\xbe\x7e\x7f\xbf\x7d\xbd\xbc\x7c"
    b"\xb4\x74\x75\xb5\x77\xb7\xb6\x76\x72\xb2\xb3\x73\xb1\x71\x70\xb0"
    b"\x50\x90\x91\x51\x93\x53\x52\x92\x96\x56\x57\x97\x55\x95\x94\x54"
    b"\x9c\x5c\x5d\x9d\x5f\x9f\x9e\x5e\x5a\x9a\x9b\x5b\x99\x59\x58\x98"
    b"\x88\x48\x49\x89\x4b\x8b\x8a\x4a\x4e\x8e\x8f\x4f\x8d\x4d\x4c\x8c"
    b"\x44\x84\x85\x45\x87\x47\x46\x86\x82\x42\x43\x83\x41\x81\x80\x40"
)


def crc16(data, start=0, end=-1):
    """CRC-16/MODBUS of data[start:end] (end -1 = to the end) without slicing."""
    if end < 0:
        end = len(data)
    low_table = _CRC_LOW
    high_table = _CRC_HIGH
    low = high = 0xFF
    for i in range(start, end):
        k = low ^ data[i]
        low = high ^ low_table[k]
        high = high_table[k]
    return high << 8 | low


def _crc_ok(buf, start, length):
    crc = crc16(buf, start, start + length - 2)
    return buf[start + length - 2] == crc & 0xFF and buf[start + length - 1] == crc >> 8


class RtuMaster:
    """One transaction at a time; buffers are allocated once, at construction. The request's
    unit, function, address and count are read back from _tx, where it was built (fewer
    attributes: MicroPython's attribute table of an instance grows in steps, 23 -> 24 costs 48 B).
    ``tx_size``: the longest request this master builds (MAX_ADU: any); ``rx_size``: the bytes
    kept while a response is searched for (the longest response or more; 2 x MAX_ADU: any). A
    user that knows its requests keeps both small (the fieldbus: 13 and 64 B, not 256 and 512);
    a longer fc15/fc16 request, or a read whose response would not fit, is refused with
    ValueError naming its count. Noise beyond rx_size is dropped as it is ruled out. Both are
    at least 8 (a write request and its echo): a buffer that cannot hold a whole response would
    never see one (ValueError naming the argument). ``memo``: slots for reads a caller repeats
    unchanged (``read``; the fieldbus: one per slot of its cycle), whose CRCs are made once."""

    def __init__(self, timeout_ms=DEFAULT_TIMEOUT_MS, tx_size=MAX_ADU, rx_size=_RX_SIZE, memo=0):
        _check(tx_size, 8, MAX_ADU, "tx_size")
        _check(rx_size, 8, 2 * MAX_ADU, "rx_size")
        self.timeout_ms = timeout_ms
        self._tx = bytearray(tx_size)
        self._memo = [-1] * memo  # CRCs of the reads a caller repeats (read), -1: not yet
        self._views = {}
        self._tx_len = 0
        self._rx = bytearray(rx_size)
        self._rx_len = 0
        self._scan = 0  # first byte not yet ruled out as the start of the response
        self._frame = 0  # start of the accepted response in _rx
        self._state = IDLE
        self._count = 0
        self._response_len = 0
        self._deadline = -1  # -1: not armed yet (the first poll after sending arms it)
        self._crc_seen = False
        self._error = None  # an error found while scanning, raised by poll
        self._settling = False  # the line must be silent for timeout_ms before the next request
        self._quiet_ms = 0  # when the present silence began (valid while settling)
        self._heard = False  # bytes came while nothing was pending: the silence starts again
        # Health counters for telemetry: they only grow.
        self.crc_errors = 0
        self.garbage_bytes = 0
        self.unexpected_frames = 0
        self.timeouts = 0
        self.exceptions = 0

    # -- requests -------------------------------------------------------------------------------

    def read_coils(self, unit, address, count):
        return self.read(READ_COILS, unit, address, count, -1)

    def read_discrete_inputs(self, unit, address, count):
        return self.read(READ_DISCRETE_INPUTS, unit, address, count, -1)

    def read_holding_registers(self, unit, address, count):
        return self.read(READ_HOLDING_REGISTERS, unit, address, count, -1)

    def read_input_registers(self, unit, address, count):
        return self.read(READ_INPUT_REGISTERS, unit, address, count, -1)

    def read(self, function, unit, address, count, memo):
        """Any of the four reads. ``memo``: -1, or the index of a memo slot (0 .. memo - 1 of the
        constructor) that this read alone uses, the same unit, function, address and count every
        time (a poll cycle repeats most of its reads): its CRC is made the first time only."""
        registers = function >= READ_HOLDING_REGISTERS
        nbytes = 2 * count if registers else (count + 7) >> 3
        most = 125 if registers else 2000
        if not 1 <= function <= 4 or count < 1 or 5 + nbytes > len(self._rx):
            _check(function, 1, 4, "function")
            room = len(self._rx) - 5  # the response must fit the receive buffer
            most = min(most, room >> 1 if registers else room << 3)
        self._header(unit, function, address, count, most)
        return self._finish(6, 5 + nbytes, memo)

    def write_register(self, unit, address, value):
        _check(value, 0, 0xFFFF, "value")
        tx = self._header(unit, WRITE_SINGLE_REGISTER, address, 1, 1)
        tx[4] = value >> 8
        tx[5] = value & 0xFF
        return self._finish(6, 8, -1)

    def write_coil(self, unit, address, on):
        tx = self._header(unit, WRITE_SINGLE_COIL, address, 1, 1)
        tx[4] = 0xFF if on else 0  # FF00 on, 0000 off
        tx[5] = 0
        return self._finish(6, 8, -1)

    def write_registers(self, unit, address, values):
        count = len(values)
        most = (len(self._tx) - 9) >> 1  # 123 in an ADU of 256 B
        tx = self._header(unit, WRITE_MULTIPLE_REGISTERS, address, count, most)
        tx[6] = 2 * count
        i = 7
        for value in values:
            _check(value, 0, 0xFFFF, "value")
            tx[i] = value >> 8
            tx[i + 1] = value & 0xFF
            i += 2
        return self._finish(i, 8, -1)

    def write_coils(self, unit, address, bits):
        count = len(bits)
        most = min(1968, (len(self._tx) - 9) << 3)
        tx = self._header(unit, WRITE_MULTIPLE_COILS, address, count, most)
        nbytes = (count + 7) >> 3
        tx[6] = nbytes
        for i in range(7, 7 + nbytes):
            tx[i] = 0
        for i in range(count):
            if bits[i]:
                tx[7 + (i >> 3)] |= 1 << (i & 7)
        return self._finish(7 + nbytes, 8, -1)

    def _header(self, unit, function, address, count, most):
        if not (1 <= unit <= 247 and 0 <= address <= 0xFFFF and 1 <= count <= most):
            _check(unit, 1, 247, "unit")  # the first that fails raises
            _check(address, 0, 0xFFFF, "address")
            _check(count, 1, most, "count")
        tx = self._tx
        tx[0] = unit
        tx[1] = function
        tx[2] = address >> 8
        tx[3] = address & 0xFF
        tx[4] = count >> 8
        tx[5] = count & 0xFF
        self._count = count
        return tx

    def _finish(self, length, response_len, memo):
        tx = self._tx
        if memo < 0:
            crc = crc16(tx, 0, length)
        else:
            crc = self._memo[memo]
            if crc < 0:
                crc = self._memo[memo] = crc16(tx, 0, length)
        tx[length] = crc & 0xFF
        tx[length + 1] = crc >> 8
        self._tx_len = length + 2
        self._response_len = response_len
        self._rx_len = 0
        self._scan = 0
        self._state = PENDING
        self._deadline = -1
        self._crc_seen = False
        self._error = None
        view = self._views.get(self._tx_len)
        if view is None:  # one view per request length, made once: sending allocates nothing
            view = self._views[self._tx_len] = memoryview(tx)[: self._tx_len]
        return view

    def response_length(self):
        """Bytes the expected response takes on the wire (to compute wire time and timeouts)."""
        return self._response_len

    # -- responses ------------------------------------------------------------------------------

    def ready(self, now_ms):
        """True when the line is settled and the next request may be sent (see the top)."""
        if self._heard:
            self._heard = False
            self._settling = True
            self._quiet_ms = now_ms
            return False
        if self._settling:
            if _ticks_diff(now_ms, self._quiet_ms) < self.timeout_ms:
                return False
            self._settling = False
        return True

    def settling(self):
        """True while the line must stay silent before the next request (``ready`` decides)."""
        return self._settling

    def settled_ms(self):
        """When the line will have been silent long enough (ticks; meaningful while not ready)."""
        return (self._quiet_ms + self.timeout_ms) & (_TICKS_PERIOD - 1)

    def receive(self, data):
        """Take bytes from the bus; returns how many were consumed (none while nothing is pending:
        those are discarded, and restart the silence of an unsettled line)."""
        if self._state != PENDING or self._error is not None:
            if self._settling and len(data):
                self._heard = True
            return 0
        total = len(data)
        rx = self._rx
        size = len(rx)
        at = self._rx_len
        if 0 < total <= size - at:  # all of it fits (every healthy response): no loop
            rx[at : at + total] = data  # a slice assignment copies it without allocating
            self._rx_len = at + total
            self._parse()
            taken = total
        else:  # more than the room left: copied as room is made (noise)
            taken = 0
            while taken < total and self._state == PENDING and self._error is None:
                if self._rx_len == size:  # full: drop what is ruled out
                    keep = size - self._scan
                    rxv = memoryview(rx)
                    rxv[0:keep] = rxv[self._scan : size]
                    self._rx_len = keep
                    self._scan = 0
                at = self._rx_len
                n = total - taken
                if n > size - at:
                    n = size - at
                if n == total:  # all of data: a slice assignment copies it without allocating
                    rx[at : at + n] = data
                else:  # byte by byte: a slice of data would allocate
                    for k in range(n):
                        rx[at + k] = data[taken + k]
                self._rx_len = at + n
                taken += n
                self._parse()
        if self._state == DONE:
            # Bytes beyond the response were copied in but are not ours to consume.
            end = self._frame + self._response_len
            extra = self._rx_len - end
            self._rx_len = end
            return taken - extra
        return taken

    def poll(self, now_ms):
        """PENDING, DONE, or raises the error that ended the transaction. The first poll after
        sending arms the deadline."""
        state = self._state
        if state == PENDING:
            if self._error is not None:
                return self._fail(self._error, now_ms)
            if self._deadline < 0:
                self._deadline = (now_ms + self.timeout_ms) & (_TICKS_PERIOD - 1)
            elif _ticks_diff(now_ms, self._deadline) >= 0:
                return self._fail(self._deadline_error(), now_ms)
        return state

    def _fail(self, error, now_ms):
        self._state = IDLE
        self._error = None
        if not isinstance(error, ExceptionResponse):  # its answer may still be on its way
            self._settling = True
            self._quiet_ms = now_ms
            self._heard = False
        raise error

    def _parse(self):
        rx = self._rx
        unit = self._tx[0]
        function = self._tx[1]
        while self._rx_len - self._scan >= 5:
            i = self._scan
            if rx[i] != unit:
                length = 0
            elif rx[i + 1] == function:
                length = self._response_len
            elif rx[i + 1] == function | 0x80:
                length = 5
            else:
                length = 0
            if not length:
                self._scan = i + 1
                self.garbage_bytes += 1
                continue
            if self._rx_len - i < length:
                return  # wait for the rest
            end = i + length - 2
            crc = crc16(rx, i, end)  # (_crc_ok, inline: every response)
            if rx[end] == crc & 0xFF and rx[end + 1] == crc >> 8:
                self._accept(i, length)
                return
            if self._is_echo(i, self._tx_len):
                self._scan = i + self._tx_len
                continue
            self.crc_errors += 1
            self._crc_seen = True
            self._scan = i + 1

    def _deadline_error(self):
        """Why no response came: a valid frame that was not ours, a CRC error, or silence."""
        rx = self._rx
        for i in range(self._rx_len - 4):
            length = _other_frame_length(rx, i, self._rx_len - i)
            if length and not self._is_echo(i, length):
                self.unexpected_frames += 1
                return UnexpectedResponse("unit %d function %d answered" % (rx[i], rx[i + 1]))
        if self._crc_seen:
            return CrcError("unit %d function %d: CRC error" % (self._tx[0], self._tx[1]))
        self.timeouts += 1
        return ModbusTimeout(self._tx[0], self._tx[1], self._rx_len)

    def _is_echo(self, i, length):
        if length != self._tx_len or self._rx_len - i < length:
            return False
        rx = self._rx
        tx = self._tx
        for k in range(length):
            if rx[i + k] != tx[k]:
                return False
        return True

    def _accept(self, i, length):
        rx = self._rx
        self._frame = i
        self._scan = i + length
        if rx[i + 1] & 0x80:
            self.exceptions += 1
            self._error = ExceptionResponse(self._tx[0], self._tx[1], rx[i + 2])
            return
        tx = self._tx
        function = tx[1]
        if function <= READ_INPUT_REGISTERS:
            ok = rx[i + 2] == length - 5
        else:  # a write's echo: address and value (05/06) or quantity (15/16) as sent (unit and
            # function matched in _parse; a valid CRC over the same 6 bytes is the request's)
            ok = rx[i + 2] == tx[2] and rx[i + 3] == tx[3] and rx[i + 4] == tx[4]
            ok = ok and rx[i + 5] == tx[5]
        if not ok:
            self.unexpected_frames += 1
            self._error = UnexpectedResponse(
                "unit %d function %d: response does not match the request" % (tx[0], function)
            )
            return
        self._state = DONE

    # -- values of a DONE response (valid until the next request) -------------------------------

    def count(self):
        return self._count

    def register(self, index):
        """Register ``index`` of a 03/04 response, without allocating."""
        if self._state != DONE or index >= self._count:
            raise IndexError("no register %d" % index)
        at = self._frame + 3 + 2 * index
        rx = self._rx
        return (rx[at] << 8) | rx[at + 1]

    def bit(self, index):
        """Bit ``index`` of a 01/02 response."""
        if self._state != DONE or index >= self._count:
            raise IndexError("no bit %d" % index)
        return bool(self._rx[self._frame + 3 + (index >> 3)] >> (index & 7) & 1)

    def values(self):
        """The response as a list (allocates): registers, bits, or the echoed (address, value)."""
        if self._state != DONE:
            raise ModbusError("no response")
        function = self._tx[1]
        if function <= READ_DISCRETE_INPUTS:
            return [self.bit(k) for k in range(self._count)]
        if function <= READ_INPUT_REGISTERS:
            return [self.register(k) for k in range(self._count)]
        rx = self._rx
        at = self._frame + 2
        return (rx[at] << 8 | rx[at + 1], rx[at + 2] << 8 | rx[at + 3])


def _other_frame_length(rx, i, available):
    """Length of a CRC-valid response-shaped frame at rx[i], or 0."""
    fc = rx[i + 1] & 0x7F
    if not (1 <= rx[i] <= 247 and (1 <= fc <= 6 or fc == 15 or fc == 16)):
        return 0  # cheap filter first: the CRCs below are the costly part
    if available >= 5 and rx[i + 1] & 0x80 and _crc_ok(rx, i, 5):
        return 5
    if available >= 8 and _crc_ok(rx, i, 8):
        return 8
    if 1 <= rx[i + 1] <= 4 and available >= 5 + rx[i + 2] and _crc_ok(rx, i, 5 + rx[i + 2]):
        return 5 + rx[i + 2]
    return 0


def _check(value, low, high, name):
    if not low <= value <= high:
        raise ValueError("%s %d outside %d..%d" % (name, value, low, high))
