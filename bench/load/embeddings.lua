-- Inference: one short sentence per request, each different so the cache cannot answer it.
local n = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"

request = function()
    n = n + 1
    local body = '{"model":"all-MiniLM-L6-v2","encoding_format":"base64","input":'
        .. '"a bold serif logo on a pale background, variant ' .. n .. '"}'
    return wrk.format(nil, "/v1/embeddings", nil, body)
end
