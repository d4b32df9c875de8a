#!/usr/bin/env bash
# Instructions per forward-auth request (issue 26), counted by valgrind's callgrind: exact and
# repeatable on a shared machine, where wall-clock figures are not. `certgate authz` (release,
# SQLite, one active CA) and the bare allow-all HTTP server (examples/allow_all_ext_authz.rs,
# the same connection loop) each run under callgrind and answer the same keep-alive requests
# as nginx's `auth_request` sends them: `X-SSL-Client-Cert` holding the client's escaped PEM
# leaf ($ssl_client_escaped_cert), no body. WARMUP requests first (the chain is parsed and
# judged once, connections and caches warm), then the counters are zeroed, REQUESTS requests
# are counted, and the total is divided by REQUESTS: the steady per-request cost of a
# keep-alive connection whose chain was already judged. The client (Python) is not counted.
# The trust watcher's poll is set to an hour so its timer, not a request, costs nothing here.
#
# Environment: REQUESTS (default 2000), WARMUP (default 200), UNIX=1 to use Unix sockets,
# ANNOTATE=1 to also print callgrind_annotate's inclusive top functions for certgate,
# NO_BUILD=1 to profile the release binaries as they are.
# Output files stay in the printed work directory (callgrind.out.*).
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
command -v valgrind >/dev/null || { echo "valgrind is required (apt-get install -y valgrind)" >&2; exit 1; }

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

# ask ADDR N EXPECTED: N keep-alive requests on one connection, each answered EXPECTED.
ask() {
    python3 - "$1" "$2" "$3" "$ESCAPED" <<'PY'
import http.client, socket, sys
addr, n, expected, cert = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
class Unix(http.client.HTTPConnection):
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(addr[len("unix:"):])
conn = Unix("localhost") if addr.startswith("unix:") else http.client.HTTPConnection(*addr.rsplit(":", 1))
for _ in range(n):
    # What nginx's auth subrequest carries (proxy_pass_request_body off, keep-alive).
    conn.request("GET", "/_auth", headers={"X-SSL-Client-Cert": cert, "Connection": "keep-alive"})
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

# profile NAME ADDR COMMAND...: prints NAME and its instructions per request.
profile() {
    local name=$1 addr=$2 pid out
    shift 2
    valgrind --tool=callgrind --callgrind-out-file="$WORK/callgrind.out.$name.%p" \
        "$@" >"$WORK/$name.log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    wait_addr "$addr"
    ask "$addr" "$WARMUP" 200
    callgrind_control -z "$pid" >/dev/null
    ask "$addr" "$REQUESTS" 200
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

CG=$(addr certgate)
BARE_GRPC=$(addr bare-grpc); BARE=$(addr bare)
echo "$REQUESTS keep-alive forward-auth requests after $WARMUP warm-up ones, $( [[ ${UNIX:-} == 1 ]] && echo Unix || echo TCP ) socket"
RUST_LOG=warn profile certgate "$CG" "$TARGET/certgate" authz --database "sqlite://$WORK/certgate.db" \
    --organization "$ORG" --trust-poll 60m --grpc-listen "$(addr certgate-grpc)" --http-listen "$CG"
profile bare "$BARE" "$TARGET/examples/allow_all_ext_authz" "$BARE_GRPC" "$BARE"
if [[ ${ANNOTATE:-} == 1 ]]; then
    callgrind_annotate --inclusive=yes "$(cat "$WORK/certgate.out")" 2>/dev/null | head -80
fi
