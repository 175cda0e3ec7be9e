"""Config validation: the shipped reference config loads; broken variants are refused with an error
that names the field (path) and the reason."""

import json

from relaypump.config import ConfigError, load_config, load_config_file
from support import STATION_JSON, station_json

VM_HEAP_KIB = 320  # each load_config() parses the whole file: ~8 KB of garbage the VM keeps

SHIPPED_TEXT = station_json()


def shipped():
    return json.loads(SHIPPED_TEXT)


def refused(doc, expected_start):
    """load_config(doc) raises ConfigError whose message starts with expected_start."""
    try:
        load_config(doc)
    except ConfigError as err:
        message = str(err)
        assert message.startswith(expected_start), (expected_start, message)
        return message
    raise AssertionError("accepted a config that should fail with " + expected_start)


def variant(path, value):
    """The shipped config with one value replaced (value DELETE removes the key).

    path is a list of keys/indices, e.g. ["pumps", 1, "profile"]."""
    doc = shipped()
    node = doc
    for key in path[:-1]:
        node = node[key]
    if value is DELETE:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return doc


DELETE = object()


def test_the_shipped_reference_config_loads():
    config = load_config(SHIPPED_TEXT)
    assert config["station"]["id"] == 1
    assert [p["profile"] for p in config["pumps"]] == ["abb", "danfoss", "g120"]
    assert config["pumps"][1]["ref_full_scale"] == 16384  # default filled per profile
    assert config["speed"]["min_pct"] == 50.0 and type(config["speed"]["min_pct"]) is float
    assert config["protection"]["suction_stop_delay_s"] == 10
    assert config["protection"]["restart_delay_s"] == 30  # a default
    assert config["pump_model"]["npsh_bep_m"] == 4.0
    assert config["io"]["channels"]["supply_temp_c"]["fallback"] == 120.0
    assert config["io"]["channels"]["remote_dp_kpa"]["fallback"] == "discharge"
    # the same from bytes, from a parsed dict, and from the file
    assert load_config(SHIPPED_TEXT.encode()) == config
    assert load_config(shipped()) == config
    assert load_config_file(STATION_JSON) == config


def test_the_example_messages_of_the_brief():
    refused(variant(["pumps", 1, "profile"], "vacon"), "pumps[1].profile: must be one of abb, ")
    message = refused(variant(["speed", "min_pct"], 120), "speed.min_pct: ")
    assert message == "speed.min_pct: 120 > speed.max_pct 100", message


def test_not_json_and_not_an_object():
    refused("{", "config: not valid JSON")
    refused(b"\xff", "config: not UTF-8")
    refused("[]", ": must be an object")
    refused(json.dumps({}), "station: missing")
    load_config_missing = None
    try:
        load_config_file("/nonexistent/station.json")
    except ConfigError as err:
        load_config_missing = str(err)
    assert load_config_missing.startswith("config: cannot read /nonexistent/station.json")


def test_unknown_keys_are_refused_everywhere():
    refused(variant(["colour"], 1), "colour: unknown key")
    refused(variant(["speed", "max_pc"], 100), "speed.max_pc: unknown key")
    refused(variant(["pumps", 2, "unti"], 4), "pumps[2].unti: unknown key")
    refused(variant(["io", "channels", "suction_kpa", "hi"], 1), "io.channels.suction_kpa.hi:")
    refused(variant(["io", "channels", "pressure_kpa"], {}), "io.channels.pressure_kpa: unknown")
    refused(variant(["io", "inputs", "door_open"], 3), "io.inputs.door_open: unknown key")
    refused(variant(["protection", "suction_delay_s"], 3), "protection.suction_delay_s: unknown")


def test_missing_required_keys_are_named():
    refused(variant(["pumps", 0, "unit"], DELETE), "pumps[0].unit: missing")
    refused(variant(["io", "channels", "flow_m3h"], DELETE), "io.channels.flow_m3h: missing")
    refused(variant(["io", "inputs", "source_running"], DELETE), "io.inputs.source_running: miss")
    refused(variant(["protection", "discharge_max_kpa"], DELETE), "protection.discharge_max_kpa")
    refused(variant(["pump_model"], DELETE), "pump_model: missing")
    # optional ones get their default
    config = load_config(variant(["staging"], DELETE))
    assert config["staging"]["max_starts_per_hour"] == 4


def test_types_are_strict():
    refused(variant(["bus", "retries"], 1.5), "bus.retries: must be a whole number")
    refused(variant(["bus", "retries"], True), "bus.retries: must be a whole number")
    refused(variant(["speed", "max_pct"], "100"), "speed.max_pct: must be a number")
    refused(variant(["speed", "max_pct"], None), "speed.max_pct: must be a number")
    refused(variant(["protection", "suction_auto_reset"], 1), "protection.suction_auto_reset:")
    refused(variant(["station", "name"], ""), "station.name: must be a text")
    refused(variant(["station"], []), "station: must be an object")
    refused(variant(["pumps"], {}), "pumps: must be a list")
    refused(variant(["bus", "baud"], 19200.0), "bus.baud: must be one of")


def test_ranges():
    refused(variant(["bus", "baud"], 12345), "bus.baud: must be one of 1200, ")
    refused(variant(["bus", "parity"], "X"), "bus.parity: must be one of N, E, O")
    refused(variant(["pumps", 0, "unit"], 0), "pumps[0].unit: 0 outside 1..247")
    refused(variant(["pumps", 0, "unit"], 248), "pumps[0].unit: 248 outside 1..247")
    refused(variant(["pumps", 0, "comm_loss_action"], "panic"), "pumps[0].comm_loss_action:")
    refused(variant(["pump_model", "density_kg_m3"], 500), "pump_model.density_kg_m3: 500 outs")
    refused(variant(["protection", "atmosphere_kpa"], 0), "protection.atmosphere_kpa: 0 outside")
    refused(variant(["protection", "suction_lockout_trips"], 0), "protection.suction_lockout_")
    refused(variant(["protection", "suction_margin_kpa"], -5), "protection.suction_margin_kpa")
    refused(variant(["pid", "period_ms"], 10), "pid.period_ms: 10 outside 50..60000")
    refused(variant(["staging", "hysteresis"], 0.9), "staging.hysteresis: 0.9 outside 0..0.5")


def test_pump_count_and_unique_units():
    doc = shipped()
    doc["pumps"].append({"unit": 4, "profile": "abb"})
    refused(doc, "pumps: 4 pumps, must be 1..3")
    refused(variant(["pumps"], []), "pumps: 0 pumps, must be 1..3")
    message = refused(variant(["pumps", 2, "unit"], 1), "pumps[2].unit: 1 is already used by ")
    assert "pumps[0].unit" in message
    refused(variant(["io", "unit"], 2), "io.unit: 2 is already used by pumps[1].unit")
    one = variant(["pumps"], [{"unit": 5, "profile": "g120", "rated_current_a": 200.0}])
    assert len(load_config(one)["pumps"]) == 1


def test_speed_envelope():
    refused(variant(["speed", "min_pct"], 100), "speed.min_pct: 100 = speed.max_pct 100")
    refused(variant(["speed", "max_pct"], 130), "speed.max_pct: 130 outside 1..120")
    message = refused(variant(["speed", "safe_pct"], 40), "speed.safe_pct: 40 outside the speed")
    assert "50..100" in message
    refused(variant(["speed", "safe_pct"], 101), "speed.safe_pct: 101 outside")


def test_sensor_channels():
    refused(variant(["io", "channels", "flow_m3h", "register"], 3), "io.channels.flow_m3h.regis")
    refused(variant(["io", "channels", "flow_m3h", "low"], 1200), "io.channels.flow_m3h.low: 1200")
    refused(variant(["io", "inputs", "bypass_open"], 0), "io.inputs.bypass_open: bit 0 is already")
    refused(variant(["io", "inputs", "bypass_open"], 16), "io.inputs.bypass_open: 16 outside")
    refused(
        variant(["io", "channels", "supply_temp_c", "high"], 250), "io.channels.supply_temp_c.h"
    )


def test_sensor_fallbacks():
    from relaypump.sensors import Sensors  # what raised on the fallbacks load_config passed
    from relaypump.snapshot import Snapshot

    base = ["io", "channels"]
    refused(variant(base + ["supply_temp_c", "fallback"], 170), "io.channels.supply_temp_c.fallb")
    refused(variant(base + ["flow_m3h", "fallback"], "pause"), "io.channels.flow_m3h.fallback:")
    refused(variant(base + ["flow_m3h", "fallback"], True), "io.channels.flow_m3h.fallback:")
    refused(variant(base + ["flow_m3h", "fallback"], "flow"), "io.channels.flow_m3h.fallback: ")
    # Only the remote DP has a stand-in sensor (control on the discharge pressure). These passed
    # load_config before and then made Agent (its Sensors) raise: refused here, naming the field.
    for key, fallback in (
        ("suction_kpa", "discharge"),
        ("flow_m3h", "discharge_kpa"),
        ("discharge_kpa", "remote_dp_kpa"),
        ("remote_dp_kpa", "suction"),
        ("supply_temp_c", "model"),  # flow and the two pressures have a model stand-in
        ("remote_dp_kpa", "model"),
    ):
        message = refused(
            variant(base + [key, "fallback"], fallback), "io.channels.%s.fallback" % key
        )
        assert "discharge" in message or "model" in message, message
    fine = load_config(variant(base + ["remote_dp_kpa", "fallback"], "discharge_kpa"))
    assert fine["io"]["channels"]["remote_dp_kpa"]["fallback"] == "discharge"
    Sensors(fine["io"], Snapshot(3))  # what load_config accepts, the agent takes
    # every other kind on every channel, too
    for fallback in ("stop", "hold", 1.0):  # 1.0 lies inside every channel's range
        doc = shipped()
        for channel in doc["io"]["channels"].values():
            channel["fallback"] = fallback
        config = load_config(doc)
        Sensors(config["io"], Snapshot(3))
    assert fine["io"]["channels"]["flow_m3h"]["fallback"] == "model"  # shipped
    # the pressures run on the other pressure and the pumps' head (shipped), not a stop
    assert fine["io"]["channels"]["suction_kpa"]["fallback"] == "model"
    assert fine["io"]["channels"]["discharge_kpa"]["fallback"] == "model"
    assert fine["protection"]["substitute_margin_kpa"] == 30.0
    refused(
        variant(["protection", "substitute_margin_kpa"], -1), "protection.substitute_margin_kpa"
    )
    number = load_config(variant(base + ["suction_kpa", "fallback"], 250))
    assert number["io"]["channels"]["suction_kpa"]["fallback"] == 250.0


def test_hold_frozen_and_plausibility_defaults_and_limits():
    config = load_config(station_json())
    channels = config["io"]["channels"]
    assert all(c["hold_s"] == config["io"]["hold_s"] for c in channels.values())
    assert channels["remote_dp_kpa"]["frozen_s"] == 45.0
    assert channels["supply_temp_c"]["frozen_s"] == 0.0 and channels["suction_kpa"]["frozen_s"] == 0
    plausibility = config["io"]["plausibility"]
    assert plausibility["check_s"] == 20 and plausibility["frozen_band_ua"] == 2
    assert plausibility["dp_check_s"] == 180 and plausibility["head_tolerance_ratio"] == 0.06
    assert config["protection"]["discharge_lockout_trips"] == 3
    own = load_config(variant(["io", "channels", "flow_m3h", "hold_s"], 30))
    assert own["io"]["channels"]["flow_m3h"]["hold_s"] == 30.0
    assert own["io"]["channels"]["suction_kpa"]["hold_s"] == 10.0
    refused(variant(["io", "channels", "flow_m3h", "hold_s"], -1), "io.channels.flow_m3h.hold_s:")
    refused(variant(["io", "plausibility"], {"check_s": 0}), "io.plausibility.check_s: 0 outside")
    refused(variant(["io", "plausibility"], {"frozen": 1}), "io.plausibility.frozen: unknown key")
    # a stuck flow transmitter must be found before the dry run locks out healthy pumps
    refused(
        variant(["io", "channels", "flow_m3h", "frozen_s"], 60),
        "io.channels.flow_m3h.frozen_s: 60 not below protection.dry_run_delay_s 60",
    )
    refused(
        variant(["io", "plausibility"], {"check_s": 90}),
        "io.plausibility.check_s: 90 not below protection.dry_run_delay_s 60",
    )
    unchecked = load_config(variant(["io", "channels", "flow_m3h", "frozen_s"], 0))
    assert unchecked["io"]["channels"]["flow_m3h"]["frozen_s"] == 0.0


def test_setpoint_envelope_and_curves():
    refused(variant(["setpoint", "mode"], "weather"), "setpoint.mode: must be one of fixed, ")
    refused(variant(["setpoint", "dp_kpa"], 250), "setpoint.dp_kpa: 250 outside setpoint.min_")
    refused(variant(["setpoint", "min_kpa"], 300), "setpoint.min_kpa: 300 > setpoint.max_kpa 200")
    curve = [[800.0, 111.0], [300.0, 80.0]]
    refused(variant(["setpoint", "flow_curve"], curve), "setpoint.flow_curve[1]: x 300 not above")
    refused(variant(["setpoint", "flow_curve"], [[1, 100]]), "setpoint.flow_curve: must be a list")
    refused(variant(["setpoint", "flow_curve"], [[1, 100], [2]]), "setpoint.flow_curve[1]: must")
    bad_y = [[-10.0, 250.0], [10.0, 70.0]]
    refused(variant(["setpoint", "outdoor_curve"], bad_y), "setpoint.outdoor_curve[0]: y 250")
    doc = variant(["setpoint", "flow_curve"], DELETE)
    doc["setpoint"]["mode"] = "flow"
    refused(doc, "setpoint.flow_curve: missing (setpoint.mode is flow)")
    refused(variant(["setpoint", "mode"], "outdoor"), "setpoint.mode: outdoor needs the sensor")
    outdoor = variant(["setpoint", "mode"], "outdoor")
    outdoor["io"]["channels"]["outdoor_temp_c"] = {
        "register": 5,
        "low": -40.0,
        "high": 60.0,
        "fallback": "hold",
    }
    assert load_config(outdoor)["setpoint"]["mode"] == "outdoor"


def test_protection_cross_fields():
    refused(variant(["setpoint", "discharge_fallback_kpa"], 1000), "setpoint.discharge_fallback")
    refused(
        variant(["protection", "discharge_max_kpa"], 1600), "protection.discharge_max_kpa: 1600"
    )
    refused(variant(["protection", "discharge_slowdown_kpa"], 1000), "protection.discharge_slowd")


def test_keys_of_the_other_modules_are_validated_and_defaulted():
    config = load_config(SHIPPED_TEXT)
    assert config["bus"]["timeout_margin_ms"] == 10 and config["bus"]["lost_probe_ms"] == 1000
    assert config["io"]["stale_s"] == 1.0 and config["io"]["cross_check_min_speed_pct"] == 40.0
    assert config["staging"]["settle_s"] == 120 and config["staging"]["handover_s"] == 90
    assert "max_running" not in config["staging"]  # staging.py derives it from the pump count
    assert config["speed"]["follow_band_pct"] == 2.0
    refused(variant(["bus", "lost_probe_ms"], -1), "bus.lost_probe_ms: -1 outside")
    assert config["bus"]["lost_after_ms"] == 5000  # half the drives' 10 s comm timeout
    refused(variant(["bus", "lost_after_ms"], 5.0), "bus.lost_after_ms: must be")
    refused(variant(["io", "stale_s"], "1"), "io.stale_s: must be a number")
    refused(variant(["staging", "max_running"], 4), "staging.max_running: 4 outside 1..3")
    refused(variant(["pumps", 0, "rated_kw"], 0), "pumps[0].rated_kw: 0 outside")
    refused(variant(["speed", "follow_band_pct"], 60), "speed.follow_band_pct: 60 outside")
    refused(variant(["setpoint", "network_loss_m_per_m3h2"], -1), "setpoint.network_loss_m_per")
    assert load_config(variant(["staging", "max_running"], 2))["staging"]["max_running"] == 2


def test_the_run_out_limit_suction_hold_and_restart_count_keys():
    config = load_config(SHIPPED_TEXT)
    assert config["pump_model"]["runout_flow_ratio"] == 1.4  # shipped: the curve's end
    assert config["protection"]["suction_hold_kpa"] == 5.0
    assert config["staging"]["restart_as_before"] is True
    window = load_config(variant(["pump_model", "runout_flow_ratio"], DELETE))["pump_model"]
    assert window["runout_flow_ratio"] == window["max_flow_ratio"]  # default: nothing beyond
    refused(
        variant(["pump_model", "runout_flow_ratio"], 1.2),
        "pump_model.runout_flow_ratio: 1.2 < pump_model.max_flow_ratio 1.25",
    )
    refused(variant(["protection", "suction_hold_kpa"], -1), "protection.suction_hold_kpa: -1")
    refused(variant(["staging", "restart_as_before"], 1), "staging.restart_as_before: must be")
