"""Field transmitters: what stands between the plant's true values and the I/O module's loop currents.

Each analog channel of the I/O module has one transmitter. Every simulator step it turns the true
value into the loop current the card sees (``Transmitters.measure``), by these rules:

    lagged   y += (x - y) * (1 - exp(-dt / lag_s))        first-order lag (sensor and damping);
                                                           y starts at the first value seen
    measured y + offset + drift + N(0, noise)              noise std dev = noise_pct % of span,
                                                           a fresh draw every step
    output   lo + round((m - lo) / quantum) * quantum      quantum in the channel's units
    current  4 + 16 (v - lo) / span mA, saturated to 3.8..20.5 mA, 1 uA steps (NE43)

Defaults (``DEFAULT_SPECS``; a scenario's ``[sensors.<name>]`` table overrides any of them):
    channel         noise_pct  lag_s  quantum
    suction_kpa     0.1        0.5    1 uA of the loop = span / 16000 (the card's resolution)
    discharge_kpa   0.1        0.5    (so 0.0625 kPa, 0.1 kPa, 0.025 kPa, 0.0094 degC,
    remote_dp_kpa   0.1        1.0     0.075 m3/h for the reference station's channels)
    supply_temp_c   0.1        2.0
    flow_m3h        0.1        1.0
Every transmitter draws from its own random stream, seeded from the scenario seed and the
channel name: one seed, one run, whatever else changes.

Faults (``begin_fault(mode, ...)`` until ``end_fault()``; one at a time per transmitter):
    wire_break    0 uA (open loop)                   short      24000 uA (loop shorted)
    fail_low      3600 uA (NE43 failure signal)      fail_high  21000 uA
    stuck         the current of the moment the fault began, exactly, until it ends (no noise)
    drift         measured value + rate_per_h * hours since the fault began (channel units / h)
    offset        measured value + offset (channel units)
    intermittent  a loose terminal: in every period_s from the fault's start the loop opens
                  (0 uA, a wire break) for one burst of duty * period_s seconds at a random
                  offset within the period, otherwise the healthy current
The plant and the simulator never read these values back: they are what the agent gets to see.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable
from dataclasses import dataclass

from .iomodule import (
    DEFAULT_ANALOG,
    UA_FAIL_HIGH,
    UA_FAIL_LOW,
    UA_MAX_MEASURING,
    UA_MIN_MEASURING,
    UA_SHORT,
    UA_WIRE_BREAK,
    AnalogChannel,
    IoModule,
)

FIXED_CURRENT_MODES = {
    "wire_break": UA_WIRE_BREAK,
    "short": UA_SHORT,
    "fail_low": UA_FAIL_LOW,
    "fail_high": UA_FAIL_HIGH,
}
FAULT_MODES = tuple(FIXED_CURRENT_MODES) + ("stuck", "drift", "offset", "intermittent")
UA_PER_SPAN = 16000.0


@dataclass(frozen=True)
class TransmitterSpec:
    """Noise std dev (% of span), first-order lag (s) and output step (channel units; None = one
    uA of the loop)."""

    noise_pct: float = 0.1
    lag_s: float = 1.0
    quantum: float | None = None

    def __post_init__(self) -> None:
        for name in ("noise_pct", "lag_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name}: must be >= 0, got {value}")
        if self.quantum is not None and not (math.isfinite(self.quantum) and self.quantum >= 0):
            raise ValueError(f"quantum: must be >= 0, got {self.quantum}")


DEFAULT_SPECS = {
    "suction_kpa": TransmitterSpec(noise_pct=0.1, lag_s=0.5),
    "discharge_kpa": TransmitterSpec(noise_pct=0.1, lag_s=0.5),
    "remote_dp_kpa": TransmitterSpec(noise_pct=0.1, lag_s=1.0),
    "supply_temp_c": TransmitterSpec(noise_pct=0.1, lag_s=2.0),
    "flow_m3h": TransmitterSpec(noise_pct=0.1, lag_s=1.0),
}


class Transmitter:
    def __init__(self, channel: AnalogChannel, spec: TransmitterSpec, rng: random.Random) -> None:
        self.channel = channel
        self.spec = spec
        self._rng = rng
        self._gauss = rng.gauss
        span = channel.hi - channel.lo
        self._lo = channel.lo
        self._ua_per_unit = UA_PER_SPAN / span
        self._sigma = spec.noise_pct / 100.0 * span
        self._quantum = span / UA_PER_SPAN if spec.quantum is None else spec.quantum
        self._lagged: float | None = None
        self._decay_dt = -1.0
        self._decay = 0.0
        self.ua = channel.to_ua(channel.lo)
        # fault state
        self.mode: str | None = None
        self._since_s = 0.0
        self._stuck_ua = 0
        self._amount = 0.0  # offset, or drift per second
        self._period_s = 0.0
        self._burst_s = 0.0
        self._burst_period = -1
        self._burst_start_s = 0.0

    def begin_fault(
        self,
        mode: str,
        now_s: float,
        *,
        rate_per_h: float = 0.0,
        offset: float = 0.0,
        period_s: float = 30.0,
        duty: float = 0.2,
    ) -> None:
        if mode not in FAULT_MODES:
            raise ValueError(f"sensor fault mode {mode!r} is not one of {FAULT_MODES}")
        if mode == "intermittent" and not (period_s > 0 and 0 < duty < 1):
            raise ValueError(
                f"intermittent: need period_s > 0 and 0 < duty < 1, got {period_s}, {duty}"
            )
        self.mode = mode
        self._since_s = now_s
        self._stuck_ua = self.ua
        self._amount = rate_per_h / 3600.0 if mode == "drift" else offset
        self._period_s = period_s
        self._burst_s = duty * period_s
        self._burst_period = -1

    def end_fault(self) -> None:
        self.mode = None

    def update(self, value: float, now_s: float, dt_s: float) -> int:
        """The loop current (uA) for the true ``value`` at ``now_s``, ``dt_s`` after the last."""
        lagged = self._lagged
        if lagged is not None and dt_s == self._decay_dt and self.spec.lag_s:
            lagged += (value - lagged) * self._decay  # _lag's usual case, inline: every step
            self._lagged = lagged
        else:
            lagged = self._lag(value, dt_s)
        mode = self.mode  # None (no fault), the usual case: one `is` test, not each mode's
        if mode is not None:
            if mode in FIXED_CURRENT_MODES:
                self.ua = FIXED_CURRENT_MODES[mode]
                return self.ua
            if mode == "stuck":
                self.ua = self._stuck_ua
                return self.ua
        measured = lagged + (self._gauss(0.0, self._sigma) if self._sigma else 0.0)
        if mode is not None:
            if mode == "offset":
                measured += self._amount
            elif mode == "drift":
                measured += self._amount * (now_s - self._since_s)
        # channel.to_ua of the quantised value, inlined: this runs five times per plant step
        lo, q = self._lo, self._quantum
        if q > 0:
            measured = lo + round((measured - lo) / q) * q
        ua = 4000.0 + (measured - lo) * self._ua_per_unit
        ua = round(
            UA_MAX_MEASURING
            if ua > UA_MAX_MEASURING
            else (ua if ua > UA_MIN_MEASURING else UA_MIN_MEASURING)  # max(), without the call
        )
        if mode is not None and mode == "intermittent" and self._in_burst(now_s):
            ua = UA_WIRE_BREAK
        self.ua = ua
        return ua

    def _lag(self, value: float, dt_s: float) -> float:
        lag = self.spec.lag_s
        if self._lagged is None or lag == 0:
            self._lagged = value
            return value
        if dt_s != self._decay_dt:
            self._decay_dt = dt_s
            self._decay = 1.0 - math.exp(-dt_s / lag)
        self._lagged += (value - self._lagged) * self._decay
        return self._lagged

    def _in_burst(self, now_s: float) -> bool:
        elapsed = now_s - self._since_s
        period = math.floor(elapsed / self._period_s)
        if period != self._burst_period:
            self._burst_period = period
            self._burst_start_s = self._rng.uniform(0.0, self._period_s - self._burst_s)
        into = elapsed - period * self._period_s
        return self._burst_start_s <= into < self._burst_start_s + self._burst_s


class Transmitters:
    """One transmitter per analog channel, each with its own seeded random stream."""

    def __init__(
        self,
        channels: Iterable[AnalogChannel] = DEFAULT_ANALOG,
        specs: dict[str, TransmitterSpec] | None = None,
        seed: int = 0,
    ) -> None:
        specs = specs or {}
        self.by_name: dict[str, Transmitter] = {}
        for channel in channels:
            spec = specs.get(channel.name, DEFAULT_SPECS.get(channel.name, TransmitterSpec()))
            rng = random.Random(f"transmitter:{seed}:{channel.name}")
            self.by_name[channel.name] = Transmitter(channel, spec, rng)
        unknown = sorted(set(specs) - set(self.by_name))
        if unknown:
            raise KeyError(f"no analog channel {unknown[0]!r}; have {tuple(self.by_name)}")

    def __getitem__(self, name: str) -> Transmitter:
        try:
            return self.by_name[name]
        except KeyError:
            raise KeyError(f"no transmitter {name!r}; have {tuple(self.by_name)}") from None

    def measure(self, io: IoModule, name: str, value: float, now_s: float, dt_s: float) -> None:
        """Feed the true value through the transmitter into the I/O module's loop current."""
        try:
            transmitter = self.by_name[name]
        except KeyError:
            transmitter = self[name]  # raises, naming the transmitters there are
        io.set_current(name, transmitter.update(value, now_s, dt_s))
