#!/usr/bin/env bash
# Admin API benchmark with wrk, loopback only.
#
# Measures, side by side in interleaved rounds:
#   bare    GET /page on examples/bare_axum.rs (a fixed JSON page shaped like a 20-item list)
#   list    GET /v1/organization/certificates (20 certificates, bearer admin key)
#   toggle  POST /v1/organization/certificates/activate and /deactivate of the same 10 ids,
#           alternating (toggle.lua)
#   commit  the raw durable-commit rate of one writer on the same database and disk
#           (examples/durable_commit.rs: one-row UPDATE transactions, each committed before
#           the next), the ceiling the toggles are compared with
# on three set-ups: SQLite (one process), PostgreSQL with one replica, and PostgreSQL with two
# replicas (two `certgate serve` on one schema; two wrk processes at once, one per replica,
# each with half the threads and connections; req/s summed, p50 averaged, p99 the worse one).
# The bare baseline is re-measured in every set-up's rounds so each ratio compares numbers
# taken minutes apart on the same (shared) machine.
#
# Environment: ROUNDS (default 5), DURATION (seconds per measurement, default 8), THREADS
# (default 2), CONNS (default 32), CERTGATE_BENCH_POSTGRES_URL (default
# postgres://postgres@127.0.0.1:5432/test; set to "" to skip PostgreSQL).
# With the defaults the whole run takes about 7 minutes after the build.
# Results: printed, and kept in $WORK/results.md and $WORK/results.jsonl.
set -euo pipefail
cd "$(dirname "$0")/../.."

ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-8}
THREADS=${THREADS:-2}
CONNS=${CONNS:-32}
PG_URL=${CERTGATE_BENCH_POSTGRES_URL-postgres://postgres@127.0.0.1:5432/test}
export BENCH_DIR=$PWD/bench/api

if ! command -v wrk >/dev/null; then
    echo "installing wrk" >&2
    apt-get update -qq && apt-get install -y -qq wrk >/dev/null
fi
for tool in curl openssl python3; do
    command -v "$tool" >/dev/null || { echo "$tool is required" >&2; exit 1; }
done

# The revision measured, taken when the binary is built.
REV="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD -- src migrations Cargo.toml 2>/dev/null || echo ' + uncommitted changes')"
cargo build --release --bin certgate --example bare_axum --example durable_commit
BIN=$PWD/target/release/certgate
BARE=$PWD/target/release/examples/bare_axum
COMMIT=$PWD/target/release/examples/durable_commit
WORK=$(mktemp -d /tmp/certgate-api-bench.XXXXXX)
RESULTS=$WORK/results.jsonl
: >"$RESULTS"
echo "work directory: $WORK"

PIDS=()
SCHEMA=""
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if [[ -n "$SCHEMA" ]]; then
        psql -q "$PG_URL" -c "DROP SCHEMA IF EXISTS $SCHEMA CASCADE" >/dev/null 2>&1 || true
    fi
}
trap cleanup EXIT

source "$BENCH_DIR/common.sh"

# ---------------------------------------------------------------- certificates (openssl CLI)
make_cas

# ---------------------------------------------------------------- wrk
# run_wrk SETUP SCENARIO ROUND SCRIPT URL[,URL2] [KEY]
# One URL: one wrk with THREADS/CONNS. Two URLs: two wrk at once, half each, combined.
run_wrk() {
    local setup=$1 scenario=$2 round=$3 script=$4 urls=$5 key=${6:-}
    local -a list
    IFS=, read -r -a list <<<"$urls"
    local n=${#list[@]} t=$THREADS c=$CONNS
    if ((n > 1)); then t=$((THREADS / n > 0 ? THREADS / n : 1)); c=$((CONNS / n)); fi
    local out=() wpids=() j
    for j in "${!list[@]}"; do
        out+=("$WORK/wrk.$j.out")
        AUTH=$key IDS=$(cat "$WORK/ids.json" 2>/dev/null || echo '[]') LABEL="$scenario" \
            wrk -t"$t" -c"$c" -d"${DURATION}s" --latency -s "$BENCH_DIR/$script" "${list[$j]}" \
            >"$WORK/wrk.$j.out" 2>&1 &
        wpids+=($!)
    done
    wait "${wpids[@]}" || true
    python3 - "$setup" "$scenario" "$round" "${out[@]}" >>"$RESULTS" <<'EOF'
import json, sys
setup, scenario, rnd, files = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]
runs = []
for f in files:
    lines = [l for l in open(f) if l.startswith("{")]
    if not lines:
        sys.exit(f"wrk produced no result in {f}:\n" + open(f).read())
    runs.append(json.loads(lines[-1]))
row = {
    "setup": setup, "scenario": scenario, "round": rnd, "processes": len(runs),
    "rps": sum(r["rps"] for r in runs),
    "p50_us": sum(r["p50_us"] for r in runs) / len(runs),
    "p99_us": max(r["p99_us"] for r in runs),
    "non2xx": sum(r["non2xx"] for r in runs),
    "socket_errors": sum(r["socket_errors"] for r in runs),
    "requests": sum(r["requests"] for r in runs),
}
print(json.dumps(row))
print(f"  {setup:<11} {scenario:<7} round {rnd}: {row['rps']:>8.0f} req/s  p50 {row['p50_us']/1000:6.2f} ms"
      f"  p99 {row['p99_us']/1000:7.2f} ms  non-2xx {row['non2xx']}  socket errors {row['socket_errors']}",
      file=sys.stderr)
EOF
}

# run_commit SETUP ROUND BACKEND TARGET: the raw durable-commit rate, as a result row
run_commit() {
    "$COMMIT" "$3" "$4" "$DURATION" | python3 -c '
import json, sys
setup, rnd = sys.argv[1], int(sys.argv[2])
r = json.loads(sys.stdin.read())
print(json.dumps({"setup": setup, "scenario": "commit", "round": rnd, "processes": 1,
                  "rps": r["commits_per_s"], "p50_us": 0, "p99_us": 0, "non2xx": 0,
                  "socket_errors": 0, "requests": r["commits"]}))
rate = r["commits_per_s"]
print(f"  {setup:<11} commit  round {rnd}: {rate:>8.0f} commits/s (raw, one writer)", file=sys.stderr)
' "$1" "$2" >>"$RESULTS"
}

# measure SETUP LIST_URLS TOGGLE_URLS KEY COMMIT_BACKEND COMMIT_TARGET: interleaved rounds of
# bare / list / toggle / commit
measure() {
    local setup=$1 list_urls=$2 toggle_urls=$3 key=$4 commit_backend=$5 commit_target=$6 r
    echo "== $setup: $ROUNDS rounds x ${DURATION}s, $THREADS threads, $CONNS connections"
    # warm-up (not recorded): fills pools and the page cache
    DURATION=2 run_wrk warmup list 0 get.lua "$list_urls" "$key" 2>/dev/null
    DURATION=2 run_wrk warmup toggle 0 toggle.lua "$toggle_urls" "$key" 2>/dev/null
    for r in $(seq 1 "$ROUNDS"); do
        run_wrk "$setup" bare "$r" get.lua "http://127.0.0.1:$BARE_PORT/page"
        run_wrk "$setup" list "$r" get.lua "$list_urls" "$key"
        run_wrk "$setup" toggle "$r" toggle.lua "$toggle_urls" "$key"
        run_commit "$setup" "$r" "$commit_backend" "$commit_target"
    done
}

check_sizes() { # LIST_URL KEY
    local n bytes bare_bytes
    n=$(curl -fsS -H "Authorization: Bearer $2" "$1" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["data"]))')
    bytes=$(curl -fsS -o /dev/null -w '%{size_download}' -H "Authorization: Bearer $2" "$1")
    bare_bytes=$(curl -fsS -o /dev/null -w '%{size_download}' "http://127.0.0.1:$BARE_PORT/page")
    echo "list page: $n certificates, $bytes bytes; bare page: $bare_bytes bytes"
    [[ "$n" == 20 ]] || { echo "expected 20 certificates in the list" >&2; exit 1; }
}

# ---------------------------------------------------------------- baseline
BARE_PORT=$(free_port)
"$BARE" "127.0.0.1:$BARE_PORT" 2>"$WORK/bare.stderr" &
PIDS+=($!)
wait_http "http://127.0.0.1:$BARE_PORT/page"

# ---------------------------------------------------------------- SQLite
P1=$(free_port)
mkdir -p "$WORK/sqlite"
start_certgate sqlite "$P1" "sqlite://$WORK/sqlite/certgate.db"
KEY=$(admin_key "$WORK/sqlite.stdout")
seed "http://127.0.0.1:$P1" "$KEY" "$WORK/ids.json"
check_sizes "http://127.0.0.1:$P1/v1/organization/certificates" "$KEY"
measure sqlite "http://127.0.0.1:$P1/v1/organization/certificates" "http://127.0.0.1:$P1/" "$KEY" \
    sqlite "$WORK/sqlite/raw-commit.db"
kill "${PIDS[-1]}"; wait "${PIDS[-1]}" 2>/dev/null || true; unset 'PIDS[-1]'

# ---------------------------------------------------------------- PostgreSQL
if [[ -n "$PG_URL" ]] && command -v psql >/dev/null && psql -q "$PG_URL" -c 'select 1' >/dev/null 2>&1; then
    SCHEMA=bench_api_$$
    psql -q "$PG_URL" -c "CREATE SCHEMA $SCHEMA" >/dev/null
    PG_DB=$(schema_url "$PG_URL" "$SCHEMA")
    P1=$(free_port); P2=$(free_port)
    start_certgate pg1 "$P1" "$PG_DB"
    KEY=$(admin_key "$WORK/pg1.stdout")
    seed "http://127.0.0.1:$P1" "$KEY" "$WORK/ids.json"
    check_sizes "http://127.0.0.1:$P1/v1/organization/certificates" "$KEY"
    measure postgres-1 "http://127.0.0.1:$P1/v1/organization/certificates" "http://127.0.0.1:$P1/" "$KEY" \
        postgres "$PG_DB"
    start_certgate pg2 "$P2" "$PG_DB" --no-bootstrap
    check_sizes "http://127.0.0.1:$P2/v1/organization/certificates" "$KEY"
    measure postgres-2 \
        "http://127.0.0.1:$P1/v1/organization/certificates,http://127.0.0.1:$P2/v1/organization/certificates" \
        "http://127.0.0.1:$P1/,http://127.0.0.1:$P2/" "$KEY" postgres "$PG_DB"
else
    echo "PostgreSQL skipped (CERTGATE_BENCH_POSTGRES_URL='$PG_URL' unreachable, empty, or no psql)"
fi

# ---------------------------------------------------------------- summary
python3 - "$RESULTS" "$ROUNDS" "$DURATION" "$THREADS" "$CONNS" "$REV" "$(nproc)" <<'EOF' | tee "$WORK/results.md"
import json, statistics, sys
path, rounds, duration, threads, conns, rev, cores = sys.argv[1:]
rows = [json.loads(l) for l in open(path)]
rows = [r for r in rows if r["setup"] != "warmup"]
setups = list(dict.fromkeys(r["setup"] for r in rows))
print(f"\ncertgate {rev}; {cores} cores shared by wrk and the servers.")
print(f"Medians of {rounds} rounds x {duration}s, wrk {threads} threads / {conns} connections in total.")
print("x bare = bare req/s / this req/s, and this p50 / bare p50 (same set-up's rounds).")
print("x commit (toggles) = toggle req/s / the raw durable-commit rate of one writer on the same")
print("database and disk (examples/durable_commit.rs), same set-up's rounds.")
print("errors = non-2xx answers + wrk socket errors (timeouts: no answer within 2 s), all rounds.\n")
print("| set-up | scenario | req/s | p50 ms | p99 ms | x bare (req/s) | x bare (p50) | x commit | errors |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
for s in setups:
    med = {}
    for sc in ("bare", "list", "toggle", "commit"):
        rs = [r for r in rows if r["setup"] == s and r["scenario"] == sc]
        if not rs:
            continue
        med[sc] = dict(
            rps=statistics.median(r["rps"] for r in rs),
            p50=statistics.median(r["p50_us"] for r in rs) / 1000,
            p99=statistics.median(r["p99_us"] for r in rs) / 1000,
            bad=sum(r["non2xx"] + r["socket_errors"] for r in rs),
        )
    b = med["bare"]
    for sc, m in med.items():
        if sc == "commit":
            print(f"| {s} | commit (raw) | {m['rps']:.0f} | | | | | 1.00 | 0 |")
            continue
        vs_commit = f"{m['rps'] / med['commit']['rps']:.2f}" if sc == "toggle" and "commit" in med else ""
        print(f"| {s} | {sc} | {m['rps']:.0f} | {m['p50']:.2f} | {m['p99']:.2f} | "
              f"{b['rps'] / m['rps']:.2f} | {m['p50'] / b['p50']:.2f} | {vs_commit} | {m['bad']} |")
EOF
echo "results: $WORK/results.md, raw: $RESULTS"
