-- wrk script: requests to many paths (many tenants), read from a file, one request per line.
-- Each line is METHOD, path, Authorization value (may be empty) and body (may be empty),
-- separated by tabs; a POST body is sent as a form. Thread i of WRK_THREADS sends lines i, i+n,
-- i+2n, ... and starts over when it reaches the end, so the file's order (shuffled by the
-- script that wrote it) is the order in which each thread touches the tenants.
--   WRK_REQUESTS  the file of request lines
--   WRK_THREADS   the -t given to wrk (default 2)
--   WRK_SHOW_REFUSALS  when set, print the first few refused answers (status and body) of each
--                thread; this makes wrk read every answer, so it slows the run: diagnosis only
-- Requests are formatted once, in init, as benchmarks/wrk/assertions.lua does. Prints the same
-- RESULT line as ../shared/bench/wrk/post.lua.
local threads_made = 0
local unpack = table.unpack or unpack  -- wrk runs LuaJIT (Lua 5.1)

function setup(thread)
  thread:set("thread_id", threads_made)
  threads_made = threads_made + 1
end

local function fields(line)
  local parts = {}
  for part in (line .. "\t"):gmatch("([^\t]*)\t") do
    parts[#parts + 1] = part
  end
  return parts
end

function init(args)
  local count = tonumber(os.getenv("WRK_THREADS") or "2")
  requests = {}
  local index = 0
  for line in io.lines(os.getenv("WRK_REQUESTS")) do
    if index % count == thread_id then
      local method, path, authorization, body = unpack(fields(line))
      local headers = { ["Accept"] = "application/json" }
      if authorization ~= "" then
        headers["Authorization"] = authorization
      end
      if body ~= "" then
        headers["Content-Type"] = "application/x-www-form-urlencoded"
      else
        body = nil
      end
      requests[#requests + 1] = wrk.format(method, path, headers, body)
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
