# Helpers shared by the bench/api scripts (sourced; they set WORK first, and BIN and a PIDS
# array before start_certgate).

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { # URL
    for _ in $(seq 300); do curl -fsS -o /dev/null "$1" 2>/dev/null && return 0; sleep 0.05; done
    echo "$1 never answered" >&2; return 1
}
start_certgate() { # NAME PORT DATABASE [ARGS...]: `certgate serve`, output in $WORK/NAME.*
    local name=$1 port=$2 db=$3; shift 3
    RUST_LOG=warn "$BIN" serve --listen "127.0.0.1:$port" --database "$db" "$@" \
        >"$WORK/$name.stdout" 2>"$WORK/$name.stderr" &
    PIDS+=($!)
    wait_http "http://127.0.0.1:$port/readyz"
}
admin_key() { # STDOUT_FILE: the bootstrap key printed once (on stdout) by `certgate serve`
    for _ in $(seq 300); do
        local line
        line=$(grep -m1 '"admin_key"' "$1" 2>/dev/null || true)
        if [[ -n "$line" ]]; then
            python3 -c 'import json,sys; print(json.loads(sys.argv[1])["admin_key"]["value"])' "$line"
            return 0
        fi
        sleep 0.05
    done
    echo "no admin key in $1" >&2; cat "$1" >&2; return 1
}
schema_url() { # POSTGRES_URL SCHEMA: the URL with search_path set to SCHEMA
    local sep='?'
    [[ "$1" == *\?* ]] && sep='&'
    echo "$1${sep}options=-c%20search_path%3D$2"
}
make_cas() { # 20 CA certificates (openssl CLI) in $WORK/pki/ca00.pem .. ca19.pem
    mkdir -p "$WORK/pki"
    local i
    for i in $(seq -w 0 19); do
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
            -keyout /dev/null -out "$WORK/pki/ca$i.pem" -subj "/CN=bench-ca-$i" -days 365 \
            -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
            2>/dev/null
    done
}
seed() { # BASE_URL KEY IDS_JSON: uploads the 20 CAs, writes the first 10 ids (for toggles)
    local base=$1 key=$2 out=$3 i
    : >"$out.txt"
    for i in $(seq -w 0 19); do
        python3 -c 'import json,sys; print(json.dumps({"certificate": open(sys.argv[1]).read(), "name": sys.argv[2]}))' \
            "$WORK/pki/ca$i.pem" "bench-ca-$i" >"$WORK/upload.json"
        curl -fsS -H "Authorization: Bearer $key" -H 'Content-Type: application/json' \
            --data-binary "@$WORK/upload.json" "$base/v1/organization/certificates" \
            | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])' >>"$out.txt"
    done
    python3 -c 'import json,sys; print(json.dumps([l.strip() for l in open(sys.argv[1])][:10]))' \
        "$out.txt" >"$out"
}
