"""Uplink frames for the host tool tests, built with protocol/uplink.py's construct schema."""

import struct

from protocol import layout, uplink

T0 = 1_780_000_000


def telemetry(station_id: int = 1, seq: int = 0, timestamp_s: int = T0, **fields) -> bytes:
    lay = layout.layout("telemetry")
    names = [f.flat_name for f in lay.values]
    values = [0] * len(lay.values)
    values[names.index("station_id")] = station_id
    values[names.index("seq")] = seq
    values[names.index("timestamp_s")] = timestamp_s
    for name, value in fields.items():
        values[names.index(name)] = value
    return uplink.build(uplink.telemetry, layout.to_container(lay, values))


def with_header(frame: bytes, station_id: int, seq: int, timestamp_s: int) -> bytes:
    """The same frame with another header (station_id, seq, timestamp_s at bytes 4..16)."""
    out = bytearray(frame)
    struct.pack_into(">III", out, 4, station_id, seq, timestamp_s)
    return bytes(out)


def event(station_id=1, seq=0, timestamp_s=T0, code=uplink.EventCode.SUCTION_LOW, severity=3,
          subject=0, value=0) -> bytes:  # fmt: skip
    return uplink.build(
        uplink.event,
        dict(
            station_id=station_id,
            seq=seq,
            timestamp_s=timestamp_s,
            code=int(code),
            severity=int(severity),
            subject=subject,
            value=value,
        ),  # fmt: skip
    )


def ack(station_id=1, seq=0, timestamp_s=T0, command_counter=1, result=0) -> bytes:
    return uplink.build(
        uplink.ack,
        dict(
            station_id=station_id,
            seq=seq,
            timestamp_s=timestamp_s,
            command_counter=command_counter,
            result=int(result),
        ),  # fmt: skip
    )
