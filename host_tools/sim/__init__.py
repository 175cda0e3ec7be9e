"""Hydraulic plant of the station simulator (CPython; pure floats in the step, virtual time).

Modules, one concern each:
- station:    the reference figures and stated assumptions (StationParams, REFERENCE)
- pump:       one pump + motor + VFD (curve, efficiency, power, NPSHr): the datasheet's or a
              real pump's (ISO 9906 grade 2B deviation draw, wear)
- hydraulics: parallel check-valved pumps + bypass -> station head for a flow
- water:      saturation pressure (IAPWS-IF97) and the suction limit
- surge:      Joukowsky/Michaud surge estimate over the wave reflection time
- demand:     weather-driven daily demand, seeded; floor, setback, boost, steps and ramps
- plant:      the whole plant stepped on virtual time (Plant; plant.pumps: each pump's model)
- optimal:    offline best staging and daily energy baselines
"""

from .demand import WeatherDemand, daily_flow_profile
from .optimal import OperatingPoint, best_staging, daily_energy_kwh
from .plant import ConstantDemand, Plant, PlantReading
from .pump import PumpModel
from .station import REFERENCE, SimInputError, StationParams

__all__ = [
    "REFERENCE",
    "ConstantDemand",
    "OperatingPoint",
    "Plant",
    "PlantReading",
    "PumpModel",
    "SimInputError",
    "StationParams",
    "WeatherDemand",
    "best_staging",
    "daily_energy_kwh",
    "daily_flow_profile",
]
