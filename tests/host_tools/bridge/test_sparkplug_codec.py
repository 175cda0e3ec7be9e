"""host_tools/uplink/sparkplug.py, our protobuf wire codec of Sparkplug B payloads: bytes written
out by hand from the protobuf encoding rules, round trips, the errors, and both directions
against pysparkplug's generated protobuf classes (the peer's, in .venv-peer)."""

import json
import subprocess

import pytest
from bridge_helpers import PEER_PYTHON

from host_tools.uplink import sparkplug as sp

D = sp.DataType


def test_the_bytes_of_a_small_payload_written_out_by_hand():
    p = sp.Payload(timestamp=1, seq=2, metrics=[sp.Metric("a", D.UINT8, 5)])
    metric = b"\x0a\x01a" + b"\x20\x05" + b"\x50\x05"  # name, datatype 5, int_value 5
    assert sp.encode(p) == b"\x08\x01" + b"\x12" + bytes([len(metric)]) + metric + b"\x18\x02"
    # a negative Int16 travels as its 16-bit two's complement; a double as 8 bytes LE
    assert sp.encode_metric(sp.Metric(None, D.INT16, -5)) == b"\x20\x02\x50\xfb\xff\x03"
    assert sp.encode_metric(sp.Metric(None, D.DOUBLE, 1.0)) == b"\x20\x0a\x69" + bytes(
        [0, 0, 0, 0, 0, 0, 0xF0, 0x3F]
    )
    assert sp.encode_metric(sp.Metric("n", D.UINT8, None)) == b"\x0a\x01n\x20\x05\x38\x01"


CASES = [
    (D.INT8, -128), (D.INT16, -32768), (D.INT32, -5), (D.INT64, -(2**63)), (D.UINT8, 255),
    (D.UINT16, 65535), (D.UINT32, 2**32 - 1), (D.UINT64, 2**64 - 1), (D.FLOAT, 1.5),
    (D.DOUBLE, -123.4), (D.BOOLEAN, True), (D.STRING, "kPa ü"), (D.BYTES, b"\x00\x01"),
]  # fmt: skip


@pytest.mark.parametrize("datatype,value", CASES)
def test_every_datatype_round_trips(datatype, value):
    m = sp.Metric("m", datatype, value, timestamp=1_780_000_000_000, description="doc",
                  properties={"engUnit": "kPa", "readOnly": False})  # fmt: skip
    (back,) = sp.decode(sp.encode(sp.Payload(5, 7, [m]))).metrics
    assert back.name == "m" and back.datatype == datatype and back.timestamp == m.timestamp
    assert sp.typed_value(back, datatype) == value
    assert back.description == "doc" and back.properties == {"engUnit": "kPa", "readOnly": False}


def test_values_that_do_not_fit_their_datatype_are_refused():
    for datatype, value in [(D.UINT8, 256), (D.UINT8, -1), (D.INT16, 32768), (D.INT8, -129)]:
        with pytest.raises(sp.SparkplugError, match="does not fit"):
            sp.encode_metric(sp.Metric("m", datatype, value))
    (m,) = sp.decode(sp.encode(sp.Payload(metrics=[sp.Metric("m", D.UINT32, 300)]))).metrics
    with pytest.raises(sp.SparkplugError, match=r"datatype 7 \(UINT32\), expected UINT8"):
        sp.typed_value(m, D.UINT8)
    m.datatype = D.UNKNOWN  # a host that leaves the datatype out: the field must still fit
    with pytest.raises(sp.SparkplugError, match="300 does not fit UINT8"):
        sp.typed_value(m, D.UINT8)
    with pytest.raises(sp.SparkplugError, match="a DOUBLE value in field 10"):
        sp.typed_value(m, D.DOUBLE)
    (n,) = sp.decode(sp.encode(sp.Payload(metrics=[sp.Metric("n", D.DOUBLE, None)]))).metrics
    with pytest.raises(sp.SparkplugError, match="no value"):
        sp.typed_value(n, D.DOUBLE)


def test_broken_payloads_raise_sparkplug_error_naming_the_field():
    good = sp.encode(sp.Payload(1, 2, [sp.Metric("abc", D.STRING, "x")]))
    for cut in range(1, len(good)):
        try:
            sp.decode(good[:cut])
        except sp.SparkplugError:
            continue
        # a cut at a field boundary is a shorter valid payload, never a wrong one
        assert good[:cut] in (b"\x08\x01", good[: len(good) - 2])
    with pytest.raises(sp.SparkplugError, match="truncated varint"):
        sp.decode(b"\x08\xff")
    with pytest.raises(sp.SparkplugError, match="payload field 2: truncated"):
        sp.decode(b"\x12\x05ab")
    with pytest.raises(sp.SparkplugError, match="wire type 3"):
        sp.decode(b"\x1b")
    with pytest.raises(sp.SparkplugError, match="metric 0 name: wire type 0"):
        sp.decode(b"\x12\x02\x08\x01")
    with pytest.raises(sp.SparkplugError, match="not UTF-8"):
        sp.decode(b"\x12\x03\x0a\x01\xff")
    # unknown fields are skipped (protobuf's rule): a uuid (4) and a body (5)
    assert sp.decode(b"\x22\x01u\x2a\x00\x18\x09").seq == 9


def _peer(code: str, stdin: str) -> str:
    if not PEER_PYTHON.exists():
        pytest.fail(f"{PEER_PYTHON} is missing: `make setup` makes .venv-peer")
    run = subprocess.run([str(PEER_PYTHON), "-c", code], input=stdin, capture_output=True,
                         text=True, timeout=60)  # fmt: skip
    assert run.returncode == 0, run.stderr
    return run.stdout


PEER_DECODE = """
import sys, json
from pysparkplug._protobuf import Payload
p = Payload.FromString(bytes.fromhex(sys.stdin.read()))
out = []
for m in p.metrics:
    which = m.WhichOneof("value")
    v = getattr(m, which) if which else None
    out.append([m.name, m.datatype, v.hex() if isinstance(v, bytes) else v, m.is_null])
print(json.dumps({"timestamp": p.timestamp, "seq": p.seq, "metrics": out}))
"""

PEER_ENCODE = """
import sys, json
import pysparkplug as sp
metrics = tuple(sp.Metric(1, name, sp.DataType[dt], value=v)
                for name, dt, v in json.loads(sys.stdin.read()))
print(sp.DCmd(1_780_000_000_000, metrics).encode(include_dtypes=True).hex())
"""


def test_the_peers_protobuf_classes_read_what_we_write():
    metrics = [sp.Metric(f"m{i}", dt, v) for i, (dt, v) in enumerate(CASES)]
    metrics.append(sp.Metric("null", D.DOUBLE, None))
    payload = sp.Payload(1_780_000_000_123, 255, metrics)
    got = json.loads(_peer(PEER_DECODE, sp.encode(payload).hex()))
    assert got["timestamp"] == 1_780_000_000_123 and got["seq"] == 255
    for (name, datatype, raw, is_null), m in zip(got["metrics"], metrics, strict=True):
        assert name == m.name and datatype == m.datatype and is_null == (m.value is None)
        if m.datatype in (D.INT8, D.INT16, D.INT32, D.INT64):
            bits = {D.INT8: 8, D.INT16: 16, D.INT32: 32, D.INT64: 64}[m.datatype]
            assert raw == m.value % (1 << bits)  # the unsigned field holds two's complement
        elif m.datatype == D.FLOAT:
            assert raw == pytest.approx(m.value)
        elif m.datatype == D.BYTES:
            assert raw == m.value.hex()
        else:
            assert raw == m.value


def test_we_read_what_pysparkplug_writes():
    wanted = [["setpoint", "DOUBLE", 125.5], ["mode", "UINT8", 2], ["t", "INT16", -300],
              ["big", "INT64", -(2**40)], ["on", "BOOLEAN", True], ["s", "STRING", "ok"],
              ["f", "FLOAT", 0.5]]  # fmt: skip
    payload = sp.decode(bytes.fromhex(_peer(PEER_ENCODE, json.dumps(wanted)).strip()))
    assert payload.timestamp == 1_780_000_000_000
    got = [[m.name, D(m.datatype).name, sp.typed_value(m, m.datatype)] for m in payload.metrics]
    assert got == wanted
