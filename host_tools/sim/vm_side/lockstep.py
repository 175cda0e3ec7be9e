"""Lockstep shim: runs INSIDE the MicroPython VM between host_tools/sim/vm_controller.py and the
agent. Not firmware (a board's main.py talks to a UART, not to a simulator); MicroPython code.

One ``step(request)`` per bus event batches what the in-process CPython runtime
(host_tools/sim/agent_controller.py) does to the agent at one virtual instant, plus the frame it
will ask for at the next instant when nothing can happen to the agent in between:

    request  = flags u8, t1_ms u32, t2_ms u32, rx bytes...            (little-endian)
    F_TICK   agent.tick(t1_ms)                                         first, as the runtime does
    F_RX     agent.receive(rx) when rx is not empty, then fieldbus.poll(t1_ms)
    F_SEND   when no transaction is left pending: agent.next_request(t2_ms), and
             fieldbus.next_cycle_ms() when there is nothing to send
    F_MEASURE  gc.mem_alloc() around the agent's work (costs a scan of the heap's table)

    response = flags u8 (O_BUSY: the poll left the transaction pending; O_FRAME; O_TICK: a
               decision summary follows the frame), frame length u8, next_cycle_ms u32, events
               pushed u16, bytes the agent allocated in this call u32 and in its tick u32
               (F_MEASURE only), frame, [summary], new event count u8, events.

    summary  = primed u8, staging mask u8, running mask u8, setpoint_kpa f64,
               per pump: command u8, reset u8, speed_pct f64
    event    = code u16, subject u8, value i32, at_ms u32

Rules:
- Allocate little of our own per call: the request is read byte by byte, the response is packed
  into one preallocated buffer; only the rx view and the returned slice are new objects, and the
  measured figures leave both out (they are the lockstep's cost, not the agent's).
- The GC runs only between calls in this VM port, so start() sets gc.threshold(): a collection is
  scheduled once that many bytes have been allocated and runs when the call returns. Without it
  the garbage of many calls piles up until an allocation fails.
- Setup is a few requests (load, forget_config_module, one import per module, build, start) so
  that the GC collects the garbage of parsing and validating the config and of compiling
  source before the agent is built: within one request nothing is collected.
- The config is loaded exactly as agent_controller.load_agent_config does: the file through
  relaypump.config, then the scenario's baud. The config module is dropped before the agent is
  built (the agent keeps the validated dict, not the validator).
"""

import gc
import struct
import sys

F_TICK = 1
F_RX = 2
F_SEND = 4
F_MEASURE = 8

O_BUSY = 1
O_FRAME = 2
O_TICK = 4

HEADER = 16  # response bytes before the frame
_MAX_OUT = 1024

_out = bytearray(_MAX_OUT)
_view = memoryview(_out)
agent = None
_config = None
_seen_events = 0
_pump_count = 0


def load(config_path, baud):
    """Step 1 of setup: the validated config, with the scenario's baud."""
    global _config
    from relaypump.config import load_config_file

    _config = load_config_file(config_path)
    _config["bus"]["baud"] = baud


def forget_config_module():
    """Step 2: drop the validator (the agent keeps the validated dict, not the code)."""
    sys.modules.pop("relaypump.config", None)
    package = sys.modules.get("relaypump")
    if package is not None and "config" in package.__dict__:
        delattr(package, "config")


def build():
    """Step 3 (after `import relaypump.agent` in a request of its own): the agent."""
    global agent, _seen_events, _pump_count, _config
    from relaypump.agent import Agent

    agent = Agent(_config)
    _config = None
    _pump_count = agent.pump_count
    _seen_events = agent.events.pushed


def start(threshold):
    """Step 4 (after a collection): the GC threshold; returns the figures the host needs."""
    if threshold <= 0:
        threshold = gc.mem_free() // 2
    gc.threshold(threshold)
    return {
        "period_ms": agent.period_ms,
        "gap_us": agent.fieldbus.gap_us,
        "pump_count": _pump_count,
        "setpoint_kpa": agent.control.setpoint.value_kpa,
        "threshold": threshold,
    }


def _u32(data, at):
    return data[at] | data[at + 1] << 8 | data[at + 2] << 16 | data[at + 3] << 24


def step(data):
    global _seen_events
    flags = data[0]
    t1 = _u32(data, 1)
    t2 = _u32(data, 5)
    measure = flags & F_MEASURE
    a = agent
    out = _out
    out_flags = 0
    frame_len = 0
    tick_used = 0
    rx = memoryview(data)[9:] if flags & F_RX and len(data) > 9 else None  # the shim's, not counted
    before = gc.mem_alloc() if measure else 0
    if flags & F_TICK:
        if measure:
            tick_used = gc.mem_alloc()
            a.tick(t1)
            tick_used = gc.mem_alloc() - tick_used
        else:
            a.tick(t1)
        out_flags |= O_TICK
    busy = False
    if flags & F_RX:
        if rx is not None:
            a.receive(rx)
        busy = a.fieldbus.poll(t1) != 0  # fieldbus.IDLE is 0
        if busy:
            out_flags |= O_BUSY
    next_cycle = 0
    frame = None
    if flags & F_SEND and not busy:
        frame = a.next_request(t2)
        if frame is None:
            next_cycle = a.fieldbus.next_cycle_ms()
    used = gc.mem_alloc() - before if measure else 0
    if frame is not None:
        frame_len = len(frame)
        out[HEADER : HEADER + frame_len] = frame
        out_flags |= O_FRAME
    events = a.events
    struct.pack_into(
        "<BBIHII", out, 0, out_flags, frame_len, next_cycle, events.pushed & 0xFFFF, used, tick_used
    )
    n = HEADER + frame_len
    if out_flags & O_TICK:
        n = _pack_summary(a, out, n)
    fresh = events.pushed - _seen_events
    _seen_events = events.pushed
    if fresh > events.count:
        fresh = events.count  # overwritten before we saw them (the ring holds 64)
    if fresh > (_MAX_OUT - n - 1) // 11:
        fresh = (_MAX_OUT - n - 1) // 11
    out[n] = fresh
    n += 1
    cap = events.capacity
    head = events._head
    count = events.count
    for j in range(count - fresh, count):
        i = (head + j) % cap
        struct.pack_into(
            "<HBiI", out, n, events._code[i], events._subject[i], events._value[i], events._at[i]
        )
        n += 11
    return _view[:n]


def _pack_summary(a, out, n):
    out[n] = 1 if a.primed else 0
    out[n + 1] = a.staging.mask & 0xFF
    out[n + 2] = a._running_mask() & 0xFF
    struct.pack_into("<d", out, n + 3, a.control.setpoint.value_kpa)
    n += 11
    commands = a.snapshot.commands
    for i in range(_pump_count):
        c = commands[i]
        out[n] = c.command
        out[n + 1] = 1 if c.reset else 0
        struct.pack_into("<d", out, n + 2, c.speed_pct)
        n += 10
    return n


def live():
    """Live heap after a collection (call with gc=True so the collection has run)."""
    return gc.mem_alloc()
