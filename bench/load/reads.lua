-- Reads: GET one of the canvases the script created, spread evenly over them.
local ids = {}
for line in io.lines(os.getenv("LOAD_CANVASES")) do ids[#ids + 1] = line end
local n = 0

request = function()
    n = n + 1
    return wrk.format("GET", "/api/v1/canvases/" .. ids[n % #ids + 1])
end
