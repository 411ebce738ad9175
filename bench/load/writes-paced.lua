-- Writes at a bounded rate: like writes.lua, but each connection waits LOAD_DELAY_MS between
-- requests, so C connections make at most C * 1000 / LOAD_DELAY_MS writes a second.
local project = os.getenv("LOAD_PROJECT")
local pause = tonumber(os.getenv("LOAD_DELAY_MS") or "0")
local n = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"

request = function()
    n = n + 1
    local body = '{"title":"load ' .. n .. '","document":{"layers":[{"type":"text",'
        .. '"text":"Spring campaign ' .. n .. '","x":10,"y":20}]}}'
    return wrk.format(nil, "/api/v1/projects/" .. project .. "/canvases", nil, body)
end

delay = function()
    return pause
end
