"""What the uplink is built from its checked config, once (station_uplink.Uplink): the topics, the
MQTT session sized to the frames it carries, the broker link, the station's key and the numbers
commands are judged by; and the config errors of the uplink's sections (uplink_config.py).

Rules:
- Names: a site or a station is a topic level of 1..32 characters, letters, digits, - and _
  (check_name); topics are relaypump/<site>/<station>/<kind> (topic).
- The key file holds 32+ hex digits (one line) or 16+ raw bytes; a key under 16 bytes, or a file
  that cannot be read, is a CommandConfigError naming the field (the runtime then runs the
  station without its uplink).
- This code runs once, when the uplink is built, so it is a module of its own that the uplink
  drops again (``forget``): on a board that loads .mpy files its code is heap, and frozen its
  functions and classes are (~16 B a function, ~0.1 KiB a class). uplink_config.py (the
  validator, dropped at boot as well) takes the errors and check_name from here.
"""


class MqttConfigError(ValueError):
    """A refused mqtt config section; str() starts with the field's path."""


class CommandConfigError(ValueError):
    """A station key or command setting that cannot be used; the message names the field."""


def check_name(name, field):
    """A site or station name as a topic level: 1..32 characters, letters, digits, - and _."""
    if type(name) is not str or not 1 <= len(name) <= 32:
        raise MqttConfigError("%s: must be a text of 1 to 32 characters" % field)
    for c in name:
        if not (c.isalpha() or c.isdigit() or c in "-_") or ord(c) > 126:
            raise MqttConfigError(
                '%s: "%s" may hold only letters, digits, - and _ (no "%s")' % (field, name, c)
            )
    return name


def topic(site, station, kind):
    """relaypump/<site>/<station>/<kind> as bytes."""
    check_name(site, "mqtt.site")
    check_name(station, "mqtt.station")
    return ("relaypump/%s/%s/%s" % (site, station, kind)).encode()


def publish_size(topic_len, payload_len):
    """Bytes of a QoS 1 PUBLISH of that topic and payload length."""
    from relaypump.mqtt import length_size

    rl = 2 + topic_len + 2 + payload_len
    return 1 + length_size(rl) + rl


def session_from_config(cfg, random_below=None, payload_max=0, payload_in_max=0):
    """An mqtt.Session for a checked config section (mqtt_section). payload_max: the largest
    payload the application publishes (0: up to max_packet); the slots are sized to it on the
    longest of the station's topics (telemetry) instead of max_packet (the uplink: 5 x 118 B
    instead of 5 x 256 B). payload_in_max: the largest payload it takes in (0: max_packet); the
    receive buffer is sized to it on the command topic, at most max_packet (the uplink: a
    command of 63 B, 93 B instead of 256 B); a larger message is skipped (mqtt.py: counted in
    ``oversize``) and the uplink answers it as a malformed command. The birth's room is its
    "online" on the status topic (39 B for jia/relay1, not a slot)."""
    from relaypump.mqtt import Session

    site = cfg["site"]
    station = cfg["station"]
    slot = 0
    if payload_max:
        slot = publish_size(len(topic(site, station, "telemetry")), payload_max)
    command_topic = topic(site, station, "cmd")
    status_topic = topic(site, station, "status")
    rx = cfg["max_packet"]
    if payload_in_max:
        rx = min(rx, max(64, publish_size(len(command_topic), payload_in_max)))
    return Session(
        cfg["client_id"],
        status_topic,
        command_topic,
        username=cfg["username"],
        password=cfg["password"],
        keepalive_s=cfg["keepalive_s"],
        clean_session=cfg["clean_session"],
        inflight=cfg["inflight"],
        max_packet=rx,
        retry_ms=cfg["retry_s"] * 1000,
        connect_timeout_ms=cfg["connect_timeout_s"] * 1000,
        backoff_min_ms=cfg["backoff_min_s"] * 1000,
        backoff_max_ms=cfg["backoff_max_s"] * 1000,
        random_below=random_below,
        slot_size=slot,
        birth_room=publish_size(len(status_topic), len(b"online")),  # the session's own birth
    )


def default_net_link(session, cfg):
    """netio.Link to the configured broker, or None where the port has no sockets."""
    try:
        from relaypump import netio
    except ImportError:
        return None
    ca = cfg["ca_file"] if cfg["tls"] else None
    return netio.Link(session, cfg["host"], cfg["port"], ca, cfg["server_hostname"])


def check_key(key):
    """The station's HMAC key: bytes of at least 16 (uplink's minimum)."""
    if not isinstance(key, (bytes, bytearray)) or len(key) < 16:
        raise CommandConfigError("commands.key: must be at least 16 bytes")
    return bytes(key)


def read_key(path, opener=open):
    """The station's key from its file: 32+ hex digits (one line) or 16+ raw bytes."""
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except OSError:
        raise CommandConfigError("commands.key_file: cannot read %s" % path) from None
    text = data.strip()
    try:
        import binascii

        key = binascii.unhexlify(text)
        if len(text) >= 32:
            return check_key(key)
    except ValueError:
        pass
    return check_key(data)


def envelope(config):
    """What commands.py judges a command against (the pump count, the setpoint and discharge
    limits): a few numbers kept instead of the whole config (~24 KiB of heap on MicroPython)."""
    sp = config["setpoint"]
    pr = config["protection"]
    return {
        "pumps": [None] * len(config["pumps"]),
        "setpoint": {"min_kpa": sp["min_kpa"], "max_kpa": sp["max_kpa"]},
        "protection": {
            "discharge_max_kpa": pr["discharge_max_kpa"],
            "discharge_slowdown_kpa": pr["discharge_slowdown_kpa"],
        },
    }


def forget(names):
    """Drop modules loaded for a rare job (MicroPython: their code is heap there, and their
    functions and classes are, frozen or not)."""
    import sys

    if sys.implementation.name != "micropython":
        return  # CPython: others hold the modules (and their exception classes)
    package = sys.modules.get("relaypump")
    for name in names:
        sys.modules.pop(name, None)
        short = name.rsplit(".", 1)[1]
        if package is not None and short in package.__dict__:
            delattr(package, short)
