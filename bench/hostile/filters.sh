#!/usr/bin/env bash
# Tenant-controlled filter work (spec §13.5; attacks 1 and 2 of issue 30), loopback only,
# release build. Tenant A writes the heaviest client filter its budget allows (the slowest of
# `filter_bench calibrate`'s candidates, checked as the API checks a write), and A's clients
# present 64-name leaves, a new leaf on a fresh handshake each time (so no verdict can be
# reused: every request costs a full evaluation), on CONNECTIONS loops as fast as they can. Meanwhile a client of organization B makes
# sequential fresh handshakes + one request, and B's second CA is deactivated and activated
# again in the database every 0.3-0.6 s. Rounds alternate without and with the attack.
# Goals: B's p99 under 100 ms, and every change of B's CA reaching the gateway within the
# propagation bound (the SQLite poll, 100 ms, plus the request that sees it).
#
# Environment: ROUNDS (default 3), ROUND_SECONDS (default 5; not SECONDS, which bash keeps
# for itself), CONNECTIONS (default 4).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=${ROUNDS:-3}
SECONDS_PER_ROUND=${ROUND_SECONDS:-5}
CONNECTIONS=${CONNECTIONS:-4}

cargo build --release --bin certgate --example filter_bench
BIN=$PWD/target/release/certgate
BENCH=$PWD/target/release/examples/filter_bench
WORK=$(mktemp -d /tmp/certgate-filters.XXXXXX)
echo "work directory: $WORK"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

# How long the candidate filters take on A's leaf, in this process; the slowest is A's.
"$BENCH" calibrate "$WORK" | tee "$WORK/calibration.jsonl"

# The upstream: a static file answers GET /v1/models.
mkdir -p "$WORK/www/v1" && echo '{"object":"list","data":[]}' >"$WORK/www/v1/models"
python3 -m http.server --bind 127.0.0.1 0 --directory "$WORK/www" >"$WORK/upstream.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do grep -q "Serving HTTP" "$WORK/upstream.log" && break; sleep 0.05; done
UP=$(grep -o 'port [0-9]*' "$WORK/upstream.log" | head -1 | cut -d' ' -f2)

"$BENCH" setup "$WORK" "sqlite://$WORK/certgate.db"
RUST_LOG=info,sqlx=warn "$BIN" gateway --listen 127.0.0.1:0 \
    --database "sqlite://$WORK/certgate.db" --tls-cert "$WORK/server.pem" --tls-key "$WORK/server.key" \
    --upstream "http://127.0.0.1:$UP" 2>"$WORK/gateway.log" &
PIDS+=($!)
for _ in $(seq 200); do grep -q "certgate gateway listening" "$WORK/gateway.log" && break; sleep 0.05; done
ADDR=$(grep -o 'listen=[0-9.:]*' "$WORK/gateway.log" | head -1 | cut -d= -f2)
echo "gateway at $ADDR, upstream at 127.0.0.1:$UP"
"$BENCH" run "$ADDR" "$WORK" "sqlite://$WORK/certgate.db" "$ROUNDS" "$SECONDS_PER_ROUND" \
    "$CONNECTIONS" | tee "$WORK/results.jsonl"
