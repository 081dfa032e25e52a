-- wrk script: PUT /clusters/{id} with a changing node_count, rotating over $ID_FILE.
local ids = {}
for line in io.lines(os.getenv("ID_FILE")) do
  ids[#ids + 1] = line
end
local headers = {
  ["Authorization"] = "Bearer " .. os.getenv("TOKEN"),
  ["Content-Type"] = "application/json",
}
local i = 0

function request()
  i = i + 1
  local body = string.format('{"node_count": %d}', i % 1000)
  return wrk.format("PUT", "/clusters/" .. ids[(i - 1) % #ids + 1], headers, body)
end

dofile("bench/result.lua")
