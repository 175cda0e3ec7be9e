"""Signed commands: every ack result, the counter rules, the envelope, config changes, HMAC.

On CPython a host-side signer written here apart from the firmware (struct + CPython's hmac) and
the construct schema of protocol/uplink.py prove that the agent's verification agrees byte for
byte; in the VM the shared vectors (protocol/vectors/uplink.json) and RFC 4231 do the same.
"""

from relaypump import commands, config, config_keys, uplink
from relaypump.codes import (
    ACK_BAD_SIGNATURE,
    ACK_CLOCK_NOT_SYNCED,
    ACK_EXPIRED,
    ACK_MALFORMED,
    ACK_OK,
    ACK_OUT_OF_ENVELOPE,
    ACK_REFUSED_LOCAL,
    ACK_REPLAYED,
    ACK_UNKNOWN_COMMAND,
    ACK_WRONG_STATION,
    EVENT_COMMAND_ACCEPTED,
    EVENT_COMMAND_REJECTED,
    MODE_DISCHARGE,
    MODE_LOCAL,
    MODE_MANUAL_SPEED,
    MODE_OFF,
    MODE_REMOTE_DP,
)
from relaypump.wallclock import WallClock
from support import ON_MICROPYTHON, bytes_allocated, load_vector, station_config

VM_HEAP_KIB = 256  # a config change compiles config.py and uplink_config.py (its judge)
KEY = bytes(range(0x40, 0x60))  # 32 bytes, the vectors' key
STATION = 17
T0 = 1764547300  # the vectors' time
NOW_MS = 5000


def clock(synced=True):
    c = WallClock()
    if synced:
        c.set_time(T0, NOW_MS)
    return c


_CFG = []


def cfg():
    """The reference config for STATION, validated once (the VM cannot collect inside a test)."""
    if not _CFG:
        doc = station_config()
        doc["station"]["id"] = STATION
        _CFG.append(config.load_config(doc))
    return _CFG[0]


def agent(synced=True):
    return commands.Commands(STATION, KEY, cfg(), clock(synced))


def sign(command_type, *args, counter=1001, expiry=T0 + 60, station=STATION, key=KEY):
    buf = bytearray(uplink.COMMAND_MAX_SIZE)
    values = [station, 900, T0, counter, expiry, command_type] + list(args)
    n = uplink.encode_command(buf, values, key)
    return bytes(buf[:n])


def setpoint(kpa_x10, **kw):
    return sign(uplink.COMMAND_SETPOINT, kpa_x10, **kw)


def judge(frame, last=1000, mode=MODE_REMOTE_DP, cmds=None):
    cmds = cmds or agent()
    return cmds.handle(frame, NOW_MS, last, mode), cmds


def test_a_valid_setpoint_is_accepted_with_its_ack_and_event():
    result, cmds = judge(setpoint(1250))
    assert result == ACK_OK and cmds.consumed and cmds.counter == 1001
    assert cmds.command_type == uplink.COMMAND_SETPOINT and cmds.arg == 1250
    assert cmds.config is None
    buf = bytearray(uplink.EVENT_SIZE)
    assert cmds.ack(buf, 42, T0 + 1) == uplink.ACK_SIZE
    assert uplink.decode_ack(bytes(buf[: uplink.ACK_SIZE])) == (STATION, 42, T0 + 1, 1001, ACK_OK)
    assert cmds.event(buf, 43, T0 + 1) == uplink.EVENT_SIZE
    code, severity, subject, value = uplink.decode_event(bytes(buf))[3:]
    assert code == EVENT_COMMAND_ACCEPTED and value == uplink.COMMAND_SETPOINT and subject == 0
    del severity


def test_every_refusal_has_its_own_ack_result_and_an_event():
    cases = [
        ("bad tag", setpoint(1250, key=bytes(32)), ACK_BAD_SIGNATURE, False),
        ("replayed", setpoint(1250, counter=1000), ACK_REPLAYED, False),
        ("older counter", setpoint(1250, counter=7), ACK_REPLAYED, False),
        ("expired", setpoint(1250, expiry=T0 - 1), ACK_EXPIRED, True),
        ("too high", setpoint(2010), ACK_OUT_OF_ENVELOPE, True),
        ("too low", setpoint(590), ACK_OUT_OF_ENVELOPE, True),
        ("wrong station", setpoint(1250, station=18), ACK_WRONG_STATION, False),
        ("mode LOCAL", sign(uplink.COMMAND_MODE, MODE_LOCAL), ACK_OUT_OF_ENVELOPE, True),
        ("mode 9", sign(uplink.COMMAND_MODE, 9), ACK_OUT_OF_ENVELOPE, True),
        ("pump 4 of 3", sign(uplink.COMMAND_PUMP_ENABLE, 4), ACK_OUT_OF_ENVELOPE, True),
        ("pump 0", sign(uplink.COMMAND_PUMP_DISABLE, 0), ACK_OUT_OF_ENVELOPE, True),
        ("reset pump 4", sign(uplink.COMMAND_RESET, 4), ACK_OUT_OF_ENVELOPE, True),
        ("config key 999", sign(uplink.COMMAND_CONFIG_CHANGE, 999, 1), ACK_UNKNOWN_COMMAND, True),
        ("truncated", setpoint(1250)[:40], ACK_MALFORMED, False),
        ("too long", setpoint(1250) + b"\x00", ACK_MALFORMED, False),
        ("garbage", b"\x00" * 59, ACK_MALFORMED, False),
        ("empty", b"", ACK_MALFORMED, False),
    ]
    buf = bytearray(uplink.EVENT_SIZE)
    for name, frame, want, consumed in cases:
        result, cmds = judge(frame)
        assert result == want, (name, result)
        assert cmds.consumed == consumed, name
        cmds.event(buf, 1, T0)
        code, _, _, value = uplink.decode_event(bytes(buf))[3:]
        assert code == EVENT_COMMAND_REJECTED and value == want, name
        cmds.ack(buf, 2, T0)
        assert uplink.decode_ack(bytes(buf[: uplink.ACK_SIZE]))[4] == want, name


def test_an_unknown_command_type_is_its_own_result():
    frame = bytearray(setpoint(1250))
    frame[24] = 9
    assert judge(bytes(frame))[0] == ACK_UNKNOWN_COMMAND


def test_an_unsynced_clock_is_refused_not_trusted():
    cmds = agent(synced=False)
    # even a command whose expiry lies decades ahead: without the time, nothing runs
    result = cmds.handle(setpoint(1250, expiry=0xFFFFFFFF), NOW_MS, 1000, MODE_REMOTE_DP)
    assert result == ACK_CLOCK_NOT_SYNCED and cmds.consumed
    cmds.clock.set_time(T0, NOW_MS)
    assert cmds.handle(setpoint(1250, counter=1002), NOW_MS, 1001, MODE_REMOTE_DP) == ACK_OK


def test_expiry_is_judged_on_the_wall_clock_to_the_second():
    cmds = agent()
    later = NOW_MS + 60999  # T0 + 60.999 s: the expiry second itself
    assert cmds.handle(setpoint(1250, expiry=T0 + 60), later, 1000, MODE_REMOTE_DP) == ACK_OK
    result = cmds.handle(setpoint(1250, expiry=T0 + 60, counter=1002), later + 1, 1001, 1)
    assert result == ACK_EXPIRED


def test_local_control_refuses_every_authentic_command():
    for frame in (setpoint(1250), sign(uplink.COMMAND_RESET, 0)):
        result, cmds = judge(frame, mode=MODE_LOCAL)
        assert result == ACK_REFUSED_LOCAL and cmds.consumed


def test_the_setpoint_envelope_follows_the_pressure_mode():
    c = cfg()
    top = c["protection"]["discharge_max_kpa"] - c["protection"]["discharge_slowdown_kpa"]
    assert judge(setpoint(600))[0] == ACK_OK  # 60.0 kPa = setpoint.min_kpa
    assert judge(setpoint(2000))[0] == ACK_OK  # 200.0 = max_kpa
    assert judge(setpoint(5000), mode=MODE_DISCHARGE)[0] == ACK_OK
    assert judge(setpoint(int(top * 10)), mode=MODE_DISCHARGE)[0] == ACK_OUT_OF_ENVELOPE
    assert judge(setpoint(0), mode=MODE_DISCHARGE)[0] == ACK_OUT_OF_ENVELOPE
    for mode in (MODE_OFF, MODE_MANUAL_SPEED):
        assert judge(setpoint(1250), mode=mode)[0] == ACK_OUT_OF_ENVELOPE


def test_mode_pump_and_reset_commands_in_the_envelope():
    for mode in (MODE_OFF, MODE_REMOTE_DP, MODE_DISCHARGE, MODE_MANUAL_SPEED):
        assert judge(sign(uplink.COMMAND_MODE, mode))[0] == ACK_OK
    for pump in (1, 2, 3):
        assert judge(sign(uplink.COMMAND_PUMP_ENABLE, pump))[0] == ACK_OK
        result, cmds = judge(sign(uplink.COMMAND_PUMP_DISABLE, pump))
        assert result == ACK_OK
        buf = bytearray(uplink.EVENT_SIZE)
        cmds.event(buf, 1, T0)
        assert uplink.decode_event(bytes(buf))[5] == pump  # the event's subject
    for pump in (0, 1, 3):
        assert judge(sign(uplink.COMMAND_RESET, pump))[0] == ACK_OK


def test_a_config_change_is_validated_and_handed_back():
    before = cfg()
    cmds = commands.Commands(STATION, KEY, before, clock())
    frame = sign(uplink.COMMAND_CONFIG_CHANGE, 1, 1300)  # setpoint.dp_kpa = 130.0
    assert cmds.handle(frame, NOW_MS, 1000, MODE_REMOTE_DP) == ACK_OK
    new = cmds.config
    assert new["setpoint"]["dp_kpa"] == 130.0
    assert before["setpoint"]["dp_kpa"] == 111.0  # the config in force is not touched
    new["setpoint"]["dp_kpa"] = 111.0
    assert new == before  # nothing else changed
    # a value config.load_config refuses (dp_kpa above max_kpa 200) is out of the envelope
    frame = sign(uplink.COMMAND_CONFIG_CHANGE, 1, 2500, counter=1002)
    assert cmds.handle(frame, NOW_MS, 1001, MODE_REMOTE_DP) == ACK_OUT_OF_ENVELOPE
    assert cmds.config is None and cmds.consumed
    # a boolean takes 0 or 1 only; an applied config moves the envelope
    frame = sign(uplink.COMMAND_CONFIG_CHANGE, 69, 2, counter=1003)
    assert cmds.handle(frame, NOW_MS, 1002, MODE_REMOTE_DP) == ACK_OUT_OF_ENVELOPE
    frame = sign(uplink.COMMAND_CONFIG_CHANGE, 3, 1500, counter=1004)  # max_kpa 150
    assert cmds.handle(frame, NOW_MS, 1003, MODE_REMOTE_DP) == ACK_OK
    cmds.use_config(cmds.config)
    assert cmds.handle(setpoint(1600, counter=1005), NOW_MS, 1004, MODE_REMOTE_DP) == (
        ACK_OUT_OF_ENVELOPE
    )


def test_config_key_ids_follow_the_schema_and_are_never_reused():
    ids = [entry[0] for entry in config_keys.CONFIG_KEYS]
    assert len(set(ids)) == len(ids)
    assert not set(ids) & set(config_keys.RETIRED_KEY_IDS)
    assert all(0 < i < 0x10000 for i in ids)  # the frame's key field is u16
    c = cfg()
    named = set()
    for _, section, name, _, _ in config_keys.CONFIG_KEYS:
        named.add(section + "." + name)
        assert name in c[section] or (section, name) == ("staging", "max_running"), name
    for section in ("setpoint", "speed", "pid", "staging", "protection"):
        for name in c[section]:
            value = c[section][name]
            if type(value) in (int, float, bool):
                path = section + "." + name
                assert path in named or path in config_keys.NOT_REMOTE, path


def test_every_config_key_takes_its_current_value_back():
    c = cfg()
    cmds = commands.Commands(STATION, KEY, c, clock())
    counter = 1000
    step = 4 if ON_MICROPYTHON else 1  # the VM collects no garbage within a test
    for i in range(0, len(config_keys.CONFIG_KEYS), step):
        key_id, section, name, scale, kind = config_keys.CONFIG_KEYS[i]
        if name not in c[section]:
            continue
        value = c[section][name]
        raw = int(value) if kind != 0 else int(round(value * scale))
        counter += 1
        frame = sign(uplink.COMMAND_CONFIG_CHANGE, key_id, raw, counter=counter)
        result = cmds.handle(frame, NOW_MS, counter - 1, MODE_REMOTE_DP)
        assert result == ACK_OK, (section, name, result)
        got = cmds.config[section][name]
        assert type(got) is type(value) and abs(got - value) <= 1.0 / scale, (name, got, value)


def test_no_single_byte_change_is_ever_accepted():
    frame = setpoint(1250)
    cmds = agent()
    assert cmds.handle(frame, NOW_MS, 1000, MODE_REMOTE_DP) == ACK_OK
    for i in range(len(frame)):
        bad = bytearray(frame)
        bad[i] ^= 0x01
        result = cmds.handle(bytes(bad), NOW_MS, 1000, MODE_REMOTE_DP)
        assert result != ACK_OK, i
        assert not cmds.consumed, i  # a forged frame never moves the counter


def test_the_shared_vectors_verify():
    vectors = load_vector("uplink")
    key = bytes.fromhex(vectors["key_hex"])
    assert key == KEY
    seen = 0
    for vector in vectors["frames"]:
        if vector["kind"] != "command":
            continue
        frame = bytes.fromhex(vector["hex"])
        fields = vector["fields"]
        cmds = commands.Commands(fields["station_id"], key, cfg(), clock())
        cmds.clock.set_time(fields["timestamp_s"], NOW_MS)
        result = cmds.handle(frame, NOW_MS, fields["command_counter"] - 1, MODE_REMOTE_DP)
        assert result in (ACK_OK, ACK_OUT_OF_ENVELOPE, ACK_UNKNOWN_COMMAND), vector["name"]
        assert cmds.consumed and cmds.counter == fields["command_counter"], vector["name"]
        seen += 1
    assert seen >= 6


RFC4231 = (
    # (key, data, HMAC-SHA256): RFC 4231 test cases 1, 2 and 6 (a key longer than the block)
    (b"\x0b" * 20, b"Hi There", "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"),
    (
        b"Jefe",
        b"what do ya want for nothing?",
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
    ),
    (
        b"\xaa" * 131,
        b"Test Using Larger Than Block-Size Key - Hash Key First",
        "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
    ),
)


def test_hmac_from_hashlib_matches_rfc_4231():
    import binascii

    for key, data, want in RFC4231:
        assert binascii.hexlify(uplink.hmac_sha256(key, data)).decode() == want


def test_hmac_from_hashlib_matches_cpythons_hmac():
    if ON_MICROPYTHON:
        return  # no reference hmac to trust in the VM: RFC 4231 above covers it
    import hashlib
    import hmac

    for key_len in (16, 32, 63, 64, 65, 200):
        key = bytes((i * 7 + key_len) & 0xFF for i in range(key_len))
        for data_len in (0, 1, 27, 55, 56, 64, 100):
            data = bytes((i * 13) & 0xFF for i in range(data_len))
            assert uplink.hmac_sha256(key, data) == hmac.new(key, data, hashlib.sha256).digest()
            assert (
                uplink.hmac_sha256(key, memoryview(data))
                == hmac.new(key, data, hashlib.sha256).digest()
            )


def test_a_host_signer_written_apart_agrees_byte_for_byte():
    if ON_MICROPYTHON:
        return  # CPython's hmac and the construct schema run on the host only
    import hashlib
    import hmac
    import struct

    from protocol import uplink as schema

    def host_sign(fmt, *fields):
        body = struct.pack(">2sBBIIIIIB" + fmt, b"RP", 1, 3, *fields)
        return body + hmac.new(KEY, body, hashlib.sha256).digest()

    cases = [
        (host_sign("h", STATION, 5, T0, 1001, T0 + 60, 1, 1250), {"setpoint_kpa_x10": 1250}),
        (host_sign("B", STATION, 6, T0, 1001, T0 + 60, 2, 3), {"mode": 3}),
        (host_sign("B", STATION, 7, T0, 1001, T0 + 60, 3, 2), {"pump": 2}),
        (host_sign("B", STATION, 8, T0, 1001, T0 + 60, 4, 1), {"pump": 1}),
        (host_sign("B", STATION, 9, T0, 1001, T0 + 60, 5, 0), {"pump": 0}),
        (host_sign("Hi", STATION, 10, T0, 1001, T0 + 60, 6, 1, 1300), {"key": 1, "value": 1300}),
    ]
    for frame, args in cases:
        parsed = schema.parse(schema.command, frame, key=KEY)  # the schema verifies the tag
        rebuilt = schema.build(
            schema.command,
            {
                "station_id": parsed.station_id,
                "seq": parsed.seq,
                "timestamp_s": parsed.timestamp_s,
                "command_counter": parsed.command_counter,
                "expiry_s": parsed.expiry_s,
                "command_type": parsed.command_type,
                "args": args,
            },
            key=KEY,
        )
        assert rebuilt == frame
        values = [STATION, parsed.seq, T0, 1001, T0 + 60, parsed.command_type] + list(args.values())
        buf = bytearray(uplink.COMMAND_MAX_SIZE)
        n = uplink.encode_command(buf, values, KEY)
        assert bytes(buf[:n]) == frame  # the agent's own signer, byte for byte
        result, cmds = judge(frame)
        assert result == ACK_OK and cmds.consumed, parsed.command_type
        # the host's tag under another key is refused
        forged = frame[:-32] + hmac.new(b"k" * 32, frame[:-32], hashlib.sha256).digest()
        assert judge(forged)[0] == ACK_BAD_SIGNATURE


def test_key_errors_name_the_field():
    from relaypump import uplink_config

    for bad in (b"short", "a text key of 32 characters....", None):
        try:
            commands.Commands(STATION, bad, cfg(), clock())
        except uplink_config.CommandConfigError as err:
            assert "commands.key" in str(err)
            continue
        raise AssertionError("took key %r" % bad)


def test_allocation_per_command_is_small():
    cmds = agent()
    frame = setpoint(1250)
    buf = bytearray(uplink.EVENT_SIZE)
    cmds.handle(frame, NOW_MS, 1000, MODE_REMOTE_DP)

    def one():
        cmds.handle(frame, NOW_MS, 1000, MODE_REMOTE_DP)
        cmds.ack(buf, 1, T0)
        cmds.event(buf, 2, T0)

    used = bytes_allocated(one)
    assert used <= (1024 if ON_MICROPYTHON else 4096), used


def test_config_section_errors_name_the_field():  # last: it loads the config's code (VM heap)
    from relaypump import uplink_config

    assert uplink_config.commands_section(None) == {"key_file": "/station.key"}
    for doc, field in (({"key": "00"}, "commands.key"), ({"key_file": ""}, "key_file")):
        try:
            uplink_config.commands_section(doc)
        except uplink_config.CommandConfigError as err:
            assert field in str(err)
            continue
        raise AssertionError("took %r" % doc)
