#!/usr/bin/env bash
# Revocation's cost at the gateway (docs/decisions.md D22-D26), loopback only: full handshakes (no
# resumption) + one request each, side by side against two gateways that differ only in what
# they must check: "plain" (one active CA) and "revocation" (the same, plus 10,000 deny-listed
# fingerprints in the organization, a 100,000-entry CRL on the CA and a CEL client filter on
# the CA; the client is on neither list and passes the filter). Rounds alternate between the
# two. Goal: within 10 % of each other.
#
# Environment: COUNT (connections per measurement, default 2000), CONC (default 8),
# ROUNDS (default 3), ENTRIES (default 10000), SERIALS (default 100000).
set -euo pipefail
cd "$(dirname "$0")/../.."
COUNT=${COUNT:-2000}
CONC=${CONC:-8}
ROUNDS=${ROUNDS:-3}
ENTRIES=${ENTRIES:-10000}
SERIALS=${SERIALS:-100000}

cargo build --release --bin certgate --example handshake_bench
BIN=$PWD/target/release/certgate
BENCH=$PWD/target/release/examples/handshake_bench
WORK=$(mktemp -d /tmp/certgate-revocation.XXXXXX)
echo "work directory: $WORK"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

mkdir -p "$WORK/www/v1" && echo '{"object":"list","data":[]}' >"$WORK/www/v1/models"
python3 -m http.server --bind 127.0.0.1 0 --directory "$WORK/www" >"$WORK/upstream.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do grep -q "Serving HTTP" "$WORK/upstream.log" && break; sleep 0.05; done
UP=$(grep -o 'port [0-9]*' "$WORK/upstream.log" | head -1 | cut -d' ' -f2)

declare -A ADDRS
for variant in plain revocation; do
    D=$WORK/$variant
    "$BENCH" setup "$D" "sqlite://$D/certgate.db" 1 1 >/dev/null
    if [ "$variant" = revocation ]; then
        echo "revocation data: $("$BENCH" revoke "$D" "sqlite://$D/certgate.db" "$ENTRIES" "$SERIALS")"
    fi
    ORG=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["organization"])' "$D/setup.json")
    RUST_LOG=info,sqlx=warn "$BIN" gateway --listen 127.0.0.1:0 --organization "$ORG" \
        --database "sqlite://$D/certgate.db" --tls-cert "$D/server.pem" --tls-key "$D/server.key" \
        --upstream "http://127.0.0.1:$UP" 2>"$D/gateway.log" &
    PIDS+=($!)
    for _ in $(seq 200); do grep -q "certgate gateway listening" "$D/gateway.log" && break; sleep 0.05; done
    ADDRS[$variant]=$(grep -o 'listen=[0-9.:]*' "$D/gateway.log" | head -1 | cut -d= -f2)
    out=$("$BENCH" load "${ADDRS[$variant]}" "$D" 200 "$CONC")
    echo "warm-up $variant: $out"
    echo "$out" | grep -q '"statuses":{"200":200}' || { echo "warm-up failed for $variant" >&2; exit 1; }
done
for round in $(seq "$ROUNDS"); do
    for variant in plain revocation; do
        out=$("$BENCH" load "${ADDRS[$variant]}" "$WORK/$variant" "$COUNT" "$CONC")
        echo "round $round, $variant: $out"
        echo "{\"variant\":\"$variant\",\"round\":$round,\"result\":$out}" >>"$WORK/results.jsonl"
    done
done
python3 - "$WORK/results.jsonl" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
med = lambda v, k: statistics.median(r["result"][k] for r in rows if r["variant"] == v)
for v in ("plain", "revocation"):
    print(f"{v:11s} connections/s {med(v,'connections_per_second'):8.0f}  p50 {med(v,'p50_ms'):6.2f} ms  p99 {med(v,'p99_ms'):6.2f} ms")
print(f"ratio revocation/plain: throughput {med('revocation','connections_per_second')/med('plain','connections_per_second'):.3f}, p50 {med('revocation','p50_ms')/med('plain','p50_ms'):.3f}")
PY
