"""What the uplink host tools share: topic names, the broker options, the broker connection.

pumpctl, pumprecord, pumpmon and pumpbridge connect with paho-mqtt 2 (MQTT 3.1.1) through
make_client/connect below; pumpreplay has its own lean publisher (host_tools/uplink/publisher.py)
and takes only the options and the password from here.

Topics: relaypump/<site>/<station>/<kind>, kinds status, telemetry, event, ack (the station
publishes them) and cmd (the control room publishes it); as firmware/relaypump/mqtt.py topic().

Connection options (every tool): --host, --port, --user, --ca (TLS with that CA), --client-id,
--keepalive; each one's default is in its --help. The password never comes from the command line
(other users can read it there): it is read from the file named by --password-file or from the
environment variable RELAYPUMP_MQTT_PASSWORD, and sent only with --user (a password file without
--user is refused: it would be ignored). A port outside 1..65535 or a keepalive outside
0..65535 is a usage error; a CA file that cannot be read or holds no certificate is refused
(ToolError, exit 2) before anything connects.
"""

from __future__ import annotations

import argparse
import os
import ssl
import sys
import threading
from dataclasses import dataclass

import paho.mqtt.client as paho

PREFIX = "relaypump"
KINDS = ("status", "telemetry", "event", "ack", "cmd")
PASSWORD_ENV = "RELAYPUMP_MQTT_PASSWORD"


class ToolError(Exception):
    """A refusal of a tool: the message is the one line the user sees; ``code`` its exit status."""

    def __init__(self, message: str, code: int = 2):
        super().__init__(message)
        self.code = code


def topic(site: str, station: str, kind: str) -> str:
    return f"{PREFIX}/{site}/{station}/{kind}"


@dataclass(frozen=True)
class Topic:
    site: str
    station: str
    kind: str


def parse_topic(name: str) -> Topic | None:
    """relaypump/<site>/<station>/<kind> -> Topic; None for any other topic."""
    parts = name.split("/")
    if len(parts) != 4 or parts[0] != PREFIX:
        return None
    return Topic(parts[1], parts[2], parts[3])


def station_arg(text: str) -> tuple[str, str]:
    """SITE/STATION of the command line."""
    site, sep, station = text.partition("/")
    if not sep or not site or not station or "/" in station:
        raise argparse.ArgumentTypeError(f"{text!r}: expected SITE/STATION, e.g. jia/relay1")
    return site, station


def bounded_int(low: int, high: int):
    """An argparse type: an integer low..high."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r}: not an integer") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value}: must be {low}..{high}")
        return value

    return parse


def add_connection_options(
    parser: argparse.ArgumentParser, client_id: str = "", client_id_required: bool = False
) -> None:
    g = parser.add_argument_group("broker")
    g.add_argument("--host", default="127.0.0.1", help="broker host (default 127.0.0.1)")
    g.add_argument(
        "--port",
        type=bounded_int(1, 65535),
        default=None,
        help="broker port (default 1883, 8883 with --ca)",
    )
    g.add_argument("--user", default=None, help="MQTT user name (default: none, anonymous)")
    g.add_argument(
        "--password-file",
        default=None,
        help=f"file holding the MQTT password (default: the environment variable {PASSWORD_ENV})",
    )
    g.add_argument(
        "--ca", default=None, help="CA certificate (PEM): connect with TLS (default: no TLS)"
    )
    if client_id_required:  # a persistent session: the broker keeps it under this id
        g.add_argument(
            "--client-id", required=True, help="MQTT client id, the same at every start (required)"
        )
    else:
        g.add_argument(
            "--client-id",
            default=client_id,
            help=f"MQTT client id (default {client_id!r})"
            if client_id
            else "MQTT client id (default: none, the broker makes one)",
        )
    g.add_argument(
        "--keepalive",
        type=bounded_int(0, 65535),
        default=30,
        help="MQTT keepalive, s (default 30)",
    )


def ca_context(path: str) -> ssl.SSLContext:
    """A TLS client context trusting the CA file; ToolError (exit 2) when it cannot be used."""
    try:
        return ssl.create_default_context(cafile=path)
    except ssl.SSLError as err:  # an OSError too: first
        raise ToolError(f"the CA file {path} holds no usable certificate ({err.reason})") from None
    except OSError as err:
        raise ToolError(f"cannot read the CA file {path}: {err.strerror or err}") from None


def closed_stdout() -> int:
    """stdout's reader went away (``| head``): stop quietly as Unix tools do, exit 141
    (128 + SIGPIPE); stdout goes to /dev/null so Python's last flush does not complain."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return 141


def password(args) -> str | None:
    if args.password_file and not args.user:  # MQTT sends a password only with a user name
        raise ToolError(
            f"--password-file {args.password_file} needs --user (MQTT sends a "
            "password only with a user name)"
        )
    if args.password_file:
        try:
            with open(args.password_file) as f:
                return f.readline().rstrip("\r\n")
        except OSError as err:
            raise ToolError(
                f"cannot read the password file {args.password_file}: {err.strerror}"
            ) from None
    return os.environ.get(PASSWORD_ENV)


def make_client(args, clean_session: bool = True, manual_ack: bool = False) -> paho.Client:
    client = paho.Client(
        paho.CallbackAPIVersion.VERSION2,
        client_id=args.client_id or "",
        clean_session=clean_session,
        protocol=paho.MQTTv311,
        manual_ack=manual_ack,
    )
    secret = password(args)
    if args.user:
        client.username_pw_set(args.user, secret)
    if args.ca:
        client.tls_set_context(ca_context(args.ca))
    return client


def port_of(args) -> int:
    return args.port or (8883 if args.ca else 1883)


class Connected:
    """Waits for the CONNACK of a client run by loop_start (on_connect is chained)."""

    def __init__(self, client: paho.Client):
        self.event = threading.Event()
        self.reason = None
        self._next = client.on_connect
        client.on_connect = self._on_connect

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        self.reason = reason_code
        self.event.set()
        if self._next is not None:
            self._next(client, userdata, flags, reason_code, properties)

    def wait(self, timeout: float) -> None:
        if not self.event.wait(timeout):
            raise ToolError(f"no answer from the broker within {timeout:g} s", code=4)
        if self.reason is not None and self.reason.is_failure:
            raise ToolError(f"the broker refused the connection: {self.reason}", code=4)


def connect(client: paho.Client, args, timeout: float = 10.0) -> None:
    """Connect and start the network thread; returns once the broker accepted (else ToolError)."""
    connected = Connected(client)
    try:
        client.connect(args.host, port_of(args), keepalive=args.keepalive)
    except OSError as err:
        raise ToolError(
            f"cannot reach the broker at {args.host}:{port_of(args)}: {err.strerror or err}",
            code=4,
        ) from None
    client.loop_start()
    try:
        connected.wait(timeout)
    except ToolError:
        client.loop_stop()
        raise
