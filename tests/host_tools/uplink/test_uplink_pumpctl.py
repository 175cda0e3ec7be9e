"""pumpctl: the frame it signs is what protocol/ parses and what an independent HMAC check (and the
firmware's own verifier) accepts; end to end through Mosquitto to a station that judges commands
with firmware/relaypump/commands.py; refusals with one clear line and their exit status."""

import hashlib
import hmac
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from mosquitto_broker import PASSWORDS, SITE, make_tls
from relaypump import commands, config
from relaypump import uplink as fw_uplink
from relaypump.codes import MODE_REMOTE_DP
from relaypump.ticks import TICKS_MASK
from relaypump.wallclock import WallClock

from host_tools.uplink import pumpctl
from protocol import fast, uplink

REPO = Path(__file__).resolve().parents[3]
PUMPCTL = str(Path(sys.executable).parent / "pumpctl")
KEY1 = bytes(range(0x40, 0x60))
KEY2 = bytes(range(0x80, 0xA0))
T_NOW = 1_780_000_000


def write_keys(path: Path, mode: int = 0o600) -> Path:
    path.write_text(
        "# control room keys\n"
        f"{SITE}/relay1 1 {KEY1.hex()}\n"
        f"{SITE}/relay2 2 {KEY2.hex()}  # the second station\n"
    )
    path.chmod(mode)
    return path


def station(site=SITE, name="relay1", sid=1, key=KEY1):
    return pumpctl.StationKey(site, name, sid, key)


@pytest.mark.parametrize(
    "ctype, args",
    [
        (uplink.CommandType.SETPOINT, {"setpoint_kpa_x10": 1205}),
        (uplink.CommandType.MODE, {"mode": 2}),
        (uplink.CommandType.PUMP_ENABLE, {"pump": 2}),
        (uplink.CommandType.PUMP_DISABLE, {"pump": 3}),
        (uplink.CommandType.RESET, {"pump": 0}),
        (uplink.CommandType.CONFIG_CHANGE, {"key": 48, "value": 300}),
    ],
)
def test_the_signed_frame_is_what_protocol_parses_and_an_independent_hmac_accepts(ctype, args):
    frame = pumpctl.build_command(station(), 7, ctype, args, T_NOW, 60)
    # an independent check: HMAC-SHA256 of every byte before the 32-byte tag, under the key
    assert hmac.compare_digest(frame[-32:], hmac.new(KEY1, frame[:-32], hashlib.sha256).digest())
    assert not hmac.compare_digest(
        frame[-32:], hmac.new(KEY2, frame[:-32], hashlib.sha256).digest()
    )
    parsed = uplink.parse(uplink.command, frame, key=KEY1)
    assert (parsed.station_id, parsed.seq, parsed.timestamp_s) == (1, 7, T_NOW)
    assert (parsed.command_counter, parsed.expiry_s, parsed.command_type) == (7, T_NOW + 60, ctype)
    assert dict((k, v) for k, v in parsed.args.items() if not k.startswith("_")) == args
    kind, decoded = fast.decode(frame, key=KEY1)
    assert kind == uplink.Kind.COMMAND and decoded["args"] == args
    values = fw_uplink.decode_command(frame, KEY1)  # the firmware's decoder verifies it too
    assert values[fw_uplink.I_COMMAND_COMMAND_COUNTER] == 7
    with pytest.raises(uplink.BadSignature):
        uplink.parse(uplink.command, frame, key=KEY2)
    flipped = bytearray(frame)
    flipped[20] ^= 1
    with pytest.raises(uplink.BadSignature):
        uplink.parse(uplink.command, bytes(flipped), key=KEY1)


def test_config_values_are_scaled_as_the_firmware_table_says():
    entry = pumpctl.config_entry("setpoint.dp_kpa")
    assert pumpctl.config_value(entry, "111.5") == 1115
    assert pumpctl.config_entry("48") == pumpctl.config_entry("staging.min_run_s")
    assert pumpctl.config_value(pumpctl.config_entry("protection.suction_auto_reset"), "true") == 1
    with pytest.raises(pumpctl.ToolError, match="not remotely settable"):
        pumpctl.config_entry("station.id")
    with pytest.raises(pumpctl.ToolError, match="expected a number"):
        pumpctl.config_value(entry, "lots")


def test_counters_go_up_atomically_and_never_repeat(tmp_path):
    state = tmp_path / "state"
    assert [pumpctl.take_counter(state, SITE, "relay1") for _ in range(3)] == [1, 2, 3]
    assert pumpctl.take_counter(state, SITE, "relay2") == 1
    assert pumpctl.take_counter(state, SITE, "relay1", wanted=100) == 100
    assert pumpctl.take_counter(state, SITE, "relay1") == 101
    with pytest.raises(pumpctl.ToolError, match="not above the last one used"):
        pumpctl.take_counter(state, SITE, "relay1", wanted=50)
    assert json.loads((state / f"pumpctl-{SITE}-relay1.json").read_text()) == {"last_counter": 101}
    assert not list(state.glob("*.tmp"))


class FirmwareStation:
    """A station's command side: paho client with the station's credentials, commands judged by
    the firmware's Commands (HMAC, counter, clock, envelope), an ack frame for each."""

    def __init__(self, port, name="relay1", station_id=1, key=KEY1, mode=MODE_REMOTE_DP):
        doc = json.loads((REPO / "firmware" / "station.json").read_text())
        doc["station"]["id"] = station_id
        clock = WallClock()
        clock.set_time(int(time.time()), self.ticks())
        self.commands = commands.Commands(station_id, key, config.load_config(doc), clock)
        self.mode = mode
        self.last_counter = 0
        self.seq = 1000
        self.results = []
        self.ack_topic = f"relaypump/{SITE}/{name}/ack"
        c = paho.Client(
            paho.CallbackAPIVersion.VERSION2, client_id=f"st-{name}", protocol=paho.MQTTv311
        )
        c.username_pw_set(f"st-{name}", PASSWORDS[f"st-{name}"])
        subscribed = threading.Event()
        c.on_connect = lambda cl, *a: cl.subscribe(f"relaypump/{SITE}/{name}/cmd", qos=1)
        c.on_subscribe = lambda *a: subscribed.set()
        c.on_message = self._on_message
        c.connect("127.0.0.1", port)
        c.loop_start()
        assert subscribed.wait(5)
        self.client = c

    @staticmethod
    def ticks():
        return int(time.monotonic() * 1000) & TICKS_MASK

    def _on_message(self, client, userdata, msg):
        cmds = self.commands
        result = cmds.handle(msg.payload, self.ticks(), self.last_counter, self.mode)
        if cmds.consumed:
            self.last_counter = cmds.counter
        self.results.append((result, cmds.command_type, cmds.arg, cmds.value, cmds.config))
        buf = bytearray(32)
        n = cmds.ack(buf, self.seq, int(time.time()))
        self.seq += 1
        client.publish(self.ack_topic, bytes(buf[:n]), qos=1)

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def cli_env(tmp_path, broker, password_file):
    """Arguments and environment of a pumpctl run as the control room."""
    keys = write_keys(tmp_path / "keys")
    env = dict(os.environ, RELAYPUMP_KEYS=str(keys), RELAYPUMP_STATE_DIR=str(tmp_path / "state"))
    common = ["--port", str(broker.port), "--user", "controlroom"]
    common += ["--password-file", password_file("controlroom"), "--timeout", "5"]
    return env, common


def run_pumpctl(env, common, *args):
    return subprocess.run(
        [PUMPCTL, *common, *args], env=env, capture_output=True, text=True, timeout=60
    )


def test_commands_reach_the_station_and_their_acks_come_back(broker, cli_env):
    env, common = cli_env
    st = FirmwareStation(broker.port)
    try:
        out = run_pumpctl(env, common, f"{SITE}/relay1", "setpoint", "120.5")
        assert out.returncode == 0, out.stderr
        assert out.stdout.startswith(f"{SITE}/relay1: setpoint 120.5 kPa, counter 1: OK")
        out = run_pumpctl(env, common, f"{SITE}/relay1", "pump-disable", "2")
        assert out.returncode == 0 and "counter 2: OK" in out.stdout
        out = run_pumpctl(env, common, f"{SITE}/relay1", "config", "staging.min_run_s", "300")
        assert out.returncode == 0, out.stdout + out.stderr
        # refusals come back from the station with the reason, exit status 1
        out = run_pumpctl(env, common, f"{SITE}/relay1", "setpoint", "250")
        assert out.returncode == 1 and "refused: OUT_OF_ENVELOPE" in out.stdout
        out = run_pumpctl(env, common, "--counter", "4", f"{SITE}/relay1", "reset")
        assert out.returncode == 2 and "not above the last one used (4)" in out.stderr
        st.last_counter = 100  # the station accepted a higher counter (another control room)
        out = run_pumpctl(env, common, f"{SITE}/relay1", "mode", "discharge")
        assert out.returncode == 1 and "counter 5: refused: REPLAYED" in out.stdout
    finally:
        st.close()
    accepted = [r for r in st.results if r[0] == 0]
    assert [(r[1], r[2], r[3]) for r in accepted] == [
        (uplink.CommandType.SETPOINT, 1205, 0),
        (uplink.CommandType.PUMP_DISABLE, 2, 0),
        (uplink.CommandType.CONFIG_CHANGE, 48, 300),
    ]
    assert accepted[2][4]["staging"]["min_run_s"] == 300  # validated into a new config


def test_a_command_nobody_answers_times_out_with_exit_3(broker, cli_env):
    env, common = cli_env
    common = [c if c != "5" else "1" for c in common]  # --timeout 1
    out = run_pumpctl(env, common, f"{SITE}/relay2", "reset", "1")
    assert out.returncode == 3
    assert (
        out.stderr.strip() == f"pumpctl: {SITE}/relay2: reset pump 1, counter 1: no ack within 1 s"
    )


def test_key_file_refusals_are_one_clear_line_and_exit_2(tmp_path, broker, cli_env):
    env, common = cli_env
    missing = dict(env, RELAYPUMP_KEYS=str(tmp_path / "nope"))
    out = run_pumpctl(missing, common, f"{SITE}/relay1", "reset")
    assert (
        out.returncode == 2 and out.stderr == f"pumpctl: key file {tmp_path / 'nope'} not found\n"
    )
    no_env = {k: v for k, v in env.items() if k != "RELAYPUMP_KEYS"}
    out = run_pumpctl(no_env, common, f"{SITE}/relay1", "reset")
    assert (
        out.returncode == 2 and "no key file: pass --keys FILE or set RELAYPUMP_KEYS" in out.stderr
    )
    readable = write_keys(tmp_path / "open-keys", 0o644)
    out = run_pumpctl(env, ["--keys", str(readable), *common], f"{SITE}/relay1", "reset")
    assert out.returncode == 2
    assert out.stderr == (
        f"pumpctl: key file {readable} is open to other users (mode 0644): refusing to use it;"
        f" chmod o-rw {readable}\n"
    )
    out = run_pumpctl(env, common, f"{SITE}/relay9", "reset")
    assert out.returncode == 2 and f"names no key for {SITE}/relay9" in out.stderr
    assert not (tmp_path / "state").exists()  # nothing sent, no counter used


def test_a_broker_that_is_not_there_is_exit_4(tmp_path, cli_env, broker):
    env, common = cli_env
    broker.stop()
    out = run_pumpctl(env, common, f"{SITE}/relay1", "reset")
    assert out.returncode == 4 and "cannot reach the broker" in out.stderr


def test_pumpctl_over_tls_with_the_brokers_ca(tmp_path, tls_broker, password_file):
    keys = write_keys(tmp_path / "keys")
    env = dict(os.environ, RELAYPUMP_KEYS=str(keys), RELAYPUMP_STATE_DIR=str(tmp_path / "state"))
    common = ["--port", str(tls_broker.tls_port), "--user", "controlroom"]
    common += ["--password-file", password_file("controlroom"), "--timeout", "5"]
    st = FirmwareStation(tls_broker.port)  # the station on the plain listener, same broker
    try:
        out = run_pumpctl(env, ["--ca", str(tls_broker.tls.ca), *common], f"{SITE}/relay1", "reset")
        assert out.returncode == 0 and "reset station, counter 1: OK" in out.stdout
        # a CA that did not sign the broker's certificate: refused before any MQTT, exit 4
        other = make_tls(tmp_path / "other-ca", name="someone-else")
        out = run_pumpctl(env, ["--ca", str(other.ca), *common], f"{SITE}/relay1", "reset")
        assert out.returncode == 4 and "cannot reach the broker" in out.stderr
        assert "certificate verify failed" in out.stderr
    finally:
        st.close()


# --- an operator's bad input: one line, exit 2, nothing sent (no broker needed: all refused
# before pumpctl connects; --port 1 would be refused at once if it got that far) -------------


def pumpctl_main(capsys, tmp_path, *args, keys=None):
    keys = keys or write_keys(tmp_path / "keys")
    argv = ["--keys", str(keys), "--state-dir", str(tmp_path / "state"), "--port", "1", *args]
    code = pumpctl.main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize(
    "command",
    [
        ["setpoint", "nan"],
        ["setpoint", "inf"],
        ["config", "setpoint.dp_kpa", "inf"],
        ["config", "setpoint.dp_kpa", "nan"],
    ],
)
def test_a_value_that_is_not_a_finite_number_is_refused_in_one_line(capsys, tmp_path, command):
    code, out, err = pumpctl_main(capsys, tmp_path, f"{SITE}/relay1", *command)
    assert code == pumpctl.EXIT_USAGE and out == ""
    assert err.count("\n") == 1 and err.startswith("pumpctl: ")
    assert "finite number" in err or "expected a number" in err
    assert not (tmp_path / "state").exists()  # no counter used


def test_a_key_file_that_cannot_be_read_as_text_is_one_line(capsys, tmp_path):
    binary = tmp_path / "binary-keys"
    binary.write_bytes(b"\xff\xfe\x00 not text\n")
    binary.chmod(0o600)
    code, _, err = pumpctl_main(capsys, tmp_path, f"{SITE}/relay1", "reset", keys=binary)
    assert code == 2 and err == f"pumpctl: key file {binary} is not text" + (
        " (SITE/STATION STATION_ID KEY_HEX lines)\n"
    )
    directory = tmp_path / "keys-dir"
    directory.mkdir(mode=0o700)
    code, _, err = pumpctl_main(capsys, tmp_path, f"{SITE}/relay1", "reset", keys=directory)
    assert code == 2 and err == f"pumpctl: cannot read the key file {directory}: Is a directory\n"


def test_a_state_dir_that_cannot_be_made_is_a_tool_error(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(pumpctl.ToolError, match="counter state in .*a-file.*--state-dir") as err:
        pumpctl.take_counter(blocker / "state", SITE, "relay1")
    assert err.value.code == 2
    with pytest.raises(pumpctl.ToolError) as err:
        pumpctl.take_counter(blocker, SITE, "relay1")
    assert str(err.value) == f"counter state: --state-dir {blocker} is a file, not a folder"
    assert err.value.code == 2


def test_a_ca_file_that_is_not_a_certificate_is_exit_2_before_connecting(capsys, tmp_path):
    keys = write_keys(tmp_path / "keys")
    code, _, err = pumpctl_main(capsys, tmp_path, "--ca", str(keys), f"{SITE}/relay1", "reset")
    assert code == 2
    assert (
        err
        == f"pumpctl: the CA file {keys} holds no usable certificate (NO_CERTIFICATE_OR_CRL_FOUND)\n"
    )
    code, _, err = pumpctl_main(
        capsys, tmp_path, "--ca", str(tmp_path / "no"), f"{SITE}/relay1", "reset"
    )
    assert (
        code == 2
        and err
        == f"pumpctl: cannot read the CA file {tmp_path / 'no'}: No such file or directory\n"
    )


@pytest.mark.parametrize(
    "option",
    [
        ["--ttl", "0"],
        ["--ttl", "100000"],
        ["--timeout", "0"],
        ["--timeout", "nan"],
        ["--port", "70000"],
        ["--keepalive", "-1"],
    ],
)
def test_options_out_of_range_are_usage_errors(capsys, tmp_path, option):
    with pytest.raises(SystemExit) as exit_:
        pumpctl_main(capsys, tmp_path, *option, f"{SITE}/relay1", "reset")
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {option[0]}: " in err and "Traceback" not in err


def test_config_keys_lists_the_keys_after_options_too(capsys, tmp_path):
    code, out, _ = pumpctl_main(capsys, tmp_path, "config-keys")
    assert code == 0 and out.splitlines()[0].split()[:2] == ["1", "setpoint.dp_kpa"]
