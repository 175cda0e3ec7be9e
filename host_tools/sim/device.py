"""A simulated Modbus slave as a protocol-agnostic register model.

The bus (which turns RTU frames into calls) owns the wire rules: CRC, framing, unit filtering,
broadcast. A device only answers calls with Modbus addresses as they are on the wire (0-based PDU
addresses) and either returns data or raises ModbusException with the code a real slave would send.

Rules every device here follows (Modbus application protocol V1.1b3, section 6 and 7):
- Check order: function supported (01) -> quantity in range (03) -> addresses exist (02) ->
  values acceptable (03) -> execution (04).
- Quantity limits: 1..2000 bits read, 1..125 registers read, 1..1968 coils and 1..123 registers
  written; a register value is 0..0xFFFF, a signed quantity travels as two's complement.
- A multi-register write is all or nothing: every address and value is checked before any is stored.
- Every call raises ModbusException or succeeds, whatever integers it is given: the simulator keeps
  running on any request.

Communication supervision: the bus calls ``heard(now_s)`` once for every CRC-valid request
addressed to the device (before dispatching it, also when the request then gets an exception
response). Devices with a communication-loss timer (the drives) compare that time with the clock
passed to ``step(now_s, dt_s)``, which the simulator calls on the virtual clock.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

ILLEGAL_FUNCTION = 1
ILLEGAL_DATA_ADDRESS = 2
ILLEGAL_DATA_VALUE = 3
SERVER_DEVICE_FAILURE = 4

MAX_READ_BITS = 2000
MAX_READ_REGISTERS = 125
MAX_WRITE_BITS = 1968
MAX_WRITE_REGISTERS = 123


class ModbusException(Exception):
    """A request the device refuses; ``code`` is the exception code of the response."""

    def __init__(self, code: int, detail: str = "") -> None:
        super().__init__(f"Modbus exception {code}" + (f": {detail}" if detail else ""))
        self.code = code


def check_count(count: int, limit: int) -> None:
    if not 1 <= count <= limit:
        raise ModbusException(ILLEGAL_DATA_VALUE, f"quantity {count} outside 1..{limit}")


def to_u16(value: int) -> int:
    """A signed or unsigned integer as the 16-bit word on the wire (saturating, two's complement)."""
    return max(-0x8000, min(0xFFFF, int(value))) & 0xFFFF


def to_s16(word: int) -> int:
    return word - 0x10000 if word & 0x8000 else word


@dataclass(frozen=True)
class Register:
    """One 16-bit register: how to read it and, if writable, how to check and store a value."""

    read: Callable[[], int]
    write: Callable[[int], None] | None = None
    valid: Callable[[int], bool] | None = None


class RegisterBank:
    """A sparse map address -> Register with the block read/write rules above.

    ``read_only_code`` is what a write to an existing read-only register gets: 02 for most
    slaves, 04 on a SINAMICS G120 (its manual says so).
    """

    def __init__(self, read_only_code: int = ILLEGAL_DATA_ADDRESS) -> None:
        self.registers: dict[int, Register] = {}
        self.read_only_code = read_only_code
        # The readers of each block read before and the registers of each block written, by
        # address << 7 | count (count <= 125): a master reads and writes the same blocks every
        # cycle. Emptied when a register is added.
        self._blocks: dict[int, tuple[Callable[[], int], ...]] = {}
        self._targets: dict[int, tuple[Register, ...]] = {}

    def add(self, address: int, register: Register) -> None:
        if address in self.registers:
            raise ValueError(f"register {address} defined twice")
        self.registers[address] = register
        self._blocks.clear()
        self._targets.clear()

    def read(self, address: int, count: int) -> list[int]:
        if not 1 <= count <= MAX_READ_REGISTERS:  # check_count, inline: every read
            check_count(count, MAX_READ_REGISTERS)
        key = address << 7 | count
        readers = self._blocks.get(key)
        if readers is None:
            bank = self.registers
            try:  # every address checked before any register is read
                readers = tuple(bank[a].read for a in range(address, address + count))
            except KeyError:
                raise ModbusException(
                    ILLEGAL_DATA_ADDRESS, f"no register in {address}+{count}"
                ) from None
            self._blocks[key] = readers
        words = []
        for read in readers:
            value = read()
            # to_u16 only when needed: this runs for every register of every read
            if type(value) is not int or not 0 <= value <= 0xFFFF:
                value = max(-0x8000, min(0xFFFF, int(value))) & 0xFFFF
            words.append(value)
        return words

    def write(self, address: int, values: Sequence[int]) -> None:
        count = len(values)
        if not 1 <= count <= MAX_WRITE_REGISTERS:  # check_count, inline: every write
            check_count(count, MAX_WRITE_REGISTERS)
        key = address << 7 | count
        targets = self._targets.get(key)
        if targets is None:
            found = []
            for offset in range(count):
                register = self.registers.get(address + offset)
                if register is None:
                    raise ModbusException(ILLEGAL_DATA_ADDRESS, f"no register {address + offset}")
                if register.write is None:
                    raise ModbusException(
                        self.read_only_code, f"register {address + offset} read-only"
                    )
                found.append(register)
            targets = self._targets[key] = tuple(found)
        for offset in range(count):  # (targets has count registers: the key says so)
            value = values[offset]
            valid = targets[offset].valid
            if not 0 <= value <= 0xFFFF or (valid is not None and not valid(value)):
                raise ModbusException(
                    ILLEGAL_DATA_VALUE, f"value {value} refused by register {address + offset}"
                )
        for offset in range(count):
            write = targets[offset].write
            assert write is not None
            write(values[offset])


class Device:
    """Base slave: every function unsupported (exception 01) until a subclass says otherwise."""

    def __init__(self, unit: int) -> None:
        if not 1 <= unit <= 247:
            raise ValueError(f"unit {unit}: a slave address is 1..247")
        self.unit = unit
        self.last_heard_s: float | None = None
        self.requests_heard = 0

    def heard(self, now_s: float) -> None:
        """A CRC-valid request for this unit arrived at ``now_s`` (virtual seconds)."""
        self.last_heard_s = now_s
        self.requests_heard += 1

    def read_coils(self, address: int, count: int) -> list[bool]:
        raise ModbusException(ILLEGAL_FUNCTION, "read coils")

    def read_discrete_inputs(self, address: int, count: int) -> list[bool]:
        raise ModbusException(ILLEGAL_FUNCTION, "read discrete inputs")

    def read_holding_registers(self, address: int, count: int) -> list[int]:
        raise ModbusException(ILLEGAL_FUNCTION, "read holding registers")

    def read_input_registers(self, address: int, count: int) -> list[int]:
        raise ModbusException(ILLEGAL_FUNCTION, "read input registers")

    def write_coil(self, address: int, on: bool) -> None:
        raise ModbusException(ILLEGAL_FUNCTION, "write single coil")

    def write_register(self, address: int, value: int) -> None:
        raise ModbusException(ILLEGAL_FUNCTION, "write single register")

    def write_registers(self, address: int, values: Sequence[int]) -> None:
        raise ModbusException(ILLEGAL_FUNCTION, "write multiple registers")

    def write_coils(self, address: int, bits: Sequence[bool]) -> None:
        raise ModbusException(ILLEGAL_FUNCTION, "write multiple coils")

    def step(self, now_s: float, dt_s: float) -> None:
        """Advance internal dynamics to ``now_s``; ``dt_s`` is the time since the last step."""
