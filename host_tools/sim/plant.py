"""The hydraulic plant: pumps, headers, bypass, network and suction side, on virtual time.

Per step the drives layer sets each pump's actual speed ratio (0..1.3 of 1480 rpm) and whether its
drive is running (set_pump); the scenario sets the conditions (set_conditions); step(dt_s)
advances the state. Outputs are plain attributes (kPa gauge, m3/h, m, kW, kWh, degC).

Model (see station.py for the figures and the assumptions):
- network flow Q is one lumped water column: (L/(g A)) dQ/dt = H_station(Q) - H_system(Q),
  integrated linearly implicitly (stable for any dt; accurate for dt <= ~0.5 s), Q >= 0 (every
  path through the station is check-valved).
- H_station(Q): parallel pumps and bypass, hydraulics.solve_station, each pump with its own curve
  (`pumps`: one pump.PumpModel per pump, the datasheet pump unless a deviation is given).
- H_system(Q) = Q^2/Kv^2 + k Q^2 + (1 - r) k_stop Q^2 - r H_assist, where the substations act as
  valves Q = Kv sqrt(DP_remote) with Kv = Q_demand / sqrt(12 m) (so DP_remote = 12 m when the flow
  meets the demand: the reference system curve), r is the source pumps' running state (first
  order, tau 10 s) and k_stop the stopped source plant's resistance.
- suction = p_up - (k_up + (1 - r) k_stop) Q^2, p_up first order (tau 20 s) towards
  r p_run + (1 - r) p_stopped - dip; never below the vapour pressure (gauge).
- discharge = suction + rho g H_station; remote DP = rho g Q^2 / Kv^2.
- suction limit = max(p_sat + 50, p_sat + rho g max(1.3 NPSHr, NPSHr + 1)) - p_atm, NPSHr the
  largest of the turning pumps'.
- shaft and electrical power per running drive from its pump's power characteristic at the
  pump's flow and speed (pump.py; a drive that is not running draws nothing even while its pump
  coasts), electrical integrated to kWh (trapezoid).
- surge: surge.SurgeEstimator on the pumps' delivered velocity.
Pumps, check valves and the column beyond the curves (the rules hydraulics.solve_station keeps):
- a pump whose shut-off head H0_i s_i^2 is at or below the station head delivers nothing: its
  check valve holds, and a running drive still draws the pump's shut-off (churning) power;
- the column's inertia sets the flow at an instant; the station head is the head at which the
  pumps and the bypass pass it. When the column carries more than the pumps give at their speeds
  (after a trip, a current-limit sag or a speed drop) the station head falls and the pumps move
  out along their curves, past run-out if need be (negative head: the pump is a resistance
  H = H0 s^2 - c q^2 < 0 that the column drives flow through); below zero station head the
  check-valved bypass opens (0.5 m at 800 m3/h), carries the excess and keeps every pump close to
  its run-out;
- a stopped pump (speed 0) passes nothing (its check valve is in series with a standing impeller,
  ~60 times the bypass's resistance: the bypass carries that flow); a coasting pump is a pump at
  its coasting speed;
- the shaft power follows the flow the column forces through each pump: beyond run-out it stays
  bounded (pump.py), so a pump driven past its curve loads its drive with no more than its
  run-out power at that speed.
No wall clock, no numpy, no allocation in step(); randomness only in the demand (seeded).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from .demand import WeatherDemand
from .hydraulics import StationSolution, solve_station
from .pump import PumpModel
from .station import REFERENCE, SimInputError, StationParams
from .surge import SurgeEstimator
from .water import saturation_pressure_kpa_abs, suction_limit_kpa_abs

MAX_SPEED_RATIO = 1.3
MAX_STEP_S = 10.0


class ConstantDemand:
    """A fixed network demand (m3/h): for tests, EPANET checks and hand-made scenarios."""

    __slots__ = ("flow_m3h", "t_s")

    def __init__(self, flow_m3h: float) -> None:
        if not (isinstance(flow_m3h, (int, float)) and 0.0 < flow_m3h <= 2000.0):
            raise SimInputError(f"demand {flow_m3h!r} m3/h is outside 0..2000")
        self.flow_m3h = float(flow_m3h)
        self.t_s = 0.0

    def step(self, dt_s: float) -> float:
        self.t_s += dt_s
        return self.flow_m3h


@dataclass(frozen=True)
class PlantReading:
    """A snapshot of the plant's outputs (for logs and tests; the step itself allocates none)."""

    t_s: float
    flow_m3h: float
    demand_m3h: float
    station_head_m: float
    suction_kpa: float
    discharge_kpa: float
    remote_dp_kpa: float
    bypass_flow_m3h: float
    pump_flow_m3h: tuple[float, ...]
    pump_speed: tuple[float, ...]
    pump_power_kw: tuple[float, ...]
    pump_shaft_kw: tuple[float, ...]
    pump_energy_kwh: tuple[float, ...]
    total_power_kw: float
    total_energy_kwh: float
    supply_temp_c: float
    saturation_kpa_abs: float
    suction_limit_kpa: float
    suction_margin_kpa: float
    surge_kpa: float
    surge_peak_kpa: float
    source_running: bool


def _finite(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


class Plant:
    def __init__(
        self,
        params: StationParams = REFERENCE,
        demand: WeatherDemand | ConstantDemand | None = None,
        pumps: Sequence[PumpModel] | None = None,
    ) -> None:
        p = params
        self.params = p
        n = p.pump_count
        if pumps is None:
            pumps = [PumpModel(p)] * n
        if len(pumps) != n or not all(isinstance(m, PumpModel) for m in pumps):
            raise SimInputError(f"pumps must be {n} PumpModel objects, one per pump")
        # The real pumps, in drive order: each its own curve, efficiency and NPSHr (read-only).
        self.pumps: tuple[PumpModel, ...] = tuple(pumps)
        self.demand = demand if demand is not None else WeatherDemand()
        self.pump_count = n
        # inputs
        self.pump_speed = [0.0] * n
        self.pump_running = [False] * n
        self.source_running = True
        self.supply_temp_c = p.supply_temp_c
        self.suction_dip_kpa = 0.0
        self.upstream_assist_m = p.upstream_assist_m
        # constants used in the step
        self._h0 = [m.h0 for m in self.pumps]
        self._c = [m.c for m in self.pumps]
        self._k_bp = p.bypass_coeff
        self._k_sys = p.system_coeff
        self._k_stop = p.source_stopped_coeff
        self._kpa_per_m = p.kpa_per_m
        self._k_up_kpa = p.upstream_loss_kpa_at_design / p.design_flow_m3h**2
        self._accel = 3600.0 / p.column_inertance  # (m3/h)/s per m of net head
        self._inv_sqrt_dp = 1.0 / math.sqrt(p.remote_dp_design_m)
        self._area_3600 = 3600.0 * p.column_area_m2
        self._cached_dt = -1.0
        self._k_src = 0.0
        self._k_pup = 0.0
        self._sol = StationSolution(n)
        self._solved_flow = -1.0  # the flow and speeds self._sol was solved for
        self._solved_speeds = [-1.0] * n
        self._surge = SurgeEstimator(p.rho_kg_m3, p.wave_speed_m_s, p.reflection_time_s)
        # state
        self.t_s = 0.0
        self.flow_m3h = 0.0
        self.source_state = 1.0
        self.upstream_kpa = p.upstream_run_kpa
        # outputs
        self.demand_m3h = self.demand.flow_m3h
        self.kv = self.demand_m3h * self._inv_sqrt_dp
        self.station_head_m = 0.0
        self.pump_flow_m3h = [0.0] * n
        self.bypass_flow_m3h = 0.0
        self.pump_power_kw = [0.0] * n
        self.pump_shaft_kw = [0.0] * n
        self.pump_energy_kwh = [0.0] * n
        self.total_power_kw = 0.0
        self.suction_kpa = 0.0
        self.discharge_kpa = 0.0
        self.remote_dp_kpa = 0.0
        self.npsh_required_m = 0.0
        self._temp_cached = float("nan")
        self.saturation_kpa_abs = 0.0
        self.suction_limit_kpa = 0.0
        self.suction_margin_kpa = 0.0
        self.surge_kpa = 0.0
        self._update_outputs(0.0)

    # --- inputs ------------------------------------------------------------------------------
    def set_pump(self, index: int, speed_ratio: float, running: bool) -> None:
        """Actual speed (ratio of 1480 rpm) and drive state of pump `index` (0-based)."""
        if (
            not isinstance(index, int)
            or isinstance(index, bool)
            or not 0 <= index < self.pump_count
        ):
            raise SimInputError(f"pump index {index!r} is outside 0..{self.pump_count - 1}")
        if not _finite(speed_ratio) or not 0.0 <= speed_ratio <= MAX_SPEED_RATIO:
            raise SimInputError(f"speed ratio {speed_ratio!r} is outside 0..{MAX_SPEED_RATIO}")
        if not isinstance(running, bool):
            raise SimInputError(f"running must be a bool, not {type(running).__name__}")
        self.pump_speed[index] = float(speed_ratio)
        self.pump_running[index] = running

    def set_conditions(
        self,
        *,
        source_running: bool | None = None,
        supply_temp_c: float | None = None,
        suction_dip_kpa: float | None = None,
        upstream_assist_m: float | None = None,
    ) -> None:
        """Scenario conditions; None leaves a condition as it is."""
        if source_running is not None:
            if not isinstance(source_running, bool):
                raise SimInputError("source_running must be a bool")
            self.source_running = source_running
        if supply_temp_c is not None:
            if not _finite(supply_temp_c) or not 20.0 <= supply_temp_c <= 180.0:
                raise SimInputError(f"supply temperature {supply_temp_c!r} is outside 20..180 degC")
            self.supply_temp_c = float(supply_temp_c)
        if suction_dip_kpa is not None:
            if not _finite(suction_dip_kpa) or not 0.0 <= suction_dip_kpa <= 500.0:
                raise SimInputError(f"suction dip {suction_dip_kpa!r} is outside 0..500 kPa")
            self.suction_dip_kpa = float(suction_dip_kpa)
        if upstream_assist_m is not None:
            if not _finite(upstream_assist_m) or not 0.0 <= upstream_assist_m <= 50.0:
                raise SimInputError(f"upstream assist {upstream_assist_m!r} is outside 0..50 m")
            self.upstream_assist_m = float(upstream_assist_m)

    # --- dynamics ----------------------------------------------------------------------------
    def _system_coeff(self) -> float:
        kv = self.kv
        return 1.0 / (kv * kv) + self._k_sys + (1.0 - self.source_state) * self._k_stop

    def step(self, dt_s: float) -> None:
        """Advance the plant by dt_s seconds of virtual time."""
        if dt_s != self._cached_dt:  # a new step length: checked, and its factors computed
            if not _finite(dt_s) or not 0.0 < dt_s <= MAX_STEP_S:
                raise SimInputError(f"step {dt_s!r} s is outside (0, {MAX_STEP_S}]")
            self._cached_dt = dt_s
            self._k_src = 1.0 - math.exp(-dt_s / self.params.source_tau_s)
            self._k_pup = 1.0 - math.exp(-dt_s / self.params.upstream_tau_s)
        p = self.params
        # boundary conditions
        self.demand_m3h = self.demand.step(dt_s)
        self.kv = self.demand_m3h * self._inv_sqrt_dp
        run = 1.0 if self.source_running else 0.0
        r = self.source_state + (run - self.source_state) * self._k_src
        self.source_state = r
        target = p.upstream_stopped_kpa + r * (p.upstream_run_kpa - p.upstream_stopped_kpa)
        self.upstream_kpa += (target - self.suction_dip_kpa - self.upstream_kpa) * self._k_pup
        # water column, linearly implicit Euler
        q = self.flow_m3h
        sol = self._sol
        if q != self._solved_flow or self.pump_speed != self._solved_speeds:
            # (else the last output step's solution is this one: same flow, same speeds)
            solve_station(
                q, self.pump_speed, self._h0, self._c, self._k_bp, sol, self.station_head_m
            )
        k_tot = self._system_coeff()
        f = sol.head_m - (k_tot * q * q - r * self.upstream_assist_m)
        df = sol.dhead_dflow - 2.0 * k_tot * q
        a = self._accel * dt_s
        q_new = q + a * f / (1.0 - a * df)
        self.flow_m3h = q_new if q_new > 0.0 else 0.0
        self.t_s += dt_s
        self._update_outputs(dt_s)

    def _update_outputs(self, dt_s: float) -> None:
        q = self.flow_m3h
        speeds = self.pump_speed
        sol = solve_station(
            q, speeds, self._h0, self._c, self._k_bp, self._sol, self.station_head_m
        )
        self._solved_flow = q
        self._solved_speeds[:] = speeds
        head = sol.head_m
        self.station_head_m = head
        self.bypass_flow_m3h = sol.bypass_flow_m3h
        pumps = self.pumps
        flows = self.pump_flow_m3h
        powers = self.pump_power_kw
        shafts = self.pump_shaft_kw
        energy = self.pump_energy_kwh
        total = 0.0
        npsh = 0.0
        pumped = 0.0
        for i in range(self.pump_count):
            qi = sol.pump_flow_m3h[i]
            s = speeds[i]
            flows[i] = qi
            pumped += qi
            pump = pumps[i]
            if self.pump_running[i] and s > 0.0:
                shaft = pump.shaft_kw(qi, s)
                kw = shaft / pump.drive_efficiency(shaft) if shaft > 0.0 else 0.0
            else:
                shaft = kw = 0.0
            shafts[i] = shaft
            if dt_s:
                energy[i] += 0.5 * (powers[i] + kw) * dt_s / 3600.0
            powers[i] = kw
            total += kw
            if s > 0.0:
                n_r = pump.npsh_required_m(qi, s)
                if n_r > npsh:
                    npsh = n_r
        self.total_power_kw = total
        self.npsh_required_m = npsh
        # pressures
        kpa_m = self._kpa_per_m
        if self.supply_temp_c != self._temp_cached:
            self._temp_cached = self.supply_temp_c
            self.saturation_kpa_abs = saturation_pressure_kpa_abs(self.supply_temp_c)
        atm = self.params.atm_kpa_abs
        loss = (self._k_up_kpa + (1.0 - self.source_state) * self._k_stop * kpa_m) * q * q
        suction = self.upstream_kpa - loss
        vapour_g = self.saturation_kpa_abs - atm
        self.suction_kpa = suction if suction > vapour_g else vapour_g
        self.discharge_kpa = self.suction_kpa + kpa_m * head
        kv = self.kv
        self.remote_dp_kpa = kpa_m * q * q / (kv * kv)
        limit = suction_limit_kpa_abs(self.saturation_kpa_abs, npsh, kpa_m) - atm
        self.suction_limit_kpa = limit
        self.suction_margin_kpa = self.suction_kpa - limit
        self.surge_kpa = self._surge.update(self.t_s, pumped / self._area_3600)

    # --- helpers -----------------------------------------------------------------------------
    @property
    def total_energy_kwh(self) -> float:
        return sum(self.pump_energy_kwh)

    @property
    def surge_peak_kpa(self) -> float:
        return self._surge.peak_kpa

    @property
    def remote_dp_m(self) -> float:
        return self.remote_dp_kpa / self._kpa_per_m

    def steady_flow_m3h(self) -> float:
        """Flow at which the column is at rest for the present inputs (bisection on Q)."""
        sol = StationSolution(self.pump_count)
        k_tot = self._system_coeff()
        assist = self.source_state * self.upstream_assist_m

        def net(q: float) -> float:
            solve_station(q, self.pump_speed, self._h0, self._c, self._k_bp, sol, 0.0)
            return sol.head_m - (k_tot * q * q - assist)

        if net(0.0) <= 0.0:
            return 0.0
        lo, hi = 0.0, 100.0
        while net(hi) > 0.0:
            hi *= 2.0
        for _ in range(200):
            mid = 0.5 * (lo + hi)
            if net(mid) > 0.0:
                lo = mid
            else:
                hi = mid
            if hi - lo < 1e-10:
                break
        return 0.5 * (lo + hi)

    def settle(self) -> None:
        """Jump to the steady state of the present inputs (flow, source and upstream pressure)."""
        self.source_state = 1.0 if self.source_running else 0.0
        p = self.params
        r = self.source_state
        self.upstream_kpa = (
            p.upstream_stopped_kpa
            + r * (p.upstream_run_kpa - p.upstream_stopped_kpa)
            - self.suction_dip_kpa
        )
        self.flow_m3h = self.steady_flow_m3h()
        self._surge = SurgeEstimator(p.rho_kg_m3, p.wave_speed_m_s, p.reflection_time_s)
        for i in range(self.pump_count):
            self.pump_power_kw[i] = 0.0
        self._update_outputs(0.0)

    def reading(self) -> PlantReading:
        return PlantReading(
            t_s=self.t_s,
            flow_m3h=self.flow_m3h,
            demand_m3h=self.demand_m3h,
            station_head_m=self.station_head_m,
            suction_kpa=self.suction_kpa,
            discharge_kpa=self.discharge_kpa,
            remote_dp_kpa=self.remote_dp_kpa,
            bypass_flow_m3h=self.bypass_flow_m3h,
            pump_flow_m3h=tuple(self.pump_flow_m3h),
            pump_speed=tuple(self.pump_speed),
            pump_power_kw=tuple(self.pump_power_kw),
            pump_shaft_kw=tuple(self.pump_shaft_kw),
            pump_energy_kwh=tuple(self.pump_energy_kwh),
            total_power_kw=self.total_power_kw,
            total_energy_kwh=self.total_energy_kwh,
            supply_temp_c=self.supply_temp_c,
            saturation_kpa_abs=self.saturation_kpa_abs,
            suction_limit_kpa=self.suction_limit_kpa,
            suction_margin_kpa=self.suction_margin_kpa,
            surge_kpa=self.surge_kpa,
            surge_peak_kpa=self.surge_peak_kpa,
            source_running=self.source_running,
        )
