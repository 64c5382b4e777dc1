-- wrk cross-check of scenario 1: POSTs the bodies in bodies.jsonl (one JSON request per line, written by
-- `LSVCR.LoadTests bodies --bench DIR`) round-robin to /v1/recommendations/videos and counts non-200 answers.
-- wrk -t2 -c32 -d20s -s tests/LSVCR.LoadTests/wrk/videos.lua http://127.0.0.1:5077/v1/recommendations/videos
local bodies = {}
for line in io.lines(os.getenv("BODIES") or "bodies.jsonl") do bodies[#bodies + 1] = line end
local i = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"

request = function()
  i = i % #bodies + 1
  return wrk.format(nil, nil, nil, bodies[i])
end

local bad = 0
response = function(status)
  if status ~= 200 then bad = bad + 1 end
end

done = function(summary, latency)
  io.write(string.format("non-200 responses (last thread): %d\n", bad))
end
