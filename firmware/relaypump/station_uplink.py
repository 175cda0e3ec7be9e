"""The uplink inside the agent's one loop: telemetry, events, signed commands and the wall clock
over one MQTT session (mqtt.py), with the durable outbox (outbox.py) in between.

    up = Uplink(config, runtime, now_ms)   # config with an "mqtt" section (config.py)
    up.sample(agent)       after every control tick: the analog values summed for the next frame
    up.step(now_ms) -> ms  outside the tick, between bus transactions: link, session events,
                           commands, telemetry, events, outbox -> session, NTP; returns the ms
                           until it wants to run again (50)
    up.flush(now_ms)       before a planned reset: the outbox's ack mark saved

The board (runtime.py lists the rest of its interface) offers, optionally:
    board.net_link(session, mqtt_cfg) -> an object with step(now_ms) that moves the session's
                           bytes (netio.Link's interface), or None: no network (the outbox fills
                           and waits). A board without net_link gets netio.Link to mqtt.host/port
                           (TLS with ca_file), or none where there is no socket module.
    board.ntp_link(clock, ntp_cfg) -> an object with step(now_ms) that sets the wall clock, or
                           None. Without it: NtpLink (SNTP over UDP to ntp.server) where there is
                           a socket module.
The simulator's board (host_tools/sim/vm_side/sim_board.py) hands out what its host set: a real
socket link to a test's Mosquitto and the simulation's virtual wall time.

Rules:
- The uplink never blocks the control: every socket is non-blocking, the runtime calls ``step``
  only while no bus transaction is pending, and a failure of the uplink at start (a missing key
  file) is logged and leaves the station running without it (runtime.py). A file system error
  (the outbox on flash) is counted in ``errors`` and logged once per message; it never reaches
  the loop (which would reset the board). A frame the flash refuses ends its own job only: the
  telemetry frame is lost, an event waits in the agent's ring for the next step, and the acks
  and the backlog still go to the session. Elsewhere the error ends that step (tried again at
  the next).
- Telemetry every outbox.telemetry_s (default 10 s): the analog values (suction, discharge,
  remote DP, supply temperature, flow) as the mean of the control ticks' values since the last
  frame (a BAD tick is left out; none usable: NO_READING); setpoint, mode, alarm bits, energy and
  the pumps (speed, current, power, state, fault code) as they are at the frame. No return
  temperature is measured: NO_READING. The frame goes into the outbox (its seq and time set
  there), which hands frames to the session in order while the session has room; a frame leaves
  the outbox at its PUBACK only.
- The session lives as long as the uplink and keeps its own window across reconnects (it resends
  with DUP), so the outbox is never rewound; a reboot loads the outbox with nothing handed out.
- Events: the agent's event ring is drained into event frames, at most EVENTS_PER_STEP a step
  and none in a step that appends a telemetry frame (each append is a flash block write and
  ~0.2 KiB of heap: a burst is spread over steps instead of holding up the loop, and a step's
  heap peak is one append; the ring, 32 events, drains at 20 a second); each frame carries the
  time of the event's own tick.
- Commands: every message on the session is a command (the session subscribes to the station's
  command topic only). commands.handle judges it; when it consumed the counter, the counter is
  stored (state.accept_command) and the state saved at once, before anything acts (a save that
  fails: ACK_FAILED, nothing acts). A message longer than the session's receive buffer (sized
  to the longest command) is skipped by the session (its ``oversize`` count) and judged here as
  an empty one: MALFORMED, with its ack (counter 0: its bytes are gone) and event. Accepted
  commands act through the agent:
    SETPOINT      control.setpoint.set_remote(kPa)  (held until a config change of setpoint.dp_kpa)
    MODE          OFF: every pump disabled (the operator's enable mask kept for later);
                  REMOTE_DP: automatic control, MANUAL_SPEED: the present common speed held
                  (until REMOTE_DP or a config change);
                  DISCHARGE: ACK_FAILED (the agent chooses the discharge pressure itself, only
                  while the remote DP is unusable; it cannot be forced)
    PUMP_ENABLE / PUMP_DISABLE   agent.enabled (staging stops a disabled pump in its own way)
    RESET         protection.reset(pump) (lockouts) and a fault-reset edge to a tripped drive
    CONFIG_CHANGE the config file read again (the uplink keeps only the numbers commands.py
                  judges by, ``envelope``: the whole config would cost ~24 KiB of heap), the new
                  config (validated by commands.py through config.load_config) is stored
                  atomically (storage.atomic_write of runtime.config_path, then the agent
                  rebuilt with the state it has: runtime.adopt_config, as after a reset: the
                  running drives adopted, nothing slammed; the uplink's remote settings are
                  applied again; event CONFIG_APPLIED, value the command's counter). A
                  pid.period_ms the watchdog cannot cover: OUT_OF_ENVELOPE.
  Each command gets an ack (QoS 1 on the ack topic, seq from the outbox's counter) and an event
  (COMMAND_ACCEPTED / COMMAND_REJECTED) in the outbox. An ack the session has no room for waits
  (4 of them, _ACK_QUEUE; more are dropped and counted in ``acks_dropped``).
- Remote settings survive a reset: station off, the pumps disabled and a remote setpoint are kept
  in the persistent state (state.set_remote; saved by the runtime right after the command acted,
  state.urgent) and applied again at start. Manual speed is not: a reset returns to automatic.
  The command counter is persistent too (saved before acting).
- Time: the wall clock (wallclock.py) is set by the board's time source; frames made before are
  marked and corrected by the outbox; a command before it is set is refused (CLOCK_NOT_SYNCED).
- While the clock is unset the outbox holds this boot's frames back (outbox.py); the uplink asks
  it again at most every second (a held take walks the outbox's index; it reads nothing).
Allocation (MicroPython VM, tests/firmware/test_station_uplink.py and host_tools/bench/
uplink_e2e.py): ``sample`` builds one float a value (its scaled product; the sums are small ints
in the frame's units: 80 B a tick); a step with nothing due builds nothing (netio.Link's own
reads and writes aside); one heap-heavy job a step: the telemetry's values (~0.16 KiB: the pumps'
and the setpoint's floats), its frame a step later, or an event's (a slot write, ~0.2 KiB); a
held take nothing; a command a few hundred bytes (HMAC), a config change loads config.py for
that command only. Heap it keeps (measured in the VM by dropping each part after the boot, then
collecting): the session 1.6 KiB (4 slots sized to the largest frame on the telemetry topic,
118 B for "jia/relay1", not max_packet, and the birth's "online", 39 B; rx sized to the largest
command on the command topic, 93 B; tx one slot, a SUBSCRIBE and a PINGREQ), the outbox 1.9 KiB for 468 slots (outbox.py), the
command judge with its envelope 0.45 KiB, the clock 0.1 KiB, the rest of the uplink 0.75 KiB
(the telemetry values, the ack queue, the topics), and the modules' functions, classes and
dicts (~16 B a function, ~0.1 KiB a class, a slot a name; their code, ~35 KiB from .mpy, is in
flash when frozen). What runs once (uplink_build.py: topics, session, key) or rarely
(uplink_config.py: a config change; uplink_extra.py: the codec's decoders) is loaded for that
and dropped again.
"""

from micropython import const

# codes.X, not an imported name: each name is a slot of this module's dict (RAM, frozen or not);
# what only the constructor uses it imports itself
from relaypump import codes, mqtt, uplink
from relaypump.ticks import ticks_diff as _ticks_diff

TYPE_CHECKING = False
if TYPE_CHECKING:  # mypy only (MicroPython has no typing)
    from typing import Any  # noqa: F401  (used in type comments)

# (private consts are folded into the code; a public one is a slot of the module's dict)
_STEP_MS = const(50)
_TICKS_MASK = const(0x3FFFFFFF)  # ticks.TICKS_MASK, folded here (an imported name is a slot)
EVENTS_PER_STEP = const(1)  # event frames appended per step: a flash block write each
_ACK_QUEUE = const(4)
_HELD_RETRY_MS = const(1000)  # the outbox asked again at most this often while the clock is unset
_TYPE_AT = const(24)  # a command frame's type byte
_ANALOGS = const(5)  # suction, discharge, remote DP, supply temperature, flow
_DRIVE_RUNNING = const(3)  # snapshot.DRIVE_RUNNING / DRIVE_TRIPPED
_DRIVE_TRIPPED = const(4)
_BAD = const(3)  # snapshot.BAD
_CMD_RUN = const(1)
_ALARM_PUMP_TRIPPED = const(16)  # codes.ALARM_PUMP1_TRIPPED (+ pump index)
_ALARM_DRIVE_LOST = const(20)  # codes.ALARM_DRIVE1_COMM_LOST (+ pump index)


def _clamp(value, lo, hi):
    return lo if value < lo else (hi if value > hi else value)


class NtpLink:
    """SNTP over UDP for a board (wallclock.py judges the replies): a request when the clock says
    it is due, the reply read without blocking. The server's name is resolved once (this blocks
    on a board, as netio's does) and again after a socket error."""

    def __init__(self, clock, cfg, port=123):
        import socket

        self._socket = socket
        self.clock = clock
        self.server = cfg["server"]
        self.port = port
        self._addr = None
        self._sock = None  # type: Any
        self._buf = bytearray(48)
        self.errors = 0

    def step(self, now_ms):
        clock = self.clock
        sock = self._sock
        if sock is not None:
            try:
                if hasattr(sock, "readinto"):  # MicroPython: None when nothing waits
                    n = sock.readinto(self._buf)
                else:
                    n = sock.recv_into(self._buf)  # CPython: BlockingIOError (an OSError)
            except OSError:
                n = None
            if n:
                clock.reply(self._buf, now_ms)
        if not clock.due(now_ms):
            return
        socket = self._socket
        try:
            if self._addr is None:
                self._addr = socket.getaddrinfo(self.server, self.port, 0, socket.SOCK_DGRAM)[0][-1]
            if sock is None:
                sock = self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                sock.setblocking(False)
            clock.request(self._buf, now_ms)
            sock.sendto(self._buf, self._addr)
        except OSError:
            self.errors += 1
            self._addr = None
            clock.request(self._buf, now_ms)  # counts as asked: the next try after retry_ms


class Uplink:
    def __init__(self, config, runtime, now_ms):
        from relaypump import uplink_build as setup  # what builds the parts: dropped below
        from relaypump.commands import Commands
        from relaypump.outbox import Outbox
        from relaypump.wallclock import WallClock

        board = runtime.board
        self.runtime = runtime
        station_id = config["station"]["id"]
        mcfg = config["mqtt"]
        ocfg = config["outbox"]
        ncfg = config["ntp"]
        self.clock = WallClock(max_rtt_ms=ncfg["max_rtt_ms"], resync_ms=ncfg["resync_s"] * 1000)
        key = setup.read_key(config["commands"]["key_file"], board.open)
        # commands are judged by the envelope (cmds.cfg), not the whole config (~24 KiB)
        self.commands = Commands(station_id, key, setup.envelope(config), self.clock)
        self.box = Outbox(
            board.fs,
            runtime.state_base.rsplit("/", 1)[0] + "/outbox",  # beside the state files
            station_id,
            self.clock,
            now_ms,
            ocfg["segments"],
            board.open,
            ocfg["save_s"] * 1000,
            ocfg["hold_unsynced_s"] * 1000,
        )
        self.session = setup.session_from_config(
            mcfg, payload_max=uplink.TELEMETRY_SIZE, payload_in_max=uplink.COMMAND_MAX_SIZE
        )
        site = mcfg["site"]
        name = mcfg["station"]
        self.telemetry_topic = setup.topic(site, name, "telemetry")
        self.event_topic = setup.topic(site, name, "event")
        self.ack_topic = setup.topic(site, name, "ack")
        net = getattr(board, "net_link", None)
        self.link = (
            net(self.session, mcfg)
            if net is not None
            else setup.default_net_link(self.session, mcfg)
        )
        ntp = getattr(board, "ntp_link", None)
        self.ntp = None  # type: Any
        if ntp is not None:
            self.ntp = ntp(self.clock, ncfg)
        else:
            try:
                self.ntp = NtpLink(self.clock, ncfg)
            except ImportError:
                pass
        self.period_ms = ocfg["telemetry_s"] * 1000
        self._held_until = now_ms
        self._next_ms = (now_ms + self.period_ms) & _TICKS_MASK
        self._made_at = -1  # the tick the telemetry values were made at (-1: none waiting)
        # the window's packet ids and the outbox tokens they carry
        n = self.session.inflight
        self._window = [0] * (2 * n)  # [2i]: a packet id in flight, [2i + 1]: its token
        # telemetry: the sums of the analog values since the last frame (in the frame's units:
        # small ints, where float sums would be a 16 B heap object each), and the frame
        # (the sums, then how many ticks each: small ints); the frames are encoded in the
        # outbox's own buffer (box.room)
        self._sum = [0] * (2 * _ANALOGS)
        self._values = [0] * uplink.TELEMETRY_VALUES
        self._values[0] = station_id
        self._acks = bytearray(_ACK_QUEUE * uplink.ACK_SIZE)
        self._ack_count = 0
        self._oversize = 0  # the session's oversize messages answered (_step)
        # remote settings, as the persistent state kept them (rules)
        agent = runtime.agent
        st = agent.state
        self.off = st.remote_off
        self.enabled = ((1 << agent.pump_count) - 1) & ~st.remote_disabled  # the operator's mask
        self.remote_kpa = st.remote_setpoint_x10 / 10 if st.remote_setpoint_x10 else None
        self.manual = False
        self.apply(agent)
        # counters
        self.frames = 0  # acknowledged (the commands handled: commands.handled)
        self.acks_dropped = 0
        self.errors = 0  # steps cut short by a file system error (last_error: its text)
        self.last_error = None
        setup.forget(("relaypump.uplink_build",))

    # --- per control tick ---------------------------------------------------------------------
    def sample(self, agent):
        snap = agent.snapshot
        self._add(0, snap.suction_kpa)
        self._add(1, snap.discharge_kpa)
        self._add(2, snap.remote_dp_kpa)
        self._add(3, snap.supply_temp_c)
        self._add(4, snap.flow_m3h)

    def _add(self, k, m):
        if m.quality != _BAD:
            # the product: the tick's one float (suction, discharge, remote DP, temp., flow)
            self._sum[k] += round(m.value * (10.0, 10.0, 10.0, 100.0, 10.0)[k])
            self._sum[_ANALOGS + k] += 1

    # --- the loop's other work ----------------------------------------------------------------
    def step(self, now_ms):
        try:
            self._step(now_ms)
        except OSError as err:  # the flash (outbox): counted and logged, the pumps go on
            self.errors += 1
            text = str(err)
            if text != self.last_error:
                self.last_error = text
                self.runtime.board.log("uplink: %s" % text)
        return _STEP_MS

    def _step(self, now_ms):
        link = self.link
        if link is not None:
            link.step(now_ms)
        s = self.session
        busy = False
        while True:
            ev = s.next_event()
            if ev == mqtt.NONE:
                break
            if ev == mqtt.PUBACK:
                self._acked(s.packet_id)
            elif ev == mqtt.MESSAGE:
                self._command(s.payload, now_ms)
                busy = True
        while self._oversize != s.oversize:
            # a message longer than the receive buffer (the longest command) was skipped by the
            # session, its bytes gone: answered as a malformed command (ack counter 0)
            self._oversize += 1
            self._command(b"", now_ms)
            busy = True
        if self.ntp is not None:
            self.ntp.step(now_ms)
        # one heap-heavy job a step: the telemetry's values (their floats), its frame (a slot
        # write), or an event's frame; the others wait for the next step
        # (a frame the flash refuses does not hold up the acks and the backlog behind it: the
        # telemetry frame is lost, an event waits in the ring for the next step; both counted)
        appended = True
        refused = None
        try:
            made_at = self._made_at
            if made_at >= 0:  # the values made last step: the frame, with their time
                self._made_at = -1
                frame = self.box.room(uplink.KIND_TELEMETRY)
                uplink.encode_telemetry(frame, self._values)  # seq and time: the outbox's
                self.box.append(frame, made_at)
            elif _ticks_diff(now_ms, self._next_ms) >= 0:
                self._next_ms = (self._next_ms + self.period_ms) & _TICKS_MASK
                if _ticks_diff(now_ms, self._next_ms) >= 0:  # fell behind: one period on
                    self._next_ms = (now_ms + self.period_ms) & _TICKS_MASK
                self._telemetry()
                self._made_at = now_ms
            else:
                appended = self.drain_events() > 0
        except OSError as err:
            refused = err  # raised once the acks and the backlog had their turn
            appended = False  # (nothing went in)
        size = uplink.ACK_SIZE
        while self._ack_count:  # the acks waiting for room in the session
            pid = self.session.publish(self.ack_topic, memoryview(self._acks)[:size])
            if pid <= 0:
                break
            self._ack_count -= 1
            acks = self._acks
            acks[: self._ack_count * size] = acks[size : (self._ack_count + 1) * size]
            busy = True
        if self._feed(now_ms, appended):
            busy = True
        if busy and link is not None:
            link.step(now_ms)  # out now, not a step later
        self.box.poll(now_ms)
        if refused is not None:
            raise refused

    def flush(self, now_ms):
        self.box.flush(now_ms)

    # --- outbox <-> session -------------------------------------------------------------------
    def _feed(self, now_ms, appended=False):
        s = self.session
        box = self.box
        window = self._window
        sent = False
        if not self.clock.synced and (appended or _ticks_diff(now_ms, self._held_until) < 0):
            # the outbox holds back frames made before the clock was set; a step that appended
            # a frame does not ask it (a held take walks the outbox's ring)
            return False
        while s.in_flight < s.inflight:
            free = -1
            for i in range(0, len(window), 2):
                if not window[i]:
                    free = i
                    break
            if free < 0:
                break
            token = box.take(now_ms)
            if not token:
                if not self.clock.synced:  # held (or none): asked again in _HELD_RETRY_MS
                    self._held_until = (now_ms + _HELD_RETRY_MS) & _TICKS_MASK
                break
            frame = box.frame
            topic = self.telemetry_topic if frame[3] == uplink.KIND_TELEMETRY else self.event_topic
            pid = s.publish(topic, frame)
            if pid <= 0:
                box.give_back(token)
                break
            window[free] = pid
            window[free + 1] = token
            sent = True
        return sent

    def _acked(self, pid):
        window = self._window
        for i in range(0, len(window), 2):
            if window[i] == pid:
                window[i] = 0
                self.box.acked(window[i + 1])
                window[i + 1] = 0
                self.frames += 1
                return

    def drain_events(self, most=EVENTS_PER_STEP):
        """Up to `most` events of the ring into the outbox; how many."""
        agent = self.runtime.agent
        ring = agent.events
        box = self.box
        if not ring.count:
            return 0  # (a step with nothing to do makes nothing)
        ev = [0] * 7  # [station_id, seq, time, code, severity, subject, value]: this step's
        left = most
        while left and ring.peek_into(ev, 0):  # ev[0..4]: code, severity, subject, value, tick
            at = ev[4]
            ev[6] = ev[3]
            ev[5] = ev[2]
            ev[4] = ev[1]
            ev[3] = ev[0]
            ev[0] = self._values[0]  # the station id
            ev[1] = ev[2] = 0  # seq and time: the outbox's
            frame = box.room(uplink.KIND_EVENT)
            uplink.encode_event(frame, ev)
            box.append(frame, at)  # stamped with the event's own tick
            ring.discard()
            left -= 1
        return most - left

    # --- telemetry ----------------------------------------------------------------------------
    def mode(self):
        if self.off:
            return codes.MODE_OFF
        return self.runtime.agent.control.telemetry_mode()

    def _telemetry(self):
        """The telemetry frame's values (into _values; the next step encodes and appends it)."""
        agent = self.runtime.agent
        v = self._values
        s = self._sum
        for k in range(_ANALOGS):
            n = s[_ANALOGS + k]
            raw = (2 * s[k] + n) // (2 * n) if n else None  # the mean, rounded, in ints
            if k == 4:
                v[8] = (
                    uplink.NO_READING_S32 if raw is None else _clamp(raw, -0x7FFFFFFF, 0x7FFFFFFF)
                )
            else:
                v[3 + k] = uplink.NO_READING_S16 if raw is None else _clamp(raw, -32767, 32767)
            s[k] = 0
            s[_ANALOGS + k] = 0
        v[7] = uplink.NO_READING_S16  # return temperature: not measured
        control = agent.control
        mode = self.mode()
        sp = control.sp_kpa if mode == codes.MODE_DISCHARGE else control.dp_setpoint_kpa
        v[9] = _clamp(round(sp * 10.0), -32767, 32767)
        v[10] = mode
        state = agent.state
        # u32 counters that wrap: masked only beyond a small int (a mask with the long int
        # 0xFFFFFFFF makes a 48 B long int on MicroPython, even for a small result)
        e = state.total_energy_kwh_x10()
        v[12] = e if 0 <= e <= 0x3FFFFFFF else e & 0xFFFFFFFF
        snap = agent.snapshot
        fb = agent.fieldbus
        prot = agent.protection
        alarms = prot.alarm_bits
        for i in range(uplink.PUMP_SLOTS):
            at = 13 + 6 * i
            if i >= agent.pump_count:
                v[at] = v[at + 1] = v[at + 2] = v[at + 4] = v[at + 5] = 0
                v[at + 3] = codes.PUMP_ABSENT
                continue
            p = snap.pumps[i]
            v[at] = _clamp(round(p.speed_pct * 100.0), 0, 65535)
            v[at + 1] = _clamp(round(p.current_a * 10.0), 0, 65535)
            v[at + 2] = _clamp(round(p.power_kw * 10.0), 0, 65535)
            v[at + 3] = self._pump_state(agent, i, p)
            v[at + 4] = p.fault_code & 0xFFFF
            e = state.energy_kwh_x10(i)
            v[at + 5] = e if 0 <= e <= 0x3FFFFFFF else e & 0xFFFFFFFF
            if p.online and p.state == _DRIVE_TRIPPED:
                alarms |= 1 << (_ALARM_PUMP_TRIPPED + i)
            if fb.lost[i]:
                alarms |= 1 << (_ALARM_DRIVE_LOST + i)
        v[11] = alarms

    def _pump_state(self, agent, i, p):
        if agent.protection.pump_locked[i] or agent.state.pump_lockout[i]:
            return codes.PUMP_LOCKOUT
        running = p.online and p.state == _DRIVE_RUNNING
        if p.online and p.state == _DRIVE_TRIPPED:
            return codes.PUMP_TRIPPED
        told = agent.snapshot.commands[i].command == _CMD_RUN
        if running:
            return codes.PUMP_RUNNING if told else codes.PUMP_STOPPING
        if told:
            return codes.PUMP_STARTING
        return codes.PUMP_STANDBY if agent.enabled & (1 << i) else codes.PUMP_OFF

    # --- commands -----------------------------------------------------------------------------
    def _command(self, payload, now_ms):
        runtime = self.runtime
        agent = runtime.agent
        cmds = self.commands
        change = len(payload) > _TYPE_AT and payload[_TYPE_AT] == uplink.COMMAND_CONFIG_CHANGE
        envelope = cmds.cfg
        if change:  # the whole config, for this command only (rare: loaded, then dropped)
            from relaypump import uplink_build, uplink_config

            full = uplink_config.read_config(runtime)
            if full is not None:
                cmds.use_config(full)
        try:
            result = cmds.handle(payload, now_ms, agent.state.command_counter, self.mode())
        except KeyError:  # a config change while the config file cannot be read
            result = codes.ACK_FAILED
        cmds.use_config(envelope)  # (a config change applied sets its own: uplink_config)
        if cmds.consumed:
            agent.state.accept_command(cmds.counter)
            if not runtime.save(agent, now_ms):  # the counter on flash before anything acts
                result = codes.ACK_FAILED
        if result == codes.ACK_OK:
            result = self._act(now_ms)
        cmds.result = result
        seq = self.box.next_seq(now_ms)
        stamp = self.clock.stamp(now_ms)
        if self._ack_count == _ACK_QUEUE:  # the ack queue is full: this one is dropped
            self.acks_dropped += 1
        else:
            at = self._ack_count * uplink.ACK_SIZE
            self.commands.ack(memoryview(self._acks)[at : at + uplink.ACK_SIZE], seq, stamp)
            self._ack_count += 1
        if change:
            uplink_build.forget(
                (
                    "relaypump.config",
                    "relaypump.uplink_config",
                    "relaypump.uplink_build",
                    "relaypump.config_keys",
                )
            )
        frame = self.box.room(uplink.KIND_EVENT)
        cmds.event(frame, 0, 0)  # seq and time: the outbox's (last: the flash may refuse it)
        self.box.append(frame, now_ms)

    def _act(self, now_ms):
        cmds = self.commands
        kind = cmds.command_type
        arg = cmds.arg
        agent = self.runtime.agent
        if kind == uplink.COMMAND_SETPOINT:
            self.remote_kpa = arg / 10
        elif kind == uplink.COMMAND_MODE:
            if arg == codes.MODE_DISCHARGE:
                return codes.ACK_FAILED
            self.off = arg == codes.MODE_OFF
            if arg == codes.MODE_MANUAL_SPEED:
                self.manual = True
                agent.control.set_manual(agent.control.common_pct)
            elif arg == codes.MODE_REMOTE_DP:
                self.manual = False
                agent.control.set_auto()
        elif kind == uplink.COMMAND_PUMP_ENABLE or kind == uplink.COMMAND_PUMP_DISABLE:
            bit = 1 << (arg - 1)
            on = kind == uplink.COMMAND_PUMP_ENABLE
            self.enabled = self.enabled | bit if on else self.enabled & ~bit
        elif kind == uplink.COMMAND_RESET:
            agent.protection.reset(arg, now_ms)
            for i in range(agent.pump_count):
                p = agent.snapshot.pumps[i]
                if (arg == 0 or arg == i + 1) and p.online and p.state == _DRIVE_TRIPPED:
                    agent.snapshot.commands[i].reset = True
        else:  # CONFIG_CHANGE
            from relaypump import uplink_config

            return uplink_config.apply_change(self, now_ms)
        self.apply(agent)
        return codes.ACK_OK

    def apply(self, agent):
        """The remote settings onto the agent (at start, after a command, after a rebuild) and
        into the persistent state (saved at once when they changed: state.urgent)."""
        kpa = self.remote_kpa
        if kpa is not None:
            agent.control.setpoint.set_remote(kpa)
        agent.enabled = 0 if self.off else self.enabled
        disabled = ((1 << agent.pump_count) - 1) & ~self.enabled
        agent.state.set_remote(self.off, disabled, round(kpa * 10) if kpa is not None else 0)
