"""The simulator's telemetry log: uplink frames (protocol/uplink.py), concatenated.

Every frame's header names its kind and so its size, so the log needs no extra framing and replay
tools read it with the same decoders as the live uplink. When the controller produces its own
frames (the agent does) those are logged; otherwise the simulator writes what the station's
instruments show, every ``period_s``, so a run always leaves a log.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from relaypump import codes, uplink

from host_tools.sim.run import RunResult
from protocol import fast

_T = {name: i for i, name in enumerate(uplink.TELEMETRY_FIELDS)}  # field name -> tuple index

PERIOD_S = 10.0


def _scaled(value: float, scale: int, low: int, high: int) -> int:
    return max(low, min(high, round(value * scale)))


def station_frames(
    result: RunResult, station_id: int = 1, period_s: float = PERIOD_S
) -> list[bytes]:
    """Telemetry frames of the station's true state, sampled every period_s."""
    s = result.samples
    start = dt.datetime.combine(result.scenario.date, dt.time(), dt.UTC).timestamp()
    buf = bytearray(uplink.TELEMETRY_SIZE)
    frames = []
    every = max(1, round(period_s / (s["t_s"][1] - s["t_s"][0]))) if len(s["t_s"]) > 1 else 1
    energy_kwh = 0.0
    pump_energy = [0.0] * len(result.speeds)
    for seq, i in enumerate(range(0, len(s["t_s"]), every)):
        energy_kwh += s["total_power_kw"][i] * period_s / 3600.0
        values = [0] * len(uplink.TELEMETRY_FIELDS)
        values[_T["station_id"]] = station_id
        values[_T["seq"]] = seq
        values[_T["timestamp_s"]] = int(start + s["t_s"][i])
        values[_T["suction_kpa_x10"]] = _scaled(s["suction_kpa"][i], 10, -32767, 32767)
        values[_T["discharge_kpa_x10"]] = _scaled(s["discharge_kpa"][i], 10, -32767, 32767)
        values[_T["remote_dp_kpa_x10"]] = _scaled(s["remote_dp_kpa"][i], 10, -32767, 32767)
        values[_T["supply_temp_c_x100"]] = 12000
        values[_T["return_temp_c_x100"]] = -32768
        values[_T["flow_m3h_x10"]] = _scaled(s["flow_m3h"][i], 10, -(2**31) + 1, 2**31 - 1)
        values[_T["setpoint_kpa_x10"]] = _scaled(s["setpoint_kpa"][i], 10, 0, 32767)
        values[_T["mode"]] = codes.MODE_REMOTE_DP
        values[_T["station_energy_kwh_x10"]] = _scaled(energy_kwh, 10, 0, 2**32 - 1)
        for p in range(min(3, len(result.speeds))):
            base = _T["pump1_speed_pct_x100"] + 6 * p
            running = result.running[p][i]
            power = result.power[p][i]
            pump_energy[p] += power * period_s / 3600.0
            values[base] = _scaled(result.speeds[p][i], 100, 0, 65535)
            values[base + 2] = _scaled(power, 10, 0, 65535)
            values[base + 3] = codes.PUMP_RUNNING if running else codes.PUMP_STANDBY
            values[base + 5] = _scaled(pump_energy[p], 10, 0, 2**32 - 1)
        uplink.encode_telemetry(buf, values)
        frames.append(bytes(buf))
    return frames


def write(path: Path, frames: list[bytes]) -> None:
    path.write_bytes(b"".join(frames))


def read_telemetry(path: Path) -> list[dict]:
    """Decode a log of telemetry frames (the fast decoder, identical to construct's parse)."""
    data = path.read_bytes()
    size = uplink.TELEMETRY_SIZE
    return [fast.decode_telemetry(data[i : i + size]) for i in range(0, len(data), size)]
