"""Uplink frames between a relay pump station and the control room, defined once with construct.

Rules every decoder of these frames follows (the construct schema here, protocol/fast.py and the
generated firmware codec firmware/relaypump/uplink.py; tests hold them to the same answers):

- Big-endian (network) byte order. One frame is one MQTT payload: no length prefix, no padding,
  no trailing bytes.
- Common 16-byte header: magic b"RP", version (u8, 1), kind (u8), station_id (u32), seq (u32,
  per-station publish counter, wraps), timestamp_s (u32 seconds since the Unix epoch, UTC; good to
  2106-02-07; the agent's wall clock). A timestamp_s below 1,000,000,000 (2001-09-09) marks a
  frame made before the agent's clock was set: it is the board's ticks_ms // 1000 then (the agent
  corrects it before sending when the clock is set in the same boot).
- Every quantity is a scaled integer; the field name states the unit and the scale:
  ``suction_kpa_x10 = 1234`` means 123.4 kPa. ``SCALES`` lists them for host tools.
- Signed measurements use their most negative raw value (``NO_READING``, e.g. -32768 for s16) for
  "no valid reading" (sensor fault, drive not answering); counters and enums have no such value.
- Enumerations (pump state, mode, event code, severity, ack result) are carried and decoded as
  plain integers; the tables below document them. Decoders reject only what breaks the structure:
  the frame's kind and a command's type (which selects its arguments).
- Commands carry a 32-byte HMAC-SHA256 tag over all preceding bytes of the frame, keyed with the
  station's shared key. Expiry and replay (command_counter) are judged by the agent, not the codec.
- Decoders check in this order and raise the first matching error:
  1. shorter than the header -> TruncatedFrame   2. magic -> BadMagic   3. version -> BadVersion
  4. kind unknown -> UnknownKind (a per-kind decoder given another kind -> WrongKind)
  5. command shorter than its type byte -> TruncatedFrame; type unknown -> UnknownCommand
  6. shorter than the kind's size -> TruncatedFrame; longer -> BadLength
  7. command tag does not match -> BadSignature
"""

import hashlib
import hmac
from enum import IntEnum

from construct import (
    Array,
    Bytes,
    Checksum,
    ChecksumError,
    Const,
    ConstError,
    ConstructError,
    Error,
    ExplicitError,
    Int8ub,
    Int16sb,
    Int16ub,
    Int32sb,
    Int32ub,
    Padding,
    Pointer,
    StreamError,
    Struct,
    Switch,
    Tell,
    Terminated,
    TerminatedError,
    this,
)

MAGIC = b"RP"
VERSION = 1
HEADER_SIZE = 16
TAG_SIZE = 32
MIN_KEY_SIZE = 16  # shorter HMAC keys are a configuration error (ValueError), not a frame error
PUMP_SLOTS = 3  # fixed: stations have 2-3 pumps; an unused slot reports state ABSENT


class Kind(IntEnum):
    TELEMETRY = 1
    EVENT = 2
    COMMAND = 3
    ACK = 4


class PumpState(IntEnum):
    ABSENT = 0  # no pump in this slot
    OFF = 1  # stopped, not available to the controller (disabled by command or local switch)
    STANDBY = 2  # stopped, available for staging
    STARTING = 3
    RUNNING = 4
    STOPPING = 5
    TRIPPED = 6  # drive fault; resettable
    LOCKOUT = 7  # repeated trips or protection; needs a reset command or local action


class Mode(IntEnum):
    OFF = 0  # all pumps stopped by the agent
    REMOTE_DP = 1  # hold the differential pressure at the least-favoured substation
    DISCHARGE = 2  # hold a constant discharge pressure
    MANUAL_SPEED = 3  # fixed speed set by the operator
    LOCAL = 4  # panel in local control: remote commands are refused (reported, not settable)


class Severity(IntEnum):
    INFO = 0
    NOTICE = 1
    WARNING = 2
    ALARM = 3
    CRITICAL = 4


class EventCode(IntEnum):
    """Event codes; the event's ``value`` unit and scale is given per code in EVENT_VALUE."""

    AGENT_STARTED = 1
    CONFIG_APPLIED = 2
    SAFE_STATE_ENTERED = 3
    SAFE_STATE_LEFT = 4
    SUCTION_LOW = 16
    SUCTION_TRIP = 17
    DISCHARGE_HIGH = 18
    REMOTE_DP_LOW = 19
    SUPPLY_TEMP_HIGH = 20
    FLOW_HIGH = 21
    SOURCE_INTERLOCK_OPEN = 22
    # SENSOR_FAULT/RESTORED value: 1 suction, 2 discharge, 3 remote DP, 4 supply temp, 5 flow,
    # 6 source-running input, 7 outdoor temp
    SENSOR_FAULT = 23  # a measurement a protection needs went BAD
    STATION_LOCKOUT = 24  # repeated trips: every pump stopped until reset
    LOCKOUT_RESET = 25  # subject 0 = station, 1..3 = pump
    DISCHARGE_TRIP = 26  # discharge above its maximum for the delay: all pumps stopped
    DRY_RUN = 27  # pumps running without flow for the delay: those pumps stopped and locked out
    PROTECTION_CLEARED = 28  # value = the EventCode of the condition that cleared
    SENSOR_RESTORED = 29
    # SENSOR_SUSPECT/PLAUSIBLE: subject = the check (1 frozen, 2 against the model and the other
    # channels, 3 intermittent: latched after repeated loop failures), value as
    # SENSOR_FAULT; a suspect transmitter is replaced by its configured fallback until plausible
    SENSOR_SUSPECT = 30
    SENSOR_PLAUSIBLE = 31
    PUMP_STARTED = 32
    PUMP_STOPPED = 33
    PUMP_TRIPPED = 34
    PUMP_LOCKOUT = 35
    DRIVE_COMM_LOST = 36
    DRIVE_COMM_RESTORED = 37
    DRIVE_RAMP_MISMATCH = 38  # ramp times read back differ from the config after a rewrite
    PUMP_HEAD_DEVIATION = 39  # the calibrated head factor moved past the reporting step
    PUMP_EFFICIENCY_DEVIATION = 40  # the calibrated efficiency factor moved past the step
    DRIVE_LIMIT_MISMATCH = 41  # the drive's current limit read back differs after a rewrite
    COMMAND_ACCEPTED = 47  # value = the CommandType carried out
    COMMAND_REJECTED = 48
    UPLINK_DECODE_ERROR = 49
    TELEMETRY_DROPPED = 50  # outbox full: oldest telemetry dropped; value = total since made
    EVENTS_DROPPED = 51  # outbox full of events: newest refused; value = total since made


# code -> (unit, scale): value / scale is the quantity in unit ("" = a plain count or code)
EVENT_VALUE = {
    EventCode.AGENT_STARTED: ("reset cause", 1),
    EventCode.CONFIG_APPLIED: ("config version", 1),
    EventCode.SAFE_STATE_ENTERED: ("reason code", 1),
    EventCode.SAFE_STATE_LEFT: ("", 1),
    EventCode.SUCTION_LOW: ("kPa", 10),
    EventCode.SUCTION_TRIP: ("kPa", 10),
    EventCode.DISCHARGE_HIGH: ("kPa", 10),
    EventCode.REMOTE_DP_LOW: ("kPa", 10),
    EventCode.SUPPLY_TEMP_HIGH: ("degC", 100),
    EventCode.FLOW_HIGH: ("m3/h", 10),
    EventCode.SOURCE_INTERLOCK_OPEN: ("", 1),
    EventCode.SENSOR_FAULT: ("sensor channel", 1),
    EventCode.STATION_LOCKOUT: ("trips in window", 1),
    EventCode.LOCKOUT_RESET: ("0 auto, 1 manual", 1),
    EventCode.DISCHARGE_TRIP: ("kPa", 10),
    EventCode.DRY_RUN: ("m3/h", 10),
    EventCode.PROTECTION_CLEARED: ("event code", 1),
    EventCode.SENSOR_RESTORED: ("sensor channel", 1),
    EventCode.SENSOR_SUSPECT: ("sensor channel", 1),
    EventCode.SENSOR_PLAUSIBLE: ("sensor channel", 1),
    EventCode.PUMP_STARTED: ("%", 100),
    EventCode.PUMP_STOPPED: ("%", 100),
    EventCode.PUMP_TRIPPED: ("drive fault code", 1),
    EventCode.PUMP_LOCKOUT: ("trips in window", 1),
    EventCode.DRIVE_COMM_LOST: ("failed polls", 1),
    EventCode.DRIVE_COMM_RESTORED: ("ms without data", 1),
    EventCode.DRIVE_RAMP_MISMATCH: ("s read back (-1: refused)", 10),
    EventCode.PUMP_HEAD_DEVIATION: ("% off the datasheet", 10),
    EventCode.PUMP_EFFICIENCY_DEVIATION: ("% off the datasheet", 10),
    EventCode.DRIVE_LIMIT_MISMATCH: ("% of rated current read back (-1: refused)", 10),
    EventCode.COMMAND_ACCEPTED: ("command type", 1),
    EventCode.COMMAND_REJECTED: ("ack result", 1),
    EventCode.UPLINK_DECODE_ERROR: ("errors since start", 1),
    EventCode.TELEMETRY_DROPPED: ("frames dropped since the outbox was made", 1),
    EventCode.EVENTS_DROPPED: ("frames dropped since the outbox was made", 1),
}


class Alarm(IntEnum):
    """Bit numbers of telemetry ``alarm_bits`` (bit set = alarm active)."""

    SUCTION_LOW = 0
    SUCTION_TRIP = 1
    DISCHARGE_HIGH = 2
    REMOTE_DP_LOW = 3
    SUPPLY_TEMP_HIGH = 4
    FLOW_HIGH = 5
    SOURCE_INTERLOCK_OPEN = 6
    SAFE_STATE = 7
    SENSOR_FAULT = 8
    CONFIG_INVALID = 9
    PUMP1_TRIPPED = 16
    PUMP2_TRIPPED = 17
    PUMP3_TRIPPED = 18
    DRIVE1_COMM_LOST = 20
    DRIVE2_COMM_LOST = 21
    DRIVE3_COMM_LOST = 22


class CommandType(IntEnum):
    SETPOINT = 1  # setpoint of the current pressure mode
    MODE = 2
    PUMP_ENABLE = 3
    PUMP_DISABLE = 4
    RESET = 5  # clear trips/lockouts
    CONFIG_CHANGE = 6


class AckResult(IntEnum):
    OK = 0
    BAD_SIGNATURE = 1
    EXPIRED = 2
    REPLAYED = 3  # command_counter not above the last accepted one
    OUT_OF_ENVELOPE = 4  # outside the locally configured envelope
    UNKNOWN_COMMAND = 5
    MALFORMED = 6
    WRONG_STATION = 7
    REFUSED_LOCAL = 8  # panel in local control
    FAILED = 9  # accepted but could not be carried out
    CLOCK_NOT_SYNCED = 10  # the agent's wall clock is not set yet: expiry cannot be judged


# Signed measurements: the most negative raw value means "no valid reading".
NO_READING = {"h": -0x8000, "i": -0x80000000}

# field name -> (unit, scale) for every scaled quantity; value / scale is in unit.
SCALES = {
    "suction_kpa_x10": ("kPa", 10),
    "discharge_kpa_x10": ("kPa", 10),
    "remote_dp_kpa_x10": ("kPa", 10),
    "supply_temp_c_x100": ("degC", 100),
    "return_temp_c_x100": ("degC", 100),
    "flow_m3h_x10": ("m3/h", 10),
    "setpoint_kpa_x10": ("kPa", 10),
    "station_energy_kwh_x10": ("kWh", 10),
    "speed_pct_x100": ("%", 100),
    "current_a_x10": ("A", 10),
    "power_kw_x10": ("kW", 10),
    "energy_kwh_x10": ("kWh", 10),
}


class UplinkError(ValueError):
    """A frame that is not a valid uplink frame (or values that cannot be encoded)."""


class TruncatedFrame(UplinkError):
    pass


class BadMagic(UplinkError):
    pass


class BadVersion(UplinkError):
    pass


class UnknownKind(UplinkError):
    pass


class WrongKind(UplinkError):
    pass


class UnknownCommand(UplinkError):
    pass


class BadLength(UplinkError):
    pass


class BadSignature(UplinkError):
    pass


class FieldRange(UplinkError):
    """Encoding only: a value does not fit its field."""


ERRORS = (
    UplinkError,
    TruncatedFrame,
    BadMagic,
    BadVersion,
    UnknownKind,
    WrongKind,
    UnknownCommand,
    BadLength,
    BadSignature,
    FieldRange,
)


def hmac_sha256(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.sha256).digest()


def _header(kind: Kind) -> list:
    return [
        "magic" / Const(MAGIC),
        "version" / Const(VERSION, Int8ub),
        "kind" / Const(int(kind), Int8ub),
        "station_id" / Int32ub * "station number, assigned at commissioning",
        "seq" / Int32ub * "per-station frame counter, wraps at 2**32",
        "timestamp_s" / Int32ub * "seconds since 1970-01-01 UTC (to 2106)",
    ]


pump = Struct(
    "speed_pct_x100" / Int16ub * "0.01 % of nominal speed (0..655.35 %)",
    "current_a_x10" / Int16ub * "0.1 A motor current (0..6553.5 A)",
    "power_kw_x10" / Int16ub * "0.1 kW electrical input (0..6553.5 kW)",
    "state" / Int8ub * "PumpState",
    "fault_code" / Int16ub * "drive's own fault code, 0 = none",
    "energy_kwh_x10"
    / Int32ub
    * "0.1 kWh, wraps at 429,496,729.5 kWh (~450 years at 110 kW continuous)",
)

telemetry = Struct(
    *_header(Kind.TELEMETRY),
    "suction_kpa_x10" / Int16sb * "0.1 kPa gauge, -3276.7..3276.7; -32768 = no reading",
    "discharge_kpa_x10" / Int16sb * "0.1 kPa gauge; -32768 = no reading",
    "remote_dp_kpa_x10" / Int16sb * "0.1 kPa, least-favoured substation DP; -32768 = no reading",
    "supply_temp_c_x100" / Int16sb * "0.01 degC, -327.67..327.67; -32768 = no reading",
    "return_temp_c_x100" / Int16sb * "0.01 degC; -32768 = no reading",
    "flow_m3h_x10" / Int32sb * "0.1 m3/h, negative = reverse; -2**31 = no reading",
    "setpoint_kpa_x10" / Int16sb * "0.1 kPa, setpoint of the active pressure mode",
    "mode" / Int8ub * "Mode",
    "alarm_bits" / Int32ub * "bit n set = Alarm n active",
    "station_energy_kwh_x10" / Int32ub * "0.1 kWh station meter, wraps (~290 years at 170 kW)",
    "pumps" / Array(PUMP_SLOTS, pump),
    Terminated,
)

event = Struct(
    *_header(Kind.EVENT),
    "code" / Int16ub * "EventCode",
    "severity" / Int8ub * "Severity",
    "subject" / Int8ub * "0 = station, 1..3 = pump number",
    "value" / Int32sb * "unit and scale per code: EVENT_VALUE",
    Terminated,
)

command_args = {
    CommandType.SETPOINT: Struct("setpoint_kpa_x10" / Int16sb * "0.1 kPa"),
    CommandType.MODE: Struct("mode" / Int8ub * "Mode"),
    CommandType.PUMP_ENABLE: Struct("pump" / Int8ub * "pump number 1..3"),
    CommandType.PUMP_DISABLE: Struct("pump" / Int8ub * "pump number 1..3"),
    CommandType.RESET: Struct("pump" / Int8ub * "pump number 1..3, 0 = station and all pumps"),
    CommandType.CONFIG_CHANGE: Struct(
        "key" / Int16ub * "config key id (defined by the firmware config schema)",
        "value" / Int32sb * "scaled as that config key states",
    ),
}


def _signed_bytes(ctx) -> tuple[bytes, bytes]:
    """(key, frame bytes before the tag) for the Checksum below; works parsing and building."""
    stream = ctx._io
    here = stream.tell()
    stream.seek(ctx._frame_start)
    data = stream.read(ctx._tag_offset - ctx._frame_start)
    stream.seek(here)
    return ctx._params.key, data


command = Struct(
    "_frame_start" / Tell,
    *_header(Kind.COMMAND),
    "command_counter" / Int32ub * "strictly increasing per station; replay protection",
    "expiry_s" / Int32ub * "seconds since epoch after which the command must not run",
    "command_type" / Int8ub * "CommandType",
    "args" / Switch(this.command_type, command_args, default=Error),
    "_tag_offset" / Tell,
    Padding(TAG_SIZE),  # the tag's place; checked after the length so errors come in rule order
    Terminated,
    "tag"
    / Pointer(
        this._tag_offset,
        Checksum(
            # HMAC-SHA256(key, all bytes before the tag); key passed as parse/build(key=...)
            Bytes(TAG_SIZE),
            lambda key_and_data: hmac_sha256(*key_and_data),
            _signed_bytes,
        ),
    ),
)

ack = Struct(
    *_header(Kind.ACK),
    "command_counter" / Int32ub * "counter of the command acknowledged",
    "result" / Int8ub * "AckResult",
    Terminated,
)

FRAMES = {Kind.TELEMETRY: telemetry, Kind.EVENT: event, Kind.COMMAND: command, Kind.ACK: ack}
# Frame sizes: protocol.layout derives them (telemetry 80, event 24, ack 21, command 58..63).

_header_only = Struct("magic" / Const(MAGIC), "version" / Const(VERSION, Int8ub), "kind" / Int8ub)


def _typed(err: ConstructError) -> UplinkError:
    """Map construct's error to ours; the rule order comes from the field order."""
    path = str(getattr(err, "path", ""))
    if isinstance(err, ConstError):
        for field, cls in (("magic", BadMagic), ("version", BadVersion), ("kind", WrongKind)):
            if path.endswith(field):
                return cls(str(err))
    if isinstance(err, StreamError):
        return TruncatedFrame(str(err))
    if isinstance(err, TerminatedError):
        return BadLength(str(err))
    if isinstance(err, ExplicitError):
        return UnknownCommand(str(err))
    if isinstance(err, ChecksumError):
        return BadSignature("command tag does not match")
    return UplinkError(str(err))


def need_key(key: bytes) -> None:
    if len(key) < MIN_KEY_SIZE:
        raise ValueError(f"HMAC key shorter than {MIN_KEY_SIZE} bytes")


def parse(frame_struct: Struct, data: bytes, key: bytes = b""):
    """Parse one frame of a known kind; raises UplinkError subclasses only.

    Commands need their station's key (at least MIN_KEY_SIZE bytes, else ValueError).
    """
    if frame_struct is command:
        need_key(key)
    if len(data) < HEADER_SIZE:
        raise TruncatedFrame(f"{len(data)} bytes, the header alone is {HEADER_SIZE}")
    try:
        return frame_struct.parse(data, key=key)
    except ConstructError as err:
        raise _typed(err) from err


def parse_any(data: bytes, key: bytes = b""):
    """Parse a frame of any kind: returns (Kind, Container)."""
    if len(data) < HEADER_SIZE:
        raise TruncatedFrame(f"{len(data)} bytes, the header alone is {HEADER_SIZE}")
    try:
        kind = _header_only.parse(data).kind
    except ConstructError as err:
        raise _typed(err) from err
    if kind not in FRAMES:
        raise UnknownKind(f"kind {kind}")
    return Kind(kind), parse(FRAMES[kind], data, key)


def build(frame_struct: Struct, values: dict, key: bytes = b"") -> bytes:
    """Build one frame; values out of their field's range raise FieldRange."""
    if frame_struct is command:
        need_key(key)
    try:
        return frame_struct.build(values, key=key)
    except ConstructError as err:
        raise FieldRange(str(err)) from err
