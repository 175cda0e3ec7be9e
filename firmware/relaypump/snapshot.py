"""The station snapshot: what the agent knows of its plant at one tick, and what it asks of it.

The field side (fieldbus, drive profiles, sensors) writes measurements into one Snapshot; protection,
control and staging read it and write DriveCommands; the field side turns those into register
writes. All objects are created once at start-up and updated in place: a tick allocates nothing here.

Units: kPa gauge, degC, m3/h, % of nominal speed, A, kW, ms (ticks).
"""

from micropython import const

# Quality of a measurement, worst last.
GOOD = const(0)
HELD = const(1)  # last good value kept for a short while (a missed poll, a rate-of-change spike)
SUBSTITUTE = const(2)  # the configured fallback value or source (another sensor, a curve)
BAD = const(3)  # no usable value: who depends on it goes to its safe state

# Drive state decoded from the vendor status word (see drives.py).
DRIVE_UNKNOWN = const(0)  # never heard, or lost
DRIVE_NOT_READY = const(1)
DRIVE_READY = const(2)  # ready to run, not running
DRIVE_RUNNING = const(3)
DRIVE_TRIPPED = const(4)

# What the agent asks of a drive.
CMD_STOP = const(0)  # ramp down to zero along the drive's deceleration ramp
CMD_RUN = const(1)
CMD_COAST = const(2)  # OFF2: remove torque at once (only for faults that demand it)
CMD_QUICK_STOP = const(3)  # OFF3


class Measurement:
    __slots__ = ("value", "quality", "at_ms")

    def __init__(self):
        self.value = 0.0
        self.quality = BAD
        self.at_ms = 0

    def usable(self):
        return self.quality != BAD


class PumpStatus:
    """One pump as its drive reports it."""

    __slots__ = (
        "online",
        "state",
        "speed_pct",
        "current_a",
        "power_kw",
        "fault_code",
        "at_ms",
    )

    def __init__(self):
        self.online = False  # False once the fieldbus declares the drive lost
        self.state = DRIVE_UNKNOWN
        self.speed_pct = 0.0  # actual speed
        self.current_a = 0.0
        self.power_kw = 0.0
        self.fault_code = 0  # vendor fault code as read from the drive, 0 = none
        self.at_ms = 0


class DriveCommand:
    """What the agent wants from one drive this tick; the fieldbus writes it every poll cycle."""

    __slots__ = ("command", "speed_pct", "reset")

    def __init__(self):
        self.command = CMD_STOP
        self.speed_pct = 0.0  # reference, already clamped and slew-limited by control
        self.reset = False  # request a fault-reset edge


class Snapshot:
    def __init__(self, pump_count):
        self.now_ms = 0
        self.suction_kpa = Measurement()
        self.discharge_kpa = Measurement()
        self.remote_dp_kpa = Measurement()
        self.supply_temp_c = Measurement()
        self.flow_m3h = Measurement()
        self.outdoor_temp_c = Measurement()
        self.source_running = Measurement()  # 1.0 / 0.0 from a digital input
        self.bypass_open = Measurement()
        self.io_online = False
        self.pumps = [PumpStatus() for _ in range(pump_count)]
        self.commands = [DriveCommand() for _ in range(pump_count)]
