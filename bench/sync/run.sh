#!/usr/bin/env bash
# Issue 27: what one trust change costs every gateway, and how long it takes to reach them, with
# 10,000 active CAs over 200 organizations, a 100,000-serial CRL and 10,000 deny-list entries.
# Release build, loopback; the harness is examples/sync_bench (read its header for what each
# figure counts).
#
#   cost:      per change per gateway: rows and bytes read from the database and the watcher's
#              CPU time (median of ROUNDS changes, each followed by exactly the watcher's refresh)
#   propagate: from a write's acknowledgement to each watcher's swap of an index holding it
#              (p50/p99), at 1 and 20 writes/s with one watcher, and at 20 writes/s with
#              WATCHERS watchers (each its own store and connections) on PostgreSQL; each
#              "before" (the watcher loop as it was before incremental sync: poll, and a full
#              read and build per new generation) then "after" (the watcher as it is)
#
# Environment: DATABASE (default: a SQLite file in the work directory; a postgres:// URL of an
# empty database or schema works too), ROUNDS (default 40), PROP_SECONDS (default 20),
# WATCHERS (default 50; PostgreSQL only), SKIP_SETUP=1 with WORK=DIR to reuse a populated run.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=${ROUNDS:-40}
PROP_SECONDS=${PROP_SECONDS:-20}
WATCHERS=${WATCHERS:-50}

cargo build --release --example sync_bench
BENCH=$PWD/target/release/examples/sync_bench
WORK=${WORK:-$(mktemp -d /tmp/certgate-sync.XXXXXX)}
DB=${DATABASE:-sqlite://$WORK/certgate.db}
echo "work directory: $WORK"

if [ "${SKIP_SETUP:-0}" != 1 ]; then
    echo "setup: $("$BENCH" setup "$DB" "$WORK")"
fi
echo "cost: $("$BENCH" cost "$DB" "$WORK" "$ROUNDS")" | tee -a "$WORK/results.txt"
for rate in 1 20; do
    for mode in before after; do
        echo "propagate $rate/s $mode: $("$BENCH" propagate "$DB" "$WORK" "$rate" "$PROP_SECONDS" 1 "$mode")" |
            tee -a "$WORK/results.txt"
    done
done
case "$DB" in
postgres*)
    # Each watcher holds two connections (its store's, and LISTEN's): 50 need a server with
    # max_connections above 100 (see docs/gateway.md for the one the figures were taken on).
    for mode in before after; do
        echo "propagate 20/s, $WATCHERS watchers $mode: $("$BENCH" propagate "$DB" "$WORK" 20 "$PROP_SECONDS" "$WATCHERS" "$mode")" |
            tee -a "$WORK/results.txt"
    done
    ;;
esac
