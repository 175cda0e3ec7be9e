"""The firmware's MQTT session inside the real MicroPython VM (loaded from .mpy at an MCU-sized
heap), its bytes bridged to a real Mosquitto by a small CPython socket loop (the VM has no
socket): connect with credentials, QoS 1 telemetry to a paho subscriber, a command from a paho
publisher, a broker killed with frames in flight and restarted (resent with DUP, nothing lost),
and the VM's heap: what the session holds, what a bridged step allocates, no growth."""

import struct
import subprocess
import time

import pytest
from mosquitto_broker import PASSWORDS, SITE, Watcher
from vm_link import VMSocketBridge

from host_tools.deploy.bundle import mpy_cross
from host_tools.mpvm import MicroPythonVM
from host_tools.mpvm.client import REPO_ROOT

HEAP_KIB = 64
TELEMETRY = f"relaypump/{SITE}/relay1/telemetry"
CMD = f"relaypump/{SITE}/relay1/cmd"

# Runs inside the VM. step(data): data[0] is the link's news (0 bytes, 1 up, 2 down), data[1:5]
# the ticks, the rest the bytes received; it returns want_link, the epoch's low byte and the
# bytes to send (the host sends all of them).
VM_SIDE = """
from relaypump import mqtt

s = mqtt.Session(
    "rp-jia-relay1", b"relaypump/jia/relay1/status", b"relaypump/jia/relay1/cmd",
    username="st-relay1", password=%r, keepalive_s=10, clean_session=False,
    backoff_min_ms=200, backoff_max_ms=1000, connect_timeout_ms=3000,
    random_below=lambda n: n // 2,
)
T = b"relaypump/jia/relay1/telemetry"
messages = []
reasons = []
head = bytearray(2)


def step(data):
    now = (data[1] << 24) | (data[2] << 16) | (data[3] << 8) | data[4]
    if data[0] == 1:
        s.link_up(now)
    elif data[0] == 2:
        s.link_down(now)
    if len(data) > 5:
        assert s.receive(memoryview(data)[5:]) == len(data) - 5
    while True:
        ev = s.next_event()
        if ev == mqtt.NONE:
            break
        if ev == mqtt.MESSAGE:
            messages.append(bytes(s.payload))
        elif ev == mqtt.DISCONNECTED:
            reasons.append(s.reason)
    out = s.poll(now)
    head[0] = 1 if s.want_link else 0
    head[1] = s.link_epoch & 0xFF
    if out is None:
        return head
    data = head + out
    s.sent(len(out))
    return data


def publish(seq):
    return s.publish(T, bytes([seq >> 24, (seq >> 16) & 255, (seq >> 8) & 255, seq & 255]) + bytes(76))
"""


def ticks_ms():
    return int(time.monotonic() * 1000) & 0x3FFFFFFF


class Bridge(VMSocketBridge):
    """The host's half (tests/vm_link.py), with the heap each VM step allocated."""

    def __init__(self, vm, port):
        super().__init__(self._vm_step, port)
        self.vm = vm
        self.step_alloc = []  # bytes each step allocated in the VM

    def _vm_step(self, news, data):
        out = self.vm.call("step", bytes([news]) + struct.pack(">I", ticks_ms()) + data,
                           measure=True)  # fmt: skip
        self.step_alloc.append(self.vm.last_mem.used)
        return out


@pytest.fixture
def vm(tmp_path):
    fw = tmp_path / "fw" / "relaypump"
    fw.mkdir(parents=True)
    for name in ("__init__", "ticks", "mqtt"):
        src = REPO_ROOT / "firmware" / "relaypump" / f"{name}.py"
        subprocess.run([mpy_cross(), "-o", str(fw / f"{name}.mpy"), str(src)], check=True)
    machine = MicroPythonVM(
        heap_kib=HEAP_KIB, mounts={fw.parent: "/fw"}, paths=["/fw"]
    )  # make test installs Node's VM: a failure here fails
    machine.start()
    yield machine
    machine.close()


def test_session_in_the_vm_through_mosquitto(vm, broker):
    base = vm.stats()["alloc"]
    vm.exec(VM_SIDE % PASSWORDS["st-relay1"], gc=True)
    setup = vm.stats()["alloc"] - base
    recorder = Watcher(broker.port, "recorder", [TELEMETRY])
    control = Watcher(broker.port, "controlroom")
    bridge = Bridge(vm, broker.port)
    try:
        bridge.run(lambda: vm.eval("s.subscribed and s.in_flight == 0"), what="SUBACK")
        live = vm.stats()["alloc"]
        for n in range(10):  # through the window of 4
            bridge.run(lambda: vm.eval("s.in_flight < 4"), what="room in the window")
            assert vm.eval(f"publish({n})") > 0
        bridge.run(lambda: vm.eval("s.in_flight == 0"), what="PUBACKs")
        recorder.wait(lambda: len(recorder.payloads(TELEMETRY)) == 10)
        control.publish(CMD, b"setpoint 120", qos=1)
        bridge.run(lambda: vm.eval("len(messages)") == 1, what="the command")
        assert vm.eval("messages == [b'setpoint 120']")
        # frames in flight when the broker dies; more made during the outage
        broker.freeze()
        for n in range(10, 13):
            assert vm.eval(f"publish({n})") > 0
        bridge.step()  # into the frozen broker's socket
        broker.kill()
        bridge.run(lambda: vm.eval("len(reasons)") == 1, what="the lost link")
        assert vm.eval("publish(13)") > 0
        broker.start()
        recorder.wait(lambda: recorder.subscribed >= 2, what="paho's resubscribe")
        bridge.run(lambda: vm.eval("s.connected and s.in_flight == 0"), what="the resend")
        assert vm.eval("s.retransmissions") == 3

        def seqs():
            return [struct.unpack(">I", p[:4])[0] for p in recorder.payloads(TELEMETRY)]

        recorder.wait(lambda: set(seqs()) == set(range(14)), what="every frame")
        got = seqs()
        assert [g for i, g in enumerate(got) if g not in got[:i]] == list(range(14))  # in order
        # the VM's heap: nothing kept per step (after a collection), little made per step
        assert vm.stats()["alloc"] - live <= 512
        print(f"vm_mqtt_setup: {setup} B (session + module from .mpy)")
        steps = sorted(bridge.step_alloc)
        print(f"vm_mqtt_step_alloc: median {steps[len(steps) // 2]} B, max {steps[-1]} B")
        assert max(bridge.step_alloc) <= 1024
    finally:
        bridge.close()
        control.close()
        recorder.close()
