"""pumpbridge through the real Mosquitto of the uplink tests, judged by an independent Sparkplug B
implementation (pysparkplug 0.6.1 as the primary host, peer_host.py): the firmware agent on the
simulated plant publishes its frames (host_tools/sim/uplink_field.py), the bridge republishes
them, the peer decodes what arrives and sends the commands.

Proven here (issue 10, SCADA bridge): NBIRTH with bdSeq and DBIRTH with every metric's name,
datatype, unit and writability; DDATA carrying the station's values, only what changed; seq
0..255 wrapping; malformed station frames counted and skipped; DDEATH when the station's will
fires and a DBIRTH when it is back; a rebirth on request; a bridge restart (NDEATH, the next
bdSeq) and a killed bridge (its will); a DCMD setpoint carried out by the agent with the ack
reported back; writes the bridge refuses (read-only metric, mode LOCAL, wrong datatype).
"""

import socket
import time

import pytest
from bridge_helpers import NODE, BridgeProcess, run_field_until
from mosquitto_broker import PASSWORDS, Watcher

from host_tools.sim import scenario as scenarios
from host_tools.sim.uplink_field import Field, station_config, topic
from host_tools.uplink import sparkplug_station as st
from protocol import uplink as P

SCENARIO = scenarios.SCENARIOS / "jia_shoulder.toml"
SETTLE_S = 300


@pytest.fixture(scope="module")
def scenario():
    return scenarios.load(SCENARIO)


def make_field(scenario, broker):
    cfg = station_config(scenario, broker.port, "st-relay1", PASSWORDS["st-relay1"])
    return Field(scenario, cfg)


def settled(count, quiet_s: float = 1.0, wall_s: float = 30.0) -> None:
    """Until count() has not changed for quiet_s (bounded by wall_s)."""
    deadline = time.monotonic() + wall_s
    seen, since = count(), time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - since < quiet_s:
        time.sleep(0.05)
        now = count()
        if now != seen:
            seen, since = now, time.monotonic()


def last_frame(field, station):
    """The station's last telemetry frame once nothing more is on its way. Its outbox runs in
    wall time behind the virtual run: it must empty, and the watcher take what is still in
    transit, or a later frame would move the peer past the values awaited."""
    box = field.uplink.box
    assert run_field_until(field, lambda: box.pending == 0, 60), "outbox not emptied"
    settled(lambda: len(station.payloads(topic("telemetry"))))
    return P.parse_any(station.payloads(topic("telemetry"))[-1])[1]


def of(kind, device=None):
    return lambda m: m["type"] == kind and m.get("device") == device


def metrics(message) -> dict:
    return {m["name"]: m for m in message["metrics"]}


def device_state(peer, device="relay1") -> dict:
    """name -> value as a host sees it: the last DBIRTH and every DDATA after it."""
    state = {}
    for m in peer.find(lambda m: m.get("device") == device):
        if m["type"] == "DBIRTH":
            state = {x["name"]: x["value"] for x in m["metrics"]}
        elif m["type"] == "DDATA":
            state.update({x["name"]: x["value"] for x in m["metrics"]})
    return state


def expected_values(frame) -> dict:
    """What the bridge must show for a telemetry frame (written out here, not derived)."""
    values = {
        "suction": frame.suction_kpa_x10 / 10,
        "discharge": frame.discharge_kpa_x10 / 10,
        "remote_dp": frame.remote_dp_kpa_x10 / 10,
        "supply_temp": frame.supply_temp_c_x100 / 100,
        "flow": frame.flow_m3h_x10 / 10,
        "setpoint": frame.setpoint_kpa_x10 / 10,
        "mode": frame.mode,
        "alarm_bits": frame.alarm_bits,
        "station_energy": frame.station_energy_kwh_x10 / 10,
        "alarm/SAFE_STATE": bool(frame.alarm_bits & 1 << 7),
    }
    for n, p in enumerate(frame.pumps, 1):
        values[f"pump{n}/speed"] = p.speed_pct_x100 / 100
        values[f"pump{n}/power"] = p.power_kw_x10 / 10
        values[f"pump{n}/state"] = p.state
        values[f"pump{n}/energy"] = p.energy_kwh_x10 / 10
    return values


def node_seqs_are_consecutive(peer, start: int = 0) -> list[int]:
    """seq of every message of the node from its first NBIRTH (at or after index start): 0
    there, +1 mod 256 after."""
    kinds = ("NBIRTH", "DBIRTH", "NDATA", "DDATA", "DDEATH")  # not NDEATH, NCMD, DCMD
    messages = peer.find(lambda m: m.get("node") == NODE and m["type"] in kinds, start=start)
    seqs = [m["seq"] for m in messages]
    for m, prev, seq in zip(messages[1:], seqs, seqs[1:], strict=False):
        want = 0 if m["type"] == "NBIRTH" else (prev + 1) % 256
        assert seq == want, f"{m['type']} seq {seq} after {prev}"
    return seqs


def test_births_data_and_malformed_frames_as_the_peer_decodes_them(scenario, broker, peer, bridge):
    nbirth = peer.wait(of("NBIRTH"), what="NBIRTH")
    node = metrics(nbirth)
    assert nbirth["seq"] == 0 and nbirth["node"] == NODE
    assert node["bdSeq"]["datatype"] == "UINT64" and node["bdSeq"]["value"] == 0
    rebirth = node["Node Control/Rebirth"]
    assert rebirth["datatype"] == "BOOLEAN" and rebirth["value"] is False

    station = Watcher(broker.port, "recorder", [topic("telemetry")])
    field = make_field(scenario, broker)
    try:
        field.run(SETTLE_S)
        dbirth = peer.wait(of("DBIRTH", "relay1"), what="DBIRTH")
        born = metrics(dbirth)
        assert len(born) == len(dbirth["metrics"]) == len(st.ALL_SPECS)
        # units, datatypes, descriptions from the protocol; writability declared
        assert born["suction"]["datatype"] == "DOUBLE"
        assert born["suction"]["properties"] == {"engUnit": "kPa", "readOnly": True}
        assert "0.1 kPa" in born["suction"]["description"]
        assert born["supply_temp"]["properties"]["engUnit"] == "degC"
        assert born["flow"]["properties"]["engUnit"] == "m3/h"
        assert born["pump2/speed"]["properties"]["engUnit"] == "%"
        assert born["pump3/energy"]["properties"]["engUnit"] == "kWh"
        assert (
            born["mode"]["datatype"] == "UINT8" and born["pump1/fault_code"]["datatype"] == "UINT16"
        )
        assert (
            born["event/value"]["datatype"] == "INT32"
            and born["event/code"]["datatype"] == "UINT16"
        )
        assert born["event/text"]["datatype"] == "STRING"  # the agent's start-up events came first
        assert born["station_id"]["value"] == 1
        writable = {n for n, m in born.items() if m["properties"]["readOnly"] is False}
        assert writable == {"setpoint", "mode", "Command/pump_enable", "Command/pump_disable",
                            "Command/reset"}  # fmt: skip
        for name in P.SCALES:
            if not name.startswith(("speed", "current", "power", "energy")):
                short = name.rsplit("_", 2)[0]
                assert born[short]["properties"]["engUnit"] == P.SCALES[name][0], name

        # data: the peer's view equals the station's last frame (decoded by construct)
        last = last_frame(field, station)
        want = expected_values(last)
        peer.wait(lambda m: all(device_state(peer).get(k) == v for k, v in want.items()),
                  what="the last frame's values")  # fmt: skip
        assert abs(want["remote_dp"] - 111.0) < 5  # the agent holds the plant's DP
        ddata = peer.find(of("DDATA", "relay1"))
        assert ddata and all(0 < len(m["metrics"]) < len(born) for m in ddata)  # changes only
        assert "station_id" not in {x["name"] for m in ddata for x in m["metrics"]}
        assert ddata[-1]["metrics"][0]["timestamp"] == last.timestamp_s * 1000

        # a malformed frame from a station: counted, skipped, the bridge goes on
        junk = Watcher(broker.port, "st-relay1")
        junk.publish(topic("telemetry"), b"RP\x01\x01 not a telemetry frame")
        junk.close()
        ndata = peer.wait(of("NDATA"), what="NDATA with the malformed count")
        assert metrics(ndata)["Bridge/Malformed Frames"]["value"] == 1
        # seq wraps: long enough for more than 256 messages
        field.run(2700)
        last = last_frame(field, station)
        want = expected_values(last)
        peer.wait(lambda m: all(device_state(peer).get(k) == v for k, v in want.items()),
                  timeout=30, what="the values after the wrap")  # fmt: skip
        seqs = node_seqs_are_consecutive(peer)
        assert len(seqs) > 256 and 255 in seqs
        assert not peer.find(lambda m: m["type"] == "UNDECODABLE")
        assert "skipped a malformed frame (TruncatedFrame" in bridge.stderr()
    finally:
        station.close()


def test_ddeath_when_the_station_will_fires_and_dbirth_when_it_is_back(
    scenario, broker, peer, bridge
):
    peer.wait(of("NBIRTH"), what="NBIRTH")
    field = make_field(scenario, broker)
    field.run(60)
    peer.wait(of("DBIRTH", "relay1"), what="DBIRTH")
    mark = peer.mark()
    # the station's socket dies without DISCONNECT: the broker sends the will; the station
    # reads the end on its next step and connects again
    field.uplink.link._sock.shutdown(socket.SHUT_RDWR)
    death = peer.wait(of("DDEATH", "relay1"), start=mark, what="DDEATH")
    assert isinstance(death["seq"], int)
    after = peer.messages.index(death) + 1
    assert not peer.find(of("DDATA", "relay1"), start=after)  # a dead device has no data
    mark = peer.mark()
    assert run_field_until(field, lambda: bool(peer.find(of("DBIRTH", "relay1"), start=mark)))
    node_seqs_are_consecutive(peer)


def test_a_rebirth_request_gives_nbirth_and_dbirth_again(scenario, broker, peer, bridge):
    first = peer.wait(of("NBIRTH"), what="NBIRTH")
    station = Watcher(broker.port, "recorder", [topic("telemetry")])
    field = make_field(scenario, broker)
    field.run(60)
    last = last_frame(field, station)
    want = expected_values(last)
    peer.wait(lambda m: all(device_state(peer).get(k) == v for k, v in want.items()),
              what="the last frame's values")  # fmt: skip
    station.close()
    before = device_state(peer)
    mark = peer.mark()
    peer.send({"op": "rebirth", "node": NODE})
    again = peer.wait(of("NBIRTH"), start=mark, what="the second NBIRTH")
    assert again["seq"] == 0
    assert metrics(again)["bdSeq"]["value"] == metrics(first)["bdSeq"]["value"]  # same session
    dbirth = peer.wait(of("DBIRTH", "relay1"), start=mark, what="the second DBIRTH")
    assert {m["name"]: m["value"] for m in dbirth["metrics"]} == before
    node_seqs_are_consecutive(peer)


def test_a_bridge_restart_and_a_killed_bridge(scenario, broker, peer, bridge):
    first = peer.wait(of("NBIRTH"), what="NBIRTH")
    assert metrics(first)["bdSeq"]["value"] == 0
    mark = peer.mark()
    assert bridge.stop() == 0  # SIGTERM: it says goodbye itself
    death = peer.wait(of("NDEATH"), start=mark, what="NDEATH")
    assert metrics(death)["bdSeq"]["value"] == 0
    mark = peer.mark()
    assert "(bdSeq 1)" in bridge.start()
    birth = peer.wait(of("NBIRTH"), start=mark, what="NBIRTH after the restart")
    assert metrics(birth)["bdSeq"]["value"] == 1 and birth["seq"] == 0
    mark = peer.mark()
    bridge.kill()  # no goodbye: the broker publishes the will
    death = peer.wait(of("NDEATH"), start=mark, what="the will's NDEATH")
    assert metrics(death)["bdSeq"]["value"] == 1
    mark = peer.mark()
    assert "(bdSeq 2)" in bridge.start()
    assert metrics(peer.wait(of("NBIRTH"), start=mark))["bdSeq"]["value"] == 2


def command_result(peer, mark):
    return lambda: bool(
        peer.find(
            lambda m: (
                m["type"] == "DDATA"
                and any(
                    x["name"] == "Command/Last Result"
                    and x["value"] not in (None, "sent, waiting for the ack")
                    for x in m["metrics"]
                )
            ),
            start=mark,
        )  # fmt: skip
    )


def last_result(peer, mark) -> str:
    for m in reversed(peer.find(of("DDATA", "relay1"), start=mark)):
        for x in m["metrics"]:
            if x["name"] == "Command/Last Result":
                return x["value"]
    return None


def test_a_dcmd_setpoint_is_carried_out_by_the_agent_and_the_ack_reported(
    scenario, broker, peer, bridge
):
    peer.wait(of("NBIRTH"), what="NBIRTH")
    commands = Watcher(broker.port, "recorder", [topic("cmd")])
    field = make_field(scenario, broker)
    try:
        field.run(SETTLE_S)
        peer.wait(of("DBIRTH", "relay1"), what="DBIRTH")
        assert field.agent.control.setpoint.fixed_kpa != 125.0
        mark = peer.mark()
        peer.send({"op": "dcmd", "node": NODE, "device": "relay1",
                   "metrics": [{"name": "setpoint", "datatype": "DOUBLE", "value": 125.0}]})  # fmt: skip
        assert run_field_until(field, command_result(peer, mark)), bridge.stderr()
        assert last_result(peer, mark) == "OK"
        assert field.agent.control.setpoint.fixed_kpa == 125.0
        sent = [m["value"] for d in peer.find(of("DDATA", "relay1"), start=mark)
                for m in d["metrics"] if m["name"] == "Command/Last Command"]  # fmt: skip
        assert set(sent) == {"setpoint 125.0 kPa, counter 1"}  # with "sent", then with "OK"
        (cmd,) = commands.payloads(topic("cmd"))
        assert P.parse(P.command, cmd, key=bytes(range(100, 132))).args.setpoint_kpa_x10 == 1250
        # the station reports the new setpoint: the metric follows
        assert run_field_until(field, lambda: device_state(peer).get("setpoint") == 125.0)

        # pump disable through Command/pump_disable (the datatype left out, as hosts may)
        mark = peer.mark()
        peer.send({"op": "dcmd", "node": NODE, "device": "relay1",
                   "metrics": [{"name": "Command/pump_disable", "datatype": "UINT8", "value": 3}]})  # fmt: skip
        assert run_field_until(field, command_result(peer, mark)), bridge.stderr()
        assert last_result(peer, mark) == "OK"
        assert field.agent.enabled == 0b011
    finally:
        commands.close()


def test_writes_the_bridge_refuses_send_nothing(scenario, broker, peer, bridge):
    peer.wait(of("NBIRTH"), what="NBIRTH")
    commands = Watcher(broker.port, "recorder", [topic("cmd")])
    field = make_field(scenario, broker)
    try:
        field.run(60)
        peer.wait(of("DBIRTH", "relay1"), what="DBIRTH")
        refusals = [
            ({"name": "suction", "datatype": "DOUBLE", "value": 50.0},
             "refused: suction is not writable"),
            ({"name": "pump1/state", "datatype": "UINT8", "value": 1},
             "refused: pump1/state is not writable"),
            ({"name": "no/such", "datatype": "DOUBLE", "value": 1.0},
             "refused: no metric 'no/such'"),
            ({"name": "mode", "datatype": "UINT8", "value": int(P.Mode.LOCAL)},
             "refused: mode 4 (local) cannot be set remotely"),
            ({"name": "setpoint", "datatype": "INT32", "value": 120},
             "refused: metric 'setpoint': datatype 3 (INT32), expected DOUBLE"),
            ({"name": "setpoint", "datatype": "DOUBLE", "value": 5000.0},
             "refused: setpoint 5000.0 kPa does not fit the frame (+-3276.7 kPa)"),
            ({"name": "Command/pump_enable", "datatype": "UINT8", "value": 4},
             "refused: Command/pump_enable: pump 4 is not 1..3"),
        ]  # fmt: skip
        for metric, why in refusals:
            mark = peer.mark()
            peer.send({"op": "dcmd", "node": NODE, "device": "relay1", "metrics": [metric],
                       "include_dtypes": True})  # fmt: skip
            peer.wait(lambda m, mark=mark: last_result(peer, mark) is not None, start=mark,
                      what=f"the refusal of {metric}")  # fmt: skip
            assert last_result(peer, mark) == why
        field.run(30)
        assert commands.payloads(topic("cmd")) == []  # nothing went to the station
    finally:
        commands.close()


def test_after_a_broker_restart_the_bridge_is_born_again_with_the_next_bd_seq(
    scenario, broker, peer, bridge
):
    first = peer.wait(of("NBIRTH"), what="NBIRTH")
    assert metrics(first)["bdSeq"]["value"] == 0
    field = make_field(scenario, broker)
    field.run(60)
    peer.wait(of("DBIRTH", "relay1"), what="DBIRTH")
    mark = peer.mark()
    broker.stop()
    broker.start()  # same port; the bridge and the peer reconnect by themselves
    # The bridge may publish its NBIRTH before the peer has subscribed again (the broker keeps
    # nothing for either); the peer then asks for a rebirth, as a primary host does. Either
    # birth belongs to the bridge's new session: bdSeq 1, seq 0.
    peer.wait(of("RESUBSCRIBED"), start=mark, timeout=30, what="the peer back")
    birth = peer.wait(of("NBIRTH"), start=mark, timeout=30, what="NBIRTH after the restart")
    assert metrics(birth)["bdSeq"]["value"] == 1 and birth["seq"] == 0  # a new session
    after = peer.messages.index(birth)
    # Mosquitto sent the wills of its clients as it stopped, the station's "offline" too: the
    # bridge took the station for dead; it is born again when the station is back
    assert run_field_until(field, lambda: bool(peer.find(of("DBIRTH", "relay1"), start=after)))
    node_seqs_are_consecutive(peer, after)


def test_with_a_primary_host_the_bridge_is_born_only_while_the_host_is_online(
    scenario, broker, peer, password_file, key_file, tmp_path
):
    b = BridgeProcess(broker.port, password_file("bridge"), key_file, tmp_path / "state",
                      tmp_path / "bridge.err", extra=["--primary-host", "peer-scada"])  # fmt: skip
    try:
        b.start()  # the host's retained STATE says online: births
        first = peer.wait(of("NBIRTH"), what="NBIRTH")
        assert metrics(first)["bdSeq"]["value"] == 0
        field = make_field(scenario, broker)
        field.run(60)
        peer.wait(of("DBIRTH", "relay1"), what="DBIRTH")
        mark = peer.mark()
        peer.send({"op": "state", "online": False})
        death = peer.wait(of("NDEATH"), start=mark, what="NDEATH when the host went offline")
        assert metrics(death)["bdSeq"]["value"] == 0
        after = peer.messages.index(death) + 1
        field.run(120)  # the station goes on; the bridge keeps its values and keeps quiet
        time.sleep(1.0)
        assert peer.find(lambda m: m["type"] in ("NBIRTH", "DBIRTH", "DDATA"), start=after) == []
        peer.send({"op": "state", "online": True})
        birth = peer.wait(of("NBIRTH"), start=after, what="NBIRTH when the host is back")
        assert metrics(birth)["bdSeq"]["value"] == 1  # a new MQTT session
        dbirth = peer.wait(of("DBIRTH", "relay1"), start=after, what="DBIRTH when the host is back")
        assert dbirth["seq"] == 1
    finally:
        b.close()
