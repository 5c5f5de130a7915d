-- wrk script: GET $PATH_ (the HTTP baseline); reads $BODY only to $PATH_ (keep-alive), with the
-- binary header length in $HDRLEN when set; prints p50/p99 in microseconds.
local f = assert(io.open(os.getenv("BODY"), "rb"))
wrk.body = f:read("*a")
f:close()
wrk.method = "GET"
wrk.body = nil
wrk.path = os.getenv("PATH_") or "/v2/models/tiny/infer"
wrk.headers["Content-Type"] = "application/json"
local h = os.getenv("HDRLEN")
if h and h ~= "" then wrk.headers["Inference-Header-Content-Length"] = h end

done = function(summary, latency, requests)
  local bad = summary.errors.status + summary.errors.connect + summary.errors.read +
              summary.errors.write + summary.errors.timeout
  io.write(string.format("RESULT rps=%.0f p50_us=%d p99_us=%d errors=%d requests=%d\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(50),
    latency:percentile(99), bad, summary.requests))
end
