#!/usr/bin/env bash
# The crafted-chain attack of docs/decisions.md D34, loopback only: a legitimate client's full
# handshake + one request, alternately without and with 4 hostile connections that send loop chains
# (a leaf naming the active CAs' shared subject, and 4 intermediates with that subject signing one
# another in a loop) as fast as they can. Goal: the legitimate client stays under 1 s.
#
# Environment: ROUNDS (default 3), ROUND_SECONDS (per round, default 5; not SECONDS, which bash sets itself).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=${ROUNDS:-3}
SECONDS_PER_ROUND=${ROUND_SECONDS:-5}

cargo build --release --bin certgate --example hostile_bench
BIN=$PWD/target/release/certgate
BENCH=$PWD/target/release/examples/hostile_bench
WORK=$(mktemp -d /tmp/certgate-hostile.XXXXXX)
echo "work directory: $WORK"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

# The upstream: a static file answers GET /v1/models.
mkdir -p "$WORK/www/v1" && echo '{"object":"list","data":[]}' >"$WORK/www/v1/models"
python3 -m http.server --bind 127.0.0.1 0 --directory "$WORK/www" >"$WORK/upstream.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do grep -q "Serving HTTP" "$WORK/upstream.log" && break; sleep 0.05; done
UP=$(grep -o 'port [0-9]*' "$WORK/upstream.log" | head -1 | cut -d' ' -f2)

"$BENCH" setup "$WORK" "sqlite://$WORK/certgate.db"
ORG=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["organization"])' "$WORK/setup.json")
RUST_LOG=info,sqlx=warn "$BIN" gateway --listen 127.0.0.1:0 --organization "$ORG" \
    --database "sqlite://$WORK/certgate.db" --tls-cert "$WORK/server.pem" --tls-key "$WORK/server.key" \
    --upstream "http://127.0.0.1:$UP" 2>"$WORK/gateway.log" &
PIDS+=($!)
for _ in $(seq 200); do grep -q "certgate gateway listening" "$WORK/gateway.log" && break; sleep 0.05; done
ADDR=$(grep -o 'listen=[0-9.:]*' "$WORK/gateway.log" | head -1 | cut -d= -f2)
echo "gateway at $ADDR, upstream at 127.0.0.1:$UP"
"$BENCH" run "$ADDR" "$WORK" "$ROUNDS" "$SECONDS_PER_ROUND" | tee "$WORK/results.jsonl"
