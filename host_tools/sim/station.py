"""Parameters of the simulated station: the reference station's figures plus stated assumptions.

Every figure of /work/shared/station-reference.md that the plant uses lives here, once. Figures that
the reference does not give are marked ASSUMED with the reason. Units: m (head), m3/h (flow), kPa
gauge unless named `_abs`, degC, kW, s. Heads are metres of the supply water (943 kg/m3 at 120 degC).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

G_M_S2 = 9.81


class SimInputError(ValueError):
    """A plant, demand or optimiser input outside what the model can represent."""


@dataclass(frozen=True)
class StationParams:
    # --- water -------------------------------------------------------------------------------
    rho_kg_m3: float = 943.0  # supply side, 120 degC (reference)
    # Local atmosphere: Lucheng/Changzhi lies at about 930 m, 90.6 kPa (ISA). ASSUMED; it is what
    # turns the reference's 2.49 bar(a) suction limit into its "about 1.6 bar(g)".
    atm_kpa_abs: float = 90.6

    # --- pumps (reference) -------------------------------------------------------------------
    pump_count: int = 3
    rated_rpm: float = 1480.0
    shutoff_head_m: float = 70.0  # H = 70 s^2 - 4.938e-5 q^2
    curve_coeff: float = 4.938e-5  # m per (m3/h)^2, per pump
    bep_flow_m3h: float = 450.0
    bep_efficiency: float = 0.84
    motor_rated_kw: float = 110.0
    load_points: tuple[float, ...] = (0.1, 0.2, 0.3, 0.5, 1.0)
    motor_efficiency: tuple[float, ...] = (0.829, 0.917, 0.950, 0.958, 0.958)
    vfd_efficiency: tuple[float, ...] = (0.826, 0.927, 0.948, 0.96, 0.97)
    npsh_bep_m: float = 4.0
    allowed_flow_ratio: tuple[float, float] = (0.3, 1.25)  # x = (q/s)/450
    allowed_speed: tuple[float, float] = (0.5, 1.0)

    # --- network (reference) -----------------------------------------------------------------
    design_flow_m3h: float = 800.0
    remote_dp_design_m: float = 12.0  # DP setpoint at the least-favoured substation
    system_coeff: float = 6.72e-5  # m per (m3/h)^2: H = 12 + 6.72e-5 Q^2
    # One lumped water column: DN400 (A = 0.1257 m2), L chosen so L v / (g H) = 17 s at design.
    column_length_m: float = 5200.0
    column_area_m2: float = math.pi * 0.4**2 / 4.0
    wave_speed_m_s: float = 1194.0  # Korteweg, DN400 8 mm steel
    # Check-valved bypass: 0.5 m at 800 m3/h. ASSUMED (a DN400 line with a swing check valve).
    bypass_coeff: float = 0.5 / 800.0**2
    # Differential head the upstream network leaves at the station (supply minus return) at zero
    # flow while the source pumps run. 0: the reference system curve is the whole loop seen by the
    # relay pumps (which is why the station exists); a scenario may raise it.
    upstream_assist_m: float = 0.0
    # Extra loop resistance when the source circulation pumps are stopped (flow through the stopped
    # source plant). Twice the network's: at design speed the flow falls to ~2/3. ASSUMED.
    source_stopped_coeff: float = 2.0 * 6.72e-5

    # --- suction side (ASSUMED, stated in the report) ----------------------------------------
    upstream_run_kpa: float = 300.0  # upstream supply pressure at the station, source pumps on
    upstream_stopped_kpa: float = 150.0  # what the pressurisation holds with source pumps off
    upstream_loss_kpa_at_design: float = 80.0  # supply-line loss upstream, at 800 m3/h
    upstream_tau_s: float = 20.0  # first-order response of the upstream pressure
    source_tau_s: float = 10.0  # source pumps' run-up / coast-down
    supply_temp_c: float = 120.0

    # --- demand ------------------------------------------------------------------------------
    max_load_ratio: float = 1.05
    min_load_ratio: float = 0.30

    @property
    def rho_g(self) -> float:
        """Specific weight (N/m3): Pa per metre of head."""
        return self.rho_kg_m3 * G_M_S2

    @property
    def kpa_per_m(self) -> float:
        return self.rho_g / 1000.0

    @property
    def column_inertance(self) -> float:
        """L / (g A) in s^2/m^2: head (m) needed per flow acceleration (m3/s per s)."""
        return self.column_length_m / (G_M_S2 * self.column_area_m2)

    @property
    def reflection_time_s(self) -> float:
        """2 L / a: the time a pressure wave needs to go to the far end and back."""
        return 2.0 * self.column_length_m / self.wave_speed_m_s

    def system_head_m(self, flow_m3h: float) -> float:
        """Station head the reference system curve asks for at this flow (DP held at 12 m)."""
        return self.remote_dp_design_m + self.system_coeff * flow_m3h * flow_m3h

    def velocity_m_s(self, flow_m3h: float) -> float:
        return flow_m3h / 3600.0 / self.column_area_m2

    def water_column_time_constant_s(self) -> float:
        """L v / (g H) at the design point (reference: about 17 s)."""
        q = self.design_flow_m3h
        return self.column_length_m * self.velocity_m_s(q) / (G_M_S2 * self.system_head_m(q))


REFERENCE = StationParams()
