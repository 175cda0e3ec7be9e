"""A simulated station whose agent talks to a real MQTT broker: the plant in virtual time, the
agent's uplink over real sockets (agent_controller.py says how the two times map). Used by the
end-to-end uplink tests (tests/host_tools/uplink_e2e) and the bench (host_tools/bench/uplink_e2e.py).

    field = Field(scenario, station_config(scenario, port, user, password))
    field.run(seconds)            plant and agent for that much virtual time, in CHUNK_S chunks,
                                  the broker given real time between chunks (settle)
    field.run_until(predicate, max_s)
    field.reboot()                the board restarts: a new runtime on the same flash (outbox,
                                  state, config), the plant runs on; the old link dies unannounced
    sign(counter, type, args, now_s)   a command signed with the station's key (construct schema)

Plant samples: ``samples`` holds (t_s, suction, discharge, remote DP, supply temperature, flow)
of the plant's true values once per virtual second.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

from host_tools.sim.agent_controller import (
    AgentController,
    MemoryFiles,
    broker_link,
    load_agent_config,
)
from host_tools.sim.hardware import SimulatedStation
from host_tools.sim.scenario import Scenario
from protocol import uplink

EPOCH_S = 1_780_000_000  # the wall time at virtual 0 (2026-05-28)
KEY = bytes(range(100, 132))  # the station's HMAC key (32 bytes)
KEY_PATH = "/station.key"
CHUNK_S = 1.0
SITE = "jia"
STATION = "relay1"


def station_config(
    scenario: Scenario, port: int, username: str | None, password: str | None, **mqtt
) -> dict:
    """The scenario's agent config with an uplink to 127.0.0.1:port (short backoffs: minutes of
    virtual time are a fraction of a second)."""
    config = copy.deepcopy(load_agent_config(scenario))
    config["mqtt"] = {
        "host": "127.0.0.1",
        "port": port,
        "site": SITE,
        "station": STATION,
        "username": username,
        "password": password,
        "keepalive_s": 30,
        "backoff_min_s": 1,
        "backoff_max_s": 10,
        "connect_timeout_s": 5,
        "inflight": 8,
        **mqtt,
    }
    if username is None:
        del config["mqtt"]["username"], config["mqtt"]["password"]
    config["commands"] = {"key_file": KEY_PATH}
    return config


def topic(kind: str) -> str:
    return f"relaypump/{SITE}/{STATION}/{kind}"


def sign(counter: int, command_type: uplink.CommandType, args: dict, now_s: int, ttl_s: int = 60,
         station_id: int = 1, key: bytes = KEY) -> bytes:  # fmt: skip
    return uplink.build(
        uplink.command,
        {
            "station_id": station_id,
            "seq": counter,
            "timestamp_s": now_s,
            "command_counter": counter,
            "expiry_s": now_s + ttl_s,
            "command_type": int(command_type),
            "args": args,
        },
        key=key,
    )


class Field:
    def __init__(
        self,
        scenario: Scenario,
        config: dict,
        files: MemoryFiles | None = None,
        station: SimulatedStation | None = None,
    ) -> None:
        self.scenario = scenario
        self.config = config
        self.files = files or MemoryFiles({KEY_PATH: KEY.hex().encode()})
        self.station = station or SimulatedStation(scenario)
        self.samples: list[tuple[float, ...]] = []
        self.controller = self._boot()

    def _boot(self) -> AgentController:
        ctrl = AgentController(
            self.scenario, self.config, self.files, network=broker_link, wall_epoch_s=EPOCH_S
        )
        if ctrl.runtime.uplink is None:
            raise RuntimeError(f"no uplink: {ctrl.runtime.uplink_error}")
        return ctrl

    @property
    def uplink(self):
        return self.controller.runtime.uplink

    @property
    def agent(self):
        return self.controller.runtime.agent

    @property
    def wall_s(self) -> int:
        return EPOCH_S + int(self.station.t_s)

    def run(self, seconds: float) -> None:
        self.run_until(lambda: False, seconds)

    def run_until(self, predicate: Callable[[], bool], max_s: float) -> bool:
        """Chunks of CHUNK_S until predicate() (checked after each chunk) or max_s: its result."""
        st = self.station
        dt = self.scenario.step_s
        per_chunk = max(1, round(CHUNK_S / dt))
        end = st.t_s + max_s
        while st.t_s < end - 1e-9:
            for _ in range(per_chunk):
                self.controller.advance(st.bus, st.t_s + dt)
                st.step(dt)
            p = st.plant
            self.samples.append(
                (
                    st.t_s,
                    p.suction_kpa,
                    p.discharge_kpa,
                    p.remote_dp_kpa,
                    p.supply_temp_c,
                    p.flow_m3h,
                )  # fmt: skip
            )
            self.controller.settle()
            if predicate():
                return True
        return False

    def reboot(self) -> None:
        """A power cycle of the board: the socket dies without a DISCONNECT, RAM is
        lost, the flash (self.files) stays; the new runtime adopts the running drives."""
        old = self.uplink
        if old.link is not None:
            old.link.close()
        self.controller = self._boot()


def free_port() -> int:
    """A free TCP port on loopback (for a broker of one's own)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv: list[str] | None = None) -> int:
    """Run the simulated station with its uplink against a broker (a demo for pumpmon/pumpctl):
    python -m host_tools.sim.uplink_field --port 1883 --user st-relay1 --password-file F
    [--scenario TOML] [--hours H] [--speed X] (X times real time; 0: as fast as it goes).
    The station's key is KEY (pumpctl's key file: ``jia/relay1 1 <KEY hex>``)."""
    import argparse
    import time

    from host_tools.sim import scenario as scenarios

    p = argparse.ArgumentParser(prog="python -m host_tools.sim.uplink_field")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=1883)
    p.add_argument("--user", default=None)
    p.add_argument("--password-file", default=None)
    p.add_argument("--scenario", default=str(scenarios.DEFAULT_SCENARIO))
    p.add_argument("--hours", type=float, default=1.0)
    p.add_argument("--speed", type=float, default=1.0)
    args = p.parse_args(argv)
    password = None
    if args.password_file:
        with open(args.password_file) as f:
            password = f.readline().rstrip("\r\n")
    chosen = scenarios.load(args.scenario)
    config = station_config(chosen, args.port, args.user, password, host=args.host)
    field = Field(chosen, config)
    print(f"station {SITE}/{STATION} (id 1) on {args.host}:{args.port}; key {KEY.hex()}")
    started = time.monotonic()
    try:
        while field.station.t_s < args.hours * 3600:
            field.run(CHUNK_S)
            if args.speed > 0:
                ahead = field.station.t_s / args.speed - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)
    except KeyboardInterrupt:
        pass
    up = field.uplink
    print(f"{field.station.t_s:.0f} s simulated; {up.frames} frames acknowledged, "
          f"{up.box.pending} waiting, {up.commands.handled} commands")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
