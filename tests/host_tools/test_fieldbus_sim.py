"""The firmware's bus master (fieldbus + drive profiles + sensors) against the simulator's devices.

Real RTU bytes over host_tools/sim/bus.py in virtual time, answered by the simulated ABB, Danfoss
and G120 drives and the I/O module of the reference station (firmware/station.json).
"""

from __future__ import annotations

import pytest
from relaypump import drives as profiles
from relaypump.codes import EVENT_DRIVE_COMM_LOST, EVENT_DRIVE_COMM_RESTORED
from relaypump.snapshot import (
    BAD,
    CMD_COAST,
    CMD_QUICK_STOP,
    CMD_RUN,
    CMD_STOP,
    DRIVE_READY,
    DRIVE_RUNNING,
    DRIVE_TRIPPED,
    DRIVE_UNKNOWN,
    GOOD,
    HELD,
    SUBSTITUTE,
)

from host_tools.bench.pollcycle import reference_station
from host_tools.sim.drives import DC_OVERVOLTAGE, OVERCURRENT, OVERTEMPERATURE
from host_tools.sim.drives.base import COAST, RAMP_STOP, RUN


class Station:
    def __init__(self, seed: int = 0) -> None:
        (
            self.config,
            self.snap,
            self.sensors,
            self.fb,
            self.drives,
            self.io,
            self.bus,
            self.runner,
        ) = reference_station(seed=seed)
        self.events: list[tuple[int, int]] = []
        self.fb.on_event = lambda code, pump, at: self.events.append((code, pump))
        self.writes: dict[int, list[bytes]] = {}
        self.runner.on_send = self._record

    def _record(self, frame: bytes, t: float) -> None:
        if frame[1] in (6, 16):
            self.writes.setdefault(frame[0], []).append(frame)

    def control_words(self, unit: int, address: int) -> list[int]:
        """Control words written to ``unit`` at ``address``, in order, repeats collapsed."""
        words: list[int] = []
        for f in self.writes.get(unit, []):
            if f[2] << 8 | f[3] != address:
                continue
            word = f[7] << 8 | f[8] if f[1] == 16 else f[4] << 8 | f[5]
            if not words or words[-1] != word:
                words.append(word)
        return words

    def command(self, command: int, speed: float = 80.0) -> None:
        for cmd in self.snap.commands:
            cmd.command = command
            cmd.speed_pct = speed

    def run(self, seconds: float) -> None:
        self.runner.run_for(seconds)
        self.tick()

    def tick(self) -> None:
        self.fb.update_snapshot()
        self.sensors.update(self.runner.now_ms())


@pytest.fixture
def station() -> Station:
    return Station()


def test_start_sequences_follow_each_profile(station: Station) -> None:
    station.command(CMD_RUN, 80.0)
    station.run(1.0)
    abb, danfoss, g120 = station.drives
    assert station.control_words(abb.unit, 0) == [0x0476, 0x0477, 0x047F]
    assert station.control_words(danfoss.unit, 49999) == [0x047C]
    assert station.control_words(g120.unit, 99) == [0x0476, 0x0477, 0x047F]
    assert all(d.motion == RUN for d in station.drives)
    station.run(100.0)  # ramps: 100 s for 0 -> 100 % (written at first contact)
    for drive, pump in zip(station.drives, station.snap.pumps, strict=True):
        assert pump.online and pump.state == DRIVE_RUNNING
        assert drive.speed_pct == pytest.approx(80.0, abs=0.01)
        assert pump.speed_pct == pytest.approx(80.0, abs=0.05)  # reference scaling both ways
        assert pump.power_kw == pytest.approx(drive.power_kw, rel=0.01, abs=0.1)
        assert pump.current_a == pytest.approx(drive.current_a, rel=0.01, abs=0.1)
    assert station.fb.failed == 0 and station.fb.retries_used == 0


def test_stop_ramps_down_and_coast_removes_torque(station: Station) -> None:
    station.command(CMD_RUN, 80.0)
    station.run(100.0)
    station.command(CMD_STOP, 80.0)
    station.run(2.0)
    assert all(d.motion == RAMP_STOP for d in station.drives)
    assert all(77.5 < d.speed_pct < 78.5 for d in station.drives)  # 1 %/s ramp, no coast
    station.run(80.0)
    for drive, pump in zip(station.drives, station.snap.pumps, strict=True):
        assert drive.speed_pct == 0.0
        assert pump.state == DRIVE_READY and pump.speed_pct == 0.0
    station.command(CMD_RUN, 60.0)
    station.run(62.0)
    assert all(d.speed_pct == pytest.approx(60.0, abs=0.01) for d in station.drives)
    station.command(CMD_COAST)
    station.run(0.5)
    assert all(d.motion == COAST for d in station.drives)
    station.command(CMD_QUICK_STOP)
    station.run(0.5)
    assert all(not d.pulses_on for d in station.drives)


def test_ramp_times_are_commissioned_on_every_profile(station: Station) -> None:
    """The simulated drives start at their factory 60 s; the master writes the config's 100 s
    (1 %/s, the agent's slew) at each drive's documented parameter and reads it back."""
    assert all(d.config.accel_s == 60.0 for d in station.drives)
    station.run(3.0)
    assert station.fb.ramp_ok == [True, True, True]
    for drive in station.drives:
        assert (drive.config.accel_s, drive.config.decel_s) == (100.0, 100.0), drive.PROFILE
    station.drives[1].config.decel_s = 5.0  # changed at the Danfoss keypad
    station.run(55.0)
    assert station.drives[1].config.decel_s == 5.0  # not checked yet
    station.run(10.0)
    assert station.drives[1].config.decel_s == 100.0 and station.fb.ramp_ok[1]
    assert station.events == [] and station.fb.failed == 0


@pytest.mark.parametrize(
    ("kind", "meaning"),
    [
        (OVERCURRENT, profiles.FAULT_OVERCURRENT),
        (OVERTEMPERATURE, profiles.FAULT_OVERTEMPERATURE),
        (DC_OVERVOLTAGE, profiles.FAULT_DC_OVERVOLTAGE),
    ],
)
def test_trip_is_decoded_and_reset_restarts(station: Station, kind: str, meaning: int) -> None:
    station.command(CMD_RUN, 70.0)
    station.run(70.0)
    for d in station.drives:
        d.inject_fault(kind)
    station.run(1.0)
    for i, (drive, pump) in enumerate(zip(station.drives, station.snap.pumps, strict=True)):
        assert pump.state == DRIVE_TRIPPED
        assert pump.fault_code == drive.fault_code != 0
        assert station.fb.fault_meaning(i) == meaning
    # A reset while the cause persists does nothing; the request is consumed.
    for cmd in station.snap.commands:
        cmd.reset = True
    station.run(1.0)
    assert all(d.tripped for d in station.drives)
    assert not any(cmd.reset for cmd in station.snap.commands)
    for d in station.drives:
        d.clear_fault()
    for cmd in station.snap.commands:
        cmd.reset = True
    station.run(1.0)
    assert not any(d.tripped for d in station.drives)
    assert all(d.motion == RUN for d in station.drives)  # a new start sequence followed
    abb, danfoss, g120 = station.drives
    # bit 7 low, the edge (0x04F6 also switches ON off: the drive lands in READY TO SWITCH ON),
    # then the rest of the start sequence.
    assert station.control_words(abb.unit, 0)[-4:] == [0x0476, 0x04F6, 0x0477, 0x047F]
    assert station.control_words(g120.unit, 99)[-4:] == [0x0476, 0x04F6, 0x0477, 0x047F]
    assert station.control_words(danfoss.unit, 49999)[-3:] == [0x043C, 0x04BC, 0x047C]
    station.run(1.0)
    assert all(p.state == DRIVE_RUNNING and p.fault_code == 0 for p in station.snap.pumps)


def test_sensors_read_scaled_and_validated(station: Station) -> None:
    station.command(CMD_RUN, 80.0)
    station.run(20.0)
    snap = station.snap
    assert snap.io_online
    assert snap.suction_kpa.quality == GOOD
    assert snap.suction_kpa.value == pytest.approx(250.0, abs=0.1)
    assert snap.discharge_kpa.value == pytest.approx(700.0, abs=0.1)
    assert snap.flow_m3h.value == pytest.approx(640.0, abs=0.1)
    assert snap.source_running.value == 1.0 and snap.source_running.quality == GOOD
    assert snap.bypass_open.value == 0.0
    station.io.set_input("source_pumps_running", False)
    station.io.set_value("discharge_kpa", 720.0)
    station.run(10.0)  # five filter time constants
    assert snap.source_running.value == 0.0
    assert snap.discharge_kpa.value == pytest.approx(720.0, abs=0.2)

    station.io.inject_fault("suction_kpa", "wire_break")  # "model": no plausibility.py here
    station.io.inject_fault("supply_temp_c", "short")  # fallback 120.0
    station.io.inject_fault("remote_dp_kpa", "fail_low")  # fallback "discharge"
    station.io.inject_fault("flow_m3h", "fail_high")  # fallback "model"
    station.run(1.0)
    assert snap.suction_kpa.quality == BAD
    assert (snap.supply_temp_c.quality, snap.supply_temp_c.value) == (SUBSTITUTE, 120.0)
    assert snap.remote_dp_kpa.quality == SUBSTITUTE
    # the pumps' model flow comes from plausibility.py, which this harness does not run
    assert snap.flow_m3h.quality == BAD
    station.io.clear_fault()
    station.run(1.0)
    assert all(getattr(snap, n).quality == GOOD for n in station.sensors.names)


def test_cut_unit_is_lost_then_restored(station: Station) -> None:
    station.command(CMD_RUN, 80.0)
    station.run(70.0)
    danfoss = station.drives[1]
    station.bus.cut_units.add(danfoss.unit)
    station.run(2.0)
    pumps = station.snap.pumps
    # Silent for 2 s: a transient (10 % bus noise gives as much), the drive's last data stand.
    assert pumps[1].online and pumps[1].state == DRIVE_RUNNING and station.events == []
    lost_s = station.config["bus"]["lost_after_ms"] / 1000.0
    station.run(lost_s - 2.0 + 0.5)  # its last good answer came at most one cycle before the cut
    assert not pumps[1].online and pumps[1].state == DRIVE_UNKNOWN
    assert pumps[0].online and pumps[2].online
    assert station.events == [(EVENT_DRIVE_COMM_LOST, 1)]
    # Lost: probed once per bus.lost_probe_ms, so the others' cycle stays short.
    cycles = station.fb.cycles
    station.run(5.0)
    assert station.fb.cycles - cycles > 5.0 / 0.25
    # The drive's own comm-loss action ("safe_speed", after 10 s) meanwhile.
    station.run(10.0)
    assert danfoss.comm_lost and danfoss.speed_pct < 80.0
    station.bus.cut_units.clear()
    station.run(1.5)
    assert pumps[1].online and pumps[1].state == DRIVE_RUNNING
    assert station.events[-1] == (EVENT_DRIVE_COMM_RESTORED, 1)
    station.run(30.0)
    assert danfoss.speed_pct == pytest.approx(80.0, abs=0.05)


def test_io_module_lost_gives_fallbacks(station: Station) -> None:
    station.run(5.0)
    station.bus.cut_units.add(station.io.unit)
    station.run(2.0)
    snap = station.snap
    assert snap.io_online  # not yet lost (bus.lost_after_ms), a transient: every reading held
    assert all(getattr(snap, n).quality == HELD for n in station.sensors.names)
    assert snap.source_running.quality == HELD
    station.run(station.config["bus"]["lost_after_ms"] / 1000.0 - 1.5)
    assert not snap.io_online
    station.run(max(0.0, 11.0 - station.config["bus"]["lost_after_ms"] / 1000.0 - 0.5))
    # silent past io.hold_s: each channel's fallback
    assert snap.suction_kpa.quality == BAD
    assert snap.supply_temp_c.quality == SUBSTITUTE
    assert snap.flow_m3h.quality == BAD
    assert snap.source_running.quality == BAD
    assert station.events == []  # no drive event for the I/O module
    station.bus.cut_units.clear()
    station.run(1.5)
    assert snap.io_online and snap.suction_kpa.quality == GOOD


def test_crc_noise_is_retried_without_losing_a_device() -> None:
    station = Station(seed=7)
    station.bus.noise_probability = 0.05
    station.command(CMD_RUN, 75.0)
    station.run(120.0)
    fb = station.fb
    assert station.bus.corrupted_frames > 100
    assert fb.retries_used > 100
    assert fb.lost_events == [0, 0, 0, 0] and station.events == []
    assert all(d.speed_pct == pytest.approx(75.0, abs=0.01) for d in station.drives)
    assert all(p.online and p.state == DRIVE_RUNNING for p in station.snap.pumps)
    assert station.snap.suction_kpa.quality == GOOD


def test_timeout_follows_baud_rate_and_sizes(station: Station) -> None:
    fb = station.fb
    # 8 + 11 bytes + 3.5 characters at 19200 baud = 12.9 ms -> 13, + 5 turnaround + 10 margin.
    assert fb.timeout_ms(8, 11) == 13 + 5 + 10
    station.bus.cut_units.add(station.drives[0].unit)
    t0 = station.runner.t
    station.runner.step()  # the ABB status read times out (then it is retried)
    assert station.runner.t - t0 == pytest.approx(0.028, abs=0.0015)
    assert station.fb.retries_used == 1 and station.fb.failed == 0


def test_the_poll_cycle_bench_replays_exactly_its_recorded_cycles() -> None:
    """The bench's replay (poll_cycle_cpu_ms, and the same in the VM) needs the recorded window
    to be whole cycles: cut by 8 x the mean transactions per cycle it stopped a transaction short
    once the drives' periodic read-backs made the window's cycles unequal (19 cycles of 20)."""
    import time

    from host_tools.bench import pollcycle

    figures = pollcycle._measure(cycles=40)
    config = pollcycle.load_config()
    config["bus"]["cycle_ms"] = 0
    ms = pollcycle._replay(pollcycle._Here(), config, figures, time.process_time, 1, 1)
    assert ms > 0  # _replay raises when the fieldbus' requests and the replay part ways
