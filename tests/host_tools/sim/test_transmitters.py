"""Transmitters between the plant and the I/O module: lag, noise, quantisation, seeding and the
fault modes, read back as the loop currents (and NE43 status) the card reports."""

from __future__ import annotations

import math
import random
import statistics
import tomllib

import pytest

from host_tools.sim import scenario
from host_tools.sim.hardware import SimulatedStation
from host_tools.sim.iomodule import DEFAULT_ANALOG, STATUS_BASE, AnalogChannel, IoModule
from host_tools.sim.transmitters import (
    DEFAULT_SPECS,
    FAULT_MODES,
    Transmitter,
    Transmitters,
    TransmitterSpec,
)

DP = AnalogChannel("remote_dp_kpa", 0.0, 400.0, "kPa")
QUIET = TransmitterSpec(noise_pct=0.0, lag_s=0.0)


def transmitter(spec: TransmitterSpec = QUIET, channel: AnalogChannel = DP, seed: int = 1):
    return Transmitter(channel, spec, random.Random(seed))


def value_of(ua: int, channel: AnalogChannel = DP) -> float:
    return channel.to_value(ua)


def feed(t: Transmitter, value: float, seconds: float, dt: float = 0.2, start: float = 0.0):
    """Currents for a constant true value, one per step."""
    out = []
    for k in range(1, round(seconds / dt) + 1):
        out.append(t.update(value, start + k * dt, dt))
    return out


def test_quiet_transmitter_is_the_ideal_4_20_ma_line():
    t = transmitter()
    assert t.update(100.0, 0.0, 0.0) == 8000
    assert t.update(400.0, 0.2, 0.2) == 20000
    assert t.update(450.0, 0.4, 0.2) == 20500  # NE43 measurement saturation
    assert t.update(-10.0, 0.6, 0.2) == 3800


def test_first_order_lag_starts_at_the_first_value_and_follows_a_step():
    t = transmitter(TransmitterSpec(noise_pct=0.0, lag_s=2.0))
    assert t.update(100.0, 0.0, 0.0) == 8000  # no slow start from zero at power-up
    ua = feed(t, 300.0, 2.0, dt=0.1)
    expected = 100.0 + 200.0 * (1.0 - math.exp(-1.0))  # one time constant
    assert value_of(ua[-1]) == pytest.approx(expected, abs=0.05)
    ua = feed(t, 300.0, 30.0, dt=0.1, start=2.0)
    assert ua[-1] == 16000


def test_noise_has_the_configured_std_dev_of_span():
    t = transmitter(TransmitterSpec(noise_pct=0.5, lag_s=0.0))
    values = [value_of(ua) for ua in feed(t, 200.0, 2000.0)]  # 10000 samples
    assert statistics.fmean(values) == pytest.approx(200.0, abs=0.1)
    assert statistics.pstdev(values) == pytest.approx(2.0, rel=0.05)  # 0.5 % of 400 kPa


def test_default_quantum_is_one_microamp_and_a_coarser_one_rounds_the_value():
    t = transmitter()
    assert t.update(100.0 + 0.3 * 400.0 / 16000.0, 0.0, 0.0) == 8000  # 0.3 uA rounds away
    coarse = transmitter(TransmitterSpec(noise_pct=0.0, lag_s=0.0, quantum=5.0))
    assert coarse.update(12.6, 0.0, 0.0) == 4600  # 15 kPa of 400
    assert coarse.update(12.4, 0.2, 0.2) == 4400  # 10 kPa
    none = transmitter(TransmitterSpec(noise_pct=0.0, lag_s=0.0, quantum=0.0))
    assert none.update(100.0 + 0.6 * 400.0 / 16000.0, 0.0, 0.0) == 8001  # only the card's 1 uA


def test_realistic_defaults_for_every_reference_channel():
    assert set(DEFAULT_SPECS) == {c.name for c in DEFAULT_ANALOG}
    for spec in DEFAULT_SPECS.values():
        assert spec.noise_pct == 0.1 and 0.5 <= spec.lag_s <= 2.0 and spec.quantum is None


def test_seeded_streams_repeat_and_differ_per_seed_and_channel():
    def run(seed: int, specs=None):
        bank = Transmitters(DEFAULT_ANALOG, specs, seed=seed)
        io = IoModule(10)
        out = []
        for k in range(200):
            for name in ("remote_dp_kpa", "flow_m3h"):
                bank.measure(io, name, 100.0, k * 0.2, 0.2)
            out.append(io.read_input_registers(2, 1)[0])
        return out

    assert run(7) == run(7)
    assert run(7) != run(8)
    # another channel's settings do not move this channel's noise
    assert run(7) == run(7, {"flow_m3h": TransmitterSpec(noise_pct=2.0, lag_s=0.0)})


@pytest.mark.parametrize(
    ("mode", "ua", "status"),
    [("wire_break", 0, 3), ("short", 24000, 4), ("fail_low", 3600, 3), ("fail_high", 21000, 4)],
)
def test_loop_level_faults_drive_ne43_currents(mode, ua, status):
    bank = Transmitters(seed=1)
    io = IoModule(10)
    bank.measure(io, "discharge_kpa", 800.0, 0.0, 0.0)
    bank["discharge_kpa"].begin_fault(mode, 0.0)
    bank.measure(io, "discharge_kpa", 900.0, 0.2, 0.2)
    assert io.read_input_registers(1, 1) == [ua]
    assert io.read_input_registers(STATUS_BASE + 1, 1) == [status]
    bank["discharge_kpa"].end_fault()
    for k in range(2, 30):  # the sensor kept measuring behind the open loop: lag 0.5 s
        bank.measure(io, "discharge_kpa", 900.0, k * 0.2, 0.2)
    assert io.read_input_registers(STATUS_BASE + 1, 1) == [0]
    assert value_of(io.current_ua("discharge_kpa"), DEFAULT_ANALOG[1]) == pytest.approx(
        900.0, abs=15.0
    )


def test_stuck_freezes_the_current_of_the_moment_exactly():
    t = transmitter(TransmitterSpec(noise_pct=0.2, lag_s=1.0))
    feed(t, 120.0, 20.0)
    frozen = t.ua
    t.begin_fault("stuck", 20.0)
    currents = feed(t, 250.0, 600.0, start=20.0)  # the plant moves, the reading does not
    assert set(currents) == {frozen}
    t.end_fault()
    assert value_of(feed(t, 250.0, 20.0, start=620.0)[-1]) == pytest.approx(250.0, abs=2.0)


def test_drift_grows_at_its_rate_from_the_start_of_the_fault():
    t = transmitter()
    feed(t, 100.0, 10.0)
    t.begin_fault("drift", 10.0, rate_per_h=-12.0)
    ua = feed(t, 100.0, 1800.0, start=10.0)
    assert value_of(ua[0]) == pytest.approx(100.0, abs=0.05)
    assert value_of(ua[-1]) == pytest.approx(94.0, abs=0.05)  # -12 kPa/h for 30 min


def test_offset_shifts_the_measurement():
    t = transmitter()
    t.begin_fault("offset", 0.0, offset=15.0)
    assert value_of(feed(t, 100.0, 1.0)[-1]) == pytest.approx(115.0, abs=0.03)


def test_intermittent_opens_the_loop_for_one_burst_per_period():
    t = transmitter(seed=3)
    t.begin_fault("intermittent", 0.0, period_s=10.0, duty=0.2)
    ua = feed(t, 100.0, 100.0, dt=0.1, start=-0.05)  # samples at 0.05, 0.15, ... 99.95 s
    assert set(ua) == {0, 8000}
    for period in range(10):
        window = ua[period * 100 : (period + 1) * 100]
        broken = [i for i, u in enumerate(window) if u == 0]
        assert len(broken) == 20  # duty 0.2 of 10 s at 0.1 s steps
        assert broken == list(range(broken[0], broken[0] + 20))  # one burst
    starts = {ua[p * 100 : (p + 1) * 100].index(0) for p in range(10)}
    assert len(starts) > 1  # bursts fall at random offsets, not a square wave


def test_bad_specs_and_modes_are_typed_errors():
    with pytest.raises(ValueError, match="noise_pct"):
        TransmitterSpec(noise_pct=-1.0)
    with pytest.raises(ValueError, match="quantum"):
        TransmitterSpec(quantum=float("nan"))
    with pytest.raises(ValueError, match="mode"):
        transmitter().begin_fault("melted", 0.0)
    with pytest.raises(ValueError, match="duty"):
        transmitter().begin_fault("intermittent", 0.0, duty=1.0)
    with pytest.raises(KeyError, match="humidity"):
        Transmitters(specs={"humidity": QUIET})
    assert "stuck" in FAULT_MODES and "intermittent" in FAULT_MODES


# --- scenario keys and the simulated station ---------------------------------------------------

BASE = """
name = "t"
seed = 5
[[drives]]
unit = 1
profile = "abb"
"""


def parse(text: str) -> scenario.Scenario:
    return scenario.parse(tomllib.loads(BASE + text), "t.toml")


def test_sensor_tables_override_the_defaults_key_by_key():
    chosen = parse("[sensors.remote_dp_kpa]\nnoise_pct = 0.5\nquantum = 0.5\n[sensors.flow_m3h]\n")
    assert chosen.sensors["remote_dp_kpa"] == TransmitterSpec(noise_pct=0.5, lag_s=1.0, quantum=0.5)
    assert chosen.sensors["flow_m3h"] == DEFAULT_SPECS["flow_m3h"]
    assert "suction_kpa" not in chosen.sensors


@pytest.mark.parametrize(
    ("text", "field", "reason"),
    [
        ("[sensors.humidity]\nlag_s = 1", "sensors.humidity", "is not one of"),
        ("[sensors.flow_m3h]\nnoise_pct = 6", "sensors.flow_m3h.noise_pct", "outside 0..5"),
        ("[sensors.flow_m3h]\nquantum = 121", "sensors.flow_m3h.quantum", "outside 0..120"),
        ("[sensors.flow_m3h]\nlag = 1", "sensors.flow_m3h.lag", "unknown key"),
        ("[sensors]\nflow_m3h = 1", "sensors.flow_m3h", "must be a table"),
    ],
)
def test_bad_sensor_tables_name_the_field(text, field, reason):
    with pytest.raises(scenario.ScenarioError) as info:
        parse(text)
    assert info.value.field == field and reason in info.value.reason


def fault(text: str) -> scenario.FaultSpec:
    return parse('[[faults]]\nat = "00:10"\n' + text).faults[0]


def test_sensor_fault_modes_and_their_keys():
    drift = fault(
        'kind = "sensor_fault"\nsensor = "remote_dp_kpa"\nmode = "drift"\nrate_per_h = -6'
    )
    assert (drift.mode, drift.rate_per_h) == ("drift", -6.0)
    offset = fault('kind = "sensor_fault"\nsensor = "flow_m3h"\nmode = "offset"\noffset = 40')
    assert offset.offset == 40.0
    flaky = fault('kind = "sensor_fault"\nsensor = "flow_m3h"\nmode = "intermittent"')
    assert (flaky.period_s, flaky.duty) == (30.0, 0.2)
    legacy = fault('kind = "sensor_wire_break"\nsensor = "suction_kpa"')
    assert (legacy.kind, legacy.mode) == ("sensor_wire_break", "wire_break")
    assert fault('kind = "sensor_wire_break"\nsensor = "flow_m3h"\nmode = "stuck"').mode == "stuck"


@pytest.mark.parametrize(
    ("text", "field", "reason"),
    [
        ('kind = "sensor_fault"\nsensor = "flow_m3h"', "mode", "is required"),
        ('kind = "sensor_fault"\nsensor = "flow_m3h"\nmode = "drift"', "rate_per_h", "required"),
        (
            'kind = "sensor_fault"\nsensor = "flow_m3h"\nmode = "stuck"\noffset = 1',
            "offset",
            "does not apply to a stuck sensor fault",
        ),
        (
            'kind = "sensor_fault"\nsensor = "remote_dp_kpa"\nmode = "offset"\noffset = 401',
            "offset",
            "outside -400..400",
        ),
        (
            'kind = "sensor_fault"\nsensor = "flow_m3h"\nmode = "intermittent"\nduty = 1.0',
            "duty",
            "outside 0.01..0.99",
        ),
        ('kind = "sensor_fault"\nsensor = "flow_m3h"\nmode = "melted"', "mode", "not one of"),
        ('kind = "pump_trip"\npump = 1\noffset = 1', "offset", "does not apply to a pump_trip"),
    ],
)
def test_bad_sensor_faults_name_the_field(text, field, reason):
    with pytest.raises(scenario.ScenarioError) as info:
        fault(text)
    assert info.value.field == f"faults[0].{field}" and reason in info.value.reason


def station_currents(text: str, seconds: float, name: str = "remote_dp_kpa") -> list[int]:
    station = SimulatedStation(parse(text))
    out = []
    for _ in range(round(seconds / 0.2)):
        station.step(0.2)
        out.append(station.io.current_ua(name))
    return out


def test_the_station_measures_through_seeded_transmitters():
    noisy = station_currents("", 60.0)
    assert noisy == station_currents("", 60.0)  # one seed, one run
    assert len(set(noisy[-50:])) > 5  # noise reaches the loop
    quiet = station_currents("[sensors.remote_dp_kpa]\nnoise_pct = 0\nlag_s = 0\nquantum = 0", 60.0)
    station = SimulatedStation(parse(""))
    for _ in range(300):
        station.step(0.2)
    ideal = DEFAULT_ANALOG[2].to_ua(station.plant.remote_dp_kpa)
    assert quiet[-1] == ideal


def test_scheduled_sensor_faults_reach_the_loop_and_end():
    drift = station_currents(
        '[sensors.remote_dp_kpa]\nnoise_pct = 0\n[[faults]]\nkind = "sensor_fault"\nat = "00:01"\n'
        'sensor = "remote_dp_kpa"\nmode = "offset"\noffset = 40\nduration_min = 1',
        150.0,
    )
    # +40 kPa is +1600 uA on a 0..400 kPa loop; the plant itself is (nearly) settled
    assert drift[400] - drift[250] == pytest.approx(1600, abs=40)
    assert drift[-1] - drift[250] == pytest.approx(0, abs=40)
    legacy = station_currents(
        '[[faults]]\nkind = "sensor_wire_break"\nat = "00:01"\nsensor = "remote_dp_kpa"', 70.0
    )
    assert legacy[-1] == 0
