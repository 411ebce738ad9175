-- Range reads: GET ASSET_PATH with `Range: bytes=` a random window of RANGE_BYTES inside a file
-- of FILE_BYTES (no Range header when RANGE_BYTES is 0: the whole file). The same seed on
-- every run, so the daemon and nginx get the same windows.
local path = os.getenv("ASSET_PATH")
local size = tonumber(os.getenv("FILE_BYTES"))
local window = tonumber(os.getenv("RANGE_BYTES") or "0")
math.randomseed(42)

request = function()
    if window == 0 then
        return wrk.format("GET", path)
    end
    local first = math.random(0, size - window)
    -- wrk.format takes these headers instead of wrk.headers, which hold the ones given with
    -- -H (the daemon's Authorization): copy them over.
    local headers = {}
    for name, value in pairs(wrk.headers) do
        headers[name] = value
    end
    headers["Range"] = "bytes=" .. first .. "-" .. (first + window - 1)
    return wrk.format("GET", path, headers)
end

