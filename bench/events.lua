-- wrk script: notification-controller events, each to the next cluster in $DNS_FILE, each a
-- distinct HelmRelease event (its own timestamp), authenticated with $TOKEN.
-- $RATE (optional): events per second over all connections (wrk's delay(); set $CONNECTIONS
-- to wrk's -c); unset, as fast as the server takes them.
local names = {}
for line in io.lines(os.getenv("DNS_FILE")) do
  names[#names + 1] = line
end
local headers = {
  ["Authorization"] = "Bearer " .. os.getenv("TOKEN"),
  ["Content-Type"] = "application/json",
}
local rate = tonumber(os.getenv("RATE") or "")
local connections = tonumber(os.getenv("CONNECTIONS") or "1")
math.randomseed(os.time() + math.floor(os.clock() * 1e6))
local i = math.random(0, #names - 1)
local base = 1787220000

function request()
  i = i + 1
  local name = names[(i - 1) % #names + 1]
  local failed = i % 10 == 0
  local body = string.format(
    '{"involvedObject":{"kind":"HelmRelease","namespace":"flux-system","name":"fleet-agent",' ..
    '"uid":"5b1c","apiVersion":"helm.toolkit.fluxcd.io/v2"},"severity":"%s","timestamp":"%s",' ..
    '"message":"Helm upgrade %s for release fleet-agent/fleet-agent.v%d with chart fleet-agent@1.0.0",' ..
    '"reason":"%s","metadata":{"component":"fleet-agent","revision":"1.0.0"},' ..
    '"reportingController":"helm-controller","reportingInstance":"helm-controller-5f7c9d8b6-x2k9p"}',
    failed and "error" or "info", os.date("!%Y-%m-%dT%H:%M:%SZ", base + i),
    failed and "failed" or "succeeded", i, failed and "UpgradeFailed" or "UpgradeSucceeded")
  return wrk.format("POST", "/api/v2/flux/clusters/" .. name .. "/events", headers, body)
end

if rate then
  function delay()
    return connections * 1000 / rate
  end
end

dofile("bench/result.lua")
