"""The uplink in the runtime's loop (relaypump/station_uplink.py), on CPython and in the VM.

The runtime, the agent, the outbox on the file system, the MQTT session and the command judge are
real; the test board of test_runtime.py (a clock the test advances, the RS-485 bus played with
real RTU frames) gets a broker link that plays the broker in-process (CONNACK, SUBACK, PUBACK,
PINGRESP; it keeps what was published and delivers the commands the test gives it) and a time
source. The end-to-end tests against Mosquitto and the simulated plant are in
tests/host_tools/uplink_e2e.
"""

import json
import struct

from relaypump import uplink
from relaypump.codes import ACK_OK, ACK_OUT_OF_ENVELOPE, ACK_REPLAYED
from support import ON_MICROPYTHON, broker_answer, bytes_allocated
from test_runtime import Bus, WireBoard, make_dir, remove_dir, run, write_config

# field name -> tuple index
T = {name: i for i, name in enumerate(uplink.TELEMETRY_FIELDS)}
E = {name: i for i, name in enumerate(uplink.EVENT_FIELDS)}
A = {name: i for i, name in enumerate(uplink.ACK_FIELDS)}

VM_HEAP_KIB = 2048  # one VM call per test: the bus double's garbage stays until it returns

EPOCH_S = 1780000000
KEY = bytes(range(100, 132))
TOPIC = "relaypump/jia/relay1/"


class PlayedBroker:
    """The link of the board: connects at once, answers what the session sends, keeps every
    PUBLISH as (topic, payload) and hands the session the commands queued in ``commands``."""

    def __init__(self, session):
        self.session = session
        self.published = []
        self.commands = []
        self.up = False
        self._pid = 0
        self._inbound = b""  # bytes for the session it had no room for yet (TCP keeps them)

    def step(self, now):
        s = self.session
        s.poll(now)  # the timers (as netio.Link.step): the first connect is wanted here
        if s.want_link and not self.up:
            self.up = True
            s.link_up(now)
        if not self.up:
            return
        if self._inbound:
            self._deliver(b"")
        for _ in range(50):
            out = s.poll(now)
            if out is None:
                break
            data = bytes(out)
            s.sent(len(out))
            self._deliver(self._answer(data))
        while self.commands and s.connected:
            payload = self.commands.pop(0)
            t = (TOPIC + "cmd").encode()
            self._pid += 1
            body = struct.pack(">H", len(t)) + t + struct.pack(">H", self._pid) + payload
            self._deliver(bytes([0x32, len(body)]) + body)

    def _deliver(self, data):
        self._inbound += data
        taken = self.session.receive(self._inbound)
        self._inbound = self._inbound[taken:]

    def _answer(self, data):
        reply, published = broker_answer(data)
        self.published += [(topic.decode(), payload) for topic, payload in published]
        return reply

    def frames(self, kind):
        return [p for t, p in self.published if t == TOPIC + kind]


class WallTime:
    def __init__(self, board, clock):
        self.board = board
        self.clock = clock

    def step(self, now):
        if self.clock.due(now):
            self.clock.set_time(EPOCH_S + self.board.us // 1000000, now)


class UplinkBoard(WireBoard):
    broker = None
    flash_fails = False  # every write to an outbox file raises OSError (a worn or full flash)

    def __init__(self, bus):
        super().__init__(bus)
        board = self

        def opener(path, mode="r"):
            if board.flash_fails and "outbox" in path and mode != "rb":
                raise OSError(28, "no space left on the flash")
            return open(path, mode)

        self.open = opener

    def net_link(self, session, cfg):
        self.broker = PlayedBroker(session)
        return self.broker

    def ntp_link(self, clock, cfg):
        return WallTime(self, clock)


def start(directory):
    from relaypump.runtime import Runtime

    with open(directory + "/station.key", "w") as f:
        f.write("".join("%02x" % b for b in KEY))

    def change(doc):
        doc["mqtt"] = {"host": "broker.invalid", "site": "jia", "station": "relay1"}
        doc["commands"] = {"key_file": directory + "/station.key"}

    board = UplinkBoard(Bus())
    runtime = Runtime(board, write_config(directory, change), directory + "/state")
    assert runtime.uplink is not None, runtime.uplink_error
    return runtime, board


def command(counter, command_type, args, now_s, key=KEY):
    buf = bytearray(uplink.COMMAND_MAX_SIZE)
    values = [1, counter, now_s, counter, now_s + 60, command_type] + list(args)
    n = uplink.encode_command(buf, values, key)
    return bytes(buf[:n])


def test_telemetry_carries_the_means_of_the_measured_values_through_the_session():
    directory = make_dir()
    try:
        runtime, board = start(directory)
        run(runtime, board, 35000)
        frames = [uplink.decode_telemetry(f) for f in board.broker.frames("telemetry")]
        assert len(frames) == 3  # at 10, 20 and 30 s
        for f in frames:
            assert f[T["station_id"]] == 1
            assert f[T["timestamp_s"]] >= EPOCH_S  # the clock was set first
            # the loop currents of test_runtime.Bus: 300, 700, 111 kPa, 90 degC, 400 m3/h
            assert abs(f[T["suction_kpa_x10"]] - 3000) <= 1
            assert abs(f[T["discharge_kpa_x10"]] - 7000) <= 1
            assert abs(f[T["remote_dp_kpa_x10"]] - 1110) <= 1
            assert abs(f[T["supply_temp_c_x100"]] - 9000) <= 2
            assert abs(f[T["flow_m3h_x10"]] - 4000) <= 1
            assert f[T["return_temp_c_x100"]] == uplink.NO_READING_S16
            assert f[T["setpoint_kpa_x10"]] == 1110
            assert f[T["pump3_state"]] != 0  # three pumps: no slot ABSENT
        seqs = [f[T["seq"]] for f in frames]
        assert seqs == sorted(seqs) and len(set(seqs)) == 3
        events = [uplink.decode_event(f) for f in board.broker.frames("event")]
        assert 1 in [e[E["code"]] for e in events]  # AGENT_STARTED
        assert runtime.uplink.box.pending == 0  # every frame acknowledged, none left
        assert board.broker.frames("status") == [b"online"]
    finally:
        remove_dir(directory)


def test_a_command_is_judged_its_counter_saved_then_acted_on_and_acked():
    directory = make_dir()
    try:
        runtime, board = start(directory)
        run(runtime, board, 3000)
        now_s = EPOCH_S + board.us // 1000000
        board.broker.commands.append(command(7, uplink.COMMAND_SETPOINT, [1300], now_s))
        run(runtime, board, 500)
        acks = [uplink.decode_ack(f) for f in board.broker.frames("ack")]
        assert [(a[A["command_counter"]], a[A["result"]]) for a in acks] == [(7, ACK_OK)]
        assert runtime.agent.control.setpoint.fixed_kpa == 130.0
        assert runtime.agent.state.command_counter == 7
        saved = ""
        for name in ("/state.a", "/state.b"):
            try:
                with open(directory + name) as f:
                    saved += f.read()
            except OSError:
                pass
        assert '"command_counter": 7' in saved or '"command_counter":7' in saved
        # a replay and a setpoint outside the envelope: refused, nothing changes
        board.broker.commands.append(command(7, uplink.COMMAND_SETPOINT, [1500], now_s))
        board.broker.commands.append(command(8, uplink.COMMAND_SETPOINT, [2500], now_s))
        run(runtime, board, 500)
        acks = [uplink.decode_ack(f) for f in board.broker.frames("ack")]
        assert [a[A["result"]] for a in acks] == [ACK_OK, ACK_REPLAYED, ACK_OUT_OF_ENVELOPE]
        assert runtime.agent.control.setpoint.fixed_kpa == 130.0
        assert runtime.agent.state.command_counter == 8
    finally:
        remove_dir(directory)


def test_a_config_change_is_stored_and_the_agent_rebuilt_without_a_restart():
    directory = make_dir()
    try:
        runtime, board = start(directory)
        run(runtime, board, 3000)
        old = runtime.agent
        now_s = EPOCH_S + board.us // 1000000
        # setpoint.ramp_kpa_per_s (key 4, 0.001 kPa/s) -> 1.0
        board.broker.commands.append(command(1, uplink.COMMAND_CONFIG_CHANGE, [4, 1000], now_s))
        run(runtime, board, 3000)
        acks = [uplink.decode_ack(f) for f in board.broker.frames("ack")]
        assert [a[A["result"]] for a in acks] == [ACK_OK]
        assert runtime.agent is not old and runtime.adopted == 1
        assert runtime.agent.control.setpoint.ramp_kpa_per_s == 1.0
        with open(directory + "/station.json") as f:
            stored = json.load(f)
        assert stored["setpoint"]["ramp_kpa_per_s"] == 1.0
        assert stored["mqtt"]["station"] == "relay1"
        assert runtime.agent.ticks > 0  # the new agent runs
    finally:
        remove_dir(directory)


def test_a_missing_key_file_leaves_the_station_running_without_an_uplink():
    from relaypump.runtime import Runtime

    directory = make_dir()
    try:

        def change(doc):
            doc["mqtt"] = {"host": "broker.invalid", "site": "jia", "station": "relay1"}
            doc["commands"] = {"key_file": directory + "/missing.key"}

        board = UplinkBoard(Bus())
        runtime = Runtime(board, write_config(directory, change), directory + "/state")
        assert runtime.agent is not None and runtime.uplink is None
        assert "key_file" in runtime.uplink_error
        run(runtime, board, 3000)
        assert runtime.agent.ticks > 0
    finally:
        remove_dir(directory)


def test_sampling_a_tick_allocates_only_a_float_per_value():
    directory = make_dir()
    try:
        runtime, board = start(directory)
        run(runtime, board, 3000)
        up, agent = runtime.uplink, runtime.agent
        used = bytes_allocated(lambda: up.sample(agent))
        # MicroPython: the scaled value (the sums are small ints); CPython: its ints are objects
        assert used <= (5 * 16 if ON_MICROPYTHON else 5 * 32 + 5 * 32 + 64), used
    finally:
        remove_dir(directory)


def test_a_failing_flash_under_the_outbox_never_stops_the_control():
    directory = make_dir()
    try:
        runtime, board = start(directory)
        run(runtime, board, 12000)
        up = runtime.uplink
        assert len(board.broker.frames("telemetry")) == 1
        board.flash_fails = True
        ticks = runtime.agent.ticks
        run(runtime, board, 30000)
        assert runtime.agent.ticks >= ticks + 29  # the control went on, every tick
        assert up.errors >= 3 and "no space" in up.last_error
        assert sum("no space" in line for line in board.logs) == 1  # logged once
        board.flash_fails = False
        run(runtime, board, 11000)
        assert len(board.broker.frames("telemetry")) >= 2  # the uplink is back
    finally:
        remove_dir(directory)


def test_a_flash_that_refuses_writes_holds_up_neither_the_acks_nor_the_backlog():
    directory = make_dir()
    try:
        runtime, board = start(directory)
        run(runtime, board, 3000)
        up = runtime.uplink
        link = up.link
        up.link = None  # the broker unreachable: a backlog in the outbox
        run(runtime, board, 28000)
        backlog = up.box.pending
        assert backlog >= 3
        sent = len(board.broker.frames("telemetry")) + len(board.broker.frames("event"))
        board.flash_fails = True  # full: every write refused, reads work
        run(runtime, board, 10000)  # a telemetry frame refused meanwhile: lost
        assert up.errors >= 1
        now_s = EPOCH_S + board.us // 1000000
        board.broker.commands.append(command(1, uplink.COMMAND_SETPOINT, [800], now_s))
        up.link = link
        link.up = False  # the broker is back: a new connection
        run(runtime, board, 5000)
        acks = [uplink.decode_ack(f) for f in board.broker.frames("ack")]
        assert [(a[A["command_counter"]], a[A["result"]]) for a in acks] == [(1, ACK_OK)]
        assert up.box.pending == 0  # every frame of the backlog went out, and left
        out = len(board.broker.frames("telemetry")) + len(board.broker.frames("event"))
        assert out - sent == backlog  # nothing new: every append since was refused
    finally:
        remove_dir(directory)


def test_a_command_too_long_for_the_receive_buffer_is_answered_malformed():
    from relaypump.codes import ACK_MALFORMED, EVENT_COMMAND_REJECTED

    directory = make_dir()
    try:
        runtime, board = start(directory)
        run(runtime, board, 3000)
        up = runtime.uplink
        now_s = EPOCH_S + board.us // 1000000
        good = command(1, uplink.COMMAND_SETPOINT, [1300], now_s)
        assert len(good) == uplink.COMMAND_MAX_SIZE - 4  # a setpoint: one argument
        # longer than the longest command the receive buffer was sized to: the session skips it
        board.broker.commands.append(good + bytes(12))
        board.broker.commands.append(command(2, uplink.COMMAND_SETPOINT, [1200], now_s))
        run(runtime, board, 1000)
        assert up.session.oversize == 1
        acks = [uplink.decode_ack(f) for f in board.broker.frames("ack")]
        assert [(a[A["command_counter"]], a[A["result"]]) for a in acks] == [
            (0, ACK_MALFORMED),  # its counter went with its bytes
            (2, ACK_OK),
        ]
        events = [uplink.decode_event(f) for f in board.broker.frames("event")]
        assert [e[E["value"]] for e in events if e[E["code"]] == EVENT_COMMAND_REJECTED] == [
            ACK_MALFORMED
        ]
        assert runtime.agent.control.setpoint.fixed_kpa == 120.0
        assert up.commands.handled == 2
    finally:
        remove_dir(directory)


def test_a_burst_of_events_is_spread_over_steps_each_with_its_own_time():
    from relaypump.codes import EVENT_CONFIG_APPLIED, SEVERITY_NOTICE
    from relaypump.station_uplink import EVENTS_PER_STEP

    directory = make_dir()
    try:
        runtime, board = start(directory)
        run(runtime, board, 3000)
        up = runtime.uplink
        up.link = None  # the frames stay in the outbox
        now = board.ticks_ms()
        up.step(now)
        ring = runtime.agent.events
        while ring.count:  # the start's events, as many steps as they take
            up.step(now)
        box = up.box
        before = box.pending
        burst = 5
        for k in range(burst):  # a burst at five ticks, 100 ms apart, 1 s ago
            ring.push(EVENT_CONFIG_APPLIED, SEVERITY_NOTICE, 0, k, now - 1000 + 100 * k)
        steps = 0
        while ring.count:
            up.step(now)
            steps += 1
            assert box.pending - before == min(burst, steps * EVENTS_PER_STEP)
        assert steps == (burst + EVENTS_PER_STEP - 1) // EVENTS_PER_STEP
        got = []
        box.rewind()  # what the session was handed waits again: every frame, in order
        while True:
            token = box.take(now)
            if not token:
                break
            frame = uplink.decode_event(box.frame)
            if frame[E["code"]] == EVENT_CONFIG_APPLIED:
                got.append((frame[E["value"]], frame[E["timestamp_s"]]))
            box.acked(token)
        stamp = up.clock.stamp
        assert got == [(k, stamp(now - 1000 + 100 * k)) for k in range(burst)]
    finally:
        remove_dir(directory)


def test_a_step_appends_one_frame_telemetry_first_then_the_events():
    """One heap-heavy job a step (its heap peak one of them): the telemetry's values, then its
    frame (a flash append) a step later, then the waiting event."""
    from relaypump.codes import EVENT_CONFIG_APPLIED, SEVERITY_NOTICE

    directory = make_dir()
    try:
        runtime, board = start(directory)
        run(runtime, board, 3000)
        up = runtime.uplink
        up.link = None  # the frames stay in the outbox
        now = board.ticks_ms()
        ring = runtime.agent.events
        while ring.count:  # the start's events
            up.step(now)
        box = up.box
        ring.push(EVENT_CONFIG_APPLIED, SEVERITY_NOTICE, 0, 7, now)
        now = up._next_ms  # the telemetry frame is due
        before = box.pending
        up.step(now)
        assert box.pending == before and ring.count == 1  # the telemetry's values only
        up.step(now + 50)
        assert box.pending == before + 1 and ring.count == 1  # its frame
        up.step(now + 100)
        assert box.pending == before + 2 and ring.count == 0  # then the event
        kinds = []
        box.rewind()
        while True:
            token = box.take(now)
            if not token:
                break
            kinds.append(box.frame[3])
            box.acked(token)
        assert kinds[-2:] == [uplink.KIND_TELEMETRY, uplink.KIND_EVENT]
    finally:
        remove_dir(directory)


def test_the_telemetry_values_allocate_only_their_floats():
    directory = make_dir()
    try:
        runtime, board = start(directory)
        run(runtime, board, 3000)
        up = runtime.uplink
        made = bytes_allocated(up._telemetry)  # the step that makes them does nothing else
        # VM: 3 pumps x 3 floats + the setpoint's (16 B each); masking the energy counters
        # with 0xFFFFFFFF made a 48 B long int each (4 of them), small values or not
        assert made <= (176 if ON_MICROPYTHON else 2048), made
    finally:
        remove_dir(directory)


def test_a_step_with_nothing_due_allocates_nothing():
    directory = make_dir()
    try:
        runtime, board = start(directory)
        run(runtime, board, 3000)
        up = runtime.uplink
        up.link = None  # the link double builds its own bytes; a board's netio.Link does not
        now = board.ticks_ms()
        up.step(now)  # events of the start drained, frames handed out
        used = bytes_allocated(lambda: up.step(now))
        assert used <= (0 if ON_MICROPYTHON else 512), used
    finally:
        remove_dir(directory)


class NoClockBoard(UplinkBoard):
    def ntp_link(self, clock, cfg):
        return None  # no time source: the wall clock stays unset


def test_without_a_clock_commands_are_refused_and_frames_go_out_marked_after_the_hold():
    from relaypump.codes import ACK_CLOCK_NOT_SYNCED
    from relaypump.runtime import Runtime

    directory = make_dir()
    try:
        with open(directory + "/station.key", "w") as f:
            f.write("".join("%02x" % b for b in KEY))

        def change(doc):
            doc["mqtt"] = {"host": "broker.invalid", "site": "jia", "station": "relay1"}
            doc["commands"] = {"key_file": directory + "/station.key"}
            doc["outbox"] = {"hold_unsynced_s": 30}

        board = NoClockBoard(Bus())
        runtime = Runtime(board, write_config(directory, change), directory + "/state")
        run(runtime, board, 3000)
        board.broker.commands.append(command(3, uplink.COMMAND_SETPOINT, [1300], EPOCH_S))
        run(runtime, board, 500)
        acks = [uplink.decode_ack(f) for f in board.broker.frames("ack")]
        assert [a[A["result"]] for a in acks] == [ACK_CLOCK_NOT_SYNCED]
        assert runtime.agent.control.setpoint.fixed_kpa == 111.0
        assert runtime.agent.state.command_counter == 3  # authentic and fresh: consumed
        assert board.broker.frames("telemetry") == []  # held while the clock may still come
        run(runtime, board, 32000)
        frames = [uplink.decode_telemetry(f) for f in board.broker.frames("telemetry")]
        assert len(frames) == 3  # after the hold: sent, marked as made before a sync
        assert all(f[T["timestamp_s"]] < 1000000000 for f in frames)
    finally:
        remove_dir(directory)


def test_a_remote_stop_a_disabled_pump_and_a_remote_setpoint_survive_a_reset():
    from relaypump.runtime import Runtime

    directory = make_dir()
    try:
        runtime, board = start(directory)
        run(runtime, board, 3000)
        now_s = EPOCH_S + board.us // 1000000
        broker = board.broker
        broker.commands.append(command(1, uplink.COMMAND_PUMP_DISABLE, [2], now_s))
        broker.commands.append(command(2, uplink.COMMAND_SETPOINT, [1250], now_s))
        broker.commands.append(command(3, uplink.COMMAND_MODE, [0], now_s))  # MODE_OFF
        run(runtime, board, 1000)
        acks = [uplink.decode_ack(f) for f in broker.frames("ack")]
        assert [a[A["result"]] for a in acks] == [ACK_OK, ACK_OK, ACK_OK]
        assert runtime.agent.enabled == 0
        assert not runtime.agent.state.urgent  # saved right after acting
        # a reset: a new runtime on the same flash
        config_path = directory + "/station.json"
        board2 = UplinkBoard(Bus())
        again = Runtime(board2, config_path, directory + "/state")
        agent = again.agent
        assert agent.enabled == 0 and again.uplink.off  # still off
        assert again.uplink.enabled == 0b101  # pump 2 still out of service
        assert agent.control.setpoint.fixed_kpa == 125.0
        board2.broker.commands.append(command(4, uplink.COMMAND_MODE, [1], now_s + 5))
        run(again, board2, 1000)
        assert agent.enabled == 0b101  # on again, pump 2 still disabled
        assert agent.state.remote_off is False and agent.state.remote_disabled == 0b010
    finally:
        remove_dir(directory)
