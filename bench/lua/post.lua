-- POST a body of args[1] bytes (default 64 KiB), built once per wrk thread.
local req

function init(args)
  local n = tonumber(args[1]) or 65536
  local headers = { ["Content-Type"] = "application/octet-stream" }
  req = wrk.format("POST", nil, headers, string.rep("u", n))
end

function request()
  return req
end
