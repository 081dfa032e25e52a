-- The line every wrk script of the benchmark ends with, which bench/run.sh reads:
-- RESULT <req/s> <p50 ms> <p99 ms> <non-2xx> <socket errors>. Loaded with dofile() by the
-- scripts (wrk runs from the repository root).
function done(summary, latency, requests)
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout
  io.write(string.format("RESULT %.1f %.3f %.3f %d %d\n",
    summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.errors.status, errors))
end
