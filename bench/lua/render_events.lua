-- POST a partner event; every request from a different source IP (first X-Forwarded-For hop),
-- so no request is deduped. BENCH_SALT keeps runs apart.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"eventType":"viewed","metadata":{"source":"bench"}}'
local salt = tonumber(os.getenv("BENCH_SALT") or "1")
local counter = 0

function request()
  counter = counter + 1
  wrk.headers["X-Forwarded-For"] = string.format("fd00:%x:%x:%x:%x::1", salt, tid,
    math.floor(counter / 65536), counter % 65536)
  return wrk.format()
end
