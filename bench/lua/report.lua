-- Shared by the bench/lua/*.lua scripts (loaded with dofile; wrk runs from bench/lua).
--
-- Non-2xx counting: unless the script is given the argument "lax", every thread
-- defines response() and counts each status outside 200..299 itself, so a 3xx or a
-- 1xx cannot hide either. done() adds those per-thread counts up and also prints
-- wrk's own counters (status > 399, socket errors, timeouts). run.sh fails the run
-- if any of them is non-zero.

local threads = {}
local next_id = 0

function setup(thread)
   next_id = next_id + 1
   thread:set("tid", next_id)
   table.insert(threads, thread)
end

-- Call from init(args). Returns the args with "lax" removed.
function report_init(args)
   non2xx = 0
   first_bad = 0
   local rest, lax = {}, false
   for _, a in ipairs(args) do
      if a == "lax" then lax = true else table.insert(rest, a) end
   end
   if lax then
      response = nil -- wrk then skips handing headers and body to Lua
   end
   return rest
end

function response(status, headers, body)
   if status < 200 or status > 299 then
      non2xx = non2xx + 1
      if first_bad == 0 then first_bad = status end
   end
end

function done(summary, latency, requests)
   local bad, first = 0, 0
   for _, t in ipairs(threads) do
      bad = bad + (t:get("non2xx") or 0)
      local f = t:get("first_bad") or 0
      if first == 0 then first = f end
   end
   local e = summary.errors
   local secs = summary.duration / 1e6
   io.write(string.format(
      "RESULT requests=%d seconds=%.2f rps=%.1f p50_ms=%.3f p75_ms=%.3f p90_ms=%.3f p99_ms=%.3f max_ms=%.3f non2xx=%d first_non2xx=%d status_gt399=%d connect=%d read=%d write=%d timeout=%d\n",
      summary.requests, secs, summary.requests / secs,
      latency:percentile(50) / 1000, latency:percentile(75) / 1000,
      latency:percentile(90) / 1000, latency:percentile(99) / 1000,
      latency.max / 1000,
      bad, first, e.status, e.connect, e.read, e.write, e.timeout))
end
