"""Helpers shared by firmware tests; runs on CPython and inside the MicroPython VM.

In the VM the runner mounts protocol/vectors/ at /vectors and firmware/ at /firmware; on CPython
both are found relative to this file.
"""

import gc
import json

try:
    import os

    os.stat("/vectors")
    VECTORS = "/vectors"
except OSError:
    VECTORS = __file__.rsplit("/", 3)[0] + "/protocol/vectors"

try:
    os.stat("/firmware/station.json")
    STATION_JSON = "/firmware/station.json"
except OSError:
    STATION_JSON = __file__.rsplit("/", 3)[0] + "/firmware/station.json"


def station_json():
    """The shipped reference config, as text."""
    with open(STATION_JSON) as f:
        return f.read()


def station_config():
    """The shipped reference config, parsed (not validated)."""
    return json.loads(station_json())


def load_vector(name):
    with open(VECTORS + "/" + name + ".json") as f:
        return json.load(f)


def bytes_allocated(fn):
    """Bytes allocated while fn() runs: gc.mem_alloc() on MicroPython (collection held off),
    tracemalloc's peak on CPython (objects there are bigger: compare with a CPython bound)."""
    if hasattr(gc, "mem_alloc"):
        gc.collect()
        gc.disable()
        try:
            before = gc.mem_alloc()
            fn()
            return gc.mem_alloc() - before
        finally:
            gc.enable()
    import tracemalloc

    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


ON_MICROPYTHON = hasattr(gc, "mem_alloc")


def broker_answer(data):
    """A played broker's answer to the client packets in data: CONNACK, SUBACK, PINGRESP, and a
    PUBACK for every QoS 1 PUBLISH. Returns (reply, [(topic, payload) of each PUBLISH])."""
    from relaypump import mqtt

    reply = b""
    published = []
    pos = 0
    while pos < len(data):
        rl = mqtt.decode_length(data, pos + 1, len(data))
        start = pos + 1 + mqtt.length_size(rl)
        kind, flags, body = data[pos] >> 4, data[pos] & 15, data[start : start + rl]
        pos = start + rl
        if kind == 1:
            reply += b"\x20\x02\x00\x00"
        elif kind == 8:
            reply += bytes([0x90, 3, body[0], body[1], 1])
        elif kind == 12:
            reply += b"\xd0\x00"
        elif kind == 3:
            tlen = (body[0] << 8) | body[1]
            p = 2 + tlen
            if (flags >> 1) & 3:
                reply += bytes([0x40, 2, body[p], body[p + 1]])
                p += 2
            published.append((bytes(body[2 : 2 + tlen]), bytes(body[p:])))
    return reply, published
