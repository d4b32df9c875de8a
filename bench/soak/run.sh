#!/usr/bin/env bash
# Soak: certgate replicas under steady mixed load while each is restarted in turn, then checked
# (docs/operations.md, "Soak"). Loopback only; exits non-zero on any violation.
#
#   bench/soak/run.sh [postgres|sqlite] [DURATION_SECONDS] [soak.py options...]
#
# postgres (default): two `serve` and two `gateway` replicas on a fresh database made for the
# run on CERTGATE_SOAK_POSTGRES_URL (default postgres://postgres@127.0.0.1:5432/postgres; the
# run's database is dropped at the end unless KEEP=1), plus two `certgate authz` replicas when
# the binary has that role (AUTHZ=0 leaves them out). sqlite: one `serve` and two gateways on one
# file. DURATION defaults to 1800 s. Rates, rounds and the rest: bench/soak/soak.py --help
# (e.g. --write-rate 4 --keepalive-rate 20 --handshake-rate 5 --websockets 4 --rounds 3).
# Needs python3 with `cryptography` (a venv from bench/soak/requirements.txt is made if missing).
# The report: printed, and in $WORK/report.json; replica logs in $WORK.
set -euo pipefail
cd "$(dirname "$0")/../.."

MODE=${1:-postgres}
DURATION=${2:-1800}
shift $(( $# > 2 ? 2 : $# ))
PG_URL=${CERTGATE_SOAK_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}

[[ -n "${SOAK_SKIP_BUILD:-}" ]] || cargo build --release --quiet --bin certgate
BIN=${CARGO_TARGET_DIR:-$PWD/target}/release/certgate

PY=python3
if ! "$PY" -c 'import cryptography' 2>/dev/null; then
    VENV=${CERTGATE_SOAK_VENV:-.venv-soak}
    [[ -x "$VENV/bin/python" ]] || { python3 -m venv "$VENV" && "$VENV/bin/pip" install --quiet -r bench/soak/requirements.txt; }
    PY=$VENV/bin/python
fi

WORK=$(mktemp -d /tmp/certgate-soak.XXXXXX)
echo "work directory: $WORK"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

DB_NAME=""
cleanup() {
    if [[ -n "$DB_NAME" && -z "${KEEP:-}" ]]; then
        psql "$PG_URL" -qc "DROP DATABASE IF EXISTS $DB_NAME WITH (FORCE)" >/dev/null 2>&1 || true
    fi
}
trap cleanup EXIT

ARGS=(--bin "$BIN" --work "$WORK" --duration "$DURATION")
case "$MODE" in
    postgres)
        psql "$PG_URL" -qc "select 1" >/dev/null || { echo "PostgreSQL unreachable at $PG_URL" >&2; exit 1; }
        DB_NAME=certgate_soak_$$_$(date +%s)
        psql "$PG_URL" -qc "CREATE DATABASE $DB_NAME"
        ARGS+=(--database "${PG_URL%/*}/$DB_NAME" --serves 2 --gateways 2)
        if [[ "${AUTHZ:-1}" != 0 ]] && "$BIN" authz --help >/dev/null 2>&1; then
            ARGS+=(--authz 2)
        fi
        ;;
    sqlite)
        ARGS+=(--database "sqlite://$WORK/certgate.db" --serves 1 --gateways 2)
        ;;
    *) echo "usage: $0 [postgres|sqlite] [DURATION_SECONDS] [soak.py options...]" >&2; exit 2 ;;
esac
# In the background so that a SIGTERM (CI's timeout) reaches the driver, which then stops every
# replica it started.
"$PY" bench/soak/soak.py "${ARGS[@]}" "$@" &
SOAK=$!
trap 'kill -TERM $SOAK 2>/dev/null || true' TERM INT
set +e
wait $SOAK; STATUS=$?
while kill -0 $SOAK 2>/dev/null; do wait $SOAK; STATUS=$?; done
exit $STATUS
