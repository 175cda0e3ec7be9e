"""Drive profiles: control words, start/reset sequences, status decoding, scaling, fault meanings.

Words and bits from the vendors' manuals (ABB Drives profile, Danfoss FC profile, PROFIdrive /
SINAMICS G120), as station-reference.md and the simulator's drives document them.
"""

from relaypump import drives as d
from relaypump.snapshot import (
    CMD_COAST,
    CMD_QUICK_STOP,
    CMD_RUN,
    CMD_STOP,
    DRIVE_NOT_READY,
    DRIVE_READY,
    DRIVE_RUNNING,
    DRIVE_TRIPPED,
)
from support import ON_MICROPYTHON, bytes_allocated

VM_HEAP_KIB = 192  # the config test loads station.json


def abb():
    return d.make_profile(
        {"unit": 1, "profile": "abb", "ref_full_scale": 20000, "rated_current_a": 200.0}, 110.0
    )


def danfoss():
    return d.make_profile({"unit": 2, "profile": "danfoss"}, 110.0)


def g120():
    return d.make_profile({"unit": 3, "profile": "g120", "rated_current_a": 200.0}, 110.0)


def word_after(profile, status, command, reset=False):
    profile.decode_status(status)
    return profile.control_word(command, reset)


def test_profiles_are_chosen_by_name():
    assert isinstance(abb(), d.AbbProfile)
    assert isinstance(danfoss(), d.DanfossProfile)
    assert type(g120()) is d.ProfidriveProfile
    assert (
        type(d.make_profile({"profile": "profidrive", "rated_current_a": 200.0}))
        is d.ProfidriveProfile
    )
    for bad in ({"profile": "vacon"}, {}, {"profile": "abb", "ref_full_scale": 40000}):
        try:
            d.make_profile(bad, 110.0)
        except d.ProfileError:
            continue
        raise AssertionError("accepted %r" % (bad,))
    try:
        d.make_profile(
            {"profile": "abb", "rated_current_a": 200.0}
        )  # ACT2 power needs the rated power
    except d.ProfileError:
        pass
    else:
        raise AssertionError("abb without rated_kw")


def test_register_maps():
    p = abb()
    assert (p.CONTROL_ADDRESS, p.REFERENCE_ADDRESS, p.STATUS_ADDRESS, p.STATUS_COUNT) == (
        0,
        1,
        3,
        3,
    )
    assert p.contiguous_write and p.FAULT_ADDRESS == 400
    p = danfoss()
    assert (p.CONTROL_ADDRESS, p.REFERENCE_ADDRESS) == (49999, 50009)
    assert (p.STATUS_ADDRESS, p.ACTUAL_ADDRESS) == (50199, 50209)
    assert not p.contiguous_write and p.FAULT_ADDRESS == 15299
    p = g120()  # Siemens register 40100 = wire address 99
    assert (p.CONTROL_ADDRESS, p.REFERENCE_ADDRESS, p.STATUS_ADDRESS) == (99, 100, 109)
    assert p.STATUS_COUNT == 2 and p.ACTUAL_INDEX == 1 and p.contiguous_write


def test_profidrive_start_sequence_is_driven_by_the_status():
    for p in (abb(), g120()):
        assert word_after(p, 0x0270, CMD_RUN) == 0x0476  # switch-on inhibited -> OFF1 first
        assert word_after(p, 0x0231, CMD_RUN) == 0x0477  # ready to switch on -> switch on
        assert word_after(p, 0x0233, CMD_RUN) == 0x047F  # ready to operate -> enable operation
        assert word_after(p, 0x0737, CMD_RUN) == 0x047F  # running at setpoint: keep
        assert word_after(p, 0x0000, CMD_RUN) == 0x0476  # nothing known: safe word


def test_profidrive_stop_words():
    for p in (abb(), g120()):
        assert word_after(p, 0x0737, CMD_STOP) == 0x047E  # OFF1 with pulses enabled: ramp
        assert word_after(p, 0x0737, CMD_COAST) == 0x047D  # OFF2
        assert word_after(p, 0x0737, CMD_QUICK_STOP) == 0x047B  # OFF3
        assert word_after(p, 0x0231, CMD_STOP) == 0x047E


def test_profidrive_reset_is_a_rising_edge_of_bit_7():
    p = abb()
    assert word_after(p, 0x0737, CMD_RUN) == 0x047F
    tripped = 0x0238
    assert word_after(p, tripped, CMD_RUN) == 0x0476 and not p.reset_sent  # no reset asked
    assert word_after(p, tripped, CMD_RUN, True) == 0x04F6 and p.reset_sent
    # Still tripped (cause present): bit 7 must fall before the next edge.
    assert word_after(p, tripped, CMD_RUN, True) == 0x0476 and not p.reset_sent
    assert word_after(p, tripped, CMD_RUN, True) == 0x04F6 and p.reset_sent
    # A reset request for a healthy drive writes no edge.
    assert word_after(p, 0x0737, CMD_RUN, True) == 0x047F and not p.reset_sent


def test_danfoss_words_and_reset():
    p = danfoss()
    assert word_after(p, 0x0607, CMD_RUN) == 0x047C
    assert word_after(p, 0x0F07, CMD_STOP) == 0x043C
    assert word_after(p, 0x0F07, CMD_COAST) == 0x0474
    assert word_after(p, 0x0F07, CMD_QUICK_STOP) == 0x046C
    tripped = 0x0208
    assert word_after(p, tripped, CMD_RUN) == 0x043C  # start bit 0 while tripped
    assert word_after(p, tripped, CMD_RUN, True) == 0x04BC and p.reset_sent
    assert word_after(p, tripped, CMD_RUN, True) == 0x043C and not p.reset_sent
    assert word_after(p, 0x0607, CMD_RUN) == 0x047C


def test_status_decoding():
    for p in (abb(), g120()):
        assert p.decode_status(0x0737) == DRIVE_RUNNING
        assert p.decode_status(0x0637) == DRIVE_RUNNING  # ramping (not at setpoint)
        assert p.decode_status(0x0231) == DRIVE_READY
        assert p.decode_status(0x0270) == DRIVE_READY  # switch-on inhibited: we can start it
        assert p.decode_status(0x0238) == DRIVE_TRIPPED
        assert p.decode_status(0x023F) == DRIVE_TRIPPED  # trip wins
        assert p.decode_status(0x0031) == DRIVE_NOT_READY  # not under fieldbus control
        assert p.status == 0x0031
    p = danfoss()
    assert p.decode_status(0x0F07) == DRIVE_RUNNING
    assert p.decode_status(0x0607) == DRIVE_READY
    assert p.decode_status(0x0208) == DRIVE_TRIPPED
    assert p.decode_status(0x0201) == DRIVE_NOT_READY  # drive not ready
    assert p.decode_status(0x0407) == DRIVE_NOT_READY  # no bus control


def test_reference_scaling():
    p = abb()
    assert p.reference(50.0) == 10000
    assert p.reference(100.0) == 20000
    assert p.reference(130.0) == 20000  # clamped: pump drives do not overspeed on our word
    assert p.reference(-5.0) == 0
    assert p.reference(float("nan")) == 0
    assert p.reference(33.3333) == 6667
    q = danfoss()
    assert q.reference(50.0) == 0x2000 and q.reference(100.0) == 0x4000
    r = d.make_profile({"profile": "abb", "ref_full_scale": 10000, "rated_current_a": 200.0}, 110.0)
    assert r.reference(75.0) == 7500 and r.speed_pct(7500) == 75.0


def test_actual_values_are_signed_and_scaled():
    p = abb()
    assert p.speed_pct(10000) == 50.0
    assert p.speed_pct(0xFFFF) == -0.005
    assert g120().speed_pct(0x4000) == 100.0
    assert abs(10000 * p.power_scale - 110.0) < 1e-9  # ACT2 10000 = rated power
    assert g120().CURRENT_SCALE == 0.01 and danfoss().CURRENT_SCALE == 0.1


def test_fault_codes_have_a_common_meaning():
    p = abb()
    assert p.fault_meaning(0) == d.FAULT_NONE
    assert p.fault_meaning(0x2310) == d.FAULT_OVERCURRENT
    assert p.fault_meaning(0x4210) == d.FAULT_OVERTEMPERATURE
    assert p.fault_meaning(0x3210) == d.FAULT_DC_OVERVOLTAGE
    assert p.fault_meaning(0x7510) == d.FAULT_COMM_LOSS
    assert p.fault_meaning(0x1234) == d.FAULT_OTHER
    q = danfoss()
    assert [q.fault_meaning(c) for c in (13, 29, 7, 17, 99)] == [
        d.FAULT_OVERCURRENT,
        d.FAULT_OVERTEMPERATURE,
        d.FAULT_DC_OVERVOLTAGE,
        d.FAULT_COMM_LOSS,
        d.FAULT_OTHER,
    ]
    r = g120()
    assert [r.fault_meaning(c) for c in (30001, 30004, 30002, 1910)] == [
        d.FAULT_OVERCURRENT,
        d.FAULT_OVERTEMPERATURE,
        d.FAULT_DC_OVERVOLTAGE,
        d.FAULT_COMM_LOSS,
    ]


def test_words_allocate_nothing():
    profiles = (abb(), danfoss(), g120())

    def hundred_words():
        for _ in range(100):
            for p in profiles:
                p.decode_status(0x0231)
                p.control_word(CMD_RUN, False)
                p.fault_meaning(0x2310)

    hundred_words()
    assert bytes_allocated(hundred_words) <= (0 if ON_MICROPYTHON else 2000)


def test_ramp_time_parameters_and_scales():
    # ABB 23.12 / 23.13 (402312 / 402313), 10 = 1 s; one write of both.
    p = d.make_profile(
        {"profile": "abb", "ramp_up_s": 100.0, "ramp_down_s": 120.5, "rated_current_a": 200.0},
        110.0,
    )
    assert p.ramp_blocks[:1] == (2311,) and p.ramp_values[:1] == ([1000, 1205],)
    assert p.ramp_ds(0, 1205) == 1205
    # Danfoss 3-41 / 3-42: 32-bit, high word first, 0.01 s; not adjacent: one write each.
    p = d.make_profile({"profile": "danfoss", "ramp_up_s": 3600.0, "ramp_down_s": 100.0})
    assert p.ramp_blocks[:2] == (3409, 3419)
    assert p.ramp_values[:2] == ([5, 32320], [0, 10000])  # 360000 = 5 * 65536 + 32320
    assert p.ramp_ds(5, 32320) == 36000
    # G120 p1120 / p1121 (40322 / 40323), 0.01 s.
    p = d.make_profile(
        {"profile": "g120", "ramp_up_s": 650.0, "ramp_down_s": 60.0, "rated_current_a": 200.0}
    )
    assert p.ramp_blocks[:1] == (321,) and p.ramp_values[:1] == ([65000, 6000],)
    assert p.ramp_ds(0, 6000) == 600
    # The default (100 / slew) when the config does not name them.
    assert d.make_profile({"profile": "g120", "rated_current_a": 200.0}, 0.0, 50.0).ramp_values[
        0
    ] == [5000, 5000]
    bad = (
        {"profile": "abb", "ramp_up_s": 1800.5, "rated_current_a": 200.0},
        {"profile": "danfoss", "ramp_down_s": 0.0},
        {"profile": "g120", "ramp_up_s": 651.0, "rated_current_a": 200.0},
        {"profile": "g120", "ramp_down_s": float("nan"), "rated_current_a": 200.0},
    )
    for pump in bad:
        try:
            d.make_profile(pump, 110.0)
        except d.ProfileError as e:
            assert "ramp_" in str(e), str(e)
            continue
        raise AssertionError("accepted %r" % (pump,))


def test_current_limit_parameters_and_scales():
    # ABB 30.17 maximum current (403017), 0.1 A; G120 p0640 (40321), 0.1 A: from the rated current.
    p = d.make_profile({"profile": "abb", "current_limit_pct": 95.0, "rated_current_a": 180.0}, 1.0)
    assert p.ramp_blocks[-1] == 3016 and p.ramp_values[-1] == [1710]  # 171.0 A
    assert p.limit_pct10(0, 1710) == 950 and p.limit_pct10(0, 2200) == 1222
    p = d.make_profile({"profile": "g120", "rated_current_a": 200.0})  # default 100 %
    assert p.ramp_blocks == (321, 320) and p.ramp_values[-1] == [2000]
    # Danfoss 4-18: 32-bit, 0.1 % of the motor's nominal current, no amps needed.
    p = d.make_profile({"profile": "danfoss", "current_limit_pct": 100.0})
    assert p.ramp_blocks == (3409, 3419, 4179) and p.ramp_values[-1] == [0, 1000]
    assert p.limit_pct10(0, 1100) == 1100
    bad = (
        ({"profile": "abb"}, "rated_current_a"),  # the limit is in amps
        ({"profile": "g120", "rated_current_a": 0.0}, "rated_current_a"),
        ({"profile": "danfoss", "current_limit_pct": 151.0}, "current_limit_pct"),
        ({"profile": "danfoss", "current_limit_pct": float("nan")}, "current_limit_pct"),
    )
    for pump, field in bad:
        try:
            d.make_profile(pump, 110.0)
        except d.ProfileError as e:
            assert field in str(e), str(e)
            continue
        raise AssertionError("accepted %r" % (pump,))


def test_config_current_limit_keys():
    from relaypump.config import ConfigError, load_config
    from support import station_config

    shipped = load_config(station_config())
    assert [p["current_limit_pct"] for p in shipped["pumps"]] == [100.0] * 3
    doc = station_config()
    del doc["pumps"][1]["rated_current_a"]  # Danfoss takes % of the rated current
    del doc["pumps"][1]["current_limit_pct"]
    pumps = load_config(doc)["pumps"]
    assert pumps[1]["current_limit_pct"] == 100.0 and "rated_current_a" not in pumps[1]
    cases = (
        ("pumps[0].rated_current_a", None, "required: the abb drive"),
        ("pumps[2].rated_current_a", None, "required: the g120 drive"),
        ("pumps[2].rated_current_a", 0.0, "outside"),
        ("pumps[1].current_limit_pct", 151.0, "outside"),
        ("pumps[0].current_limit_pct", True, "must be a number"),
    )
    for field, value, why in cases:
        doc = station_config()
        key = field.split(".")[1]
        if value is None:
            del doc["pumps"][int(field[6])][key]
        else:
            doc["pumps"][int(field[6])][key] = value
        try:
            load_config(doc)
        except ConfigError as e:
            assert str(e).startswith(field) and why in str(e), str(e)
            continue
        raise AssertionError("accepted %s = %r" % (field, value))


def test_config_ramp_times_keep_the_slew_limit():
    from relaypump.config import ConfigError, load_config
    from support import station_config

    shipped = load_config(station_config())
    assert [(p["ramp_up_s"], p["ramp_down_s"]) for p in shipped["pumps"]] == [(100.0, 100.0)] * 3
    doc = station_config()
    doc["speed"]["slew_pct_per_s"] = 2.0
    for p in doc["pumps"]:
        del p["ramp_up_s"]
        del p["ramp_down_s"]
    assert load_config(doc)["pumps"][1]["ramp_down_s"] == 50.0  # default: 100 / slew
    cases = (
        ("pumps[0].ramp_up_s", 99.0, "faster than speed.slew_pct_per_s"),
        ("pumps[1].ramp_down_s", 3600.5, "outside"),
        ("pumps[2].ramp_up_s", 651.0, "outside"),
        ("pumps[2].ramp_down_s", "100", "must be a number"),
    )
    for field, value, why in cases:
        doc = station_config()
        doc["pumps"][int(field[6])][field.split(".")[1]] = value
        try:
            load_config(doc)
        except ConfigError as e:
            assert str(e).startswith(field) and why in str(e), str(e)
            continue
        raise AssertionError("accepted %s = %r" % (field, value))
