#!/usr/bin/python3
"""Regenerate the seed corpus of the daemon's parsers: infer request bodies
(JSON, and the binary tensor extension with the 3-byte prefix that
fuzz-infer.c reads: model selector, header length little-endian) and
pivotd config files. The files are committed; run this only to change them:
    /usr/bin/python3 tests/fuzz/make-daemon-corpus.py tests/fuzz/corpus
"""
import json
import os
import struct
import sys

out = sys.argv[1] if len(sys.argv) > 1 else "corpus"
for d in ("infer-json", "infer-binary", "config"):
    os.makedirs(f"{out}/{d}", exist_ok=True)


def put(d, name, data):
    if isinstance(data, str):
        data = data.encode()
    with open(f"{out}/{d}/{name}", "wb") as f:
        f.write(data)


# Inputs of the fuzz target's "multi" model, all valid.
x = {"name": "x", "datatype": "FP32", "shape": [2, 4], "data": [1, 2.5, -3e-2, 4, 5, 6, 7, 8]}
ids = {"name": "ids", "datatype": "INT64", "shape": [2, 2], "data": [[1, -2], [9007199254740993, 0]]}
mask = {"name": "mask", "datatype": "BOOL", "shape": [3], "data": [True, False, True]}
px = {"name": "px", "datatype": "UINT8", "shape": [1, 2, 2], "data": [0, 255, 7, 8]}
hh = {"name": "h", "datatype": "FP16", "shape": [2], "data": [0.5, -65504]}
full = {"id": "r1", "inputs": [x, ids, mask, px, hh]}
put("infer-json", "full.json", json.dumps(full))
put("infer-json", "outputs.json", json.dumps(dict(full, outputs=[{"name": "ids"}, {"name": "x", "parameters": {"binary_data": True}}],
                                               parameters={"binary_data_output": False})))
put("infer-json", "nested-pretty.json", json.dumps(full, indent=2))
put("infer-json", "missing-input.json", json.dumps({"inputs": [x]}))
put("infer-json", "bad-shape.json", json.dumps({"inputs": [dict(x, shape=[3, 5])]}))
put("infer-json", "bad-dtype.json", json.dumps({"inputs": [dict(x, datatype="INT8")]}))
put("infer-json", "short-data.json", '{"inputs":[{"name":"x","datatype":"FP32","shape":[1,4],"data":[1,2]}]}')
put("infer-json", "nan-inf.json", '{"inputs":[{"name":"h","datatype":"FP16","shape":[3],"data":[NaN,"inf",1e999]}]}')
put("infer-json", "not-object.json", "[1,2,3]")

# Binary: prefix byte 0 = model (0 multi, 1 one), bytes 1-2 = header length.
def binary(name, model, header, raw, hl=None):
    hj = json.dumps(header).encode() if header is not None else b""
    hl = len(hj) if hl is None else hl
    put("infer-binary", name, bytes([model]) + struct.pack("<H", hl) + hj + raw)


xb = struct.pack("<8f", *range(8))
binary("one-binary", 1, {"inputs": [{"name": "x", "datatype": "FP32", "shape": [2, 4],
                                     "parameters": {"binary_data_size": 32}}],
                         "parameters": {"binary_data_output": True}}, xb)
binary("raw-body", 1, None, xb, hl=0)
binary("raw-odd", 1, None, xb[:30], hl=0)
binary("raw-multi", 0, None, xb, hl=0)
binary("header-too-long", 1, None, b"{}", hl=0xffff)
mixed = {"inputs": [dict(x, data=None, parameters={"binary_data_size": 32}),
                    dict(ids, data=None, parameters={"binary_data_size": 32}),
                    mask, dict(px, data=None, parameters={"binary_data_size": 4}), hh],
         "outputs": [{"name": "x", "parameters": {"binary_data": True}}, {"name": "mask"}]}
for i in mixed["inputs"]:
    if i.get("data", 0) is None:
        del i["data"]
binary("mixed", 0, mixed, xb + struct.pack("<4q", 1, 2, 3, 4) + bytes([1, 2, 3, 4]))
binary("short-binary", 0, mixed, xb)

put("config", "full.json", json.dumps({
    "repository": "/var/lib/pivotd/models", "listen": "[::1]:8000", "token": "s3cret",
    "threads": 2, "http_threads": 4, "max_body": "64M", "max_upload": 1048576,
    "max_connections": 64, "request_timeout": 30, "repository_poll_ms": 0,
    "unload_first": True, "drain_timeout": 5, "backend_dir": None, "port_file": "/tmp/p"}))
put("config", "empty.json", "{}")
put("config", "bad-port.json", '{"listen": "host:99999"}')
put("config", "unknown.json", '{"listen": ":8000", "colour": "blue"}')
put("config", "big-int.json", '{"threads": 1e300, "max_body": "18446744073709551615K"}')
# Command lines: the target splits at NUL after a 0xff marker byte.
put("config", "args", b"\xff--listen\0:0\0--no-unload-first\0--max-body=1G\0--threads\0003")

# Regression inputs: each once crashed a parser (UBSan: a double cast to an
# integer out of range).
binary("regress-bds-huge", 1, {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4],
                                           "parameters": {"binary_data_size": 1e300}}]}, b"")
put("config", "regress-int-huge.json", '{"request_timeout": -1e300}')
