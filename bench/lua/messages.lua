-- POST batches of BENCH_BATCH message events (sent, delivered, opened, clicked per message),
-- every event id new; BENCH_DAY is the UTC day they occur on.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local salt = os.getenv("BENCH_SALT") or "1"
local channel = os.getenv("BENCH_CHANNEL")
local day = os.getenv("BENCH_DAY")
local batch = tonumber(os.getenv("BENCH_BATCH") or "1000")
local types = {"sent", "delivered", "opened", "clicked"}
local n = 0

function request()
  n = n + 1
  local parts = {}
  for j = 0, batch - 1 do
    local m = math.floor(j / 4)
    local k = j % 4 + 1
    parts[#parts + 1] = string.format(
      '{"id":"w%s-%d-%d-%d","type":"%s","messageId":"wm%s-%d-%d-%d","channel":"%s",' ..
      '"from":"news@d%d.example","recipient":"u%d@rcpt.example","occurredAt":"%sT%02d:%02d:%02dZ"}',
      salt, tid, n, j, types[k], salt, tid, n, m, channel, m % 10, (n * 250 + m) % 50000, day,
      m % 24, j % 60, k)
  end
  return wrk.format(nil, nil, nil, '{"events":[' .. table.concat(parts, ",") .. ']}')
end
