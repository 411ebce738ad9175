-- Writes: create a canvas in the load project, each with its own title.
local project = os.getenv("LOAD_PROJECT")
local n = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"

request = function()
    n = n + 1
    local body = '{"title":"load ' .. n .. '","document":{"layers":[{"type":"text",'
        .. '"text":"Spring campaign ' .. n .. '","x":10,"y":20}]}}'
    return wrk.format(nil, "/api/v1/projects/" .. project .. "/canvases", nil, body)
end
