"""The independent Sparkplug B peer of the bridge tests: a primary host application built on
pysparkplug 0.6.1 (its own payload codec, generated from the Sparkplug B schema), run with
.venv-peer's Python (paho-mqtt 1.6, which the project's .venv cannot hold).

    .venv-peer/bin/python peer_host.py --port P --user U --password-file F --group G --host-id H

- Subscribes to spBv1.0/G/#, then publishes its STATE (retained JSON, online; its will says
  offline). Every message it decodes is one JSON line on stdout: type (NBIRTH, DDATA, ...),
  node, device, seq, timestamp and its metrics (name, datatype name, value, is_null,
  timestamp, description, properties). Properties (engUnit, readOnly) are read from the raw
  payload with pysparkplug's generated protobuf classes, as pysparkplug's Metric leaves them out.
  A payload pysparkplug cannot decode is a line {"type": "UNDECODABLE", "topic", "error"}.
- Reads JSON lines on stdin and publishes with pysparkplug's encoder:
  {"op": "dcmd", "node": N, "device": D, "metrics": [{"name", "datatype", "value"}]} and
  {"op": "rebirth", "node": N}, {"op": "state", "online": bool}. It prints {"type": "READY"} once subscribed.
- After a reconnect (pysparkplug subscribes again) it does what a primary host does, as the
  broker kept nothing for it: publishes its STATE again and asks every edge node it had seen born
  for a rebirth (a birth published before its new subscription is lost to it), then prints
  {"type": "RESUBSCRIBED"}.
"""

import argparse
import datetime
import json
import sys
import threading
import time

import pysparkplug as sp
from pysparkplug import _protobuf as pb

_lock = threading.Lock()


def emit(record: dict) -> None:
    with _lock:
        sys.stdout.write(json.dumps(record, default=str) + "\n")
        sys.stdout.flush()


class Host(sp.Client):
    """pysparkplug's client, keeping the raw payload of the message being handled."""

    raw = b""

    def _handle_message(self, mqtt_message):
        self.raw = mqtt_message.payload
        return super()._handle_message(mqtt_message)


def properties_of(raw: bytes) -> dict:
    out = {}
    for metric in pb.Payload.FromString(raw).metrics:
        props = {}
        for key, value in zip(metric.properties.keys, metric.properties.values, strict=True):
            which = value.WhichOneof("value")
            props[key] = None if which is None else getattr(value, which)
        out[metric.name] = props
    return out


def jsonable(value):
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, datetime.datetime):
        return value.isoformat()
    return value


def metric_record(m, props: dict) -> dict:
    return {
        "name": m.name,
        "datatype": m.datatype.name,
        "value": jsonable(m.value),
        "is_null": m.is_null,
        "timestamp": m.timestamp,
        "description": m.metadata.description if m.metadata else None,
        "properties": props.get(m.name, {}),
    }


def on_message(client: Host, message) -> None:
    t, p = message.topic, message.payload
    record = {"type": str(t.message_type), "node": t.edge_node_id, "device": t.device_id}
    if isinstance(p, sp.NDeath):
        record["metrics"] = [metric_record(p.bd_seq_metric, {})]
    elif isinstance(p, sp.DDeath):
        record.update(seq=p.seq, timestamp=p.timestamp)
    elif isinstance(p, sp.State):
        return
    else:
        props = properties_of(client.raw)
        record.update(
            seq=getattr(p, "seq", None),
            timestamp=p.timestamp,
            metrics=[metric_record(m, props) for m in p.metrics],
        )
    emit(record)


def main() -> int:
    a = argparse.ArgumentParser()
    a.add_argument("--port", type=int, required=True)
    a.add_argument("--user", required=True)
    a.add_argument("--password-file", required=True)
    a.add_argument("--group", required=True)
    a.add_argument("--host-id", default="peer-scada")
    args = a.parse_args()
    with open(args.password_file) as f:
        password = f.readline().strip()
    client = Host(client_id=args.host_id, username=args.user, password=password)
    state = sp.Topic(message_type=sp.MessageType.STATE, sparkplug_host_id=args.host_id)
    client.set_will(
        sp.Message(state, sp.State(sp.get_current_timestamp(), False), sp.QoS.AT_LEAST_ONCE, True)
    )
    subscribed = threading.Event()
    born: set[str] = set()  # edge nodes seen born: asked for a rebirth after a reconnect

    def on_subscribe(*_):
        if not subscribed.is_set():
            subscribed.set()
            return
        publish_state(True)
        for node in sorted(born):
            request_rebirth(node)
        emit({"type": "RESUBSCRIBED"})

    client._client.on_subscribe = on_subscribe
    connected = threading.Event()
    client.connect("127.0.0.1", port=args.port, callback=lambda c: connected.set())
    if not connected.wait(10):
        emit({"type": "ERROR", "error": "no CONNACK"})
        return 1

    def publish_state(online: bool) -> None:
        now = sp.get_current_timestamp()
        client.publish(sp.Message(state, sp.State(now, online), sp.QoS.AT_LEAST_ONCE, True))

    def request_rebirth(node: str) -> None:
        now = sp.get_current_timestamp()
        metric = sp.Metric(now, "Node Control/Rebirth", sp.DataType.BOOLEAN, value=True)
        topic = sp.Topic(group_id=args.group, message_type=sp.MessageType.NCMD, edge_node_id=node)
        client.publish(
            sp.Message(topic, sp.NCmd(now, (metric,)), sp.QoS.AT_MOST_ONCE, False),
            include_dtypes=True,
        )

    def safe(c, m):
        try:
            if m.topic.message_type == sp.MessageType.NBIRTH:
                born.add(m.topic.edge_node_id)
            on_message(c, m)
        except Exception as err:  # a payload pysparkplug refuses is a finding, not a crash
            emit({"type": "UNDECODABLE", "error": f"{type(err).__name__}: {err}"})

    everything = sp.Topic(group_id=args.group, message_type=sp.MULTI_LEVEL_WILDCARD)
    client.subscribe(everything, sp.QoS.AT_MOST_ONCE, safe)
    if not subscribed.wait(10):
        emit({"type": "ERROR", "error": "no SUBACK"})
        return 1
    publish_state(True)  # after the subscription, as a primary host does
    emit({"type": "READY"})
    for line in sys.stdin:
        if not line.strip():
            continue
        order = json.loads(line)
        now = sp.get_current_timestamp()
        if order["op"] == "state":
            publish_state(order["online"])
        elif order["op"] == "rebirth":
            request_rebirth(order["node"])
        elif order["op"] == "dcmd":
            metrics = tuple(
                sp.Metric(now, m["name"], sp.DataType[m["datatype"]], value=m["value"])
                for m in order["metrics"]
            )
            topic = sp.Topic(
                group_id=args.group,
                message_type=sp.MessageType.DCMD,
                edge_node_id=order["node"],
                device_id=order["device"],
            )
            client.publish(
                sp.Message(topic, sp.DCmd(now, metrics), sp.QoS.AT_MOST_ONCE, False),
                include_dtypes=order.get("include_dtypes", False),
            )
        emit({"type": "SENT", "op": order["op"]})
    client.disconnect()
    time.sleep(0.1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
