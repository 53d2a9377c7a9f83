-- wrk driver for bench_decision.py: replays PRE-BUILT posture-API requests, each exactly once.
--
-- Usage: wrk -t T -c C -d D -s decision.lua http://127.0.0.1:PORT -- <file> <T> <path> <token>
-- The file has one JSON body per line (each with its own device login proof bound to a nonce
-- already issued into the gateway's nonce store). Thread i (0-based) takes lines i, i+T, ...
-- so no proof is sent twice. Every request carries "Authorization: Bearer <token>" (the
-- client-credentials access token). If a thread runs out it wraps around; wraps are counted
-- and printed (replayed nonces are refused by the gateway, so a run that wrapped is void).

local counter = 0
local threads = {}

function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
  threads[#threads + 1] = thread
end

function init(args)
  local path = args[1]
  local nthreads = tonumber(args[2])
  local target = args[3]
  local token = args[4]
  reqs = {}
  local i = 0
  for line in io.lines(path) do
    if i % nthreads == id then
      reqs[#reqs + 1] = wrk.format("POST", target, {
        ["Authorization"] = "Bearer " .. token,
        ["Content-Type"] = "application/json",
      }, line)
    end
    i = i + 1
  end
  idx = 0
  wrapped = 0
end

function request()
  idx = idx + 1
  if idx > #reqs then
    idx = 1
    wrapped = wrapped + 1
  end
  return reqs[idx]
end

function done(summary, latency, requests)
  local wraps = 0
  for _, t in ipairs(threads) do
    wraps = wraps + (t:get("wrapped") or 0)
  end
  io.write(string.format(
    "WRK_RESULT requests=%d duration_us=%d p50_us=%d p90_us=%d p99_us=%d max_us=%d " ..
    "non2xx=%d connect_errors=%d read_errors=%d timeouts=%d wrapped=%d\n",
    summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    summary.errors.status, summary.errors.connect, summary.errors.read, summary.errors.timeout,
    wraps))
end
