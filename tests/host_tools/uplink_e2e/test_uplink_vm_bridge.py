"""The whole uplink inside the real MicroPython VM, its bytes bridged to Mosquitto by the host.

In the VM: the runtime with the real agent on test_runtime's board (virtual clock, the RS-485
bus played with real RTU frames), the uplink of station_uplink.py (outbox on the VM's file
system, session, command judge, codec) and a link whose bytes the host carries (the VM has no
socket). The host: a socket to the broker, opened when the session wants one, and a loop that
hands the VM what the socket received and sends what the VM returns; every call lets the VM's
loop run STEP_MS of its virtual time. A paho recorder and a paho control room are the peers:
telemetry arrives and decodes (protocol/uplink.py), a signed setpoint is acknowledged and held.
"""

import pytest
from mosquitto_broker import PASSWORDS, Watcher
from vm_link import VMSocketBridge

from host_tools.mpvm import MicroPythonVM
from host_tools.sim.uplink_field import sign, topic
from protocol import uplink as P

HEAP_KIB = 2048  # the bus double's garbage stays until a call returns
STEP_MS = 100  # virtual time per VM call

# Runs inside the VM (tests/firmware and firmware/ are mounted there).
VM_SIDE = """
from relaypump.runtime import Runtime
from test_runtime import Bus, WireBoard, make_dir, run, write_config
from test_station_uplink import KEY, WallTime


class BridgeLink:
    def __init__(self, session):
        self.s = session
        self.news = 0  # 1: the host's socket is up, 2: it is gone
        self.rx = None
        self.out = bytearray()

    def step(self, now):
        s = self.s
        s.poll(now)
        if self.news == 1:
            s.link_up(now)
        elif self.news == 2:
            s.link_down(now)
        self.news = 0
        if self.rx is not None:
            s.receive(self.rx)
            self.rx = None
        while True:
            out = s.poll(now)
            if out is None:
                break
            self.out.extend(out)
            s.sent(len(out))


class Board(WireBoard):
    link = None

    def net_link(self, session, cfg):
        self.link = BridgeLink(session)
        return self.link

    def ntp_link(self, clock, cfg):
        return WallTime(self, clock)


directory = make_dir()
with open(directory + "/station.key", "w") as f:
    f.write("".join("%02x" % b for b in KEY))


def change(doc):
    doc["mqtt"] = {"host": "127.0.0.1", "site": "jia", "station": "relay1",
                   "username": "st-relay1", "password": PASSWORD, "keepalive_s": 30}
    doc["commands"] = {"key_file": directory + "/station.key"}


board = Board(Bus())
runtime = Runtime(board, write_config(directory, change), directory + "/state")
up = runtime.uplink
head = bytearray(2)


def pump(data):
    link = board.link
    link.news = data[0]
    if len(data) > 1:
        link.rx = bytes(data[1:])
    run(runtime, board, STEP_MS)
    s = up.session
    head[0] = 1 if s.want_link else 0
    head[1] = s.link_epoch & 0xFF
    out = head + link.out
    link.out = bytearray()
    return out
"""


def bridge_to(vm, port):
    """The host's half (tests/vm_link.py); each VM call runs STEP_MS of the VM's loop."""
    return VMSocketBridge(lambda news, data: vm.call("pump", bytes([news]) + data), port, 0.005)


@pytest.fixture
def vm():
    machine = MicroPythonVM(heap_kib=HEAP_KIB)  # make test installs Node's VM: a failure here fails
    machine.start()
    yield machine
    machine.close()


def test_the_uplink_in_the_vm_reports_and_obeys_through_mosquitto(vm, broker):
    recorder = Watcher(broker.port, "recorder", [topic("telemetry")])
    room = Watcher(broker.port, "controlroom", [topic("ack")])
    vm.exec(f"PASSWORD = {PASSWORDS['st-relay1']!r}\nSTEP_MS = {STEP_MS}\n" + VM_SIDE, gc=True)
    assert vm.eval("up is not None"), vm.eval("runtime.uplink_error")
    bridge = bridge_to(vm, broker.port)
    try:
        bridge.run(lambda: len(recorder.payloads(topic("telemetry"))) >= 2, what="telemetry")
        for payload in recorder.payloads(topic("telemetry")):
            f = P.parse(P.telemetry, payload)
            # test_runtime.Bus's loop currents: 300 / 700 / 111 kPa, 90 degC, 400 m3/h
            assert (f.suction_kpa_x10, f.discharge_kpa_x10, f.remote_dp_kpa_x10) == (
                3000,
                7000,
                1110,
            )
            assert f.flow_m3h_x10 == 4000 and abs(f.supply_temp_c_x100 - 9000) <= 2
            assert f.station_id == 1 and f.timestamp_s > 1_000_000_000
        now_s = vm.eval("up.clock.stamp(board.ticks_ms())")
        room.publish(
            topic("cmd"), sign(5, P.CommandType.SETPOINT, {"setpoint_kpa_x10": 1300}, now_s)
        )
        bridge.run(lambda: room.payloads(topic("ack")), what="the ack")
        (ack,) = [P.parse(P.ack, p) for p in room.payloads(topic("ack"))]
        assert (ack.command_counter, ack.result) == (5, P.AckResult.OK)
        assert vm.eval("runtime.agent.control.setpoint.fixed_kpa") == 130.0
        assert vm.eval("runtime.agent.state.command_counter") == 5
        # a forged one: refused, nothing changes
        forged = sign(6, P.CommandType.SETPOINT, {"setpoint_kpa_x10": 1500}, now_s, key=b"k" * 32)
        room.publish(topic("cmd"), forged)
        bridge.run(lambda: len(room.payloads(topic("ack"))) == 2, what="the second ack")
        assert P.parse(P.ack, room.payloads(topic("ack"))[1]).result == P.AckResult.BAD_SIGNATURE
        assert vm.eval("runtime.agent.control.setpoint.fixed_kpa") == 130.0
        assert vm.eval("up.box.pending") <= 2  # the outbox drains through the bridge
    finally:
        bridge.close()
        room.close()
        recorder.close()
