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

# shellcheck source=common.sh
source bench/hostile/common.sh
hostile_init filters filter_bench

# How long the candidate filters take on A's leaf, in this process; the slowest is A's.
"$BENCH" calibrate "$WORK" | tee "$WORK/calibration.jsonl"

start_upstream
"$BENCH" setup "$WORK" "sqlite://$WORK/certgate.db"
start_gateway "sqlite://$WORK/certgate.db"
echo "gateway at $ADDR, upstream at 127.0.0.1:$UP"
"$BENCH" run "$ADDR" "$WORK" "sqlite://$WORK/certgate.db" "$ROUNDS" "$SECONDS_PER_ROUND" \
    "$CONNECTIONS" | tee "$WORK/results.jsonl"
