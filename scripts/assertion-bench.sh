#!/usr/bin/env bash
# Token endpoint throughput with private_key_jwt beside client_secret_basic
# (issue 13), on PostgreSQL and on SQLite: RUNS runs each, every run on a
# fresh store and a fresh release server, the healthz baseline in the same
# run; prints every run's RESULT line and the medians.
# Needs PostgreSQL on 127.0.0.1:5432 and a release build:
#   cargo build --release && cargo bench --bench load --no-run
#   RUNS=3 bash scripts/assertion-bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
SECONDS_MEASURED=${SECONDS_MEASURED:-10}
SCENARIOS=healthz,token_basic,token_private_key_jwt
BIN=target/release/keyward
export KEYWARD_BIND=127.0.0.1:8091 RUST_LOG=warn
results=$(mktemp)

run_once() {
    local store=$1 run=$2
    export KEYWARD_DATA_DIR KEYWARD_KEYS_DIR
    KEYWARD_DATA_DIR=$(mktemp -d)
    KEYWARD_KEYS_DIR=$(mktemp -d)
    if [ "$store" = postgres ]; then
        psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS keyward_assertion_bench" >/dev/null
        psql -h 127.0.0.1 -U postgres -qc "CREATE DATABASE keyward_assertion_bench" >/dev/null
        export KEYWARD_DATABASE_URL=postgres://postgres@127.0.0.1:5432/keyward_assertion_bench
    else
        unset KEYWARD_DATABASE_URL
    fi
    "$BIN" serve > "$KEYWARD_DATA_DIR/server.log" 2>&1 &
    local server=$!
    for _ in $(seq 1 100); do
        curl -sf "http://$KEYWARD_BIND/healthz" >/dev/null && break
        sleep 0.2
    done
    cargo bench --quiet --bench load -- --url "http://$KEYWARD_BIND" --clients 1 \
        --scenarios "$SCENARIOS" --duration "$SECONDS_MEASURED" 2>/dev/null |
        grep '^RESULT' | sed "s/^RESULT /$store $run /" | tee -a "$results"
    kill $server; wait $server 2>/dev/null || true
}

for run in $(seq 1 "$RUNS"); do
    for store in ${STORES:-postgres sqlite}; do
        run_once "$store" "$run"
    done
done
echo "== medians of $RUNS runs (req/s, p50 ms, p99 ms, db/req)"
python3 - "$results" <<'PY'
import json, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    store, run, payload = line.split(' ', 2)
    r = json.loads(payload)
    rows.setdefault((store, r['scenario']), []).append(r)
for (store, scenario), runs in sorted(rows.items()):
    med = lambda k: statistics.median(x.get(k) or 0 for x in runs)
    print(f"{store:9} {scenario:22} {med('rps'):>9.0f} {med('p50_ms'):>7.2f} {med('p99_ms'):>7.2f} {med('db_per_req'):>5.2f}")
PY
