"""Send N requests of one kind to pivotd on one keep-alive connection and
check each answer (for bench-callgrind.sh; the client's own cost is not
measured there). Kinds: live (GET /v2/health/live), json / bin (784 FP32
in and out, JSON or binary tensors), json10 / bin10 (784 in, 10 out).
Usage: bench-client.py PORT KIND N"""
import http.client, json, random, struct, sys

port, kind, n = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
random.seed(1)
x = [float("%.7g" % random.uniform(-1, 1)) for _ in range(784)]
model = "tiny10" if kind.endswith("10") else "tiny"
path, body, headers, method = "/v2/models/%s/infer" % model, None, {}, "POST"
if kind == "live":
    path, method = "/v2/health/live", "GET"
elif kind.startswith("json"):
    body = json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 784], "data": x}]})
    headers["Content-Type"] = "application/json"
else:
    hdr = json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 784],
                                  "parameters": {"binary_data_size": 3136}}],
                      "outputs": [{"name": "y", "parameters": {"binary_data": True}}]}).encode()
    body = hdr + struct.pack("<784f", *x)
    headers["Inference-Header-Content-Length"] = str(len(hdr))
    headers["Content-Type"] = "application/octet-stream"
c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
for _ in range(n):
    c.request(method, path, body=body, headers=headers)
    r = c.getresponse()
    data = r.read()
    if r.status != 200:
        sys.exit("%s: HTTP %d: %r" % (kind, r.status, data[:200]))
c.close()
