# Shell the loopback benchmarks share (sourced by bench/gateway/run.sh and bench/authz/run.sh):
# background processes killed on exit, free ports, waiting for a port or an HTTP answer, and the
# plain-HTTP upstream they proxy to (an nginx answering a small JSON body). Sourcing it also
# moves to the repository's root.
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Every background process started with `bg_start`, killed (and reaped) when the script exits.
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT
bg_start() { "$@" & PIDS+=($!); }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { # PORT...
    local p
    for p in "$@"; do
        for _ in $(seq 400); do (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && continue 2; sleep 0.05; done
        echo "port $p never opened" >&2; return 1
    done
}
wait_http() { # URL
    for _ in $(seq 400); do curl -fsS -o /dev/null "$1" 2>/dev/null && return 0; sleep 0.05; done
    echo "$1 never answered" >&2; return 1
}
json_field() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"; }

# cargo's target directory (honours CARGO_TARGET_DIR and .cargo/config).
target_dir() {
    cargo metadata --format-version 1 --no-deps |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])'
}

# start_upstream DIR: a one-worker nginx on a free port answering every path with 200 and a
# small JSON body; sets UP to its port.
start_upstream() {
    local dir=$1
    command -v nginx >/dev/null || { echo "nginx is required (apt-get install -y nginx)" >&2; exit 1; }
    UP=$(free_port)
    mkdir -p "$dir/logs"
    cat >"$dir/nginx.conf" <<NGINX
worker_processes 1;
daemon off;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 8192; }
http {
    access_log off;
    server {
        listen 127.0.0.1:$UP;
        location / { default_type application/json; return 200 '{"object":"list","data":[]}'; }
    }
}
NGINX
    bg_start nginx -e "$dir/error.log" -p "$dir" -c "$dir/nginx.conf"
    wait_port "$UP"
}
