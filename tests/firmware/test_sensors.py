"""Sensor validation: 4-20 mA scaling, NE43, filter, rate-of-change spikes, cross-check, fallbacks."""

from relaypump import sensors as sn
from relaypump.snapshot import BAD, DRIVE_READY, DRIVE_RUNNING, GOOD, HELD, SUBSTITUTE, Snapshot
from support import ON_MICROPYTHON, bytes_allocated

VM_HEAP_KIB = 96


def io_config(filter_s=0.0):
    return {
        "unit": 10,
        "channels": {
            "suction_kpa": {
                "register": 0,
                "low": 0.0,
                "high": 1000.0,
                "fallback": "stop",
                "max_rate_per_s": 50.0,
            },
            "discharge_kpa": {
                "register": 1,
                "low": 0.0,
                "high": 1600.0,
                "fallback": "stop",
                "max_rate_per_s": 100.0,
            },
            "remote_dp_kpa": {"register": 2, "low": 0.0, "high": 400.0, "fallback": "discharge"},
            "supply_temp_c": {"register": 3, "low": 0.0, "high": 150.0, "fallback": 120.0},
            "flow_m3h": {"register": 4, "low": 0.0, "high": 1200.0, "fallback": "hold"},
        },
        "inputs": {"source_running": 0, "bypass_open": 1},
        "filter_s": filter_s,
        "hold_s": 10.0,
        "stale_s": 1.0,
        "cross_check_s": 2.0,
    }


def ua(value, low, high):
    return int(4000 + 16000 * (value - low) / (high - low) + 0.5)


def healthy(suction=250.0, discharge=700.0):
    return [
        ua(suction, 0, 1000),
        ua(discharge, 0, 1600),
        ua(111.0, 0, 400),
        ua(118.0, 0, 150),
        ua(640.0, 0, 1200),
    ]


def station(filter_s=0.0):
    snap = Snapshot(3)
    snap.io_online = True
    return snap, sn.Sensors(io_config(filter_s), snap)


def close(a, b, tolerance=0.01):
    return abs(a - b) <= tolerance


def test_ne43_bands():
    assert sn.ne43_status(0) == sn.NE43_FAIL_LOW  # wire break
    assert sn.ne43_status(3600) == sn.NE43_FAIL_LOW
    assert sn.ne43_status(3601) == sn.NE43_UNDER_RANGE
    assert sn.ne43_status(3799) == sn.NE43_UNDER_RANGE
    assert sn.ne43_status(3800) == sn.NE43_OK
    assert sn.ne43_status(20500) == sn.NE43_OK
    assert sn.ne43_status(20501) == sn.NE43_OVER_RANGE
    assert sn.ne43_status(21000) == sn.NE43_FAIL_HIGH
    assert sn.ne43_status(24000) == sn.NE43_FAIL_HIGH  # short


def test_scaling_to_engineering_units():
    snap, s = station()
    s.sample_analog(0, [4000, 20000, 12000, 3700, 20700])
    s.sample_inputs(0, 0b01)
    s.update(0)
    assert snap.suction_kpa.value == 0.0 and snap.suction_kpa.quality == GOOD
    assert snap.discharge_kpa.value == 1600.0
    assert snap.remote_dp_kpa.value == 200.0
    assert snap.supply_temp_c.value == 0.0  # under range: saturated, clamped to low
    assert snap.flow_m3h.value == 1200.0  # over range: clamped to high
    assert snap.flow_m3h.quality == GOOD and s.ne43[4] == sn.NE43_OVER_RANGE
    assert snap.source_running.value == 1.0 and snap.bypass_open.value == 0.0
    assert snap.source_running.quality == GOOD and snap.suction_kpa.at_ms == 0


def test_first_order_filter():
    snap, s = station(filter_s=2.0)
    s.sample_analog(0, healthy())
    values = healthy()
    values[4] = ua(1000.0, 0, 1200)  # flow step 640 -> 1000 (flow has no rate limit)
    t = 0
    for _ in range(20):  # 2 s of samples every 100 ms: one time constant
        t += 100
        s.sample_analog(t, values)
    s.update(t)
    # 1 - exp(-1) = 63 % of the step (discretised: (1 - 100/2100)**20 -> 62.3 %)
    step = snap.flow_m3h.value - 640.0
    assert 0.61 * 360 < step < 0.64 * 360, step
    for _ in range(200):
        t += 100
        s.sample_analog(t, values)
    s.update(t)
    assert close(snap.flow_m3h.value, 1000.0, 0.08)  # converged to within 1 uA


def test_a_spike_is_held_and_a_confirmed_step_accepted():
    snap, s = station()
    s.sample_analog(0, healthy(suction=250.0))
    s.update(0)
    # 50 kPa/s allowed: 100 kPa in 100 ms is a spike.
    s.sample_analog(100, healthy(suction=350.0))
    s.update(100)
    assert snap.suction_kpa.quality == HELD and close(snap.suction_kpa.value, 250.0)
    assert s.spikes[0] == 1
    s.sample_analog(200, healthy(suction=250.5))  # it was a spike: back where it was
    s.update(200)
    assert snap.suction_kpa.quality == GOOD and close(snap.suction_kpa.value, 250.5)
    s.sample_analog(300, healthy(suction=150.0))  # a real step: confirmed by the next sample
    s.update(300)
    assert snap.suction_kpa.quality == HELD
    s.sample_analog(400, healthy(suction=150.5))
    s.update(400)
    assert snap.suction_kpa.quality == GOOD and close(snap.suction_kpa.value, 150.5)


def test_ne43_failures_use_each_channels_fallback():
    snap, s = station()
    s.sample_analog(0, healthy())
    s.update(0)
    s.sample_analog(100, [0, ua(700.0, 0, 1600), 3600, 24000, 21000])
    s.update(100)
    assert snap.suction_kpa.quality == BAD  # "stop", wire break
    assert snap.discharge_kpa.quality == GOOD
    assert snap.remote_dp_kpa.quality == SUBSTITUTE  # "discharge": switch to discharge control
    assert s.fallback_kind("remote_dp_kpa") == sn.FALLBACK_DISCHARGE
    assert snap.supply_temp_c.quality == SUBSTITUTE and snap.supply_temp_c.value == 120.0
    assert snap.flow_m3h.quality == HELD and close(snap.flow_m3h.value, 640.0, 0.1)
    t = 100
    while t < 10000:
        t += 100
        s.sample_analog(t, [0, ua(700.0, 0, 1600), 3600, 24000, 21000])
    s.update(t)
    assert snap.flow_m3h.quality == HELD  # 10 s after the last good sample
    s.sample_analog(t + 100, [0, ua(700.0, 0, 1600), 3600, 24000, 21000])
    s.update(t + 100)
    assert snap.flow_m3h.quality == BAD
    # Repaired: the first good sample is taken as it is (no spike against the old value).
    s.sample_analog(t + 200, healthy(suction=300.0))
    s.update(t + 200)
    assert all(m.quality == GOOD for m in s.measurements)
    assert close(snap.suction_kpa.value, 300.0) and close(snap.supply_temp_c.value, 118.0)
    assert s.faults[0] > 0


def test_a_missed_sample_or_a_lost_module_holds_each_channel_for_its_hold_s():
    snap, s = station()
    s.sample_analog(0, healthy())
    s.sample_inputs(0, 0b11)
    s.update(1000)
    assert snap.suction_kpa.quality == GOOD and snap.bypass_open.quality == GOOD
    s.update(1001)  # no sample for more than io.stale_s: a transient, not a fault
    assert all(m.quality == HELD for m in s.measurements)
    assert close(snap.suction_kpa.value, 250.0) and snap.suction_kpa.at_ms == 0
    assert snap.source_running.quality == HELD and snap.source_running.value == 1.0
    snap.io_online = False  # the module declared lost: the same, it is silent
    s.update(10000)
    assert all(m.quality == HELD for m in s.measurements)
    s.update(10001)  # io.hold_s after the last good sample: each channel's fallback
    assert snap.suction_kpa.quality == BAD and snap.flow_m3h.quality == BAD
    assert snap.supply_temp_c.quality == SUBSTITUTE and snap.supply_temp_c.value == 120.0
    assert snap.remote_dp_kpa.quality == SUBSTITUTE and snap.source_running.quality == BAD
    snap.io_online = True
    s.sample_analog(10100, healthy(suction=300.0))
    s.sample_inputs(10100, 0b01)
    s.update(10100)
    assert all(m.quality == GOOD for m in s.measurements)
    assert close(snap.suction_kpa.value, 300.0) and snap.bypass_open.value == 0.0


def test_hold_s_is_per_channel_and_a_bridged_gap_keeps_the_filter():
    cfg = io_config(filter_s=2.0)
    cfg["channels"]["suction_kpa"]["hold_s"] = 2.0
    snap = Snapshot(3)
    snap.io_online = True
    s = sn.Sensors(cfg, snap)
    t = 0
    while t <= 20000:  # settled at 250 kPa
        s.sample_analog(t, healthy())
        t += 500
    s.update(t)
    s.update(t + 2000)  # 2.5 s since the last sample: suction past its own hold, discharge not
    assert snap.suction_kpa.quality == BAD and snap.discharge_kpa.quality == HELD
    # a gap inside the hold is bridged: the filter goes on from where it was (no jump to the
    # first sample after the gap, no restart)
    s.sample_analog(t + 1000, healthy(discharge=710.0))
    s.update(t + 1000)
    assert snap.discharge_kpa.quality == GOOD
    assert 700.0 < snap.discharge_kpa.value < 706.0, snap.discharge_kpa.value


def test_missed_samples_under_bus_noise_never_reach_the_fallback():
    # one sample window in ten missed at random (10 % corrupted frames, a retry failing too),
    # sometimes three in a row: every channel stays usable
    snap, s = station(filter_s=2.0)
    seed = 12345
    t = 0
    worst = GOOD
    values = healthy()
    for _ in range(5000):
        t += 600  # a missed window leaves 1.2 s > io.stale_s between samples
        seed = (seed * 75 + 74) % 65537
        if seed % 10:
            s.sample_analog(t, values)
            s.sample_inputs(t, 0b01)
        s.update(t)
        for m in s.measurements:
            if m.quality > worst:
                worst = m.quality
        assert snap.source_running.quality != BAD
    assert worst == HELD


def test_suction_above_discharge_while_a_pump_runs_is_implausible():
    snap, s = station()
    s.sample_analog(0, healthy(suction=500.0, discharge=480.0))
    s.update(0)
    assert snap.suction_kpa.quality == GOOD  # no pump running: nothing to compare
    pump = snap.pumps[0]
    pump.online = True
    pump.state = DRIVE_RUNNING
    pump.speed_pct = 80.0
    t = 0
    while t < 2000:  # suspicious from t = 100 on
        t += 100
        s.sample_analog(t, healthy(suction=500.0, discharge=480.0))
        s.update(t)
    assert snap.suction_kpa.quality == GOOD  # not yet io.cross_check_s
    s.sample_analog(2100, healthy(suction=500.0, discharge=480.0))
    s.update(2100)
    assert s.cross_check_failed
    assert snap.suction_kpa.quality == BAD and snap.discharge_kpa.quality == BAD
    pump.state = DRIVE_READY  # stopped: suction may equal discharge again
    s.sample_analog(2200, healthy(suction=500.0, discharge=480.0))
    s.update(2200)
    assert not s.cross_check_failed and snap.discharge_kpa.quality == GOOD


def test_bad_config_is_refused_with_the_field():
    cases = (
        (
            "channels",
            {"pressure": {"register": 0, "low": 0.0, "high": 1.0}},
            "io.channels.pressure",
        ),
        ("channels", {"suction_kpa": {"register": 0, "low": 5.0, "high": 1.0}}, "high > low"),
        ("channels", {"suction_kpa": {"register": -1, "low": 0, "high": 1}}, "register"),
        (
            "channels",
            {"suction_kpa": {"register": 0, "low": 0, "high": 1, "fallback": "pray"}},
            "fallback",
        ),
        (
            "channels",
            {"flow_m3h": {"register": 0, "low": 0, "high": 1, "fallback": "discharge"}},
            "fallback",
        ),
        (
            "channels",
            {"supply_temp_c": {"register": 0, "low": 0, "high": 1, "fallback": "model"}},
            "io.channels.supply_temp_c.fallback",
        ),
        (  # a pressure's model substitute is the other pressure -/+ the pumps' head
            "channels",
            {"suction_kpa": {"register": 0, "low": 0, "high": 1, "fallback": "model"}},
            "io.channels.suction_kpa.fallback",
        ),
        ("filter_s", -1.0, "io.filter_s"),
        ("inputs", {"door_open": 3}, "io.inputs.door_open"),
    )
    for key, value, field in cases:
        cfg = io_config()
        cfg[key] = value
        try:
            sn.Sensors(cfg, Snapshot(3))
        except sn.SensorConfigError as e:
            assert field in str(e), (field, str(e))
            continue
        raise AssertionError("accepted a bad " + field)


def test_a_lost_pressure_on_model_takes_its_estimate_and_without_one_is_bad():
    cfg = io_config()
    cfg["channels"]["discharge_kpa"]["fallback"] = "model"
    snap = Snapshot(3)
    snap.io_online = True
    s = sn.Sensors(cfg, snap)
    d = s.names.index("discharge_kpa")
    values = healthy()
    s.sample_analog(1000, values)
    s.update(1000)
    assert snap.discharge_kpa.quality == GOOD
    values[d] = 21500  # short circuit
    s.estimate_x10[d] = 7123  # plausibility.py: suction + the pumps' head, 0.1 kPa
    s.sample_analog(2000, values)
    s.update(2000)
    assert snap.discharge_kpa.quality == SUBSTITUTE and close(snap.discharge_kpa.value, 712.3)
    s.estimate_x10[d] = -1  # no pump running: no head, no substitute
    s.sample_analog(3000, values)
    s.update(3000)
    assert snap.discharge_kpa.quality == BAD
    values[d] = ua(700.0, 0, 1600)  # repaired
    s.sample_analog(4000, values)
    s.update(4000)
    assert snap.discharge_kpa.quality == GOOD and close(snap.discharge_kpa.value, 700.0, 0.2)


def test_samples_allocate_nothing_and_updates_little():
    snap, s = station(filter_s=2.0)
    samples = [[v + 8 * k for v in healthy()] for k in range(10)]  # every channel moves
    clock = [0]

    def ten_samples():
        for values in samples:
            clock[0] += 100
            s.sample_analog(clock[0], values)
            s.sample_inputs(clock[0], 1)

    def update():
        s.update(clock[0])

    ten_samples()
    update()
    assert bytes_allocated(ten_samples) <= (0 if ON_MICROPYTHON else 1500)
    ten_samples()
    # Only the changed values become floats: 5 channels at most, one float each (low = 0)
    assert bytes_allocated(update) <= (5 * 16 if ON_MICROPYTHON else 3000)
