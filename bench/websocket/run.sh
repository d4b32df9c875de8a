#!/usr/bin/env bash
# WebSocket upgrades (docs/decisions.md D39), loopback only: COUNT upgraded connections open through
# one gateway (release build, SQLite, default 100 ms trust poll), then the CA that admitted them is
# deactivated; measured: the time from that commit until the last connection received its close
# frame 1008 (goal: under 1 s), and the gateway's resident memory per open connection.
#
# Environment: COUNT (default 1000), ROUNDS (default 3).
set -euo pipefail
cd "$(dirname "$0")/../.."
COUNT=${COUNT:-1000}
ROUNDS=${ROUNDS:-3}

cargo build --release --bin certgate --example ws_bench
BIN=$PWD/target/release/certgate
BENCH=$PWD/target/release/examples/ws_bench
WORK=$(mktemp -d /tmp/certgate-ws.XXXXXX)
echo "work directory: $WORK"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
ulimit -n "$(ulimit -Hn)" || true

"$BENCH" upstream "$WORK/upstream.addr" &
PIDS+=($!)
for _ in $(seq 100); do [ -s "$WORK/upstream.addr" ] && break; sleep 0.05; done
UP=$(cat "$WORK/upstream.addr")

for round in $(seq "$ROUNDS"); do
    R=$WORK/round$round
    "$BENCH" setup "$R" "sqlite://$R/certgate.db" >/dev/null
    ORG=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["organization"])' "$R/setup.json")
    RUST_LOG=warn,certgate=info "$BIN" gateway --listen 127.0.0.1:0 --organization "$ORG" \
        --database "sqlite://$R/certgate.db" --tls-cert "$R/server.pem" --tls-key "$R/server.key" \
        --upstream "http://$UP" 2>"$R/gateway.log" &
    GW_PID=$!
    PIDS+=($GW_PID)
    for _ in $(seq 200); do grep -q "certgate gateway listening" "$R/gateway.log" && break; sleep 0.05; done
    ADDR=$(grep -o 'listen=[0-9.:]*' "$R/gateway.log" | head -1 | cut -d= -f2)
    echo "round $round: $("$BENCH" run "$ADDR" "$R" "sqlite://$R/certgate.db" "$COUNT" "$GW_PID")" | tee -a "$WORK/results.jsonl"
    kill "$GW_PID" 2>/dev/null || true
    wait "$GW_PID" 2>/dev/null || true
done
