"""Simulated pump VFDs answering Modbus register calls in one of three vendor profiles.

    base.py        physics, faults, communication-loss supervision, DriveConfig (rules there)
    profidrive.py  the PROFIdrive state machine the ABB Drives profile and G120 share
    abb.py         ABB Drives profile (ACS580 family) register map
    danfoss.py     Danfoss FC profile (FC 102 / 202) register map and state logic
    g120.py        Siemens SINAMICS G120 (PROFIdrive over Modbus) register map

What the simulator does with a drive each plant step: ``drive.step(now_s, dt_s)``, then
``plant.set_pump(i, drive.speed_ratio, drive.running)`` (speed 0..1.2 of nominal; ``running`` =
inverter modulating), step the plant, then ``drive.load_kw = plant.pump_power_kw[i]`` (electrical
kW). The bus calls ``drive.heard(now_s)`` for every CRC-valid request addressed to the drive.
"""

from __future__ import annotations

from .abb import AbbDrive
from .base import (
    COMM_LOSS,
    COMM_LOSS_ACTIONS,
    DC_OVERVOLTAGE,
    INJECTABLE_FAULTS,
    MOTOR_OVERLOAD,
    OVERCURRENT,
    OVERTEMPERATURE,
    Drive,
    DriveConfig,
)
from .danfoss import DanfossDrive
from .g120 import G120Drive

PROFILES: dict[str, type[Drive]] = {"abb": AbbDrive, "danfoss": DanfossDrive, "g120": G120Drive}


def make_drive(profile: str, unit: int, config: DriveConfig | None = None) -> Drive:
    """A drive of the named profile ("abb", "danfoss", "g120")."""
    try:
        cls = PROFILES[profile]
    except KeyError:
        raise ValueError(f"drive profile {profile!r} is not one of {sorted(PROFILES)}") from None
    return cls(unit, config)


__all__ = [
    "COMM_LOSS",
    "COMM_LOSS_ACTIONS",
    "DC_OVERVOLTAGE",
    "INJECTABLE_FAULTS",
    "MOTOR_OVERLOAD",
    "OVERCURRENT",
    "OVERTEMPERATURE",
    "PROFILES",
    "AbbDrive",
    "DanfossDrive",
    "Drive",
    "DriveConfig",
    "G120Drive",
    "make_drive",
]
