"""Uplink figures of the whole station: the agent's heap with the uplink loaded, and the command
round trip through a real broker.

- vm_heap_boot_uplink / vm_heap_data_uplink / vm_heap_boot_romfs_uplink (and
  vm_heap_boot_romfs_vm_uplink, the .mpy boot in the ROMFS VM, to compare with):
  host_tools/bench/vm_boot.py's figures (see there for what they count) for a board whose
  station.json has an uplink (mqtt, outbox, ntp, commands sections, a key file on the
  flash): the boot loads and builds the uplink (session
  buffers, outbox index, command judge, wall clock). The virtual board has no sockets, so the
  uplink runs without a link (its outbox fills; nothing is sent): the heap is the uplink's own.
  Goals as issue 8/9: boot <= 96 KiB, data <= 32 KiB.
- vm_alloc_per_period_uplink / _max: host_tools/bench/vm_agent.py's vm_alloc_per_period (all the
  loop allocates from one tick to the next: runtime, agent, board) for the VM lockstep with the
  uplink loaded (LOCKSTEP_HOURS of the default scenario; no network in the VM: telemetry goes
  into the outbox on the VM's file system every 10 s, which is the uplink's costly step), and
  the tick budget's view: ``vm_alloc_per_tick_uplink_max`` (agent.tick alone, as vm_agent's).
- command_ack_ms_p99: the firmware agent on the simulated plant (host_tools/sim/uplink_field.py)
  paced at real time (the agent's loop follows the wall clock in PACE_MS steps, also inside a
  plant step of 0.2 s, so the runtime steps the uplink as often as its step asks, 50 ms, as a
  board would), a Mosquitto of its own on loopback (anonymous, no TLS), a paho-mqtt 2 control
  room publishing COMMANDS signed setpoint commands one after the other: the time from its publish to the station's ack arriving back,
  99th percentile (and the median). What a board adds: the HMAC in MicroPython and the state
  save on flash (tens of ms). Skipped (n/a) when mosquitto is not installed.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import threading
import time
from pathlib import Path

from host_tools.bench.uplink_host import bench_broker

COMMANDS = 200
LOCKSTEP_HOURS = 0.25
LOCKSTEP_HEAP_KIB = 256
PACE_MS = 5
GOAL_ACK_MS = 1000


# --- the heap with the uplink ------------------------------------------------------------------


def _uplink_flash(root: Path) -> Path:
    from host_tools.bench import vm_boot
    from host_tools.sim.uplink_field import KEY

    flash = vm_boot._flash(root)
    config = json.loads((flash / "station.json").read_text())
    config["mqtt"] = {"host": "127.0.0.1", "site": "jia", "station": "relay1"}
    config["commands"] = {"key_file": "/station.key"}
    # a telemetry frame every second, so the measured steps include one (the default 10 s would
    # fall outside vm_boot's 3 s loop, and a telemetry step is among the largest)
    config["outbox"] = {"telemetry_s": 1}
    (flash / "station.json").write_text(json.dumps(config))
    (flash / "station.key").write_text(KEY.hex())
    return flash


def heap_with_uplink() -> dict:
    from host_tools.bench import vm_boot

    with tempfile.TemporaryDirectory(prefix="vm_boot_uplink_") as tmp:
        root = Path(tmp)
        fig = vm_boot.figures(_uplink_flash(root), root)
    if "relaypump.station_uplink" not in fig["modules"]:
        raise RuntimeError("the boot did not load the uplink")
    return fig


def lockstep_with_uplink():
    from host_tools.sim import scenario as scenarios
    from host_tools.sim.agent_controller import load_agent_config
    from host_tools.sim.run import run
    from host_tools.sim.uplink_field import KEY
    from host_tools.sim.vm_controller import FLASH, VMController

    chosen = scenarios.load(scenarios.DEFAULT_SCENARIO)
    config = load_agent_config(chosen)
    config["mqtt"] = {"host": "127.0.0.1", "site": "jia", "station": "relay1"}
    config["commands"] = {"key_file": FLASH + "/station.key"}
    files = {"station.key": KEY.hex().encode()}
    with VMController(
        chosen, heap_kib=LOCKSTEP_HEAP_KIB, measure=True, config=config, files=files
    ) as controller:
        if not controller.vm.eval("lockstep.runtime.uplink is not None"):
            raise RuntimeError("the uplink did not start in the VM")
        run(chosen, controller, hours=LOCKSTEP_HOURS)
        pending = controller.vm.eval("lockstep.runtime.uplink.box.pending")
        return controller.figures, pending


# --- the command round trip ----------------------------------------------------------------------


def command_round_trip() -> list[float]:
    import paho.mqtt.client as paho

    from host_tools.sim import scenario as scenarios
    from host_tools.sim.uplink_field import Field, sign, station_config, topic
    from protocol import uplink

    with tempfile.TemporaryDirectory(prefix="uplink_e2e_") as tmp:
        broker = bench_broker(Path(tmp))
        port = broker.port
        try:
            scenario = scenarios.load(scenarios.SCENARIOS / "jia_shoulder.toml")
            field = Field(scenario, station_config(scenario, port, None, None))
            field.run(60)  # connected, clock set, pumps running
            acks: dict[int, float] = {}
            cond = threading.Condition()

            def on_message(client, userdata, msg):
                ack = uplink.parse(uplink.ack, msg.payload)
                with cond:
                    acks[ack.command_counter] = time.perf_counter()
                    cond.notify_all()

            room = paho.Client(paho.CallbackAPIVersion.VERSION2, protocol=paho.MQTTv311)
            room.on_message = on_message
            room.connect("127.0.0.1", port)
            room.subscribe(topic("ack"), qos=1)
            room.loop_start()
            time.sleep(0.3)
            times = []
            st, dt = field.station, scenario.step_s
            ctrl = field.controller
            start_real, start_virtual = time.perf_counter(), st.t_s
            for counter in range(1, COMMANDS + 1):
                kpa_x10 = 1110 + counter % 2  # inside the envelope: the plant barely notices
                frame = sign(counter, uplink.CommandType.SETPOINT, {"setpoint_kpa_x10": kpa_x10},
                             field.wall_s)  # fmt: skip
                sent = time.perf_counter()
                room.publish(topic("cmd"), frame, qos=1)
                while True:  # the station in real time until the ack is back
                    with cond:
                        if counter in acks:
                            break
                    # the agent's loop follows real time; the plant steps when its step is over
                    # (the agent runs inside a plant step as it does between them)
                    target = start_virtual + (time.perf_counter() - start_real)
                    while st.t_s + dt <= target:
                        ctrl.advance(st.bus, st.t_s + dt)
                        st.step(dt)
                    ctrl.advance(st.bus, target)
                    time.sleep(PACE_MS / 1000)
                    if time.perf_counter() - sent > 10:
                        raise RuntimeError(f"no ack for command {counter}")
                times.append((acks[counter] - sent) * 1000)
            room.loop_stop()
            room.disconnect()
            return times
        finally:
            broker.stop()


def run(report) -> None:
    try:
        fig = heap_with_uplink()
        kib = 1024
        report(
            "vm_heap_boot_uplink",
            fig["boot"] / kib,
            f"KiB (goal <= 96; vm_heap_boot with the uplink loaded; live after boot "
            f"{fig['live'] / kib:.1f} KiB, of it bytecode {fig['code'] / kib:.1f} KiB; the VM "
            f"port's own modules left out: {fig['port'] / kib:.1f} KiB)",
        )
        report(
            "vm_heap_data_uplink",
            fig["data"] / kib,
            f"KiB (goal <= 32; vm_heap_data with the uplink loaded, {len(fig['modules'])} modules, "
            f"largest step {fig['step']} B)",
        )
        report(
            "vm_heap_boot_romfs_uplink",
            fig["boot_romfs"] / kib,
            f"KiB (goal <= 96; vm_heap_boot_romfs with the uplink loaded, measured: the bundle in "
            f"a ROMFS image at /rom, MicroPython 1.29; live after boot "
            f"{fig['live_romfs'] / kib:.1f} KiB)",
        )
        report(
            "vm_heap_boot_romfs_vm_uplink",
            fig["boot_romfs_vm"] / kib,
            "KiB (vm_heap_boot_uplink, .mpy on the file system, in the ROMFS VM: MicroPython 1.29)",
        )
    except Exception as e:  # the VM needs Node
        print(f"uplink_e2e heap: skipped ({e})")
    try:
        fig, pending = lockstep_with_uplink()
        report(
            "vm_alloc_per_period_uplink",
            statistics.mean(fig.period_used),
            f"bytes per tick period (mean; VM lockstep with the uplink, {pending} frames in "
            f"its outbox after {LOCKSTEP_HOURS:g} h)",
        )
        report("vm_alloc_per_period_uplink_max", max(fig.period_used), "bytes per tick period")
        report("vm_alloc_per_tick_uplink_max", max(fig.tick_used), "bytes (budget 1024)")
    except Exception as e:
        print(f"uplink_e2e lockstep: skipped ({e})")
    try:
        times = sorted(command_round_trip())
    except Exception as e:
        report("command_ack_ms_p99", f"n/a ({e})", "")
        return
    p99 = times[max(0, round(0.99 * len(times)) - 1)]
    report(
        "command_ack_ms_p99",
        p99,
        f"ms (goal <= {GOAL_ACK_MS}; loopback Mosquitto, {len(times)} signed setpoint commands, "
        f"the agent on the simulated plant paced at real time; median "
        f"{statistics.median(times):.1f} ms)",
    )
