-- POST activate / deactivate of the same ids, alternating on each connection's thread.
-- Env: IDS (a JSON array of up to 10 certificate ids), TOGGLE_BASE (path prefix, e.g.
-- /v1/organization/certificates), plus report.lua's AUTH and LABEL.
dofile(os.getenv("BENCH_DIR") .. "/report.lua")
local ids = os.getenv("IDS")
local base = os.getenv("TOGGLE_BASE") or "/v1/organization/certificates"
local body = '{"certificate_ids":' .. ids .. '}'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local n = 0
local act, deact
function request()
  if not act then -- built on first use, when wrk.host is known
    act = wrk.format("POST", base .. "/activate", nil, body)
    deact = wrk.format("POST", base .. "/deactivate", nil, body)
  end
  n = n + 1
  if n % 2 == 1 then return act else return deact end
end
