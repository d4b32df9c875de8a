-- Shared by every bench/api scenario: prints one JSON line with wrk's own figures at the end.
-- Env: AUTH (bearer key, optional), LABEL (echoed back).
local auth = os.getenv("AUTH")
if auth and auth ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. auth
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"label":"%s","requests":%d,"duration_us":%d,"rps":%.1f,"p50_us":%d,"p99_us":%d,' ..
    '"mean_us":%.1f,"non2xx":%d,"socket_errors":%d}\n',
    os.getenv("LABEL") or "", summary.requests, summary.duration,
    summary.requests / (summary.duration / 1e6),
    latency:percentile(50), latency:percentile(99), latency.mean,
    e.status, e.connect + e.read + e.write + e.timeout))
end
