#!/usr/bin/env bash
# Gateway benchmark, loopback only.
#
# 1. Handshakes: certgate gateway vs nginx (ssl_verify_client on, same certificates), side by
#    side in one run, with 1 active CA and with 10,000 active CAs across 200 organizations.
#    Every connection is a full handshake (the client disables session resumption) carrying
#    one HTTP/1.1 request that both servers proxy to the same plain-HTTP upstream (a separate
#    nginx answering a small JSON body). Rounds alternate between the two servers.
# 2. Propagation: the time from the Admin API's acknowledgement of an activate/deactivate to
#    the first request through the gateway that sees it (SQLite, and PostgreSQL if reachable).
#
# Environment: COUNT (connections per measurement, default 2000), CONC (concurrent clients,
# default 8), ROUNDS (default 3), PROP_ROUNDS (default 100), CERTGATE_BENCH_POSTGRES_URL
# (default postgres://postgres@127.0.0.1:5432/test; set to "" to skip PostgreSQL).
# Results: printed, and kept in $WORK/results.md and $WORK/*.jsonl.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

COUNT=${COUNT:-2000}
CONC=${CONC:-8}
ROUNDS=${ROUNDS:-3}
PROP_ROUNDS=${PROP_ROUNDS:-100}
PG_URL=${CERTGATE_BENCH_POSTGRES_URL-postgres://postgres@127.0.0.1:5432/test}

command -v nginx >/dev/null || { echo "nginx is required (apt-get install -y nginx)" >&2; exit 1; }
cargo build --release --bin certgate --example handshake_bench
TARGET=$(target_dir)
BIN=$TARGET/release/certgate
BENCH=$TARGET/release/examples/handshake_bench
WORK=$(mktemp -d /tmp/certgate-bench.XXXXXX)
echo "work directory: $WORK"

# ---------------------------------------------------------------- upstream
start_upstream "$WORK/upstream"

# ---------------------------------------------------------------- handshakes
RESULTS=$WORK/handshakes.jsonl
: >"$RESULTS"
for N in 1 10000; do
    D=$WORK/n$N
    ORGS=$([ "$N" = 1 ] && echo 1 || echo 200)
    echo "== setup: $N active CAs across $ORGS organizations"
    "$BENCH" setup "$D" "sqlite://$D/certgate.db" "$N" "$ORGS"

    GW=$(free_port); HEALTH=$(free_port); NG=$(free_port)
    ORG=$(json_field "$D/setup.json" organization)
    RUST_LOG=warn "$BIN" gateway --listen "127.0.0.1:$GW" --health-listen "127.0.0.1:$HEALTH" \
        --organization "$ORG" --database "sqlite://$D/certgate.db" --tls-cert "$D/server.pem" --tls-key "$D/server.key" \
        --upstream "http://127.0.0.1:$UP" 2>"$D/gateway.log" &
    PIDS+=($!)
    mkdir -p "$D/nginx/logs"
    cat >"$D/nginx/nginx.conf" <<EOF
worker_processes auto;
daemon off;
pid $D/nginx/nginx.pid;
error_log $D/nginx/error.log warn;
events { worker_connections 8192; }
http {
    access_log off;
    upstream api { server 127.0.0.1:$UP; keepalive 64; }
    server {
        listen 127.0.0.1:$NG ssl;
        ssl_certificate $D/server.pem;
        ssl_certificate_key $D/server.key;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_session_cache off;
        ssl_session_tickets off;
        # The suite certgate prefers (AES-128-GCM, server's order), so both do the same work.
        ssl_prefer_server_ciphers on;
        ssl_conf_command Ciphersuites TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256;
        ssl_verify_client on;
        ssl_verify_depth 2;
        # Names sent in the CertificateRequest: just the client's CA. Verification uses
        # every active CA (ssl_trusted_certificate, not sent to clients).
        ssl_client_certificate $D/client-ca.pem;
        ssl_trusted_certificate $D/bundle.pem;
        location / {
            proxy_pass http://api;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF
    bg_start nginx -p "$D/nginx" -c "$D/nginx/nginx.conf"
    wait_http "http://127.0.0.1:$HEALTH/readyz"
    wait_port "$NG"
    # Warm-up (also checks that both admit the client).
    for target in "certgate:$GW" "nginx:$NG"; do
        out=$("$BENCH" load "127.0.0.1:${target#*:}" "$D" 200 "$CONC")
        echo "warm-up ${target%%:*}: $out"
        echo "$out" | grep -q '"statuses":{"200":200}' || { echo "warm-up failed for ${target%%:*}" >&2; exit 1; }
    done
    for round in $(seq "$ROUNDS"); do
        for target in "certgate:$GW" "nginx:$NG"; do
            out=$("$BENCH" load "127.0.0.1:${target#*:}" "$D" "$COUNT" "$CONC")
            echo "round $round, $N CAs, ${target%%:*}: $out"
            echo "{\"server\":\"${target%%:*}\",\"cas\":$N,\"round\":$round,\"result\":$out}" >>"$RESULTS"
        done
    done
    grep -o '"anchors":[0-9]*' <(curl -fsS "http://127.0.0.1:$HEALTH/readyz") || true
done

# ---------------------------------------------------------------- propagation
PROP=$WORK/propagation.jsonl
: >"$PROP"
propagation() { # LABEL DB_URL
    local label=$1 db=$2 P=$WORK/prop-$1
    "$BENCH" setup "$P" "$db" 1 1 >/dev/null
    local key cert serve gw
    key=$(json_field "$P/setup.json" admin_key)
    cert=$(json_field "$P/setup.json" client_certificate_id)
    serve=$(free_port); gw=$(free_port)
    RUST_LOG=warn "$BIN" serve --listen "127.0.0.1:$serve" --database "$db" --no-bootstrap 2>"$P/serve.log" &
    PIDS+=($!)
    local org
    org=$(json_field "$P/setup.json" organization)
    RUST_LOG=warn "$BIN" gateway --listen "127.0.0.1:$gw" --organization "$org" --database "$db" --tls-cert "$P/server.pem" \
        --tls-key "$P/server.key" --upstream "http://127.0.0.1:$UP" 2>"$P/gateway.log" &
    PIDS+=($!)
    wait_http "http://127.0.0.1:$serve/healthz"
    wait_port "$gw"
    local out
    out=$("$BENCH" propagate "http://127.0.0.1:$serve/v1" "$key" "$cert" "127.0.0.1:$gw" "$P" "$PROP_ROUNDS")
    echo "propagation, $label (default poll interval): $out"
    echo "{\"backend\":\"$label\",\"result\":$out}" >>"$PROP"
}
propagation sqlite "sqlite://$WORK/prop.db"
if [ -n "$PG_URL" ] && psql "$PG_URL" -qc "select 1" >/dev/null 2>&1; then
    SCHEMA=certgate_bench_$$
    psql "$PG_URL" -qc "CREATE SCHEMA $SCHEMA"
    SEP='?'; case "$PG_URL" in *\?*) SEP='&' ;; esac
    propagation postgres "${PG_URL}${SEP}options=-c%20search_path%3D$SCHEMA"
    PGOPTIONS="--client-min-messages=warning" psql "$PG_URL" -qc "DROP SCHEMA $SCHEMA CASCADE" || true
else
    echo "PostgreSQL not reachable: propagation measured on SQLite only"
fi

# ---------------------------------------------------------------- summary
python3 - "$RESULTS" "$PROP" "$COUNT" "$CONC" "$ROUNDS" >"$WORK/results.md" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
prop = [json.loads(l) for l in open(sys.argv[2]) if l.strip()]
count, conc, rounds = sys.argv[3:6]
def med(server, cas, key):
    return statistics.median(r["result"][key] for r in rows if r["server"] == server and r["cas"] == cas)
print(f"Full handshakes + 1 request per connection, {count} connections x {rounds} rounds, {conc} concurrent clients, medians of rounds.\n")
print("| active CAs | server | connections/s | p50 ms | p99 ms |")
print("|---:|---|---:|---:|---:|")
for cas in (1, 10000):
    for server in ("certgate", "nginx"):
        print(f"| {cas:,} | {server} | {med(server, cas, 'connections_per_second'):.0f} | {med(server, cas, 'p50_ms'):.2f} | {med(server, cas, 'p99_ms'):.2f} |")
print()
print("| ratio | connections/s | p50 |")
print("|---|---:|---:|")
for cas in (1, 10000):
    r_tp = med("certgate", cas, "connections_per_second") / med("nginx", cas, "connections_per_second")
    r_p50 = med("certgate", cas, "p50_ms") / med("nginx", cas, "p50_ms")
    print(f"| certgate / nginx, {cas:,} CAs | {r_tp:.2f} | {r_p50:.2f} |")
for server in ("certgate", "nginx"):
    r_tp = med(server, 10000, "connections_per_second") / med(server, 1, "connections_per_second")
    r_p50 = med(server, 10000, "p50_ms") / med(server, 1, "p50_ms")
    print(f"| {server}, 10,000 CAs / 1 CA | {r_tp:.2f} | {r_p50:.2f} |")
print()
print("| propagation | activate p50 ms | activate p99 ms | deactivate p50 ms | deactivate p99 ms | max ms |")
print("|---|---:|---:|---:|---:|---:|")
for p in prop:
    r = p["result"]
    print(f"| {p['backend']} ({r['rounds']} rounds) | {r['activate_p50_ms']:.1f} | {r['activate_p99_ms']:.1f} | {r['deactivate_p50_ms']:.1f} | {r['deactivate_p99_ms']:.1f} | {r['max_ms']:.1f} |")
EOF
echo
cat "$WORK/results.md"
