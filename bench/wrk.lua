-- wrk script of the bridge benchmarks: `wrk ... -s bench/wrk.lua URL -- MODE FILE`.
--
-- MODE "send": POST /api/messages, rotating over FILE's lines "Authorization<TAB>recipient",
-- so the keep-alive connections send as several users; each body carries the request's
-- start time ("bench:<Unix microseconds>:") for the receiving clients to time delivery.
-- MODE "get": GET, rotating over FILE's lines "Authorization<TAB>path".
-- MODE "rest": Prosody's mod_rest, POST /rest/message/chat/<recipient> with a text/plain
-- body (the same stamped text) and "Host: localhost" (mod_rest serves the VirtualHost).
-- done() prints one line "BENCH {json}" for bench.procs.wrk to read.

local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clk_id, bench_timespec *tp);
]]
local clock = ffi.new("bench_timespec")
local CLOCK_REALTIME = 0

local thread_count = 0

function setup(thread)
  thread:set("thread_index", thread_count)
  thread_count = thread_count + 1
end

local mode
local entries = {}
local position = 0

function init(args)
  mode = args[1]
  for line in io.lines(args[2]) do
    local auth, rest = line:match("^([^\t]*)\t(.*)$")
    entries[#entries + 1] = { auth, rest }
  end
  -- Threads start at different users.
  position = (thread_index or 0) * 7
end

local function stamp()
  ffi.C.clock_gettime(CLOCK_REALTIME, clock)
  return string.format("%d%06d", tonumber(clock.tv_sec), math.floor(tonumber(clock.tv_nsec) / 1000))
end

function request()
  position = position + 1
  local entry = entries[(position % #entries) + 1]
  local headers = { ["Authorization"] = entry[1] }
  if mode == "send" then
    headers["Content-Type"] = "application/json"
    local body = '{"to":"' .. entry[2] .. '","body":"bench:' .. stamp() .. ':hello from the benchmark"}'
    return wrk.format("POST", "/api/messages", headers, body)
  end
  if mode == "rest" then
    headers["Content-Type"] = "text/plain"
    headers["Host"] = "localhost"
    return wrk.format("POST", "/rest/message/chat/" .. entry[2], headers, "bench:" .. stamp() .. ":hello from the benchmark")
  end
  return wrk.format("GET", entry[2], headers, nil)
end

function done(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    'BENCH {"requests":%d,"duration_us":%d,"connect_errors":%d,"read_errors":%d,"write_errors":%d,' ..
    '"status_errors":%d,"timeouts":%d,"p50_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f}\n',
    summary.requests, summary.duration, errors.connect, errors.read, errors.write, errors.status,
    errors.timeout, latency:percentile(50), latency:percentile(99), latency.max, latency.mean))
end
