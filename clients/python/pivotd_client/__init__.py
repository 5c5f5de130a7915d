"""A client for pivotd (Open Inference Protocol v2 plus pivotd's admin
endpoints), standard library only; numpy is used when it is installed.

    from pivotd_client import Client
    c = Client("http://127.0.0.1:8000")
    out = c.infer("fashion", {"image": x})      # x: numpy array or Tensor
    c.upload("fashion", "model.pvm")            # new version, hot-swapped

Errors: PivotdError (the server answered 4xx/5xx; .status, .message) and
ConnectError (nobody answered).
"""
import http.client
import json
import os
import struct
import urllib.parse

try:
    import numpy as _np
except ImportError:  # numpy is optional
    _np = None

__all__ = ["Client", "Tensor", "PivotdError", "ConnectError"]
__version__ = "0.1.0"

# Open Inference Protocol datatype -> (struct code, numpy dtype name).
DTYPES = {
    "FP32": ("f", "float32"), "FP64": ("d", "float64"),
    "INT8": ("b", "int8"), "INT16": ("h", "int16"), "INT32": ("i", "int32"), "INT64": ("q", "int64"),
    "UINT8": ("B", "uint8"), "UINT16": ("H", "uint16"), "UINT32": ("I", "uint32"), "UINT64": ("Q", "uint64"),
    "BOOL": ("?", "bool"),
}
_NP_TO_DT = {v[1]: k for k, v in DTYPES.items()}


class PivotdError(Exception):
    """The server refused: an HTTP status and its {"error": ...} message."""

    def __init__(self, status, message):
        super().__init__("HTTP %d: %s" % (status, message))
        self.status = status
        self.message = message


class ConnectError(PivotdError):
    """No answer at all (refused connection, timeout, reset)."""

    def __init__(self, message):
        Exception.__init__(self, message)
        self.status = 0
        self.message = message


class Tensor:
    """A tensor without numpy: datatype ("FP32"...), shape, flat row-major data."""

    def __init__(self, datatype, shape, data):
        if datatype not in DTYPES:
            raise ValueError("unknown datatype %r" % datatype)
        n = 1
        for d in shape:
            n *= d
        if len(data) != n:
            raise ValueError("%d values for shape %r" % (len(data), list(shape)))
        self.datatype, self.shape, self.data = datatype, list(shape), list(data)

    def __repr__(self):
        return "Tensor(%s, %r, %d values)" % (self.datatype, self.shape, len(self.data))


def _as_parts(value):
    """(datatype, shape, raw little-endian bytes, flat list or None)."""
    if isinstance(value, Tensor):
        code = DTYPES[value.datatype][0]
        return value.datatype, value.shape, struct.pack("<%d%s" % (len(value.data), code), *value.data), value.data
    if _np is not None and isinstance(value, _np.ndarray):
        dt = _NP_TO_DT.get(value.dtype.name)
        if dt is None:
            raise ValueError("numpy dtype %s has no Open Inference Protocol datatype" % value.dtype)
        a = _np.ascontiguousarray(value, dtype=value.dtype.newbyteorder("<"))
        return dt, list(a.shape), a.tobytes(), None
    raise TypeError("an input must be a numpy array or a Tensor, not %s" % type(value).__name__)


def _from_raw(datatype, shape, raw):
    if datatype not in DTYPES:
        raise PivotdError(200, "unsupported output datatype %r" % datatype)
    code, npname = DTYPES[datatype]
    if _np is not None:
        return _np.frombuffer(raw, dtype=_np.dtype(npname).newbyteorder("<")).reshape(shape).copy()
    n = len(raw) // struct.calcsize(code)
    return Tensor(datatype, shape, struct.unpack("<%d%s" % (n, code), raw))


def _flatten(x):
    if isinstance(x, list):
        out = []
        for e in x:
            out.extend(_flatten(e))
        return out
    return [x]


def _from_json(datatype, shape, data):
    flat = _flatten(data)
    if datatype not in DTYPES:
        raise PivotdError(200, "unsupported output datatype %r" % datatype)
    flat = [float("nan") if v is None else v for v in flat]
    if _np is not None:
        return _np.array(flat, dtype=DTYPES[datatype][1]).reshape(shape)
    return Tensor(datatype, shape, flat)


class Client:
    """One server. url: default $PIVOTD_URL or http://127.0.0.1:8000;
    token: default $PIVOTD_TOKEN (sent as a bearer token)."""

    def __init__(self, url=None, token=None, timeout=60.0):
        url = url or os.environ.get("PIVOTD_URL") or "http://127.0.0.1:8000"
        if "://" not in url:
            url = "http://" + url
        u = urllib.parse.urlsplit(url)
        if u.scheme not in ("http", "https"):
            raise ValueError("url scheme must be http or https: %r" % url)
        self.url = url.rstrip("/")
        self._https = u.scheme == "https"
        self._host = u.hostname
        self._port = u.port or (443 if self._https else 80)
        self._prefix = u.path.rstrip("/")
        self.token = token if token is not None else os.environ.get("PIVOTD_TOKEN")
        self.timeout = timeout
        self._conn = None

    # ------------------------------------------------------------ plumbing
    def close(self):
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _request(self, method, path, body=None, headers=None):
        """(status, headers dict lower-cased, body bytes); keeps the
        connection alive and retries once on a stale one."""
        hdrs = dict(headers or {})
        if self.token:
            hdrs["Authorization"] = "Bearer " + self.token
        for attempt in (0, 1):
            if self._conn is None:
                cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
                self._conn = cls(self._host, self._port, timeout=self.timeout)
            try:
                self._conn.request(method, self._prefix + path, body=body, headers=hdrs)
                r = self._conn.getresponse()
                data = r.read()
                h = {k.lower(): v for k, v in r.getheaders()}
                if h.get("connection", "").lower() == "close":
                    self.close()
                return r.status, h, data
            except (ConnectionError, http.client.HTTPException, OSError) as e:
                self.close()
                reused = attempt == 0 and isinstance(e, (http.client.RemoteDisconnected, BrokenPipeError,
                                                         ConnectionResetError))
                if not reused:
                    raise ConnectError("cannot reach %s: %s" % (self.url, e)) from None

    @staticmethod
    def _error(status, data):
        try:
            msg = json.loads(data)["error"]
        except Exception:
            msg = data[:200].decode("utf-8", "replace") or "HTTP %d" % status
        return PivotdError(status, msg)

    def _json(self, method, path, body=None, ok=(200,)):
        payload = None if body is None else json.dumps(body).encode()
        hdrs = {"Content-Type": "application/json"} if payload is not None else {}
        st, _, data = self._request(method, path, payload, hdrs)
        if st not in ok:
            raise self._error(st, data)
        return json.loads(data) if data else None

    @staticmethod
    def _model_path(model, version=None, suffix=""):
        p = "/v2/models/" + urllib.parse.quote(model, safe="")
        if version is not None:
            p += "/versions/%d" % int(version)
        return p + suffix

    # ------------------------------------------------------------ health, metadata
    def live(self):
        return self._request("GET", "/v2/health/live")[0] == 200

    def ready(self):
        return self._request("GET", "/v2/health/ready")[0] == 200

    def server_metadata(self):
        return self._json("GET", "/v2")

    def metadata(self, model, version=None):
        return self._json("GET", self._model_path(model, version))

    def model_ready(self, model, version=None):
        return self._request("GET", self._model_path(model, version, "/ready"))[0] == 200

    # ------------------------------------------------------------ inference
    def infer(self, model, inputs, version=None, outputs=None, binary=True, request_id=None):
        """inputs: {name: numpy array or Tensor} (or a list in model order).
        Returns {output name: numpy array, or Tensor without numpy}.
        binary: send and receive raw tensors (the binary tensor extension);
        False sends JSON numbers."""
        if not isinstance(inputs, dict):
            names = [i["name"] for i in self.metadata(model, version)["inputs"]]
            if len(inputs) > len(names):
                raise ValueError("%d inputs for a model with %d" % (len(inputs), len(names)))
            inputs = dict(zip(names, inputs))
        head = {"inputs": [], "parameters": {"binary_data_output": bool(binary)}}
        if request_id is not None:
            head["id"] = str(request_id)
        raws = []
        for name, value in inputs.items():
            dt, shape, raw, flat = _as_parts(value)
            entry = {"name": name, "datatype": dt, "shape": shape}
            if binary:
                entry["parameters"] = {"binary_data_size": len(raw)}
                raws.append(raw)
            else:
                if flat is None:
                    flat = value.reshape(-1).tolist()
                entry["data"] = [None if isinstance(v, float) and v != v else v for v in flat]
            head["inputs"].append(entry)
        if outputs:
            head["outputs"] = [{"name": o, "parameters": {"binary_data": bool(binary)}} for o in outputs]
        js = json.dumps(head).encode()
        if binary:
            body = js + b"".join(raws)
            hdrs = {"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": str(len(js))}
        else:
            body, hdrs = js, {"Content-Type": "application/json"}
        st, h, data = self._request("POST", self._model_path(model, version, "/infer"), body, hdrs)
        if st != 200:
            raise self._error(st, data)
        return self._parse_outputs(h, data)

    def _parse_outputs(self, h, data):
        jlen = int(h.get("inference-header-content-length", len(data)))
        if jlen > len(data):
            raise PivotdError(200, "Inference-Header-Content-Length %d > body %d" % (jlen, len(data)))
        resp = json.loads(data[:jlen])
        out, off = {}, jlen
        for o in resp.get("outputs", []):
            size = (o.get("parameters") or {}).get("binary_data_size")
            if size is not None:
                if off + size > len(data):
                    raise PivotdError(200, "output %r: %d bytes past the body" % (o["name"], size))
                out[o["name"]] = _from_raw(o["datatype"], o["shape"], data[off:off + size])
                off += size
            else:
                out[o["name"]] = _from_json(o["datatype"], o["shape"], o.get("data", []))
        self.last_response = resp
        return out

    def detect(self, model, image, version=None, content_type=None, **params):
        """image: bytes or a file path (JPEG, PNG, WebP, HEIC or AVIF). params become query
        parameters (thresholds). Returns the server's JSON answer."""
        if isinstance(image, (str, os.PathLike)):
            with open(image, "rb") as f:
                image = f.read()
        if content_type is None:
            content_type = ("image/jpeg" if image[:2] == b"\xff\xd8" else
                            "image/png" if image[:8] == b"\x89PNG\r\n\x1a\n" else "application/octet-stream")
        path = self._model_path(model, version, "/detect")
        if params:
            path += "?" + urllib.parse.urlencode(params)
        st, _, data = self._request("POST", path, image, {"Content-Type": content_type})
        if st != 200:
            raise self._error(st, data)
        return json.loads(data)

    # ------------------------------------------------------------ repository (admin)
    def index(self, ready=None):
        body = {} if ready is None else {"ready": bool(ready)}
        return self._json("POST", "/v2/repository/index", body)

    def load(self, model, config=None):
        """(Re)load model; config: dict or JSON string overriding config.json."""
        body = {} if config is None else {"parameters": {"config": config}}
        return self._json("POST", "/v2/repository/models/%s/load" % urllib.parse.quote(model, safe=""), body)

    def unload(self, model):
        return self._json("POST", "/v2/repository/models/%s/unload" % urllib.parse.quote(model, safe=""), {})

    def upload(self, model, model_file, version=None):
        """Send a .pvm/.onnx (path or bytes) as `version` (default: one past
        the highest the repository lists) and return once it serves.
        Returns the version number."""
        if isinstance(model_file, (str, os.PathLike)):
            with open(model_file, "rb") as f:
                model_file = f.read()
        if version is None:
            vs = [int(e["version"]) for e in self.index() if e["name"] == model and e.get("version")]
            version = max(vs, default=0) + 1
        st, _, data = self._request("PUT", self._model_path(model, version, "/model"), model_file,
                                    {"Content-Type": "application/octet-stream"})
        if st not in (200, 201):
            raise self._error(st, data)
        return int(version)

    # ------------------------------------------------------------ statistics
    def stats(self, model=None, version=None):
        if model is None:
            return self._json("GET", "/v2/models/stats")
        return self._json("GET", self._model_path(model, version, "/stats"))

    def metrics(self):
        st, _, data = self._request("GET", "/metrics")
        if st != 200:
            raise self._error(st, data)
        return data.decode()
