-- wrk script: every request goes to the next cluster in $DNS_FILE, so no URL is favoured.
-- $FEED: platform-components | namespaces | rolebindings | clusters (the fleet list, in
-- shards of 100 at rotating offsets) | health. $TOKEN: the read token.
local names = {}
for line in io.lines(os.getenv("DNS_FILE")) do
  names[#names + 1] = line
end
local feed = os.getenv("FEED")
local headers = { ["Authorization"] = "Bearer " .. os.getenv("TOKEN") }
-- $PER_CLUSTER=1: each request carries its cluster's own scoped token, "tok-<dns>".
local per_cluster = os.getenv("PER_CLUSTER") == "1"
-- Each run starts at a random cluster, so repeated short runs (the warm-up) reach them all.
math.randomseed(os.time() + math.floor(os.clock() * 1e6))
local i = math.random(0, #names - 1)

function request()
  i = i + 1
  local path
  if feed == "health" then
    path = "/health"
  elseif feed == "clusters" then
    path = "/api/v2/flux/clusters?limit=100&offset=" .. ((i * 100) % #names)
  else
    local name = names[(i - 1) % #names + 1]
    path = "/api/v2/flux/clusters/" .. name .. "/" .. feed
    if per_cluster then
      return wrk.format("GET", path, { ["Authorization"] = "Bearer tok-" .. name })
    end
  end
  return wrk.format("GET", path, headers)
end

dofile("bench/result.lua")
