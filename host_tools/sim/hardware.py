"""The simulated station hardware: plant, drives, I/O module and RS-485 bus, with the fault schedule.

Everything a controller can see of it goes through the bus as real Modbus RTU bytes. One
``step(dt_s)`` advances, in this order: scheduled faults begin or end; each drive follows its
own ramps (and current limit); the plant sees the drives' actual speeds; the drives see their
electrical load, which the plant computed (pump.py), so an overloaded pump's drive limits and
heats; the transmitters turn the plant's quantities into the I/O module's loop currents (noise,
lag, quantisation and sensor faults: transmitters.py).
"""

from __future__ import annotations

import dataclasses

from host_tools.sim.bus import SimulatedBus
from host_tools.sim.demand import WeatherDemand
from host_tools.sim.drives import DriveConfig, make_drive
from host_tools.sim.drives.base import COAST
from host_tools.sim.iomodule import IoModule
from host_tools.sim.plant import MAX_SPEED_RATIO, Plant
from host_tools.sim.pump import DATASHEET, PumpDeviation, PumpModel, draw_iso9906_2b
from host_tools.sim.rtu_slave import RtuSlaves
from host_tools.sim.scenario import FaultSpec, Scenario
from host_tools.sim.station import REFERENCE
from host_tools.sim.transmitters import Transmitters

SENSOR_FAULTS = ("sensor_fault", "sensor_wire_break")


def pump_deviations(scenario: Scenario) -> tuple[PumpDeviation, ...]:
    """The real pumps of this scenario, in drive order: its spread's draw, then its [[pumps]]."""
    count = len(scenario.drives)
    if scenario.pump_spread == "iso9906_2b":
        drawn = draw_iso9906_2b(scenario.seed, count)
    else:
        drawn = (DATASHEET,) * count
    pumps = list(drawn)
    for i, spec in enumerate(scenario.pumps):
        given = {k: v for k, v in dataclasses.asdict(spec).items() if v is not None}
        pumps[i] = dataclasses.replace(pumps[i], **given)
    return tuple(pumps)


class SimulatedStation:
    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        params = dataclasses.replace(REFERENCE, pump_count=len(scenario.drives))
        demand = WeatherDemand(
            start=scenario.date,
            seed=scenario.seed,
            mean_temp_c=scenario.mean_temp_c,
            anomaly_sigma_c=scenario.weather_sigma_c,
            noise_sigma=scenario.flow_noise,
            floor_m3h=scenario.demand_floor_m3h,
            shape=scenario.demand_shape,
        )
        self.pump_deviations = pump_deviations(scenario)
        pumps = [PumpModel(params, d) for d in self.pump_deviations]
        self.plant = Plant(params, demand, pumps)
        self.plant.set_conditions(
            supply_temp_c=scenario.supply_temp_c, upstream_assist_m=scenario.upstream_assist_m
        )
        self.drives = [
            make_drive(
                spec.profile,
                spec.unit,
                DriveConfig(
                    accel_s=spec.accel_s,
                    decel_s=spec.decel_s,
                    comm_timeout_s=spec.comm_timeout_s,
                    comm_loss_action=spec.comm_loss_action,
                    safe_speed_pct=spec.safe_speed_pct,
                    rated_kw=spec.rated_kw,
                    rated_current_a=spec.rated_current_a,
                    current_limit_pct=spec.current_limit_pct,
                ),
            )
            for spec in scenario.drives
        ]
        self.io = IoModule(scenario.io_unit)
        self.transmitters = Transmitters(self.io.analog.values(), scenario.sensors, scenario.seed)
        self._measuring = [  # (_update_io's order)
            self.transmitters[name]
            for name in (
                "suction_kpa",
                "discharge_kpa",
                "remote_dp_kpa",
                "supply_temp_c",
                "flow_m3h",
            )
        ]
        devices = {d.unit: d for d in self.drives}
        devices[self.io.unit] = self.io
        self.slaves = RtuSlaves(devices)
        self.bus = SimulatedBus(
            self.slaves,
            baud=scenario.baud,
            turnaround_s=scenario.turnaround_ms / 1000.0,
            seed=scenario.seed,
        )
        self.t_s = 0.0
        self.starts = [0] * len(self.drives)
        self._was_running = [False] * len(self.drives)
        self._pending = sorted(scenario.faults, key=lambda f: f.at_s)
        self._active: list[FaultSpec] = []
        self._update_io(0.0)

    # -- faults ---------------------------------------------------------------------------------

    def fault_windows(self) -> list[tuple[float, float, str]]:
        return [(f.at_s, f.end_s, f.kind) for f in self.scenario.faults]

    def _apply_faults(self) -> None:
        t = self.t_s
        while self._pending and self._pending[0].at_s <= t:
            fault = self._pending.pop(0)
            self._begin(fault)
            self._active.append(fault)
        for fault in [f for f in self._active if f.end_s <= t]:
            self._end(fault)
            self._active.remove(fault)

    def _begin(self, fault: FaultSpec) -> None:
        kind = fault.kind
        if kind == "pump_trip":
            self.drives[fault.pump - 1].inject_fault(fault.fault)
        elif kind == "drive_comm_loss":
            self.bus.cut_units.add(self.drives[fault.pump - 1].unit)
        elif kind in SENSOR_FAULTS:
            self.transmitters[fault.sensor].begin_fault(
                fault.mode,
                self.t_s,
                rate_per_h=fault.rate_per_h,
                offset=fault.offset,
                period_s=fault.period_s,
                duty=fault.duty,
            )
        elif kind == "crc_noise":
            self.bus.noise_probability = fault.probability
        elif kind == "suction_dip":
            self.plant.set_conditions(suction_dip_kpa=fault.kpa)
        elif kind == "source_pumps_stop":
            self.plant.set_conditions(source_running=False)

    def _end(self, fault: FaultSpec) -> None:
        kind = fault.kind
        if kind == "pump_trip":
            self.drives[fault.pump - 1].clear_fault()  # the cause is gone; a reset is still needed
        elif kind == "drive_comm_loss":
            self.bus.cut_units.discard(self.drives[fault.pump - 1].unit)
        elif kind in SENSOR_FAULTS:
            self.transmitters[fault.sensor].end_fault()
        elif kind == "crc_noise":
            self.bus.noise_probability = 0.0
        elif kind == "suction_dip":
            self.plant.set_conditions(suction_dip_kpa=0.0)
        elif kind == "source_pumps_stop":
            self.plant.set_conditions(source_running=True)

    # -- time -----------------------------------------------------------------------------------

    def step(self, dt_s: float) -> None:
        t = self.t_s
        if self._active or (self._pending and self._pending[0].at_s <= t):
            self._apply_faults()
        plant = self.plant
        speeds, runs = plant.pump_speed, plant.pump_running
        for i, drive in enumerate(self.drives):
            drive.step(t, dt_s)
            running = drive.motion != COAST  # drive.running and .speed_ratio, inline: every step
            if running and not self._was_running[i]:
                self.starts[i] += 1
            self._was_running[i] = running
            ratio = drive.speed_pct / 100.0
            if 0.0 <= ratio <= MAX_SPEED_RATIO:  # plant.set_pump's checks, inline: every step
                speeds[i] = ratio
                runs[i] = running
            else:
                plant.set_pump(i, ratio, running)  # refuses it, naming the value
        plant.step(dt_s)
        for i, drive in enumerate(self.drives):
            drive.load_kw = plant.pump_power_kw[i]
        self.t_s = t + dt_s
        self._update_io(dt_s)

    def _update_io(self, dt_s: float) -> None:
        plant, io, t = self.plant, self.io, self.t_s
        # Transmitters.measure, inline: every plant step
        suction, discharge, remote, temperature, flow = self._measuring
        set_current = io.set_current
        set_current("suction_kpa", suction.update(plant.suction_kpa, t, dt_s))
        set_current("discharge_kpa", discharge.update(plant.discharge_kpa, t, dt_s))
        set_current("remote_dp_kpa", remote.update(plant.remote_dp_kpa, t, dt_s))
        set_current("supply_temp_c", temperature.update(plant.supply_temp_c, t, dt_s))
        set_current("flow_m3h", flow.update(plant.flow_m3h, t, dt_s))
        io.set_input("source_pumps_running", plant.source_running)
        io.set_input("bypass_open", plant.bypass_flow_m3h > 1.0)
