#!/usr/bin/env bash
# Issue 29's measure, loopback only, release build, SQLite: a CA's CRL fetched from its crl_url
# (spec §13.4), verified, stored and in force at the gateway. Two variants, rounds alternating:
#   big:   ENTRIES_BIG entries (default 500,000; about 15 MB of DER, 12-byte serials), with
#          serve's limit raised to --fetch-max-bytes 16MiB (decisions.md D70);
#   small: ENTRIES_SMALL entries (default 270,000; just under 8 MiB), at the default limit.
# Each round starts a fresh serve and gateway on a fresh database, uploads and activates the CA,
# waits until the gateway admits the client, then sets the CA's crl_url to a loopback HTTP
# server (crl_bench's own) and times, from the fetch's request reaching that server: the CRL
# stored at serve (its summary answered by the API), and the client (whose serial is the CRL's
# last entry) refused 403 by the gateway, polled with a fresh connection every 10 ms. Peak
# memory is VmHWM from /proc of each process after enforcement (its whole life: start-up, one
# CRL); resident memory before and after is printed too. Medians over ROUNDS (default 5).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=${ROUNDS:-5}
ENTRIES_BIG=${ENTRIES_BIG:-500000}
ENTRIES_SMALL=${ENTRIES_SMALL:-270000}

# PROFILE=debug (with SKIP_BUILD=1, binaries already built) checks the script itself quickly.
PROFILE=${PROFILE:-release}
if [ -z "${SKIP_BUILD:-}" ]; then cargo build --release --bin certgate --example crl_bench; fi
BIN=$PWD/target/$PROFILE/certgate
BENCH=$PWD/target/$PROFILE/examples/crl_bench
WORK=$(mktemp -d /tmp/certgate-crl-fetch.XXXXXX)
echo "work directory: $WORK"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
# shellcheck source=../api/common.sh
source bench/api/common.sh

mkdir -p "$WORK/www/v1" && echo '{"object":"list","data":[]}' >"$WORK/www/v1/models"
python3 -m http.server --bind 127.0.0.1 0 --directory "$WORK/www" >"$WORK/upstream.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do grep -q "Serving HTTP" "$WORK/upstream.log" && break; sleep 0.05; done
UP=$(grep -o 'port [0-9]*' "$WORK/upstream.log" | head -1 | cut -d' ' -f2)

"$BENCH" fetch-pki "$WORK"
echo "big CRL:   $("$BENCH" fetch-crl "$WORK" "$ENTRIES_BIG" "$WORK/big.der")"
echo "small CRL: $("$BENCH" fetch-crl "$WORK" "$ENTRIES_SMALL" "$WORK/small.der")"
if [ "$(stat -c %s "$WORK/small.der")" -gt $((8 * 1024 * 1024)) ]; then
    echo "the small CRL is over 8 MiB: lower ENTRIES_SMALL" >&2
    exit 1
fi

stop() { # PID
    kill "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

one() { # VARIANT ROUND
    local variant=$1 round=$2 limit=() D port serve_pid gateway_pid org key addr out
    [ "$variant" = big ] && limit=(--fetch-max-bytes 16MiB)
    D=$WORK/$variant-$round
    mkdir -p "$D"
    port=$(free_port)
    RUST_LOG=warn "$BIN" serve --listen "127.0.0.1:$port" --database "sqlite://$D/certgate.db" \
        --fetch-allow-private "${limit[@]}" >"$D/serve.stdout" 2>"$D/serve.stderr" &
    serve_pid=$!
    PIDS+=("$serve_pid")
    wait_http "http://127.0.0.1:$port/readyz"
    key=$(admin_key "$D/serve.stdout")
    org=$(python3 -c 'import json,sys; print(next(json.loads(l)["organization"]["id"] for l in open(sys.argv[1]) if "admin_key" in l))' \
        "$D/serve.stdout")
    RUST_LOG=warn,certgate=info "$BIN" gateway --listen 127.0.0.1:0 --organization "$org" \
        --database "sqlite://$D/certgate.db" --tls-cert "$WORK/server.pem" \
        --tls-key "$WORK/server.key" --upstream "http://127.0.0.1:$UP" 2>"$D/gateway.log" &
    gateway_pid=$!
    PIDS+=("$gateway_pid")
    for _ in $(seq 200); do grep -q "certgate gateway listening" "$D/gateway.log" && break; sleep 0.05; done
    addr=$(grep 'certgate gateway listening' "$D/gateway.log" | grep -o 'listen=[0-9.:]*' | head -1 | cut -d= -f2)
    out=$("$BENCH" fetch-measure "$addr" "http://127.0.0.1:$port/v1" "$key" "$WORK" \
        "$WORK/$variant.der" "$serve_pid" "$gateway_pid")
    echo "round $round, $variant: $out"
    echo "{\"variant\":\"$variant\",\"round\":$round,\"result\":$out}" >>"$WORK/results.jsonl"
    stop "$gateway_pid"
    stop "$serve_pid"
    rm -f "$D"/certgate.db*
}

for round in $(seq "$ROUNDS"); do
    # Alternating which goes first, so neither always runs on a machine the other warmed.
    if [ $((round % 2)) -eq 1 ]; then one big "$round"; one small "$round"; else one small "$round"; one big "$round"; fi
done

python3 - "$WORK/results.jsonl" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
def med(v, k):
    return statistics.median(r["result"][k] for r in rows if r["variant"] == v)
print(f"{'variant':8s} {'MB':>5s} {'stored s':>8s} {'enforced s':>10s} {'serve peak MiB':>14s} {'gateway peak MiB':>16s} {'gateway RSS MiB before/after':>28s}")
for v in ("big", "small"):
    print(f"{v:8s} {med(v,'crl_bytes')/1e6:5.1f} {med(v,'request_to_stored_ms')/1000:8.2f} {med(v,'request_to_enforced_ms')/1000:10.2f} "
          f"{med(v,'serve_peak_mib'):14.0f} {med(v,'gateway_peak_mib'):16.0f} {med(v,'gateway_rss_before_mib'):13.0f}/{med(v,'gateway_rss_after_mib'):.0f}")
print(f"rounds: {len(rows)//2} per variant; ratio big/small: bytes {med('big','crl_bytes')/med('small','crl_bytes'):.2f}, "
      f"enforced {med('big','request_to_enforced_ms')/med('small','request_to_enforced_ms'):.2f}, "
      f"serve peak {med('big','serve_peak_mib')/med('small','serve_peak_mib'):.2f}, "
      f"gateway peak {med('big','gateway_peak_mib')/med('small','gateway_peak_mib'):.2f}")
PY
