# Helpers shared by the bench/hostile scripts (sourced from the repository's root after
# `set -euo pipefail`): the release build, the work directory and the cleanup of every process
# started, the static upstream, and one gateway in front of it.

hostile_init() { # NAME EXAMPLE: builds certgate and the example; sets BIN, BENCH, WORK, PIDS
    cargo build --release --bin certgate --example "$2"
    BIN=$PWD/target/release/certgate
    BENCH=$PWD/target/release/examples/$2
    WORK=$(mktemp -d "/tmp/certgate-$1.XXXXXX")
    echo "work directory: $WORK"
    PIDS=()
    trap hostile_cleanup EXIT
}

# Stops every process in PIDS, then runs hostile_cleanup_extra if the script defines one.
hostile_cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if declare -F hostile_cleanup_extra >/dev/null; then hostile_cleanup_extra; fi
}

start_upstream() { # the upstream: a static file answers GET /v1/models; sets UP (its port)
    mkdir -p "$WORK/www/v1" && echo '{"object":"list","data":[]}' >"$WORK/www/v1/models"
    python3 -m http.server --bind 127.0.0.1 0 --directory "$WORK/www" >"$WORK/upstream.log" 2>&1 &
    PIDS+=($!)
    for _ in $(seq 100); do grep -q "Serving HTTP" "$WORK/upstream.log" && break; sleep 0.05; done
    UP=$(grep -o 'port [0-9]*' "$WORK/upstream.log" | head -1 | cut -d' ' -f2)
}

start_gateway() { # DATABASE [ARGS...]: a gateway in front of UP with $WORK/server.{pem,key};
    # sets GATEWAY_PID and ADDR (its listening address)
    local db=$1; shift
    RUST_LOG=info,sqlx=warn "$BIN" gateway --listen 127.0.0.1:0 --database "$db" \
        --tls-cert "$WORK/server.pem" --tls-key "$WORK/server.key" \
        --upstream "http://127.0.0.1:$UP" "$@" 2>"$WORK/gateway.log" &
    GATEWAY_PID=$!
    PIDS+=($GATEWAY_PID)
    for _ in $(seq 200); do grep -q "certgate gateway listening" "$WORK/gateway.log" && break; sleep 0.05; done
    ADDR=$(grep 'certgate gateway listening' "$WORK/gateway.log" | grep -o 'listen=[0-9.:]*' | head -1 | cut -d= -f2)
    [[ -n "$ADDR" ]] || { echo "the gateway did not start:" >&2; cat "$WORK/gateway.log" >&2; return 1; }
}
