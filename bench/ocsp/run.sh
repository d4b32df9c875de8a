#!/usr/bin/env bash
# Issue 29's OCSP measure (spec §13.4), loopback only, release build, SQLite. One client CA
# whose leaves name a loopback OCSP responder: `openssl ocsp` (4 processes) behind
# bench/ocsp/delay_proxy.py, which holds every connection DELAY_MS (default 50) before passing
# it on. Two gateways that differ only in the CA's `ocsp` mode, each on its own database:
#   off:       nothing is asked;
#   hard_fail: every new client asks the responder; an answer is kept to its nextUpdate
#              (`-nmin 60`: an hour).
# 1. Throughput on cached answers: COUNT full handshakes (no resumption) + one request each,
#    CONC at once, with the one client `client` (its answer cached by the warm-up), rounds
#    alternating off / hard_fail. Goal: hard_fail at least 0.95x of off (medians over ROUNDS).
# 2. First connections: FIRST clients never seen before (`first-0` …), each connecting once to
#    the hard_fail gateway, FIRST_CONC at once (default 1, then 8): every connection waits for
#    the responder. Goal: p99 under 100 ms with the 50 ms responder. The same clients through the
#    off gateway give the connection's cost without OCSP.
#
# Environment: COUNT (default 2000), CONC (8), ROUNDS (5), FIRST (300), DELAY_MS (50).
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
COUNT=${COUNT:-2000}
CONC=${CONC:-8}
ROUNDS=${ROUNDS:-5}
FIRST=${FIRST:-300}
DELAY_MS=${DELAY_MS:-50}

if [ -z "${SKIP_BUILD:-}" ]; then cargo build --release --bin certgate --example ocsp_bench; fi
TARGET=$(target_dir)/${PROFILE:-release}
BIN=$TARGET/certgate
BENCH=$TARGET/examples/ocsp_bench
WORK=$(mktemp -d /tmp/certgate-ocsp.XXXXXX)
echo "work directory: $WORK"
start_upstream "$WORK/upstream"

# The responder, and the delay in front of it: the URL every leaf names.
RESP=$(free_port)
PROXY=$(free_port)
"$BENCH" pki "$WORK" "http://127.0.0.1:$PROXY/" $((FIRST * 2))
bg_start openssl ocsp -index "$WORK/index.txt" -port "$RESP" -rsigner "$WORK/client-ca.pem" \
    -rkey "$WORK/client-ca.key" -CA "$WORK/client-ca.pem" -nmin 60 -multi 4 >"$WORK/responder.log" 2>&1
# `-multi` forks: its processes are found by their index's path (killing the parent leaves them).
trap 'pkill -f "$WORK/index.txt"; sleep 0.5; pkill -9 -f "$WORK/index.txt"; cleanup' EXIT
# Not probed: a connection closed without a request leaves an `openssl ocsp` process stuck.
for _ in $(seq 200); do grep -q "waiting for OCSP client connections" "$WORK/responder.log" && break; sleep 0.05; done
bg_start python3 bench/ocsp/delay_proxy.py "$PROXY" "$RESP" "$DELAY_MS" >"$WORK/proxy.log"
wait_port "$PROXY"

declare -A ADDR
for mode in off hard_fail; do
    D=$WORK/$mode
    mkdir -p "$D"
    ORG=$("$BENCH" seed "$WORK" "sqlite://$D/certgate.db" "$mode" |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["organization"])')
    RUST_LOG=warn,certgate=info "$BIN" gateway --listen 127.0.0.1:0 --organization "$ORG" \
        --database "sqlite://$D/certgate.db" --tls-cert "$WORK/server.pem" \
        --tls-key "$WORK/server.key" --upstream "http://127.0.0.1:$UP" --fetch-allow-private \
        2>"$D/gateway.log" &
    PIDS+=($!)
    for _ in $(seq 200); do grep -q "certgate gateway listening" "$D/gateway.log" && break; sleep 0.05; done
    ADDR[$mode]=$(grep -o 'listen=[0-9.:]*' "$D/gateway.log" | head -1 | cut -d= -f2)
    out=$("$BENCH" load "${ADDR[$mode]}" "$WORK" client 200 "$CONC")
    echo "warm-up $mode: $out"
    echo "$out" | grep -q '"statuses":{"200":200}' || { echo "warm-up failed for $mode" >&2; exit 1; }
done

for round in $(seq "$ROUNDS"); do
    for mode in off hard_fail; do
        out=$("$BENCH" load "${ADDR[$mode]}" "$WORK" client "$COUNT" "$CONC")
        echo "round $round, $mode: $out"
        echo "{\"kind\":\"cached\",\"mode\":\"$mode\",\"result\":$out}" >>"$WORK/results.jsonl"
    done
done

# First connections: leaves 0..FIRST-1 at concurrency 1, FIRST..2*FIRST-1 at 8 (each leaf
# unseen by the hard_fail gateway). The off gateway sees the same leaves (nothing cached there).
mkdir -p "$WORK/second"
for i in $(seq 0 $((FIRST - 1))); do
    for ext in pem key; do ln -sf "$WORK/first-$((FIRST + i)).$ext" "$WORK/second/first-$i.$ext"; done
done
cp "$WORK/server-ca.pem" "$WORK/second/"
for conc in 1 8; do
    dir=$WORK
    [ "$conc" = 8 ] && dir=$WORK/second
    for mode in off hard_fail; do
        out=$("$BENCH" load "${ADDR[$mode]}" "$dir" first "$FIRST" "$conc")
        echo "first connections, concurrency $conc, $mode: $out"
        echo "{\"kind\":\"first-$conc\",\"mode\":\"$mode\",\"result\":$out}" >>"$WORK/results.jsonl"
    done
done

python3 - "$WORK/results.jsonl" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
def med(kind, mode, key):
    return statistics.median(r["result"][key] for r in rows if r["kind"] == kind and r["mode"] == mode)
for mode in ("off", "hard_fail"):
    print(f"cached {mode:9s} connections/s {med('cached', mode, 'connections_per_second'):8.0f}"
          f"  p50 {med('cached', mode, 'p50_ms'):6.2f} ms  p99 {med('cached', mode, 'p99_ms'):6.2f} ms")
by_round = [h["result"]["connections_per_second"] / o["result"]["connections_per_second"]
            for o, h in zip([r for r in rows if r["kind"] == "cached" and r["mode"] == "off"],
                            [r for r in rows if r["kind"] == "cached" and r["mode"] == "hard_fail"])]
print(f"ratio hard_fail/off (cached): {med('cached', 'hard_fail', 'connections_per_second') / med('cached', 'off', 'connections_per_second'):.3f}"
      f" (by round {min(by_round):.3f}-{max(by_round):.3f}; goal >= 0.95)")
for kind in ("first-1", "first-8"):
    for mode in ("off", "hard_fail"):
        r = next(r["result"] for r in rows if r["kind"] == kind and r["mode"] == mode)
        print(f"{kind} {mode:9s} p50 {r['p50_ms']:6.2f} ms  p90 {r['p90_ms']:6.2f} ms  p99 {r['p99_ms']:6.2f} ms  statuses {r['statuses']}")
print("goal: first-connection p99 under 100 ms with the 50 ms responder")
PY
