"""The bridge without I/O (host_tools/uplink/bridge.py Bridge, sparkplug_station.py): the rules a
broker test reaches only by luck or at length. Frames are built with protocol/uplink.py's
construct schema; what the bridge returns is decoded with our codec (proven against the peer in
test_sparkplug_codec.py)."""

import json

import pytest

from host_tools.uplink import sparkplug as sp
from host_tools.uplink import sparkplug_station as st
from host_tools.uplink.bridge import Bridge, next_bd_seq
from host_tools.uplink.pumpctl import StationKey
from protocol import layout
from protocol import uplink as P

KEY = bytes(range(16, 48))
T0 = 1_780_000_000


def telemetry(seq, suction=1234, alarm_bits=0, station_id=7, mode=1):
    pumps = [dict(speed_pct_x100=5000, current_a_x10=100, power_kw_x10=200, state=4,
                  fault_code=0, energy_kwh_x10=10)] * 3  # fmt: skip
    return P.build(P.telemetry, dict(
        station_id=station_id, seq=seq, timestamp_s=T0 + 10 * seq, suction_kpa_x10=suction,
        discharge_kpa_x10=4000, remote_dp_kpa_x10=-32768, supply_temp_c_x100=9000,
        return_temp_c_x100=5000, flow_m3h_x10=5000, setpoint_kpa_x10=1110, mode=mode,
        alarm_bits=alarm_bits, station_energy_kwh_x10=99, pumps=pumps))  # fmt: skip


def event(seq, code=P.EventCode.PUMP_STARTED, value=5500):
    return P.build(P.event, dict(station_id=7, seq=seq, timestamp_s=T0 + seq, code=code,
                                 severity=0, subject=1, value=value))  # fmt: skip


def ack(counter, result=P.AckResult.OK):
    return P.build(P.ack, dict(station_id=7, seq=99, timestamp_s=T0, command_counter=counter,
                               result=result))  # fmt: skip


TOPIC = "relaypump/jia/relay1/"


@pytest.fixture
def bridge(tmp_path):
    keys = {("jia", "relay1"): StationKey("jia", "relay1", 7, KEY)}
    log = []
    b = Bridge("jia", "pumpbridge", "jia", keys, tmp_path, ack_timeout_s=10, log=log.append)
    b.logged = log
    ((kind, nbirth),) = decoded(b.connected(0.0))  # no primary host: born at once
    assert kind == "NBIRTH" and nbirth.seq == 0
    return b


def decoded(outs):
    return [(o.topic.split("/")[2], sp.decode(o.payload)) for o in outs]


def values(payload):
    return {m.name: None if m.is_null else sp.typed_value(m, m.datatype) for m in payload.metrics}


def test_the_catalogue_has_one_metric_per_field_and_no_hand_list():
    fields = [f for f in st.TELEMETRY.values if f.path not in st.HEADER]
    assert len(st.TELEMETRY_SPECS) == len(fields) == len(layout.layout("telemetry").values) - 3
    assert len(st.BY_NAME) == len(st.ALL_SPECS)  # names unique
    assert len(st.ALARM_SPECS) == len(P.Alarm)
    for spec in st.TELEMETRY_SPECS:
        if spec.scale != 1:
            assert spec.datatype == sp.DataType.DOUBLE and spec.unit
    assert st.BY_NAME["pump3/fault_code"].datatype == sp.DataType.UINT16
    assert st.BY_NAME["flow"].no_reading == -(2**31)


def test_birth_then_changes_only_and_duplicates_skipped(bridge):
    ((kind, birth),) = decoded(bridge.feed(TOPIC + "telemetry", telemetry(1), 1.0))
    assert kind == "DBIRTH" and birth.seq == 1  # after the NBIRTH
    v = values(birth)
    assert v["suction"] == 123.4 and v["remote_dp"] is None and v["station_id"] == 7
    assert v["setpoint"] == 111.0 and v["pump2/speed"] == 50.0 and v["alarm/SAFE_STATE"] is False
    assert all(m.timestamp == T0 * 1000 + 10_000 for m in birth.metrics)
    # nothing changed: no message; a redelivery: skipped and counted
    assert bridge.feed(TOPIC + "telemetry", telemetry(2), 2.0) == []
    assert bridge.feed(TOPIC + "telemetry", telemetry(2), 2.0) == [] and bridge.duplicates == 1
    ((kind, data),) = decoded(
        bridge.feed(TOPIC + "telemetry", telemetry(3, suction=1300, alarm_bits=1 << 7), 3.0)
    )
    assert kind == "DDATA" and data.seq == 2
    assert values(data) == {"suction": 130.0, "alarm_bits": 128, "alarm/SAFE_STATE": True}


def test_seq_wraps_after_255_and_restarts_at_each_nbirth(bridge):
    seqs = [sp.decode(o.payload).seq for o in bridge.births(0.0)]
    for n in range(1, 300):
        seqs += [sp.decode(o.payload).seq for o in bridge.feed(TOPIC + "telemetry",
                 telemetry(n, suction=n), n)]  # fmt: skip
    assert seqs == [i % 256 for i in range(300)]
    assert [sp.decode(o.payload).seq for o in bridge.births(400.0)] == [0, 1]  # NBIRTH, DBIRTH


def test_events_before_the_birth_go_with_it_after_it_as_ddata(bridge):
    assert bridge.feed(TOPIC + "event", event(1), 1.0) == []
    ((_, birth),) = decoded(bridge.feed(TOPIC + "telemetry", telemetry(2), 2.0))
    v = values(birth)
    assert v["event/code"] == P.EventCode.PUMP_STARTED and v["event/value"] == 5500
    assert v["event/text"] == "PUMP_STARTED (INFO, pump 1) 55.0 %"
    ((kind, data),) = decoded(bridge.feed(TOPIC + "event", event(3, P.EventCode.DRY_RUN, -1), 3))
    assert kind == "DDATA" and values(data)["event/value"] == -1


def test_malformed_and_foreign_frames_are_counted_and_skipped(bridge):
    ((kind, ndata),) = decoded(bridge.feed(TOPIC + "telemetry", b"RP\x01\x01short", 1.0))
    assert kind == "NDATA" and values(ndata)["Bridge/Malformed Frames"] == 1
    ((kind, ndata),) = decoded(bridge.feed(TOPIC + "telemetry", telemetry(1, station_id=8), 1))
    assert values(ndata)["Bridge/Malformed Frames"] == 2
    assert "station id 8, the key file says 7" in bridge.logged[-1]
    assert bridge.feed("relaypump/other/relay1/telemetry", b"junk", 1.0) == []  # another site
    assert bridge.feed("relaypump/jia/bad+name/telemetry", telemetry(1), 1.0) == []


def test_ddeath_on_offline_and_a_new_birth_after(bridge):
    assert bridge.feed(TOPIC + "status", b"offline", 0.5) == []  # never born: nothing to end
    bridge.feed(TOPIC + "telemetry", telemetry(1), 1.0)
    ((kind, death),) = decoded(bridge.feed(TOPIC + "status", b"offline", 2.0))
    assert kind == "DDEATH" and death.metrics == [] and death.seq == 2
    assert bridge.feed(TOPIC + "status", b"offline", 2.5) == []  # already dead
    assert bridge.feed(TOPIC + "status", b"online", 3.0) == []
    ((kind, _),) = decoded(bridge.feed(TOPIC + "telemetry", telemetry(2), 4.0))
    assert kind == "DBIRTH"


def test_commands_signed_sent_and_their_ack_or_its_absence_reported(bridge):
    bridge.feed(TOPIC + "telemetry", telemetry(1), 1.0)
    dcmd = sp.encode(sp.Payload(1, None, [sp.Metric("mode", sp.DataType.UINT8, 0)]))
    outs = bridge.feed("spBv1.0/jia/DCMD/pumpbridge/relay1", dcmd, 2.0)
    cmd, report = outs
    assert cmd.topic == TOPIC + "cmd" and cmd.qos == 1
    frame = P.parse(P.command, cmd.payload, key=KEY)
    assert frame.command_type == P.CommandType.MODE and frame.args.mode == 0
    assert frame.station_id == 7 and frame.command_counter == 1 and frame.expiry_s == 2 + 60
    assert values(sp.decode(report.payload)) == {
        "Command/Last Command": "mode off, counter 1",
        "Command/Last Result": "sent, waiting for the ack",
    }
    ((_, done),) = decoded(bridge.feed(TOPIC + "ack", ack(1, P.AckResult.REFUSED_LOCAL), 3))
    assert values(done)["Command/Last Result"] == "REFUSED_LOCAL"
    assert bridge.feed(TOPIC + "ack", ack(1), 3.5) == []  # answered already / not ours
    # no ack in time
    reset = sp.encode(sp.Payload(1, None, [sp.Metric("Command/reset", sp.DataType.UINT8, 0)]))
    bridge.feed("spBv1.0/jia/DCMD/pumpbridge/relay1", reset, 4.0)
    assert bridge.tick(13.9) == []
    ((_, late),) = decoded(bridge.tick(14.0))
    assert values(late)["Command/Last Result"] == "no ack within 10 s"
    ((_, later),) = decoded(bridge.feed(TOPIC + "ack", ack(2), 20.0))  # the broker kept it
    assert values(later) == {"Command/Last Command": "reset station, counter 2",
                             "Command/Last Result": "OK (late)"}  # fmt: skip
    assert (tmp := bridge.state_dir / "pumpctl-jia-relay1.json").exists(), tmp  # pumpctl's


def test_a_station_without_a_key_has_nothing_writable(bridge):
    topic = "relaypump/jia/relay2/"
    ((_, birth),) = decoded(bridge.feed(topic + "telemetry", telemetry(1), 1.0))
    assert all(m.properties["readOnly"] is True for m in birth.metrics)
    dcmd = sp.encode(sp.Payload(1, None, [sp.Metric("setpoint", sp.DataType.DOUBLE, 100.0)]))
    ((_, refused),) = decoded(bridge.feed("spBv1.0/jia/DCMD/pumpbridge/relay2", dcmd, 2.0))
    assert values(refused)["Command/Last Result"] == "refused: setpoint is not writable"


def test_rebirth_only_on_a_true_rebirth_metric(bridge):
    bridge.feed(TOPIC + "telemetry", telemetry(1), 1.0)
    no = sp.encode(sp.Payload(1, None, [sp.Metric("Node Control/Rebirth", 11, False)]))
    assert bridge.feed("spBv1.0/jia/NCMD/pumpbridge", no, 2.0) == []
    assert bridge.feed("spBv1.0/jia/NCMD/pumpbridge", b"\xff", 2.0) == []  # logged
    yes = sp.encode(sp.Payload(1, None, [sp.Metric("Node Control/Rebirth", 11, True)]))
    kinds = [k for k, _ in decoded(bridge.feed("spBv1.0/jia/NCMD/pumpbridge", yes, 3.0))]
    assert kinds == ["NBIRTH", "DBIRTH"]
    assert bridge.feed("spBv1.0/jia/NCMD/othernode", yes, 3.0) == []


def test_bd_seq_is_stored_and_wraps(tmp_path):
    assert [next_bd_seq(tmp_path, "g", "n") for _ in range(3)] == [0, 1, 2]
    (tmp_path / "pumpbridge-g-n.json").write_text('{"bd_seq": 255}')
    assert next_bd_seq(tmp_path, "g", "n") == 0
    (tmp_path / "pumpbridge-g-n.json").write_text("garbage")
    with pytest.raises(Exception, match="unreadable"):
        next_bd_seq(tmp_path, "g", "n")


def test_the_command_line_refuses_bad_input_with_one_clear_line(tmp_path, capsys):
    from mosquitto_broker import free_port  # a port nothing listens on

    from host_tools.uplink.bridge import main

    state = ["--state-dir", str(tmp_path)]
    assert main(["--site", "jia", "--node", "a/b", *state]) == 2
    assert "edge node id 'a/b': must be non-empty without / + or #" in capsys.readouterr().err
    assert main(["--site", "jia", "--keys", str(tmp_path / "missing"), *state]) == 2
    assert f"key file {tmp_path / 'missing'} not found" in capsys.readouterr().err
    keys = tmp_path / "keys"
    keys.write_text("jia/relay1 1 00ff\n")
    keys.chmod(0o600)
    assert main(["--site", "jia", "--keys", str(keys), *state]) == 2
    assert "line 1: the key must be at least 16 bytes" in capsys.readouterr().err
    assert main(["--site", "jia", "--port", str(free_port()), *state]) == 4
    assert "cannot reach the broker" in capsys.readouterr().err


def state(online, stamp):
    return json.dumps({"online": online, "timestamp": stamp}).encode()


def test_with_a_primary_host_births_wait_for_its_state_online(tmp_path):
    b = Bridge("jia", "pumpbridge", "jia", {}, tmp_path, log=[].append, primary_host="scada")
    host = "spBv1.0/STATE/scada"
    assert b.state_topic() == host
    assert b.connected(0.0) == []  # waits for the host
    assert b.feed(TOPIC + "telemetry", telemetry(1), 1.0) == []  # kept, not sent
    assert b.feed(host, b"not json", 1.5) == []
    kinds = [k for k, _ in decoded(b.feed(host, state(True, 1000), 2.0))]
    assert kinds == ["NBIRTH", "DBIRTH"]
    assert [k for k, _ in decoded(b.feed(TOPIC + "telemetry", telemetry(2, 1), 3.0))] == ["DDATA"]
    assert b.feed(host, state(False, 999), 4.0) == [] and b.live  # older than the one taken
    ((kind, death),) = decoded(b.feed(host, state(False, 1001), 5.0))
    assert kind == "NDEATH" and values(death) == {"bdSeq": 0}
    assert b.host_lost and not b.live
    assert b.feed(TOPIC + "telemetry", telemetry(3, 2), 6.0) == []
    rebirth = sp.encode(sp.Payload(1, None, [sp.Metric("Node Control/Rebirth", 11, True)]))
    assert b.feed("spBv1.0/jia/NCMD/pumpbridge", rebirth, 6.5) == []  # not live: ignored
    b.bd_seq = 1  # the runner's new session
    assert b.connected(7.0) == [] and not b.host_lost
    ((_, nbirth), (_, dbirth)) = decoded(b.feed(host, state(True, 1002), 8.0))
    assert values(nbirth)["bdSeq"] == 1 and values(dbirth)["suction"] == 0.2  # the kept value
