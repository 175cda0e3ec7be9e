"""A station's Sparkplug B metrics, derived from the uplink protocol (protocol/uplink.py through
protocol/layout.py): no metric is listed by hand, so a field added to the protocol shows up here.

Rules:
- Telemetry: every field of the telemetry frame but the header's transport fields (those every
  frame kind starts with: station_id, seq, timestamp_s) is one metric. Its name is the field's
  path with the unit and scale cut off the field name (``suction_kpa_x10`` -> ``suction``,
  ``pumps[0].speed_pct_x100`` -> ``pump1/speed``); a scaled field (uplink.SCALES) is a Double in
  its unit (raw / scale), any other an integer of the field's own width and signedness. A signed
  measurement's "no reading" (uplink.NO_READING) is a null value. The description is the
  field's documentation in the schema.
- ``station_id`` (from the header) is a metric too, set in the birth and never changing.
- ``alarm/<NAME>``: one Boolean per uplink.Alarm bit of alarm_bits.
- ``event/<field>``: the last event's fields (event frame, header left out) and ``event/text``
  (its one-line description, as pumpmon prints it); null until the first event.
- Writable metrics (property readOnly false; every other metric is readOnly true): a telemetry
  metric whose field is the single argument of a command type (setpoint_kpa_x10 -> SETPOINT,
  mode -> MODE), and ``Command/<type>`` for every other command type of a single argument
  (pump_enable, pump_disable, reset: write the pump number; value 0 between commands). Command
  types of several arguments (config_change) are not offered. A station without a key in the
  bridge's key file has no writable metric.
- ``Command/Last Command`` and ``Command/Last Result`` (Strings): what the bridge last sent and
  how it ended (the ack's result name, a refusal by the bridge, or no ack in time).
- The unit is the property ``engUnit`` (absent for unitless metrics).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from host_tools.uplink.sparkplug import DataType
from protocol import layout, uplink

_INTEGER = {
    "B": DataType.UINT8,
    "H": DataType.UINT16,
    "I": DataType.UINT32,
    "b": DataType.INT8,
    "h": DataType.INT16,
    "i": DataType.INT32,
}
_UNIT_SUFFIX = re.compile(r"_[a-z0-9]+_x\d+$")  # protocol rule: the name states unit and scale

TELEMETRY = layout.layout("telemetry")
EVENT = layout.layout("event")
HEADER = frozenset.intersection(
    *(frozenset(f.path for f in lay.values) for lay in layout.layouts())
)
LAST_COMMAND = "Command/Last Command"
LAST_RESULT = "Command/Last Result"


@dataclass(frozen=True)
class Spec:
    name: str
    datatype: DataType
    unit: str = ""
    description: str = ""
    index: int | None = None  # position in the frame's flat values (telemetry/event metrics)
    scale: int = 1
    no_reading: int | None = None  # raw value meaning null
    command: uplink.CommandType | None = None  # writing it sends this command
    bit: int | None = None  # alarm bit of alarm_bits

    def value(self, raw: int):
        """The metric's value of a raw field value (None: no reading)."""
        if raw == self.no_reading:
            return None
        return raw / self.scale if self.scale != 1 else raw


def metric_name(path: tuple) -> str:
    parts = []
    for part in path:
        if isinstance(part, int):
            parts[-1] = f"{parts[-1].rstrip('s')}{part + 1}"  # pumps, 0 -> pump1
        else:
            parts.append(_UNIT_SUFFIX.sub("", part) if part in uplink.SCALES else part)
    return "/".join(parts)


def _command_arguments() -> dict:
    """Single-argument command types: CommandType -> its argument's Field."""
    out = {}
    for ctype, lay in layout.command_layouts().items():
        args = [f for f in lay.values if f.path[0] == "args"]
        if len(args) == 1:
            out[uplink.CommandType(ctype)] = args[0]
    return out


def _field_spec(name: str, f: layout.Field, index: int, command=None) -> Spec:
    leaf = f.path[-1]
    unit, scale = uplink.SCALES.get(leaf, ("", 1))
    signed = f.code in uplink.NO_READING
    return Spec(
        name,
        DataType.DOUBLE if leaf in uplink.SCALES else _INTEGER[f.code],
        unit,
        f.doc,
        index,
        scale,
        uplink.NO_READING[f.code] if signed else None,
        command,
    )


def _catalogue() -> tuple[list[Spec], list[Spec], list[Spec], list[Spec]]:
    arguments = _command_arguments()
    telemetry, alarms, events, commands = [], [], [], []
    for i, f in enumerate(TELEMETRY.values):
        if f.path in HEADER:
            continue
        command = next((t for t, a in arguments.items() if a.path[-1] == f.path[-1]), None)
        arguments.pop(command, None)
        telemetry.append(_field_spec(metric_name(f.path), f, i, command))
    for alarm in uplink.Alarm:
        alarms.append(Spec(f"alarm/{alarm.name}", DataType.BOOLEAN, bit=alarm.value,
                           description=f"alarm_bits bit {alarm.value}"))  # fmt: skip
    for i, f in enumerate(EVENT.values):
        if f.path not in HEADER:
            spec = _field_spec("event/" + metric_name(f.path), f, i)
            events.append(Spec(spec.name, spec.datatype, description=f.doc, index=i))
    events.append(Spec("event/text", DataType.STRING, description="the last event, as text"))
    for ctype, f in arguments.items():
        commands.append(
            Spec(
                f"Command/{ctype.name.lower()}", _INTEGER[f.code], description=f.doc, command=ctype
            )  # fmt: skip
        )
    commands.append(Spec(LAST_COMMAND, DataType.STRING, description="last command sent"))
    commands.append(Spec(LAST_RESULT, DataType.STRING, description="how it ended"))
    return telemetry, alarms, events, commands


TELEMETRY_SPECS, ALARM_SPECS, EVENT_SPECS, COMMAND_SPECS = _catalogue()
STATION_ID_INDEX = [f.path for f in TELEMETRY.values].index(("station_id",))
STATION_ID = Spec("station_id", DataType.UINT32, description=TELEMETRY.values[0].doc)
ALL_SPECS = [STATION_ID, *TELEMETRY_SPECS, *ALARM_SPECS, *EVENT_SPECS, *COMMAND_SPECS]
BY_NAME = {s.name: s for s in ALL_SPECS}
