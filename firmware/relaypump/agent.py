"""The station agent: one object that owns the snapshot and every concern, sans-IO.

The runtime (boards' main.py, the simulator's in-process runner, the MicroPython VM in lockstep)
does the I/O and keeps the time; the agent only decides. Two faces:

    Field side, as fast as the bus allows:
        frame = agent.next_request(now_ms)   bytes to put on the RS-485 wire, or None
        agent.receive(data)                  bytes read from the wire
    Control tick, every pid.period_ms:
        agent.tick(now_ms)

One tick, in the order of the data flow (DESIGN.md):
    fieldbus -> snapshot (drive words, loop currents) -> sensors (scaling, NE43, plausibility)
    -> protection.evaluate (limits, stops, lockouts) -> control.regulate (setpoint, PI, slew)
    -> staging.update (which pumps) -> control.drive (per-pump commands) -> protection.enforce
    (last guard) -> fieldbus writes the commands during the next cycle.
Rules:
- Nothing is decided before the first complete poll cycle: a reset agent first learns what runs
  and adopts it (a running drive is written RUN at its actual speed, never the default STOP;
  then control.resume, staging.resume), so a restart never slams a pump nor counts a start.
- A lost drive that was running goes on at its comm-loss speed (protection assumes so in every
  hydraulic figure): staging gets the station flow less what it is estimated to deliver, and the
  fieldbus keeps probing it. A pump beyond its run-out (protection) or its motor rating (control)
  makes staging judge one more pump at once.
- A station stop is staggered (protection.hold_mask): the pumps not yet told to stop hold their
  reference while one ramps down; if the cause clears first, the pumps still held run on
  (staging.resume, control.rejoin) instead of stopping.
- A tripped drive is offered a fault reset (a 0->1 edge) after drive_reset_delay_s, at most
  drive_resets_per_hour times an hour; staging has already replaced it with the standby.
- Run time, starts and energy are counted here from what the drives report (state.py keeps them
  exact for years); the runtime saves the state when ``state.urgent`` is set, or periodically.
- The pump model staging and control share is calibrated online against the real pumps
  (pumpmodel.Calibration: per-pump head and efficiency factors, events when they move).
- Events of every concern go to one ring (events.py) that the uplink drains.
- One float-heavy step a tick (floats are 16-byte heap objects in MicroPython; a tick may
  allocate 1 KiB): staging's count evaluation, control's pump-count feedforward and the pump
  model's calibration each build a few hundred bytes of floats, on top of what every tick
  builds. Staging goes first; while it evaluates (staging.busy) the feedforward waits, and the
  calibration's step waits for a tick where neither ran.
"""

from micropython import const

from . import codes
from .control import Controller
from .events import EventRing
from .fieldbus import Fieldbus
from .plausibility import Plausibility
from .protection import Protection
from .pumpmodel import Calibration
from .sensors import Sensors
from .snapshot import CMD_RUN, DRIVE_RUNNING, DRIVE_TRIPPED, Snapshot
from .staging import Staging
from .state import StationState
from .ticks import ticks_diff as _ticks_diff

_G = 9.80665
_EVENT_CAPACITY = const(32)  # the uplink drains 20 a second (station_uplink.EVENTS_PER_STEP)
_HOUR_MS = const(3600000)


class Agent:
    def __init__(self, config, state=None):
        n = len(config["pumps"])  # the config dict is not kept: each part copies what it needs
        self.pump_count = n
        self.snapshot = Snapshot(n)
        self.events = EventRing(_EVENT_CAPACITY)
        self.state = state if state is not None else StationState(n)
        self.sensors = Sensors(config["io"], self.snapshot)
        self.fieldbus = Fieldbus(config, self.snapshot, self.sensors, self._bus_event)
        self.plausibility = Plausibility(
            config, self.sensors, self.snapshot, self.fieldbus, self.events
        )
        self.protection = Protection(config, self.events, self.state)
        self.control = Controller(config)
        self.staging = Staging(config, self.control.model)
        # the pump model staging and control share, calibrated online against the real pumps
        self.calibration = Calibration(self.control.model, n, self.events)
        self.staging.head_factor = self.calibration.head_factor  # (staging's "Head at the floor")
        self.staging.head_samples = self.calibration.head_samples
        self.plausibility.head_model = self.control.model  # the pressure substitutes' head
        self.kpa_per_m = config["pump_model"]["density_kg_m3"] * _G / 1000.0
        self._head_of = self._required_head_m  # bound once: a bound method is an object
        self.period_ms = int(config["pid"]["period_ms"])
        protection = config["protection"]
        self._reset_delay_ms = int(protection.get("drive_reset_delay_s", 300)) * 1000
        self._resets_per_hour = int(protection.get("drive_resets_per_hour", 3))
        self.enabled = (1 << n) - 1  # pumps the operator allows (commands, issue of the uplink)
        self.primed = False
        self._adopted = 0  # drives whose RUN was mirrored before the first tick (bit mask)
        self.ticks = 0
        self._last_ms = 0
        self._was_running = 0  # pumps running at the last tick (bit mask)
        self._held = 0  # the pumps a staggered stop held at the last tick (protection.hold_mask)
        self._tripped_ms = [0] * n
        self._was_tripped = 0  # pumps tripped at the last tick (bit mask)
        self._resets = [0] * n  # resets offered in the present hour
        self._reset_hour_ms = [0] * n
        self._energy_kw = [0.0] * n  # last power reading per pump and its watts (converted once)
        self._energy_w = [0] * n

    # -- field side -------------------------------------------------------------------------------

    def next_request(self, now_ms):
        fb = self.fieldbus
        if self.primed:
            return fb.next_request(now_ms)
        # Before the first tick decides: a drive found running keeps running at its actual speed
        # (the default command is STOP: writing it would slam a pump after every agent reset).
        commands = self.snapshot.commands
        for i in range(self.pump_count):
            if self._adopted & (1 << i) or not fb.online(i) or fb.state[i] != DRIVE_RUNNING:
                continue
            speed = fb.profiles[i].speed_pct(fb.actual_raw[i])
            if speed >= self.control.min_pct:
                commands[i].command = CMD_RUN
                commands[i].speed_pct = speed
                self._adopted |= 1 << i
        return fb.next_request(now_ms)

    def receive(self, data):
        return self.fieldbus.receive(data)

    def _bus_event(self, code, pump, now_ms):
        severity = codes.SEVERITY_ALARM
        value = self.fieldbus.failures[pump]
        if code == codes.EVENT_DRIVE_COMM_RESTORED:
            severity = codes.SEVERITY_NOTICE
        elif code == codes.EVENT_DRIVE_RAMP_MISMATCH or code == codes.EVENT_DRIVE_LIMIT_MISMATCH:
            severity = codes.SEVERITY_WARNING
            value = self.fieldbus.ramp_seen_ds[pump]
        self.events.push(code, severity, pump + 1, value, now_ms)

    # -- control tick -----------------------------------------------------------------------------

    def tick(self, now_ms):
        fb = self.fieldbus
        snap = self.snapshot
        snap.now_ms = now_ms
        fb.update_snapshot()
        self.plausibility.update(now_ms)  # marks suspect transmitters before their fallbacks
        self.sensors.update(now_ms)
        if not self.primed:
            if not fb.cycles:
                return  # wait for the first complete poll cycle
            self.primed = True
            self._last_ms = now_ms
            self._was_running = self._running_mask()  # adopted, not started: no start counted
            self.control.resume(snap)
            self.staging.resume(self._was_running, self._available_mask())
            self.events.push(codes.EVENT_AGENT_STARTED, codes.SEVERITY_NOTICE, 0, 0, now_ms)
        dt_ms = _ticks_diff(now_ms, self._last_ms)
        if dt_ms < 0:
            dt_ms = 0
        self._last_ms = now_ms
        self.ticks += 1

        protection = self.protection
        protection.evaluate(snap, now_ms)
        control = self.control
        running = self._running_mask()
        available = self._available_mask()
        if self._held and not protection.stop_all:
            # a staggered stop called off: the pumps it still held run on, not stopped
            keep = self._held & running & available
            if keep:
                self.staging.resume(keep, available)
                control.rejoin(keep)
        self._held = protection.hold_mask
        control.regulate(now_ms, snap, protection.max_speed_pct)
        if not protection.start_allowed:
            available &= running
        flow = snap.flow_m3h
        q = flow.value
        if protection.lost_flow_x10:  # a lost drive running on carries part of it
            q = q - protection.lost_flow_m3h()
        staging = self.staging
        mask = staging.update(
            now_ms,
            q,
            flow.usable(),
            self._head_of,  # staging asks only when it evaluates the count
            available,
            running,
            self.state.run_s,
            not protection.stop_all,
            protection.runout or control.overloaded,
            control.at_floor and not protection.lost_flow_x10 and not protection.runout,
        )
        busy = staging.busy  # (see "One float-heavy step a tick" in the rules)
        control.drive(now_ms, snap, mask, staging.exercise_mask, protection.hold_mask, busy)
        protection.enforce(snap.commands)
        for k in range(staging.event_count):  # staging's events of this tick into the ring
            self.events.push(
                staging.event_code[k],
                codes.SEVERITY_INFO,
                staging.event_pump[k],
                staging.event_reason[k],
                now_ms,
            )
        self._offer_resets(now_ms)
        self._count(dt_ms)
        self.calibration.update(now_ms, snap, self.kpa_per_m, busy or control.fed_forward)

    def _required_head_m(self, flow_m3h):
        """The station head (m) the present setpoint needs at the station flow (staging's
        target; the network sees all of it, a lost pump's share included)."""
        return self.control.setpoint.required_head_m(self.snapshot.flow_m3h.value, self.kpa_per_m)

    def _running_mask(self):
        mask = 0
        pumps = self.snapshot.pumps
        for i in range(self.pump_count):
            if pumps[i].online and pumps[i].state == DRIVE_RUNNING:
                mask |= 1 << i
        return mask

    def _available_mask(self):
        mask = 0
        pumps = self.snapshot.pumps
        protection = self.protection
        for i in range(self.pump_count):
            p = pumps[i]
            if (
                p.online
                and p.state != DRIVE_TRIPPED
                and protection.allowed[i]
                and not protection.pump_locked[i]
                and self.enabled & (1 << i)
            ):
                mask |= 1 << i
        return mask

    def _offer_resets(self, now_ms):
        """A tripped drive gets a reset edge after the delay, a few times an hour at most."""
        pumps = self.snapshot.pumps
        for i in range(self.pump_count):
            tripped = pumps[i].online and pumps[i].state == DRIVE_TRIPPED
            if tripped and not self._was_tripped & (1 << i):
                self._tripped_ms[i] = now_ms
                self.events.push(
                    codes.EVENT_PUMP_TRIPPED,
                    codes.SEVERITY_ALARM,
                    i + 1,
                    pumps[i].fault_code,
                    now_ms,
                )
            if tripped:
                self._was_tripped |= 1 << i
            else:
                self._was_tripped &= ~(1 << i)
            if not tripped:
                continue
            if _ticks_diff(now_ms, self._reset_hour_ms[i]) >= _HOUR_MS:
                self._reset_hour_ms[i] = now_ms
                self._resets[i] = 0
            if (
                _ticks_diff(now_ms, self._tripped_ms[i]) >= self._reset_delay_ms
                and self._resets[i] < self._resets_per_hour
                and not self.snapshot.commands[i].reset
            ):
                self.snapshot.commands[i].reset = True
                self._resets[i] += 1
                self._tripped_ms[i] = now_ms  # the next offer waits the delay again

    def _count(self, dt_ms):
        state = self.state
        pumps = self.snapshot.pumps
        for i in range(self.pump_count):
            p = pumps[i]
            running = p.online and p.state == DRIVE_RUNNING
            if running:
                state.add_run(i, dt_ms)
                kw = p.power_kw
                if kw != self._energy_kw[i]:  # a new reading (floats are heap objects)
                    self._energy_kw[i] = kw
                    self._energy_w[i] = round(kw * 1000.0) if kw > 0.0 else 0  # as add_energy
                state.add_energy_w(i, self._energy_w[i], dt_ms)
                if not self._was_running & (1 << i):
                    state.count_start(i)
            if running:
                self._was_running |= 1 << i
            else:
                self._was_running &= ~(1 << i)
