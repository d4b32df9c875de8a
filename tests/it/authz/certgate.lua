-- certgate forward auth for HAProxy 2.5 or later (core.httpclient; Debian 12's 2.6 has it).
-- Load it with `lua-load`, then `http-request lua.certgate http://127.0.0.1:9192/` asks
-- `certgate authz`'s HTTP listener about every request, passing the X-SSL-Client-Cert the
-- frontend set and the scope headers. Admitted: the request goes on with certgate's identity
-- headers (a client's own of those names removed). Refused: certgate's status, body and
-- X-Certgate-Refusal. certgate not answering: 503, never open. docs/proxies.md.
local asked = { "x-ssl-client-cert", "openai-organization", "openai-project" }
local identity = { "x-certgate-organization", "x-certgate-project", "x-certgate-certificate-id",
                   "x-client-cert-sha256" }
local unavailable = '{"error":{"message":"The authorization service did not answer.",' ..
                    '"type":"server_error","param":null,"code":"authz_unavailable"}}'

local function reply(txn, status, body, refusal)
  txn:done(txn:reply{ status = status, body = body,
    headers = { ["content-type"] = { "application/json" }, ["x-certgate-refusal"] = { refusal } } })
end

core.register_action("certgate", { "http-req" }, function(txn, url)
  local request = txn.http:req_get_headers()
  local headers = {}
  for _, name in ipairs(asked) do
    if request[name] then headers[name] = request[name] end
  end
  local ok, res = pcall(function()
    return core.httpclient():get{ url = url, headers = headers, timeout = 2000 }
  end)
  local answer = ok and res and res.headers or {}
  if ok and res and res.status == 200 then
    for _, name in ipairs(identity) do
      txn.http:req_del_header(name)
      local value = answer[name]
      if value and value[0] then txn.http:req_set_header(name, value[0]) end
    end
    return
  end
  local refusal = answer["x-certgate-refusal"]
  if refusal and refusal[0] then
    reply(txn, res.status, res.body or "", refusal[0])
  else
    -- certgate unreachable (HAProxy's own 503) or not certgate: closed.
    reply(txn, 503, unavailable, "authz_unavailable")
  end
end, 1)
