-- Appended by run.py to every workload's wrk script: one machine-readable line at the end.
-- Workload scripts define init/request only; setup and done live here.
local bench_threads = {}

function setup(thread)
  table.insert(bench_threads, thread)
end

function done(summary, latency, requests)
  local sent = 0
  for _, t in ipairs(bench_threads) do
    sent = sent + (t:get("bench_sent") or 0)
  end
  io.write(string.format(
    "BENCH requests %d p50 %d p99 %d p999 %d sent %d status %d\n",
    summary.requests, latency:percentile(50), latency:percentile(99),
    latency:percentile(99.9), sent, summary.errors.status))
end
