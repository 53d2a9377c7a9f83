-- wrk driver for bench_checkin.py: replays PRE-SIGNED check-ins, each exactly once.
--
-- Usage: wrk -t T -c C -d D -s checkin.lua http://127.0.0.1:PORT -- <requests file> <T>
-- The file has one request per line: "<device proof JWT>\t<exact JSON body>". Thread i
-- (0-based) takes lines i, i+T, i+2T, ... so no two threads send the same proof. The
-- generator does no crypto; the proofs were signed just before the run (fresh iat, unique
-- jti). If a thread runs out, it wraps around: the server then refuses the replays, which
-- shows up as non-2xx responses in the summary (the benchmark sizes the file to avoid it).

local counter = 0

function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
end

function init(args)
  local path = args[1]
  local nthreads = tonumber(args[2])
  reqs = {}
  local i = 0
  for line in io.lines(path) do
    if i % nthreads == id then
      local tab = line:find("\t", 1, true)
      local proof = line:sub(1, tab - 1)
      local body = line:sub(tab + 1)
      reqs[#reqs + 1] = wrk.format("POST", "/mdm/v1/checkin", {
        ["Device-Proof"] = proof,
        ["Content-Type"] = "application/json",
      }, body)
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
  io.write(string.format(
    "WRK_RESULT requests=%d duration_us=%d p50_us=%d p90_us=%d p99_us=%d max_us=%d " ..
    "non2xx=%d connect_errors=%d read_errors=%d timeouts=%d\n",
    summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    summary.errors.status, summary.errors.connect, summary.errors.read, summary.errors.timeout))
end
