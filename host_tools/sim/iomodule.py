"""Simulated remote I/O module: 4-20 mA analog inputs and digital inputs on Modbus RTU.

Register map (0-based wire addresses), modelled on common RS-485 I/O modules that report the
loop current in microamps:
    input registers (FC 04)
        0 .. N-1      loop current of AI channel i, uA (0..24000)
        100 .. 100+N-1  channel status per NAMUR NE43, from the current alone:
                        0 ok (3.8..20.5 mA), 1 under range (3.6 < I < 3.8 mA),
                        2 over range (20.5 < I < 21 mA), 3 failure low (<= 3.6 mA),
                        4 failure high (>= 21 mA)
    discrete inputs (FC 02)
        0 .. M-1      DI channel j (True = contact closed / signal present)
Anything else: other functions -> 01, absent addresses -> 02, bad quantity -> 03.

Default channels of the reference station (unit 10 is the simulator's usual choice, not a rule):
    AI 0 suction_kpa     0..1000 kPa (gauge)       AI 3 supply_temp_c  0..150 degC
    AI 1 discharge_kpa   0..1600 kPa (gauge)       AI 4 flow_m3h       0..1200 m3/h
    AI 2 remote_dp_kpa   0..400 kPa: differential pressure at the least-favoured substation,
                         relayed from the far substation (the module just reproduces the loop)
    DI 0 source_pumps_running                      DI 1 bypass_open

Signal rules:
- A healthy transmitter gives I = 4 + 16 (v - lo) / (hi - lo) mA, saturated to 3.8..20.5 mA
  outside the range (NE43 measurement saturation), rounded to 1 uA.
- Injected faults (per channel, until cleared): "wire_break" -> 0 uA (open loop: no current at
  all, far below NE43's 3.6 mA), "short" -> 24000 uA (loop shorted, limited by the card),
  "fail_low" -> 3600 uA and "fail_high" -> 21000 uA (transmitter's own NE43 failure signals),
  "stuck" -> the current at injection time, whatever value is set later.
The simulator sets the loop current a transmitter drives with ``set_current(name, uA)`` (see
transmitters.py: noise, lag, quantisation and transmitter faults live there), or a healthy
transmitter's value directly with ``set_value(name, v)``, and digital inputs with
``set_input(name, on)``; the module has no dynamics of its own. The injected faults above are the
card's view of the loop and win over whatever the transmitter drives.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .device import (
    ILLEGAL_DATA_ADDRESS,
    MAX_READ_BITS,
    Device,
    ModbusException,
    Register,
    RegisterBank,
    check_count,
)

UA_MIN_MEASURING = 3800
UA_MAX_MEASURING = 20500
UA_FAIL_LOW = 3600
UA_FAIL_HIGH = 21000
UA_WIRE_BREAK = 0
UA_SHORT = 24000

FAULT_CURRENTS = {
    "wire_break": UA_WIRE_BREAK,
    "short": UA_SHORT,
    "fail_low": UA_FAIL_LOW,
    "fail_high": UA_FAIL_HIGH,
}
FAULT_KINDS = tuple(FAULT_CURRENTS) + ("stuck",)

STATUS_OK = 0
STATUS_UNDER_RANGE = 1
STATUS_OVER_RANGE = 2
STATUS_FAIL_LOW = 3
STATUS_FAIL_HIGH = 4

STATUS_BASE = 100


@dataclass(frozen=True)
class AnalogChannel:
    """A 4-20 mA input: ``lo`` engineering units give 4 mA, ``hi`` give 20 mA."""

    name: str
    lo: float
    hi: float
    unit: str

    def __post_init__(self) -> None:
        if not self.hi > self.lo:
            raise ValueError(f"{self.name}: range needs hi > lo, got {self.lo}..{self.hi}")

    def to_ua(self, value: float) -> int:
        ua = 4000.0 + 16000.0 * (value - self.lo) / (self.hi - self.lo)
        return round(min(UA_MAX_MEASURING, max(UA_MIN_MEASURING, ua)))

    def to_value(self, ua: int) -> float:
        """The engineering value a receiver computes from a current (no saturation)."""
        return self.lo + (ua - 4000.0) * (self.hi - self.lo) / 16000.0


DEFAULT_ANALOG = (
    AnalogChannel("suction_kpa", 0.0, 1000.0, "kPa"),
    AnalogChannel("discharge_kpa", 0.0, 1600.0, "kPa"),
    AnalogChannel("remote_dp_kpa", 0.0, 400.0, "kPa"),
    AnalogChannel("supply_temp_c", 0.0, 150.0, "degC"),
    AnalogChannel("flow_m3h", 0.0, 1200.0, "m3/h"),
)
DEFAULT_DIGITAL = ("source_pumps_running", "bypass_open")


def ne43_status(ua: int) -> int:
    if ua <= UA_FAIL_LOW:
        return STATUS_FAIL_LOW
    if ua >= UA_FAIL_HIGH:
        return STATUS_FAIL_HIGH
    if ua < UA_MIN_MEASURING:
        return STATUS_UNDER_RANGE
    if ua > UA_MAX_MEASURING:
        return STATUS_OVER_RANGE
    return STATUS_OK


class IoModule(Device):
    def __init__(
        self,
        unit: int,
        analog: tuple[AnalogChannel, ...] = DEFAULT_ANALOG,
        digital: tuple[str, ...] = DEFAULT_DIGITAL,
    ) -> None:
        super().__init__(unit)
        names = [c.name for c in analog] + list(digital)
        if len(set(names)) != len(names):
            raise ValueError(f"channel names must be unique: {names}")
        if len(analog) > STATUS_BASE:
            raise ValueError(f"at most {STATUS_BASE} analog channels")
        self.analog = {c.name: c for c in analog}
        self._analog_names = [c.name for c in analog]
        self._analog_index = {c.name: i for i, c in enumerate(analog)}
        self._healthy_ua = [c.to_ua(c.lo) for c in analog]
        self._faults: dict[str, int] = {}  # channel -> forced current
        self.digital_names = tuple(digital)
        self._digital = [False] * len(digital)
        self.bank = RegisterBank()
        for i in range(len(analog)):
            self.bank.add(i, Register(self._current_reader(i)))
            self.bank.add(STATUS_BASE + i, Register(self._status_reader(i)))

    # --- simulator face ---
    def set_value(self, name: str, value: float) -> None:
        self._healthy_ua[self._index(name)] = self.analog[name].to_ua(value)

    def set_current(self, name: str, ua: int) -> None:
        """The loop current a transmitter drives, uA (the card reads 0..24000)."""
        index = self._analog_index.get(name)
        if index is None:
            index = self._index(name)  # raises, naming the channels there are
        if type(ua) is not int or not UA_WIRE_BREAK <= ua <= UA_SHORT:
            ua = max(UA_WIRE_BREAK, min(UA_SHORT, int(ua)))
        self._healthy_ua[index] = ua

    def set_input(self, name: str, on: bool) -> None:
        try:
            self._digital[self.digital_names.index(name)] = bool(on)
        except ValueError:
            raise KeyError(f"no digital input {name!r}; have {self.digital_names}") from None

    def inject_fault(self, name: str, kind: str) -> None:
        index = self._index(name)
        if kind not in FAULT_KINDS:
            raise ValueError(f"fault kind {kind!r} is not one of {FAULT_KINDS}")
        self._faults[name] = FAULT_CURRENTS.get(kind, self._ua_at(index))

    def clear_fault(self, name: str | None = None) -> None:
        if name is None:
            self._faults.clear()
        else:
            self._index(name)
            self._faults.pop(name, None)

    def current_ua(self, name: str) -> int:
        return self._ua_at(self._index(name))

    # --- Modbus face ---
    def read_input_registers(self, address: int, count: int) -> list[int]:
        return self.bank.read(address, count)

    def read_discrete_inputs(self, address: int, count: int) -> list[bool]:
        check_count(count, MAX_READ_BITS)
        if address < 0 or address + count > len(self._digital):
            raise ModbusException(ILLEGAL_DATA_ADDRESS, f"no discrete input in {address}+{count}")
        return self._digital[address : address + count]

    # --- internals ---
    def _index(self, name: str) -> int:
        try:
            return self._analog_index[name]
        except KeyError:
            raise KeyError(f"no analog channel {name!r}; have {tuple(self.analog)}") from None

    def _current_reader(self, index: int) -> Callable[[], int]:
        return lambda: self._ua_at(index)

    def _status_reader(self, index: int) -> Callable[[], int]:
        return lambda: ne43_status(self._ua_at(index))

    def _ua_at(self, index: int) -> int:
        return self._faults.get(self._analog_names[index], self._healthy_ua[index])
