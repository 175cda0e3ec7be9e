"""Telemetry decode throughput: construct, construct compiled, and protocol.fast (frames/s).

All figures come from the same run over the same frames (design-point telemetry with varying
seq), so their ratios are meaningful; each is the best of three timed passes.
"""

import time

from protocol import fast, layout, uplink

BATCH_FRAMES = 200_000
SINGLE_FRAMES = 2_000


def _frames(count: int) -> list[bytes]:
    lay = layout.layout("telemetry")
    base = [0] * len(lay.values)
    names = [f.flat_name for f in lay.values]
    base[names.index("suction_kpa_x10")] = 1600
    base[names.index("flow_m3h_x10")] = 8000
    frames = []
    for seq in range(count):
        base[names.index("seq")] = seq
        frames.append(uplink.build(uplink.telemetry, layout.to_container(lay, base)))
    return frames


def _rate(decode, items, count: int) -> float:
    best = 0.0
    for _ in range(3):
        start = time.perf_counter()
        decode(items)
        best = max(best, count / (time.perf_counter() - start))
    return best


def _each(parse):
    def run(frames):
        for frame in frames:
            parse(frame)

    return run


def _drain(buffer):
    for _row in fast.decode_telemetry_many(buffer):
        pass


def run(report) -> None:
    frames = _frames(SINGLE_FRAMES)
    compiled = uplink.telemetry.compile()
    report(
        "telemetry_decode_construct",
        _rate(_each(uplink.telemetry.parse), frames, len(frames)),
        "frames/s",
    )
    report(
        "telemetry_decode_construct_compiled",
        _rate(_each(compiled.parse), frames, len(frames)),
        "frames/s",
    )
    report(
        "telemetry_decode_fast_dict",
        _rate(_each(fast.decode_telemetry), frames, len(frames)),
        "frames/s",
    )
    buffer = b"".join(frames) * (BATCH_FRAMES // SINGLE_FRAMES)
    report("telemetry_decode_fast", _rate(_drain, buffer, BATCH_FRAMES), "frames/s")
    report(
        "telemetry_decode_fast_list",
        _rate(lambda b: list(fast.decode_telemetry_many(b)), buffer, BATCH_FRAMES),
        "frames/s",
    )
