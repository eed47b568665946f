#!/usr/bin/env bash
# SQLite and PostgreSQL side by side (issue 14): every scenario closed loop,
# then token and introspection open loop at 70 % of the rate the same run
# reached closed loop, so that p99 includes queueing. RUNS rounds; each
# round runs every store (and every binary) in turn, each on a fresh store
# and a fresh release server, with the healthz baseline in the same run.
# Prints every RESULT line and the medians.
# Needs PostgreSQL on 127.0.0.1:5432 and a release build:
#   cargo build --release && cargo bench --bench load --no-run
#   RUNS=3 bash scripts/stores-bench.sh
# BINS="new=target/release/keyward old=/path/to/older/keyward" compares
# builds in the same run (on PostgreSQL: the bench registers its clients
# with the newer code, and an older SQLite schema lacks its change log);
# STORES="sqlite postgres" and SCENARIOS narrow it;
# OPEN_LOOP=0 skips the open-loop pass.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
SECONDS_MEASURED=${SECONDS_MEASURED:-10}
SCENARIOS=${SCENARIOS:-healthz,token_basic,token_post,introspect_same,introspect_distinct,renew}
OPEN_LOOP_SCENARIOS=${OPEN_LOOP_SCENARIOS:-token_basic,introspect_same}
OPEN_LOOP=${OPEN_LOOP:-1}
BINS=${BINS:-new=target/release/keyward}
export KEYWARD_BIND=127.0.0.1:8092 RUST_LOG=warn
results=$(mktemp)

bench() {
    cargo bench --quiet --bench load -- --url "http://$KEYWARD_BIND" --clients 1 \
        --duration "$SECONDS_MEASURED" "$@" 2>/dev/null | grep '^RESULT' | sed 's/^RESULT //' || true
}

run_once() {
    local label=$1 bin=$2 store=$3 run=$4
    export KEYWARD_DATA_DIR KEYWARD_KEYS_DIR
    KEYWARD_DATA_DIR=$(mktemp -d)
    KEYWARD_KEYS_DIR=$(mktemp -d)
    if [ "$store" = postgres ]; then
        psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS keyward_stores_bench" >/dev/null
        psql -h 127.0.0.1 -U postgres -qc "CREATE DATABASE keyward_stores_bench" >/dev/null
        export KEYWARD_DATABASE_URL=postgres://postgres@127.0.0.1:5432/keyward_stores_bench
    else
        unset KEYWARD_DATABASE_URL
    fi
    "$bin" serve > "$KEYWARD_DATA_DIR/server.log" 2>&1 &
    local server=$!
    for _ in $(seq 1 100); do
        curl -sf "http://$KEYWARD_BIND/readyz" >/dev/null && break
        sleep 0.2
    done
    local closed
    closed=$(bench --scenarios "$SCENARIOS")
    echo "$closed" | sed "s/^/$label $store $run closed /" | tee -a "$results"
    if [ "$OPEN_LOOP" = 1 ]; then
        for scenario in ${OPEN_LOOP_SCENARIOS//,/ }; do
            local rate
            rate=$(echo "$closed" | python3 -c "
import json, sys
for line in sys.stdin:
    r = json.loads(line)
    if r['scenario'] == '$scenario' and r.get('rps'):
        print(int(r['rps'] * 0.7))")
            [ -n "$rate" ] || continue
            bench --scenarios "$scenario" --rate "$rate" |
                sed "s/^/$label $store $run open /" | tee -a "$results"
        done
    fi
    kill $server
    wait $server 2>/dev/null || true
}

for run in $(seq 1 "$RUNS"); do
    for entry in $BINS; do
        for store in ${STORES:-sqlite postgres}; do
            # Only the first build runs on SQLite (see above) unless asked.
            if [ "$store" = sqlite ] && [ "$entry" != "${BINS%% *}" ] && [ -z "${STORES:-}" ]; then
                continue
            fi
            run_once "${entry%%=*}" "${entry#*=}" "$store" "$run"
        done
    done
done
echo "== medians of $RUNS runs: build store mode scenario req/s p50_ms p99_ms db/req"
python3 - "$results" <<'PY'
import json, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    label, store, run, mode, payload = line.split(' ', 4)
    r = json.loads(payload)
    rows.setdefault((label, store, mode, r['scenario']), []).append(r)
for (label, store, mode, scenario), runs in sorted(rows.items()):
    med = lambda k: statistics.median(x.get(k) or 0 for x in runs)
    print(f"{label:5} {store:9} {mode:6} {scenario:20} {med('rps'):>9.0f} "
          f"{med('p50_ms'):>7.2f} {med('p99_ms'):>7.2f} {med('db_per_req'):>5.2f}")
PY
