#!/usr/bin/env bash
# Issue 30's attack 4 (spec §13.5), loopback only, release build: one tenant uploads CAS CA
# certificates and a CRL of ENTRIES entries (about 5.4 MB of DER) for each, activates them all,
# then replaces its stored CRLs with new versions back to back. Meanwhile a legitimate client of
# another organization makes sequential fresh handshakes + one request each through the gateway,
# and that organization's second CA is deactivated and activated ROUNDS times through the Admin
# API, each change timed from the API's answer to the first request that sees it. Goals: the
# client's p99 under 100 ms, every change within the propagation bound (5 s; the calm figure is
# ~0.1 s on SQLite). Records serve's and the gateway's memory (VmRSS now, VmHWM peak) after each
# phase, and the CRL bytes the gateway read (certgate_trust_crl_bytes_read_total).
#
# The CRLs are made once per run (by hand, signed with the hostile CAs' keys) into the work
# directory's crls/, reused by every phase, and removed at exit (a few hundred MB).
#
# Environment: CAS (default 49), ENTRIES (default 200000), PHASE_SECONDS (default 10; not
# SECONDS, which bash sets to its own running time),
# ROUNDS (propagation rounds per phase, default 10), DATABASE (default: a SQLite file in the
# work directory; a postgres:// URL works too, given an empty database or schema).
set -euo pipefail
cd "$(dirname "$0")/../.."
CAS=${CAS:-49}
ENTRIES=${ENTRIES:-200000}
SECONDS_PER_PHASE=${PHASE_SECONDS:-10}
ROUNDS=${ROUNDS:-10}

# shellcheck source=common.sh
source bench/hostile/common.sh
hostile_init crls crl_bench
DB=${DATABASE:-sqlite://$WORK/certgate.db}
hostile_cleanup_extra() { rm -rf "$WORK/crls"; }
# shellcheck source=../api/common.sh
source bench/api/common.sh

start_upstream

API_PORT=$(free_port)
start_certgate serve "$API_PORT" "$DB"
SERVE_PID=${PIDS[-1]}
BASE=http://127.0.0.1:$API_PORT/v1
KEY_L=$(admin_key "$WORK/serve.stdout")
ORG_L=$(python3 -c 'import json,sys; print(next(json.loads(l)["organization"]["id"] for l in open(sys.argv[1]) if "admin_key" in l))' \
    "$WORK/serve.stdout")
"$BIN" org create --name Hostile --database "$DB" --admin-key-file "$WORK/hostile.key" >"$WORK/hostile.json"
KEY_H=$(cat "$WORK/hostile.key")

"$BENCH" pki "$WORK"
"$BENCH" setup "$BASE" "$KEY_L" "$KEY_H" "$WORK" "$CAS" >/dev/null
echo "CRLs: $("$BENCH" crls "$WORK" "$ENTRIES")"
echo "parse: $("$BENCH" parse "$WORK")"

METRICS=$(free_port)
start_gateway "$DB" --organization "$ORG_L" --metrics-listen "127.0.0.1:$METRICS"
echo "gateway at $ADDR (metrics :$METRICS), serve at $BASE, upstream at 127.0.0.1:$UP"

mem() { # PID: "VmRSS VmHWM" in MB
    awk '/^VmRSS/ {r=$2} /^VmHWM/ {h=$2} END {printf "%.0f %.0f", r/1024, h/1024}' "/proc/$1/status"
}
crl_read() {
    curl -fsS "http://127.0.0.1:$METRICS/metrics" | awk '$1 == "certgate_trust_crl_bytes_read_total" {print $2}'
}
phase() { # NAME: measure, then record memory and what the gateway read
    local out
    out=$("$BENCH" measure "$ADDR" "$BASE" "$KEY_L" "$WORK" "$SECONDS_PER_PHASE" "$ROUNDS")
    read -r serve_rss serve_hwm <<<"$(mem "$SERVE_PID")"
    read -r gw_rss gw_hwm <<<"$(mem "$GATEWAY_PID")"
    echo "{\"phase\":\"$1\",\"result\":$out,\"serve_rss_mb\":$serve_rss,\"serve_peak_mb\":$serve_hwm,\"gateway_rss_mb\":$gw_rss,\"gateway_peak_mb\":$gw_hwm,\"gateway_crl_bytes_read\":$(crl_read)}" |
        tee -a "$WORK/results.jsonl"
}

phase calm
echo "store: $("$BENCH" store "$BASE" "$KEY_H" "$WORK")"
phase stored_inactive
echo "activate: $("$BENCH" activate "$BASE" "$KEY_H" "$WORK")"
phase active
"$BENCH" churn "$BASE" "$KEY_H" "$WORK" "$((SECONDS_PER_PHASE + 5))" >"$WORK/churn.json" &
CHURN=$!
PIDS+=($CHURN)
sleep 1
phase churn
wait "$CHURN" || true
echo "churn: $(cat "$WORK/churn.json")"
echo "gateway CRL bytes read in all: $(crl_read)"

python3 - "$WORK/results.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print(f"{'phase':16s} {'p50 ms':>7s} {'p99 ms':>7s} {'max ms':>7s} {'prop p50':>8s} {'prop p99':>8s} {'prop max':>8s} "
      f"{'serve MB':>9s} {'peak':>5s} {'gw MB':>6s} {'peak':>5s} {'CRL MB read':>11s}")
for r in rows:
    m = r["result"]
    print(f"{r['phase']:16s} {m['p50_ms']:7.1f} {m['p99_ms']:7.1f} {m['max_ms']:7.1f} "
          f"{m['propagation_p50_ms']:8.1f} {m['propagation_p99_ms']:8.1f} {m['propagation_max_ms']:8.1f} "
          f"{r['serve_rss_mb']:9d} {r['serve_peak_mb']:5d} {r['gateway_rss_mb']:6d} {r['gateway_peak_mb']:5d} "
          f"{int(r['gateway_crl_bytes_read'])/1e6:11.1f}")
PY
