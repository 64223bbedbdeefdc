-- wrk script: client_credentials token requests, each with a never-used client assertion.
-- Every assertion is good once (its jti is recorded), so they are signed in advance, one
-- form body per line of WRK_BODIES; thread i of WRK_THREADS sends lines i, i+n, i+2n, ...
-- Running out of lines starts over, which the server refuses (replayed jti): such answers show
-- up in err_status, and the benchmark script treats any as a failed run.
--   WRK_BODIES   file of form-encoded bodies, one per line
--   WRK_THREADS  the -t given to wrk (default 2)
--   WRK_SHOW_REFUSALS  when set, print the first few refused answers (status and body) of each
--                thread; this makes wrk read every answer, so it slows the run: diagnosis only
-- Requests are formatted once, in init, so the load generator spends per request no more than
-- it does for the reference's fixed request (it shares the machine with the servers measured).
-- Prints the same RESULT line as ../shared/bench/wrk/post.lua.
local threads_made = 0

function setup(thread)
  thread:set("thread_id", threads_made)
  threads_made = threads_made + 1
end

function init(args)
  local count = tonumber(os.getenv("WRK_THREADS") or "2")
  local headers = { ["Content-Type"] = "application/x-www-form-urlencoded", ["Accept"] = "application/json" }
  requests = {}
  local index = 0
  for line in io.lines(os.getenv("WRK_BODIES")) do
    if index % count == thread_id then
      requests[#requests + 1] = wrk.format("POST", wrk.path, headers, line)
    end
    index = index + 1
  end
  sent = 0
end

function request()
  sent = sent + 1
  return requests[((sent - 1) % #requests) + 1]
end

if os.getenv("WRK_SHOW_REFUSALS") then
  local shown = 0
  function response(status, headers, body)
    if status >= 400 and shown < 5 then
      shown = shown + 1
      io.write(string.format("REFUSED %d %s\n", status, body))
    end
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  local secs = summary.duration / 1e6
  io.write(string.format(
    "RESULT requests=%d duration_s=%.3f rps=%.1f mean_ms=%.3f p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f max_ms=%.3f " ..
    "err_connect=%d err_read=%d err_write=%d err_status=%d err_timeout=%d\n",
    summary.requests, secs, summary.requests / secs, latency.mean / 1000,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000,
    latency.max / 1000, e.connect, e.read, e.write, e.status, e.timeout))
end
