"""The uplink's config sections, checked and completed with their defaults: mqtt, outbox, ntp and
commands (config.py calls these when the config has an "mqtt" section; station_uplink.py says
what each setting does); and a config change judged and applied (commands.py and
station_uplink.py call these for a CONFIG_CHANGE command, which loads config.py anyway).

Rules:
- Each function takes the section as read from station.json (None: absent, defaults only, except
  mqtt, which must be there) and returns a new dict with every key; an unknown key, a missing
  required one or a bad value raises the owning module's error naming the field
  (``uplink_build.MqttConfigError``, ``outbox.OutboxError``, ``uplink_build.CommandConfigError``, a
  ValueError for ntp).
- This code runs only when a config is read (at boot, on a config change), so it is a module of
  its own that goes with config.py: on a board that loads .mpy files its code is heap, and frozen
  its functions and classes are (~16 B a function, ~0.1 KiB a class); the runtime (and the uplink
  after a config change) drop both once the config is accepted.
"""

from relaypump.outbox import OutboxError
from relaypump.uplink_build import CommandConfigError, MqttConfigError, check_name, envelope

TYPE_CHECKING = False
if TYPE_CHECKING:  # mypy only (MicroPython has no typing)
    from typing import Any  # noqa: F401  (used in type comments)


_MQTT_KEYS = (
    "host",
    "port",
    "tls",
    "ca_file",
    "server_hostname",
    "site",
    "station",
    "client_id",
    "username",
    "password",
    "keepalive_s",
    "clean_session",
    "inflight",
    "max_packet",
    "retry_s",
    "connect_timeout_s",
    "backoff_min_s",
    "backoff_max_s",
)


def _object(doc, path, keys, error):
    """The section as a dict (None: empty), every key in `keys`."""
    if doc is None:
        doc = {}
    if type(doc) is not dict:
        raise error("%s: must be an object" % path)
    for key in doc:
        if key not in keys:
            raise error("%s.%s: unknown key" % (path, key))
    return doc


def _whole(doc, out, path, key, lo, hi, default, error, show=False):
    value = doc.get(key, default)
    if type(value) is not int or not lo <= value <= hi:
        why = "%s.%s: must be a whole number in %d..%d" % (path, key, lo, hi)
        raise error(why + (", not %r" % (value,) if show else ""))
    out[key] = value


def _mqtt_text(doc, out, path, key, default):
    value = doc.get(key, default)
    if value is not None and (type(value) is not str or not value or len(value) > 255):
        raise MqttConfigError(
            "%s.%s: must be a text of 1 to 255 characters, not %r" % (path, key, value)
        )
    out[key] = value


def mqtt_section(doc, path="mqtt"):
    """The ``mqtt`` section. Keys: host (required), port (1883, 8883 with tls), tls (false),
    ca_file (required with tls: the broker's CA, PEM), server_hostname (host), site and station
    (required; topic levels), client_id (rp-<site>-<station>), username, password, keepalive_s
    (60, 5..3600), clean_session (false: the broker keeps QoS 1 commands for an offline station),
    inflight (4), max_packet (256: the largest packet taken in; a command is at most 63 B + its
    topic, ~150 B), retry_s (20), connect_timeout_s (15), backoff_min_s (1), backoff_max_s (30)."""
    if type(doc) is not dict:
        raise MqttConfigError("%s: must be an object" % path)
    _object(doc, path, _MQTT_KEYS, MqttConfigError)
    out = {}  # type: dict
    for key in ("host", "site", "station"):
        if key not in doc:
            raise MqttConfigError("%s.%s: missing" % (path, key))
    _mqtt_text(doc, out, path, "host", None)
    out["site"] = check_name(doc["site"], path + ".site")
    out["station"] = check_name(doc["station"], path + ".station")
    for key in ("tls", "clean_session"):
        value = doc.get(key, False)
        if type(value) is not bool:
            raise MqttConfigError("%s.%s: must be true or false, not %r" % (path, key, value))
        out[key] = value
    whole = _whole
    error = MqttConfigError
    whole(doc, out, path, "port", 1, 65535, 8883 if out["tls"] else 1883, error, True)
    _mqtt_text(doc, out, path, "ca_file", None)
    if out["tls"] and out["ca_file"] is None:
        raise MqttConfigError("%s.ca_file: missing (tls needs the broker's CA)" % path)
    _mqtt_text(doc, out, path, "server_hostname", out["host"])
    _mqtt_text(doc, out, path, "client_id", "rp-%s-%s" % (out["site"], out["station"]))
    if len(out["client_id"]) > 23:
        raise MqttConfigError(
            "%s.client_id: longer than 23 characters (not every broker takes more)" % path
        )
    _mqtt_text(doc, out, path, "username", None)
    _mqtt_text(doc, out, path, "password", None)
    whole(doc, out, path, "keepalive_s", 5, 3600, 60, error, True)
    whole(doc, out, path, "inflight", 1, 32, 4, error, True)
    whole(doc, out, path, "max_packet", 128, 8192, 256, error, True)
    whole(doc, out, path, "retry_s", 1, 3600, 20, error, True)
    whole(doc, out, path, "connect_timeout_s", 1, 300, 15, error, True)
    whole(doc, out, path, "backoff_min_s", 1, 600, 1, error, True)
    whole(doc, out, path, "backoff_max_s", out["backoff_min_s"], 3600, 30, error, True)
    return out


def outbox_section(doc, path="outbox"):
    """The "outbox" section: segments (12; 4 KiB each, 39 frames), save_s (60; the ack mark),
    hold_unsynced_s (120), telemetry_s (10; a telemetry frame every so many seconds)."""
    keys = ("segments", "save_s", "hold_unsynced_s", "telemetry_s")
    doc = _object(doc, path, keys, OutboxError)
    out = {}  # type: dict
    _whole(doc, out, path, "segments", 1, 64, 12, OutboxError)
    _whole(doc, out, path, "save_s", 1, 3600, 60, OutboxError)
    _whole(doc, out, path, "hold_unsynced_s", 0, 3600, 120, OutboxError)
    _whole(doc, out, path, "telemetry_s", 1, 3600, 10, OutboxError)
    return out


def ntp_section(doc, path="ntp"):
    """The "ntp" section: server (pool.ntp.org; a host name or address), resync_s (3600),
    max_rtt_ms (2000)."""
    doc = _object(doc, path, ("server", "resync_s", "max_rtt_ms"), ValueError)
    server = doc.get("server", "pool.ntp.org")
    if type(server) is not str or not 0 < len(server) <= 64 or " " in server:
        raise ValueError("%s.server: must be a host name of 1..64 characters" % path)
    out = {"server": server}  # type: dict
    _whole(doc, out, path, "resync_s", 60, 86400, 3600, ValueError)
    _whole(doc, out, path, "max_rtt_ms", 100, 10000, 2000, ValueError)
    return out


def commands_section(doc, path="commands"):
    """The "commands" section: {"key_file": the station's key on the board ("/station.key")}.
    The key itself never sits in the config (uplink_build.read_key reads it: hex or raw bytes)."""
    doc = _object(doc, path, ("key_file",), CommandConfigError)
    key_file = doc.get("key_file", "/station.key")
    if type(key_file) is not str or not 0 < len(key_file) <= 64:
        raise CommandConfigError("%s.key_file: must be a path of 1..64 characters" % path)
    return {"key_file": key_file}


# --- a config change (commands.py judges it, station_uplink.py applies it) --------------------


def judge_change(cmds):
    """An authentic, fresh CONFIG_CHANGE (commands.Commands after its checks 1-8): the new config
    validated into cmds.config; the ack result."""
    from relaypump import config, config_keys
    from relaypump.codes import ACK_OK, ACK_OUT_OF_ENVELOPE, ACK_UNKNOWN_COMMAND

    entry = config_keys.config_key(cmds.arg)
    if entry is None:
        return ACK_UNKNOWN_COMMAND
    _, section, name, scale, kind = entry
    raw = cmds.value
    value: object = raw  # INTEGER: the value itself
    if kind == config_keys.BOOLEAN:
        if raw not in (0, 1):
            return ACK_OUT_OF_ENVELOPE
        value = raw == 1
    elif kind == config_keys.NUMBER:
        value = raw / scale
    new = dict(cmds.cfg)
    new[section] = dict(cmds.cfg[section])
    new[section][name] = value

    try:
        cmds.config = config.load_config(new)
    except config.ConfigError:
        return ACK_OUT_OF_ENVELOPE
    return ACK_OK


def read_config(runtime):
    """The whole config file, for judging a config change (None: it cannot be read)."""
    from relaypump.config import ConfigError, load_config_file

    try:
        return load_config_file(runtime.config_path, runtime.board.open)
    except ConfigError:
        return None


def apply_change(up, now_ms):
    """The accepted config change of up.commands stored and applied (station_uplink.py's rules);
    the ack result."""
    import json

    from relaypump import codes, storage

    runtime = up.runtime
    board = runtime.board
    cmds = up.commands
    config = cmds.config  # type: Any
    if 2 * config["pid"]["period_ms"] > board.wdt_timeout_ms:
        return codes.ACK_OUT_OF_ENVELOPE
    up.drain_events(runtime.agent.events.count)  # the old agent's, before it goes
    try:
        storage.atomic_write(board.fs, runtime.config_path, json.dumps(config).encode(), board.open)
    except OSError:
        return codes.ACK_FAILED
    if cmds.arg == 1:  # setpoint.dp_kpa: the configured setpoint replaces a remote one
        up.remote_kpa = None
    up.manual = False  # the rebuilt agent runs automatic (rules)
    agent = runtime.adopt_config(config, now_ms)
    cmds.use_config(envelope(config))
    up.apply(agent)
    agent.events.push(codes.EVENT_CONFIG_APPLIED, codes.SEVERITY_NOTICE, 0, cmds.counter, now_ms)
    return codes.ACK_OK
