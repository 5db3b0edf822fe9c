-- DEPTH requests (args[1], default 16) in one write per connection; wrk then waits for all
-- DEPTH answers before the next write. bench_sent counts the requests written, so that run.py
-- can compare it with the responses wrk counted (a server that stalls leaves a gap).
local depth = 16
local batch

function init(args)
  depth = tonumber(args[1]) or depth
  batch = string.rep(wrk.format(nil, nil), depth)
  bench_sent = 0
end

function request()
  bench_sent = bench_sent + depth
  return batch
end
