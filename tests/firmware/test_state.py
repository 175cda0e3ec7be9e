"""Persistent state: exact counters over 10+ years with 32-bit floats, JSON round trip, validation,
load/save through two generations with a power loss in between.

MicroPython on ESP32/RP2 uses 32-bit floats; the VM and CPython use 64-bit. ``f32`` rounds a value
to the nearest 32-bit float with struct, so the tests feed the state exactly the readings a board
would see, and show what a float accumulator would have done with them.
"""

import json
import struct

from relaypump import state as state_mod
from relaypump.state import StateError, StationState, from_json
from test_storage import MemFS, PowerLoss

VM_HEAP_KIB = 128
HOURS_10Y = 10 * 8766  # 10 years of 365.25 days


def f32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]


# An hourly power profile of one pump (kW) as a board reads it: 32-bit floats.
PROFILE_KW = [f32(55.0 + 4.137 * (h % 13) + 0.0371 * h) for h in range(24)]
PROFILE_W = [round(kw * 1000.0) for kw in PROFILE_KW]


def test_ten_years_of_hourly_energy_is_exact():
    st = StationState(3)
    for h in range(HOURS_10Y):
        st.add_energy_w(1, PROFILE_W[h % 24], 3600000)
    # w watts for one hour = w Wh (summed here once: the total is beyond MicroPython's small ints)
    exact_wh = sum(PROFILE_W) * (HOURS_10Y // 24) + sum(PROFILE_W[: HOURS_10Y % 24])
    assert st.energy_kwh[1] * 1000 + st.energy_wh[1] == exact_wh
    assert st.energy_wms[1] == 0
    assert st.energy_kwh_x10(1) == exact_wh // 100
    assert st.energy_kwh[0] == 0 and st.energy_kwh[2] == 0
    # about 6 GWh: far beyond what a 32-bit float counts in Wh (2**24 = 16.7 MWh)
    assert exact_wh > 2**24 * 300


def test_after_ten_years_one_second_ticks_still_count():
    st = StationState(2)
    st.energy_kwh[0] = 9636000  # 110 kW for 10 years
    st.run_s[0] = HOURS_10Y * 3600
    power = PROFILE_KW[7]  # f32 reading, kW
    ticks = 600
    for _ in range(ticks):
        st.add_energy(0, power, 1000)
        st.add_run(0, 1000)
    watts = round(power * 1000.0)
    added_wms = watts * 1000 * ticks
    got_wms = (
        (st.energy_kwh[0] - 9636000) * 3600000000 + st.energy_wh[0] * 3600000 + st.energy_wms[0]
    )
    assert got_wms == added_wms, (got_wms, added_wms)
    assert st.run_s[0] == HOURS_10Y * 3600 + ticks
    # the hazard this design avoids: a 32-bit float total in kWh no longer moves at all
    total = f32(9636000.0)
    assert f32(total + f32(power / 3600.0)) == total


def test_run_time_in_100_ms_ticks_is_exact_over_ten_years_of_seconds():
    st = StationState(1)
    st.run_s[0] = HOURS_10Y * 3600 - 5
    for _ in range(123):
        st.add_run(0, 100)
    assert st.run_s[0] == HOURS_10Y * 3600 - 5 + 12
    assert st.run_ms[0] == 300
    st.add_run(0, 0)
    st.add_run(0, -50)  # a clock glitch never subtracts
    assert st.run_ms[0] == 300
    assert 87660 < st.run_hours(0) < 87661


def test_energy_edge_cases():
    st = StationState(1)
    st.add_energy(0, -3.0, 1000)  # regenerating: not counted
    st.add_energy(0, float("nan"), 1000)
    st.add_energy(0, 5.0, 0)
    assert st.energy_wms[0] == 0 and not st.dirty
    st.add_energy(0, 3.6, 1000)  # 3600 W for 1 s = 1 Wh
    assert (st.energy_kwh[0], st.energy_wh[0], st.energy_wms[0]) == (0, 1, 0)
    st.add_energy_w(0, 250000, 3600000 + 7777)  # 250 kW: chunks keep ints small
    assert st.energy_kwh[0] == 250
    assert st.energy_wh[0] * 3600000 + st.energy_wms[0] == 3600000 + 250000 * 7777


def test_the_allocation_free_counters_allocate_nothing_on_micropython():
    from support import ON_MICROPYTHON, bytes_allocated

    st = StationState(3)

    def tick():
        for _ in range(50):
            st.add_run(2, 1000)
            st.add_energy_w(2, 87654, 1000)
            st.count_start(1)

    used = bytes_allocated(tick)
    if ON_MICROPYTHON:
        assert used == 0, used


def test_lockouts_and_commands_mark_the_state_urgent():
    st = StationState(3)
    assert not st.urgent
    st.set_pump_lockout(2, True)
    assert st.urgent and st.lockouts == 1
    st.urgent = False
    st.set_pump_lockout(2, True)  # no change
    assert not st.urgent and st.lockouts == 1
    st.set_station_lockout(True)
    st.set_station_lockout(False)
    assert st.lockouts == 2
    st.urgent = False
    assert st.accept_command(5)
    assert st.urgent
    assert not st.accept_command(5)  # replay
    assert not st.accept_command(4)
    assert st.accept_command(4000000000)  # u32 counters beyond small ints
    assert st.command_counter == 4000000000


def _populated():
    st = StationState(3)
    st.add_run(0, 123456789)
    st.add_energy_w(1, 99999, 987654)
    st.count_start(2)
    st.set_pump_lockout(1, True)
    st.set_station_lockout(True)
    st.accept_command(3000000000)
    return st


def test_json_round_trip():
    st = _populated()
    back = from_json(st.to_json(), 3)
    for name in (
        "run_s",
        "run_ms",
        "starts",
        "energy_kwh",
        "energy_wh",
        "energy_wms",
        "pump_lockout",
        "station_lockout",
        "lockouts",
        "command_counter",
    ):
        assert getattr(back, name) == getattr(st, name), name
    assert from_json(st.to_json().encode(), 3).run_s == st.run_s


def test_a_different_pump_count_is_adapted():
    st = _populated()
    two = from_json(st.to_json(), 2)
    assert two.run_s == st.run_s[:2] and two.pump_lockout == [False, True]
    four = from_json(st.to_json(), 4)
    assert four.starts == [0, 0, 1, 0]


def _raises_state_error(text, field):
    try:
        from_json(text, 3)
    except StateError as err:
        assert field in str(err), (field, str(err))
        return
    raise AssertionError("accepted: %r" % (text,))


def _with(key, value):
    doc = json.loads(_populated().to_json())
    if value is _DELETE:
        del doc[key]
    else:
        doc[key] = value
    return json.dumps(doc)


_DELETE = object()


def test_corrupt_state_raises_a_typed_error_naming_the_field():
    _raises_state_error("{", "JSON")
    _raises_state_error(b"\xff\xfe", "UTF-8")
    _raises_state_error("[1, 2]", "object")
    _raises_state_error(_with("v", 2), "v")
    _raises_state_error(_with("run_ms", [1000, 0, 0]), "run_ms[0]")
    _raises_state_error(_with("starts", [0, -1, 0]), "starts[1]")
    _raises_state_error(_with("kwh", [0, 0, 1.5]), "kwh[2]")
    _raises_state_error(_with("wh", "x"), "wh")
    _raises_state_error(_with("wms", [3600000]), "wms[0]")
    _raises_state_error(_with("lockouts", True), "lockouts")
    _raises_state_error(_with("station_lockout", 2), "station_lockout")
    _raises_state_error(_with("command_counter", _DELETE), "command_counter")
    _raises_state_error(_with("pump_lockout", [3]), "pump_lockout[0]")
    _raises_state_error(_with("extra", 1), "extra: unknown field")


def test_load_and_save_survive_a_power_loss_mid_write():
    fs = MemFS(fat=True)
    st, seq = state_mod.load(fs, "/state", 3, fs.open)
    assert seq == 0 and st.run_s == [0, 0, 0]
    st.add_run(0, 5000)
    seq += 1
    state_mod.save(fs, "/state", st, seq, fs.open)
    assert not st.dirty
    st.add_run(0, 5000)
    st.accept_command(77)
    fs.bytes_before_crash = 40
    try:
        state_mod.save(fs, "/state", st, seq + 1, fs.open)
    except PowerLoss:
        pass
    fs.bytes_before_crash = None
    again, seq2 = state_mod.load(fs, "/state", 3, fs.open)
    assert seq2 == 1
    assert again.run_s[0] == 5 and again.command_counter == 0  # the previous state, intact
    # a CRC-valid copy with bad content falls back to the older one
    state_mod.save(fs, "/state", again, 2, fs.open)
    from relaypump import storage

    storage.save(fs, "/state", b'{"v": 9}', 3, fs.open)
    third, seq3 = state_mod.load(fs, "/state", 3, fs.open)
    assert seq3 == 2 and third.run_s[0] == 5
