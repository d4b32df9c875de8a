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

# shellcheck source=common.sh
source bench/hostile/common.sh
hostile_init hostile hostile_bench
start_upstream

"$BENCH" setup "$WORK" "sqlite://$WORK/certgate.db"
ORG=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["organization"])' "$WORK/setup.json")
start_gateway "sqlite://$WORK/certgate.db" --organization "$ORG"
echo "gateway at $ADDR, upstream at 127.0.0.1:$UP"
"$BENCH" run "$ADDR" "$WORK" "$ROUNDS" "$SECONDS_PER_ROUND" | tee "$WORK/results.jsonl"
