"""What every simulated pump VFD shares, whatever its Modbus profile.

A profile subclass (abb.py, danfoss.py, g120.py) supplies the register map, decodes the control
word into a *drive state* and encodes the status word; this base owns the physics and supervision:

Motion (speed in % of nominal speed, on the virtual clock, exact for any dt):
- RUN: the ramp function generator (RFG) output moves linearly towards the target at
  100 / accel_s %/s going up and 100 / decel_s %/s going down (default 60 s for 0 -> 100 %: water
  hammer). Target = reference clamped to min_speed_pct..max_speed_pct (a negative reference counts
  as 0: pump drives have reverse disabled). RFG hold freezes the output; "RFG input zero" makes the
  target 0 (so the clamp gives min speed); "RFG output zero" brakes at the quick-stop rate.
- RAMP_STOP (OFF1 / stop): to 0 at the decel rate. QUICK_STOP (OFF3): to 0 at 100 / quick_stop_s.
- COAST (OFF2, trip, pulses off): speed decays as exp(-t / coast_tau_s) (inertia against the
  water, not a ramp) and counts as 0 below 0.5 %. A restart ramps up from the coasting speed.
- The ramp times accel_s / decel_s are the power-up values of each profile's ramp-time registers;
  a master that writes those registers changes the slopes from then on (out of range -> 03).
Electrical values (what the drive reports):
- power_kw: the simulator sets ``drive.load_kw`` every plant step to the electrical input power the
  plant computed for this pump (pump.py). Left at None, the drive estimates rated_kw * (s)^3.
  Pulses off -> 0 kW.
- current_a = power / (sqrt(3) * 400 V * cos phi 0.86): motor current at nominal voltage.
- dc_voltage_v = 1.35 * 400 V (rectified mains), 840 V while a DC overvoltage is injected.
- temperature_c: first-order lag (tau 300 s) towards ambient + 35 K * (current / rated current)^2;
  at least 95 degC while an overtemperature is injected.
Current limit (pumps are a rising-torque load: the drive lowers the frequency, it never draws more):
- limit = rated_current_a (default 200 A, a 110 kW 4-pole motor at 400 V) * current_limit_pct
  (default 110 %). While pulses are on and current_a > limit, a speed ceiling below the present
  speed is set: ceiling = speed * (limit / current)^g with g = (1 - exp(-dt / 0.05 s)) / 3, a step
  towards the speed where a cube-law load would fit (the plant answers a lower speed with less
  current, so the plant sees the sagged speed and the pump delivers less). Why that fast: a real
  drive's current controller (ABB DTC, Danfoss VVC+, Siemens Vdc/I-max controller) holds the
  current at its limit within tens of milliseconds by lowering the output frequency; the ceiling
  is that controller seen from the plant, a first-order lag of tau 0.05 s on a cube-law load, so a
  plant step of 0.2 s takes 98 % of the correction (a load steeper than the cube, as a pump
  pushing against other pumps' head, is slightly over-corrected: it undershoots the limit, then
  recovers at the acceleration rate). Below the limit the same step raises the ceiling, at most at
  the acceleration rate, and the ceiling is dropped once at max speed. The actual speed is
  min(RFG, ceiling); the RFG restarts from the sagged speed. ``current_limited`` says a ceiling
  holds the speed below its target (G120 ZSW1 bit 11 = 0, Danfoss STW bit 14 = 1). The limit is a
  drive parameter the master may write (each profile's register: p0640, 30.17, 4-18).
Motor overload (I^2 t, the drive's motor thermal model, IEC 60947-4-1 trip class behaviour):
- heat theta (per unit, steady state (I / rated_current_a)^2) follows
  d theta / dt = ((I / I_rated)^2 - theta) / tau, from 0 (cold) at power-up;
  tau = class_s / ln(7.2^2 / (7.2^2 - 1.05^2)) = 465 s for overload_trip_class 10 (a cold motor
  at 7.2 x rated current trips in 10 s; 1.05 x never trips).
- trip (vendor motor-overload code) when theta > 1.05^2; from cold: 1.2 x in 675 s, 1.5 x in
  313 s, running in the 110 % current limit in 1126 s. The cause stays until theta has cooled
  below 1.0 (about 45 s with the motor stopped); then a reset edge clears the trip.
Faults: ``inject_fault(kind)`` (OVERCURRENT, OVERTEMPERATURE, DC_OVERVOLTAGE) trips at once: pulses
off (coast), trip bit set, vendor fault code in the fault register. The condition stays until
``clear_fault(kind)``; a reset edge in the control word while any condition is active does nothing.
After a successful reset the drive needs a new start sequence (profile-specific).
Communication loss: supervision starts with the first request heard (``heard(now_s)``). When
``now_s - last_heard_s > comm_timeout_s`` at a step, the configured action applies:
- "fault": trip with the vendor's comm-loss code (condition clears on the next request; then reset);
- "hold": keep running at the speed the drive had at the moment of loss (alarm bit set);
- "safe_speed": ramp to safe_speed_pct (clamped to min..max) if running (alarm bit set);
- "none": nothing.
With hold / safe_speed the drive follows its registers again as soon as a request arrives.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

from ..device import Device, RegisterBank

OVERCURRENT = "overcurrent"
OVERTEMPERATURE = "overtemperature"
DC_OVERVOLTAGE = "dc_overvoltage"
COMM_LOSS = "comm_loss"
MOTOR_OVERLOAD = "motor_overload"  # raised by the I^2 t model, not injectable
INJECTABLE_FAULTS = (OVERCURRENT, OVERTEMPERATURE, DC_OVERVOLTAGE)

COMM_LOSS_ACTIONS = ("fault", "hold", "safe_speed", "none")

# Motions the base integrates; the profile's state machine picks one.
COAST = "coast"  # pulses off (also "stopped" once the speed is 0)
RUN = "run"
RAMP_STOP = "ramp_stop"
QUICK_STOP = "quick_stop"

SQRT3 = math.sqrt(3.0)
STANDSTILL_PCT = 0.5  # a coasting pump below this counts as stopped
DC_OVERVOLTAGE_V = 840.0
OVERTEMPERATURE_C = 95.0
TEMPERATURE_TAU_S = 300.0
TEMPERATURE_RISE_K = 35.0
CURRENT_CONTROL_TAU_S = 0.05  # the drive's current controller: tens of ms (see docstring)
CURRENT_LIMIT_MIN_PCT = 10.0  # a writable current limit, % of rated_current_a
CURRENT_LIMIT_MAX_PCT = 150.0  # the power unit's maximum current
OVERLOAD_PICKUP = 1.05  # x rated current that never trips (IEC 60947-4-1)
OVERLOAD_TRIP_THETA = OVERLOAD_PICKUP**2
OVERLOAD_RESET_THETA = 1.0
# Class N: a cold motor at 7.2 x rated current trips within N seconds.
CLASS_TAU_PER_S = 1.0 / math.log(7.2**2 / (7.2**2 - OVERLOAD_TRIP_THETA))


@dataclass
class DriveConfig:
    """Drive parameters (the values a commissioning engineer would set), with the defaults of the
    reference station's 110 kW / 1480 rpm pumps."""

    nominal_rpm: float = 1480.0
    nominal_hz: float = 50.0
    rated_kw: float = 110.0
    rated_current_a: float = 200.0  # motor nameplate current at 400 V
    current_limit_pct: float = 110.0  # of rated_current_a
    overload_trip_class: float = 10.0  # I^2 t model: seconds to trip at 7.2 x from cold
    voltage_v: float = 400.0
    cos_phi: float = 0.86
    accel_s: float = 60.0  # 0 -> 100 %; power-up value of the ramp-up register
    decel_s: float = 60.0  # 100 -> 0 %; power-up value of the ramp-down register
    quick_stop_s: float = 10.0  # 100 -> 0 % on OFF3
    coast_tau_s: float = 8.0
    min_speed_pct: float = 50.0
    max_speed_pct: float = 100.0
    at_setpoint_band_pct: float = 1.0
    comm_timeout_s: float = 10.0
    comm_loss_action: str = "fault"
    safe_speed_pct: float = 70.0
    ambient_c: float = 30.0

    def __post_init__(self) -> None:
        positive = (
            "nominal_rpm",
            "nominal_hz",
            "rated_kw",
            "rated_current_a",
            "overload_trip_class",
            "voltage_v",
            "coast_tau_s",
        )
        for name in positive + ("comm_timeout_s",):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}: must be > 0, got {getattr(self, name)}")
        for name in ("accel_s", "decel_s", "quick_stop_s", "at_setpoint_band_pct"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name}: must be >= 0, got {getattr(self, name)}")
        if not 10 <= self.current_limit_pct <= 200:
            raise ValueError(
                f"current_limit_pct: must be within 10..200 % of rated current, got "
                f"{self.current_limit_pct}"
            )
        if not 0 < self.cos_phi <= 1:
            raise ValueError(f"cos_phi: must be in (0, 1], got {self.cos_phi}")
        if not 0 <= self.min_speed_pct <= self.max_speed_pct <= 120:
            raise ValueError(
                f"min_speed_pct/max_speed_pct: need 0 <= min <= max <= 120, got "
                f"{self.min_speed_pct}/{self.max_speed_pct}"
            )
        if self.comm_loss_action not in COMM_LOSS_ACTIONS:
            raise ValueError(
                f"comm_loss_action: {self.comm_loss_action!r} is not one of {COMM_LOSS_ACTIONS}"
            )
        if not 0 <= self.safe_speed_pct <= self.max_speed_pct:
            raise ValueError(
                f"safe_speed_pct: must be within 0..max_speed_pct, got {self.safe_speed_pct}"
            )

    @property
    def current_limit_a(self) -> float:
        return self.rated_current_a * self.current_limit_pct / 100.0

    def accepts_current_limit_pct(self, pct: float) -> bool:
        """A written current limit the drive takes: 10 % of the motor's rated current up to the
        power unit's maximum current, 150 % of it here (ACS580 30.17, FC 202 4-18, G120 p0640 all
        cap the limit at the power unit's maximum; below 10 % this simulator refuses)."""
        return CURRENT_LIMIT_MIN_PCT <= pct <= CURRENT_LIMIT_MAX_PCT

    @property
    def thermal_tau_s(self) -> float:
        return self.overload_trip_class * CLASS_TAU_PER_S


class Drive(Device):
    """Base VFD. Subclasses define FAULT_CODES, ``_build_registers``, ``_evaluate`` and
    ``status_word``; they call ``_control_written`` when the control word register is written."""

    PROFILE = ""
    FAULT_CODES: dict[str, int] = {}
    READ_ONLY_CODE = 2

    def __init__(self, unit: int, config: DriveConfig | None = None) -> None:
        super().__init__(unit)
        # A private copy: some profiles let the master write ramp times.
        self.config = replace(config) if config is not None else DriveConfig()
        self.speed_pct = 0.0  # actual speed = RFG output while pulses are on
        self.reference_pct = 0.0  # last reference written, in % of nominal speed
        self.motion = COAST
        self.rfg_hold = False
        self.rfg_input_zero = False
        self.rfg_output_zero = False
        self.load_kw: float | None = None
        self.temperature_c = self.config.ambient_c
        self.motor_theta = 0.0  # I^2 t heat, per unit of the rated-current steady state
        self.ceiling_pct: float | None = None  # current-limit speed ceiling, None = inactive
        self.energy_kwh = 0.0
        self.tripped = False
        self.trip_kind: str | None = None
        self.conditions: set[str] = set()  # fault causes still present
        self.comm_lost = False
        self._held_pct: float | None = None
        self.control_word = 0  # last control word the drive acted on
        self.now_s = 0.0
        self._factors_dt = -1.0  # the dt and trip class of the step factors below
        self._factors_class = 0.0
        self._heat_k = 0.0
        self._theta_k = 0.0
        self._limit_k = 0.0
        self.bank = RegisterBank(self.READ_ONLY_CODE)
        self._build_registers()

    # --- the Modbus face -------------------------------------------------------------------------
    def read_holding_registers(self, address: int, count: int) -> list[int]:
        return self.bank.read(address, count)

    def write_register(self, address: int, value: int) -> None:
        self.bank.write(address, (value,))

    def write_registers(self, address: int, values: Sequence[int]) -> None:
        self.bank.write(address, values)

    def heard(self, now_s: float) -> None:
        self.last_heard_s = now_s  # Device.heard, inline: every request
        self.requests_heard += 1
        if self.comm_lost:
            self.comm_lost = False
            self._held_pct = None
            self.conditions.discard(COMM_LOSS)

    # --- simulator face --------------------------------------------------------------------------
    def inject_fault(self, kind: str) -> None:
        if kind not in INJECTABLE_FAULTS:
            raise ValueError(f"fault kind {kind!r} is not one of {INJECTABLE_FAULTS}")
        self.conditions.add(kind)
        self._trip(kind)

    def clear_fault(self, kind: str | None = None) -> None:
        """Remove one fault cause (all when None); the drive still needs a reset edge."""
        if kind is None:
            self.conditions.clear()
        else:
            self.conditions.discard(kind)

    @property
    def fault_code(self) -> int:
        """Vendor code of the trip (0 when not tripped)."""
        return self.FAULT_CODES[self.trip_kind] if self.tripped and self.trip_kind else 0

    @property
    def pulses_on(self) -> bool:
        """The inverter is modulating (running, ramping or quick-stopping): it draws power."""
        return self.motion != COAST

    running = pulses_on  # the name plant.set_pump(index, speed_ratio, running) expects

    @property
    def speed_ratio(self) -> float:
        return self.speed_pct / 100.0

    @property
    def rpm(self) -> float:
        return self.speed_pct / 100.0 * self.config.nominal_rpm

    @property
    def frequency_hz(self) -> float:
        return self.speed_pct / 100.0 * self.config.nominal_hz

    @property
    def power_kw(self) -> float:
        if not self.pulses_on:
            return 0.0
        if self.load_kw is None:
            return self.config.rated_kw * self.speed_ratio**3
        return max(0.0, self.load_kw)

    @property
    def current_a(self) -> float:
        return self.power_kw * 1000.0 / (SQRT3 * self.config.voltage_v * self.config.cos_phi)

    @property
    def dc_voltage_v(self) -> float:
        return (
            DC_OVERVOLTAGE_V if DC_OVERVOLTAGE in self.conditions else 1.35 * self.config.voltage_v
        )

    @property
    def reported_temperature_c(self) -> float:
        if OVERTEMPERATURE in self.conditions:
            return max(self.temperature_c, OVERTEMPERATURE_C)
        return self.temperature_c

    @property
    def alarm(self) -> bool:
        """Warning without trip: supervising a lost link (hold / safe speed)."""
        return self.comm_lost and not self.tripped

    @property
    def target_pct(self) -> float:
        """Where the RFG heads while running."""
        c = self.config
        if self.comm_lost and c.comm_loss_action == "safe_speed":
            wanted = c.safe_speed_pct
        elif self.comm_lost and self._held_pct is not None:
            wanted = self._held_pct
        elif self.rfg_input_zero:
            wanted = 0.0
        else:
            wanted = self.reference_pct
        # min(max_speed, max(min_speed, wanted)), without the calls: every step while running
        low = c.min_speed_pct
        if not wanted > low:
            wanted = low
        high = c.max_speed_pct
        return wanted if wanted < high else high

    @property
    def current_limited(self) -> bool:
        """The current limit holds the speed below where the RFG would take it."""
        return (
            self.ceiling_pct is not None  # (first: no ceiling is the usual case)
            and self.pulses_on
            and self.ceiling_pct < self.target_pct - self.config.at_setpoint_band_pct
        )

    @property
    def at_setpoint(self) -> bool:
        return (
            self.motion == RUN
            and not self.rfg_output_zero
            and abs(self.speed_pct - self.target_pct) <= self.config.at_setpoint_band_pct
        )

    @property
    def reference_clamped(self) -> bool:
        """The reference lies outside min..max speed (the drive runs at the limit)."""
        return not self.config.min_speed_pct <= self.reference_pct <= self.config.max_speed_pct

    def step(self, now_s: float, dt_s: float) -> None:
        """One plant step. The parts are written out where they run every step (the same
        expressions as the properties and helpers they stand for); their factors exp(-dt / tau)
        are computed once per dt."""
        self.now_s = now_s
        c = self.config
        heard = self.last_heard_s
        if heard is not None and not self.comm_lost and now_s - heard > c.comm_timeout_s:
            self._supervise_link(now_s)
        dt = dt_s if dt_s > 0.0 else 0.0  # max(0.0, dt_s), without the call (as below)
        if dt != self._factors_dt or c.overload_trip_class != self._factors_class:
            self._factors_dt = dt
            self._factors_class = c.overload_trip_class
            self._heat_k = 1.0 - math.exp(-dt / TEMPERATURE_TAU_S)
            self._theta_k = 1.0 - math.exp(-dt / c.thermal_tau_s)
            self._limit_k = (1.0 - math.exp(-dt / CURRENT_CONTROL_TAU_S)) / 3.0
        self._evaluate(False)
        moving = self.speed_pct > 0
        if self.motion != COAST or self.speed_pct != 0.0:
            self._limit_current(dt)
            self._integrate(dt)
            if (self.speed_pct > 0) != moving:
                # standstill ends OFF1 / OFF3 (with the same inputs a state is its own successor)
                self._evaluate(False)
        else:  # pulses off at standstill (a standby drive): no ceiling, the speed stays 0
            self.ceiling_pct = None
        # current_a; the motor's heat (temperature, then the I^2 t model: docstring)
        if self.motion == COAST:
            kw = 0.0
        else:
            load = self.load_kw
            if load is None:
                kw = c.rated_kw * (self.speed_pct / 100.0) ** 3
            else:
                kw = load if load > 0.0 else 0.0
        current = kw * 1000.0 / (SQRT3 * c.voltage_v * c.cos_phi)
        ratio = current / c.rated_current_a
        goal = c.ambient_c + TEMPERATURE_RISE_K * ratio**2
        self.temperature_c += (goal - self.temperature_c) * self._heat_k
        self.motor_theta += (ratio * ratio - self.motor_theta) * self._theta_k
        if self.motor_theta > OVERLOAD_TRIP_THETA and MOTOR_OVERLOAD not in self.conditions:
            self.conditions.add(MOTOR_OVERLOAD)
            self._trip(MOTOR_OVERLOAD)
            kw = 0.0  # pulses off
        elif self.motor_theta < OVERLOAD_RESET_THETA and MOTOR_OVERLOAD in self.conditions:
            self.conditions.discard(MOTOR_OVERLOAD)
        self.energy_kwh += kw * dt / 3600.0

    # --- internals -------------------------------------------------------------------------------
    def _trip(self, kind: str) -> None:
        if not self.tripped:
            self.tripped = True
            self.trip_kind = kind
        self._evaluate(False)

    def _try_reset(self) -> bool:
        """A reset edge arrived: clear the trip if no cause remains."""
        if not self.tripped or self.conditions:
            return False
        self.tripped = False
        self.trip_kind = None
        return True

    def _supervise_link(self, now_s: float) -> None:
        c = self.config
        if self.last_heard_s is None or self.comm_lost or c.comm_loss_action == "none":
            return
        if now_s - self.last_heard_s <= c.comm_timeout_s:
            return
        self.comm_lost = True
        if c.comm_loss_action == "fault":
            self.conditions.add(COMM_LOSS)
            self._trip(COMM_LOSS)
        elif c.comm_loss_action == "hold":
            self._held_pct = self.speed_pct

    def _control_written(self, word: int) -> None:
        """Hook for the control-word register; profiles decide what the word means."""
        reset_edge = bool(word & 0x80) and not self.control_word & 0x80
        self.control_word = word
        self._evaluate(reset_edge)

    def _integrate(self, dt: float) -> None:
        c = self.config
        if self.motion == COAST:
            self.speed_pct *= math.exp(-dt / c.coast_tau_s)
            if self.speed_pct < STANDSTILL_PCT:
                self.speed_pct = 0.0
            return
        if self.motion == RUN and self.rfg_output_zero:
            self.speed_pct = _ramp(self.speed_pct, 0.0, c.quick_stop_s, c.quick_stop_s, dt)
        elif self.motion == RUN and not self.rfg_hold:
            self.speed_pct = _ramp(self.speed_pct, self.target_pct, c.accel_s, c.decel_s, dt)
        elif self.motion == RAMP_STOP:
            self.speed_pct = _ramp(self.speed_pct, 0.0, c.accel_s, c.decel_s, dt)
        elif self.motion == QUICK_STOP:
            self.speed_pct = _ramp(self.speed_pct, 0.0, c.quick_stop_s, c.quick_stop_s, dt)
        if self.ceiling_pct is not None and self.speed_pct > self.ceiling_pct:
            self.speed_pct = self.ceiling_pct

    def _limit_current(self, dt: float) -> None:
        """Move the speed ceiling from the current the present load draws (rules: docstring)."""
        c = self.config
        if self.motion == COAST:  # pulses off
            self.ceiling_pct = None
            return
        load = self.load_kw  # current_a (pulses on), inline: every step
        if load is None:
            kw = c.rated_kw * (self.speed_pct / 100.0) ** 3
        else:
            kw = load if load > 0.0 else 0.0
        current = kw * 1000.0 / (SQRT3 * c.voltage_v * c.cos_phi)
        limit = c.rated_current_a * c.current_limit_pct / 100.0  # current_limit_a
        if current <= limit and self.ceiling_pct is None:
            return
        base = self.speed_pct
        if self.ceiling_pct is not None and self.ceiling_pct < base:
            base = self.ceiling_pct
        ceiling = base * (limit / current) ** self._limit_k if current > 0.0 else math.inf
        if current <= limit:  # recovering: no faster than the acceleration ramp
            rise = math.inf if c.accel_s == 0 else 100.0 / c.accel_s * dt
            ceiling = min(ceiling, self.ceiling_pct + rise)
        self.ceiling_pct = None if ceiling >= c.max_speed_pct else ceiling

    def _set_reference(self, percent: float) -> None:
        self.reference_pct = max(0.0, percent)

    def _reference_limit(self, full_scale: int) -> int:
        """Largest |raw reference| accepted: full scale times max speed (100 % by default)."""
        return round(full_scale * max(100.0, self.config.max_speed_pct) / 100.0)

    # Profile hooks.
    def _build_registers(self) -> None:
        raise NotImplementedError

    def _evaluate(self, reset_edge: bool) -> None:
        raise NotImplementedError

    def status_word(self) -> int:
        raise NotImplementedError


def _ramp(value: float, target: float, up_s: float, down_s: float, dt: float) -> float:
    """Move ``value`` towards ``target`` at 100 % per ``up_s`` (rising) or ``down_s`` (falling)."""
    if target > value:
        return target if up_s == 0 else min(target, value + 100.0 / up_s * dt)
    return target if down_s == 0 else max(target, value - 100.0 / down_s * dt)
