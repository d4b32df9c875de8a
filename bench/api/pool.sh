#!/usr/bin/env bash
# How the size of the database pool changes the admin API's throughput, side by side.
#
# Starts one `certgate serve` per pool size (POOLS, default "4 8 16"), each on its own
# PostgreSQL schema (or SQLite file with BACKEND=sqlite), seeds each with the same 20 CAs, then
# runs interleaved rounds of the list and toggle scenarios of run.sh against each in turn.
# Prints the medians per pool size.
#
# Environment: POOLS, ROUNDS (default 3), DURATION (seconds, default 5), BACKEND (postgres or
# sqlite, default postgres), CERTGATE_BENCH_POSTGRES_URL (default
# postgres://postgres@127.0.0.1:5432/test). About ROUNDS x pools x 2 x DURATION seconds.
set -euo pipefail
cd "$(dirname "$0")/../.."

POOLS=${POOLS:-4 8 16}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
BACKEND=${BACKEND:-postgres}
PG_URL=${CERTGATE_BENCH_POSTGRES_URL-postgres://postgres@127.0.0.1:5432/test}
export BENCH_DIR=$PWD/bench/api
for tool in wrk curl openssl python3; do
    command -v "$tool" >/dev/null || { echo "$tool is required" >&2; exit 1; }
done

cargo build --release --bin certgate
BIN=$PWD/target/release/certgate
WORK=$(mktemp -d /tmp/certgate-pool-bench.XXXXXX)
echo "work directory: $WORK"
PIDS=()
SCHEMAS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    for s in "${SCHEMAS[@]}"; do psql -q "$PG_URL" -c "DROP SCHEMA IF EXISTS $s CASCADE" >/dev/null 2>&1 || true; done
}
trap cleanup EXIT
source "$BENCH_DIR/common.sh"
make_cas

declare -A PORT KEY IDS
for pool in $POOLS; do
    port=$(free_port)
    if [[ $BACKEND == postgres ]]; then
        schema=bench_pool_$$_$pool
        psql -q "$PG_URL" -c "CREATE SCHEMA $schema" >/dev/null
        SCHEMAS+=("$schema")
        db=$(schema_url "$PG_URL" "$schema")
    else
        mkdir -p "$WORK/db$pool"
        db="sqlite://$WORK/db$pool/certgate.db"
    fi
    start_certgate "serve$pool" "$port" "$db" --db-max-connections "$pool"
    key=$(admin_key "$WORK/serve$pool.stdout")
    seed "http://127.0.0.1:$port" "$key" "$WORK/ids$pool.json"
    PORT[$pool]=$port
    KEY[$pool]=$key
    IDS[$pool]=$(cat "$WORK/ids$pool.json")
done

RESULTS=$WORK/results.txt
: >"$RESULTS"
for r in $(seq "$ROUNDS"); do
    for pool in $POOLS; do
        for scenario in list toggle; do
            if [[ $scenario == list ]]; then
                script=get.lua url="http://127.0.0.1:${PORT[$pool]}/v1/organization/certificates"
            else
                script=toggle.lua url="http://127.0.0.1:${PORT[$pool]}/"
            fi
            AUTH=${KEY[$pool]} IDS=${IDS[$pool]} LABEL=$scenario \
                wrk -t2 -c32 -d"${DURATION}s" -s "$BENCH_DIR/$script" "$url" >"$WORK/wrk.out" 2>&1
            rps=$(awk '/^Requests\/sec/ {print $2}' "$WORK/wrk.out")
            echo "$pool $scenario $r $rps" | tee -a "$RESULTS"
        done
    done
done

python3 - "$RESULTS" "$BACKEND" "$ROUNDS" "$DURATION" "$(git rev-parse --short HEAD)" <<'PY'
import collections, statistics, sys
path, backend, rounds, duration, rev = sys.argv[1:]
rows = collections.defaultdict(list)
for line in open(path):
    pool, scenario, _, rps = line.split()
    rows[(int(pool), scenario)].append(float(rps))
print(f"\ncertgate {rev}, {backend}; medians of {rounds} rounds x {duration}s, wrk 2 threads / 32 connections\n")
print("| --db-max-connections | list req/s | toggle req/s |")
print("|---:|---:|---:|")
for pool in sorted({p for p, _ in rows}):
    print(f"| {pool} | {statistics.median(rows[(pool, 'list')]):,.0f} | {statistics.median(rows[(pool, 'toggle')]):,.0f} |")
PY
