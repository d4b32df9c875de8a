#!/usr/bin/env bash
# The SQLite ceiling of durable toggles: what the SQL of one certgate toggle costs SQLite
# alone, against the raw durable-commit rate, on the same disk, side by side.
#
# Starts `certgate serve` on a new SQLite file, uploads 20 CAs (as bench/api/run.sh does), stops
# it, then alternates rounds of:
#   commit   examples/durable_commit.rs `sqlite`: one-row UPDATE transactions, one writer
#   toggles  examples/durable_commit.rs `sqlite-toggles` on certgate's file: the statements of an
#            organization-scope toggle of 10 ids (lock, read, audit event and resources,
#            change, trust bump), one savepoint each, BATCH (16) per commit, back to back on
#            one connection: no HTTP, no threads, no round trips
# and prints the medians, their ratio (the best `x commit (toggles)` any implementation of
# these statements could reach in bench/api/run.sh) and each statement's median cost.
#
# Environment: ROUNDS (default 5), DURATION (seconds per measurement, default 5), BATCH.
set -euo pipefail
cd "$(dirname "$0")/../.."

ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-5}
export BENCH_DIR=$PWD/bench/api
WORK=$(mktemp -d "${TMPDIR:-/tmp}/certgate-toggle-sql.XXXXXX")
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT
source "$BENCH_DIR/common.sh"

cargo build --release --bin certgate --example durable_commit
BIN=$PWD/target/release/certgate
COMMIT=$PWD/target/release/examples/durable_commit

make_cas
port=$(free_port)
start_certgate serve "$port" "sqlite://$WORK/certgate.db"
seed "http://127.0.0.1:$port" "$(admin_key "$WORK/serve.stdout")" "$WORK/ids.json"
kill "${PIDS[-1]}"; wait "${PIDS[-1]}" 2>/dev/null || true; unset 'PIDS[-1]'

for r in $(seq "$ROUNDS"); do
    "$COMMIT" sqlite "$WORK/raw-commit.db" "$DURATION" >>"$WORK/commit.jsonl"
    "$COMMIT" sqlite-toggles "$WORK/certgate.db" "$DURATION" >>"$WORK/toggles.jsonl"
    echo "round $r: $(tail -1 "$WORK/commit.jsonl" | python3 -c 'import json,sys; print(round(json.load(sys.stdin)["commits_per_s"]))') commits/s," \
        "$(tail -1 "$WORK/toggles.jsonl" | python3 -c 'import json,sys; print(round(json.load(sys.stdin)["commits_per_s"]))') toggles/s" >&2
done

python3 - "$WORK/commit.jsonl" "$WORK/toggles.jsonl" "$ROUNDS" "$DURATION" "$(git rev-parse --short HEAD)" \
    "${BATCH:-16}" <<'PY'
import json, statistics, sys
commit = [json.loads(l) for l in open(sys.argv[1])]
toggles = [json.loads(l) for l in open(sys.argv[2])]
rounds, duration, rev, batch = sys.argv[3:]
c = statistics.median(r["commits_per_s"] for r in commit)
t = statistics.median(r["commits_per_s"] for r in toggles)
print(f"\ncertgate {rev}; medians of {rounds} rounds x {duration}s, alternating.\n")
print("| measure | per second | x commit |")
print("|---|---:|---:|")
print(f"| raw durable commits (one-row UPDATE, one writer) | {c:,.0f} | 1.00 |")
print(f"| toggle SQL alone ({batch} per commit, one savepoint each) | {t:,.0f} | {t / c:.2f} |")
print("\n| statement of one toggle | median us |")
print("|---|---:|")
steps = [s["name"] for s in toggles[0]["statements"]]
total = 0.0
for i, s in enumerate(steps):
    m = statistics.median(r["statements"][i]["us"] for r in toggles)
    total += m
    print(f"| {s} | {m:.1f} |")
print(f"| **sum** | **{total:.1f}** |")
print(f"\none raw commit takes {1e6 / c:.1f} us")
PY
