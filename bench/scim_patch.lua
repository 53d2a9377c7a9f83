-- wrk driver for bench_scim.py: SCIM user PATCHes, each one a real change.
--
-- Usage: wrk -t T -c C -d D -s scim_patch.lua http://127.0.0.1:PORT -- <ids file> <T> <token>
-- The file has one SCIM user id per line. Thread i (0-based) takes ids i, i+T, ... so two
-- threads never write the same user; within a thread consecutive requests go to consecutive
-- users, so the C/T requests in flight on a thread's connections name different users as
-- long as a thread owns more users than connections. Every PATCH replaces `title` with a new
-- value (a counter), so each one bumps the resource version and writes the mirror and audit.

local counter = 0

function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
end

function init(args)
  local path = args[1]
  local nthreads = tonumber(args[2])
  token = args[3]
  ids = {}
  local i = 0
  for line in io.lines(path) do
    if i % nthreads == id then
      ids[#ids + 1] = line
    end
    i = i + 1
  end
  n = 0
end

function request()
  n = n + 1
  local user = ids[(n % #ids) + 1]
  local body = '{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],' ..
    '"Operations":[{"op":"replace","path":"title","value":"t' .. id .. '-' .. n .. '"}]}'
  return wrk.format("PATCH", "/scim/v2/Users/" .. user, {
    ["Authorization"] = "Bearer " .. token,
    ["Content-Type"] = "application/scim+json",
  }, body)
end

function done(summary, latency, requests)
  io.write(string.format(
    "WRK_RESULT requests=%d duration_us=%d p50_us=%d p90_us=%d p99_us=%d max_us=%d " ..
    "non2xx=%d connect_errors=%d read_errors=%d timeouts=%d\n",
    summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    summary.errors.status, summary.errors.connect, summary.errors.read, summary.errors.timeout))
end
