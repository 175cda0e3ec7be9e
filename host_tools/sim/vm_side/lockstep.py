"""Lockstep shim: runs INSIDE the MicroPython VM between host_tools/sim/vm_controller.py and the
board's runtime. Not firmware; MicroPython code.

What runs in the VM is what runs on a board and in the in-process simulator: relaypump/runtime.py
on a SimBoard (sim_board.py), whose file system is the VM's (the config file and the state files
under /flash) and whose UART is carried by the host: a frame the runtime sends pauses the loop,
the host puts it on the simulated bus and hands the response back with its arrival instant.

Setup, a few requests with a collection between them (within one request nothing is collected):
``import lockstep``; ``load(config_path, state_base)``: the board and the Runtime, which reads and
validates the config (runtime.load_config, the validator dropped after it); one
``import relaypump.<module>`` per request; ``start(gc_threshold)``: the runtime builds the agent
from the state files and the config (runtime.build), as on a board.

Then one ``resume(request)`` per VM call (little-endian):

    request  = flags u8, end_ms u32, end_sub u16, [rx_ms u32, rx_sub u16, rx bytes]
    F_RX     the response to the frame the host carried, readable from (rx_ms, rx_sub)
    F_MEASURE  gc.mem_alloc() around the loop and around each tick (costs a heap scan each)

    The frame of the last call counts as carried; the loop runs (runtime.run_forever) when it has
    something to do before the slice end (end_ms, end_sub), until the slice ends or a frame waits.

    response = flags u8 (O_FRAME), wake_ms u32, wake_sub u16, frame_ms u32, frame_sub u16,
               frame length u8, ticks u8, bytes allocated by the loop u32 (F_MEASURE only),
               a summary per tick, the frame, new event count u8, events
    summary  = t_ms u32, primed u8, staging mask u8, running mask u8, bytes the tick allocated
               u32, setpoint_kpa f64, per pump: command u8, reset u8, speed_pct f64
    event    = code u16, subject u8, value i32, at_ms u32

Rules:
- Allocate nothing of our own per call: the request is read byte by byte, the response is packed
  into one preallocated buffer; only the returned slice is new (outside the measured window).
- The GC runs only between calls in this VM port, so start() sets gc.threshold(): a collection is
  scheduled once that many bytes have been allocated and runs when the call returns.
"""

import gc
import os
import struct

from sim_board import SimBoard

F_RX = 1
F_MEASURE = 2
O_FRAME = 1

HEADER = 19  # response bytes before the summaries
_MAX_OUT = 2048

_out = bytearray(_MAX_OUT)
_view = memoryview(_out)
_event = [0, 0, 0, 0, 0]
board = None
runtime = None
agent = None
_seen_events = 0
_pump_count = 0
_ticks = 0  # summaries packed in this call
_n = HEADER  # where the next summary goes
_measure = False
_packing = 0  # bytes the summaries allocated (left out of the loop's figure)
_running = 0  # relaypump.snapshot.DRIVE_RUNNING (imported by start: setup imports in stages)


def load(config_path, state_base):
    """Setup step 1: the board and the runtime, which reads and validates its config file (and
    drops the validator); None, or the error of a refused config."""
    global board, runtime
    from relaypump.runtime import Runtime

    board = SimBoard(os, open)
    runtime = Runtime(board, config_path, state_base, start=False)
    if not runtime.load_config():
        return runtime.error
    return None


def start(threshold):
    """Setup step 3 (after the agent's modules, one import per request): the runtime builds the
    agent; the GC threshold; the figures the host needs."""
    global agent, _seen_events, _pump_count, _running
    from relaypump.snapshot import DRIVE_RUNNING

    _running = DRIVE_RUNNING
    if not runtime.build():
        return {"error": runtime.error}
    agent = runtime.agent
    _pump_count = agent.pump_count
    _seen_events = agent.events.pushed
    tick = agent.tick

    def recorded_tick(now_ms):
        if _measure:
            before = gc.mem_alloc()
            tick(now_ms)
            used = gc.mem_alloc() - before
        else:
            tick(now_ms)
            used = 0
        _pack_summary(now_ms, used)

    agent.tick = recorded_tick
    if threshold <= 0:
        threshold = gc.mem_free() // 2
    gc.threshold(threshold)
    return {
        "error": None,
        "period_ms": agent.period_ms,
        "gap_us": agent.fieldbus.gap_us,
        "pump_count": _pump_count,
        "setpoint_kpa": agent.control.setpoint.value_kpa,
        "threshold": threshold,
    }


def _u32(data, at):
    return data[at] | data[at + 1] << 8 | data[at + 2] << 16 | data[at + 3] << 24


def resume(data):
    global _seen_events, _ticks, _n, _measure, _packing
    b = board
    flags = data[0]
    _measure = flags & F_MEASURE
    b.carried()
    if flags & F_RX:
        b.respond(data, 13, len(data) - 13, _u32(data, 7), data[11] | data[12] << 8)
    _ticks = 0
    _n = HEADER
    _packing = 0
    used = 0
    if b.due(_u32(data, 1), data[5] | data[6] << 8):
        if _measure:
            before = gc.mem_alloc()
            runtime.run_forever()
            used = gc.mem_alloc() - before - _packing
        else:
            runtime.run_forever()
    out = _out
    n = _n
    frame_len = b.out_len
    frame = b.out
    for i in range(frame_len):
        out[n + i] = frame[i]
    struct.pack_into(
        "<BIHIHBBI",
        out,
        0,
        O_FRAME if frame_len else 0,
        b.wake_ms,
        b.wake_sub,
        b.out_ms,
        b.out_sub,
        frame_len,
        _ticks,
        used,
    )
    n += frame_len
    events = agent.events
    fresh = events.pushed - _seen_events
    _seen_events = events.pushed
    count = events.count
    if fresh > count:
        fresh = count  # overwritten before we saw them (the ring holds 64)
    if fresh > (_MAX_OUT - n - 1) // 11:
        fresh = (_MAX_OUT - n - 1) // 11
    out[n] = fresh
    n += 1
    e = _event
    for j in range(count - fresh, count):
        events.peek_into(e, j)
        struct.pack_into("<HBiI", out, n, e[0], e[2], e[3], e[4])
        n += 11
    return _view[:n]


def _pack_summary(now_ms, tick_used):
    global _ticks, _n, _packing
    before = gc.mem_alloc() if _measure else 0
    a = agent
    out = _out
    n = _n
    running = 0
    pumps = a.snapshot.pumps
    for i in range(_pump_count):
        p = pumps[i]
        if p.online and p.state == _running:
            running |= 1 << i
    struct.pack_into(
        "<IBBBI", out, n, now_ms, 1 if a.primed else 0, a.staging.mask & 0xFF, running, tick_used
    )
    struct.pack_into("<d", out, n + 11, a.control.setpoint.value_kpa)
    n += 19
    commands = a.snapshot.commands
    for i in range(_pump_count):
        c = commands[i]
        out[n] = c.command
        out[n + 1] = 1 if c.reset else 0
        struct.pack_into("<d", out, n + 2, c.speed_pct)
        n += 10
    _n = n
    _ticks += 1
    if _measure:
        _packing += gc.mem_alloc() - before


def live():
    """Live heap after a collection (call with gc=True so the collection has run)."""
    return gc.mem_alloc()
