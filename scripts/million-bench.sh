#!/usr/bin/env bash
# A million clients on one node (issue "Performance II"): the token endpoint
# with every client cached, against one client, and what that costs in
# memory and in start-up time.
#
# Once: a fresh PostgreSQL database and N bench clients (default 1,000,000),
# made by the load bench in bulk (`--seed bulk`: one client registered as the
# CLI does, the rest copies of its row with their own id, name and secret)
# and kept in a credentials file. Then RUNS times, each with a fresh
# `keyward serve` (release build) on that store:
#   - start-up: seconds from launch to /readyz 200, and to its change
#     channel up (the directory serves from memory only then);
#   - healthz and token_basic with one client (N in the store);
#   - token_basic with --clients N, a client drawn at random per request,
#     after a warm-up of one token per client (timed apart: every client
#     is a cache miss then, read from the store);
#   - the server's RSS at ready, peak (VmHWM, and VmRSS sampled every
#     second) and at the end.
# The load generator, PostgreSQL and the server share the machine's cores.
#
# Needs PostgreSQL on 127.0.0.1:5432 (trust auth) and a release build:
#   cargo build --release && cargo bench --bench load --no-run
#   RUNS=3 bash scripts/million-bench.sh
#   N=20000 RUNS=1 SECONDS_MEASURED=3 bash scripts/million-bench.sh   # a quick check
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-1000000}
RUNS=${RUNS:-3}
SECONDS_MEASURED=${SECONDS_MEASURED:-10}
DB=keyward_million_bench
export KEYWARD_DATABASE_URL="postgres://postgres@127.0.0.1:5432/$DB"
export KEYWARD_BIND=127.0.0.1:8091
export KEYWARD_DATA_DIR KEYWARD_KEYS_DIR
KEYWARD_DATA_DIR=$(mktemp -d)
KEYWARD_KEYS_DIR=$(mktemp -d)
export RUST_LOG=warn
BIN=target/release/keyward
URL="http://$KEYWARD_BIND"
CREDENTIALS="$KEYWARD_DATA_DIR/bench-credentials"

server=
sampler=
stop_server() {
    [ -n "$sampler" ] && kill "$sampler" 2>/dev/null || true
    [ -n "$server" ] && kill "$server" 2>/dev/null || true
    [ -n "$server" ] && wait "$server" 2>/dev/null || true
    server=
    sampler=
}
trap stop_server EXIT

now() { date +%s.%N; }
seconds_since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }
# A field of /proc/<server>/status in MB.
status_mb() { awk -v f="$1:" '$1 == f { printf "%.1f", $2 / 1024 }' "/proc/$server/status"; }
# A number from a RESULT line's JSON.
field() { sed -n "s/.*\"$1\":\([0-9.]*\).*/\1/p"; }

load() {
    cargo bench --quiet --bench load -- --url "$URL" "$@"
}

# Starts the server and waits for it to be ready: sets ready and live to
# the seconds to /readyz 200 and to the change channel up. Samples VmRSS
# every second into $KEYWARD_DATA_DIR/rss.
start_server() {
    local started body
    ready=
    live=
    started=$(now)
    "$BIN" serve >> "$KEYWARD_DATA_DIR/server.log" 2>&1 &
    server=$!
    : > "$KEYWARD_DATA_DIR/rss"
    (while kill -0 "$server" 2>/dev/null; do
        awk '$1 == "VmRSS:" { print $2 }' "/proc/$server/status" >> "$KEYWARD_DATA_DIR/rss" 2>/dev/null || true
        sleep 1
    done) &
    sampler=$!
    for _ in $(seq 1 3000); do
        if body=$(curl -sf "$URL/readyz" 2>/dev/null); then
            [ -z "$ready" ] && ready=$(seconds_since "$started")
            if [[ $body == *'"change_channel":"up"'* ]]; then
                live=$(seconds_since "$started")
                break
            fi
        fi
        sleep 0.01
    done
    if [ -z "$live" ]; then
        echo "the server did not become ready with its change channel up; see $KEYWARD_DATA_DIR/server.log" >&2
        exit 1
    fi
}

psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS $DB" >/dev/null
psql -h 127.0.0.1 -U postgres -qc "CREATE DATABASE $DB" >/dev/null

# The first start migrates the store and makes the root tenant and the
# bootstrap admin; the clients are made while it runs.
start_server
seed_started=$(now)
load --clients "$N" --seed bulk --credentials "$CREDENTIALS" --seed-only > /dev/null
echo "seeded $N clients in $(seconds_since "$seed_started") s (bulk)"
stop_server
psql "$KEYWARD_DATABASE_URL" -qc "VACUUM ANALYZE" >/dev/null

summary=()
for run in $(seq 1 "$RUNS"); do
    start_server
    rss_ready=$(status_mb VmRSS)
    one=$(load --clients 1 --scenarios healthz,token_basic --duration "$SECONDS_MEASURED" 2>/dev/null | grep '^RESULT')
    healthz_rps=$(grep '"scenario":"healthz"' <<< "$one" | field rps)
    one_rps=$(grep '"scenario":"token_basic"' <<< "$one" | field rps)
    many=$(load --clients "$N" --credentials "$CREDENTIALS" --scenarios token_basic \
        --duration "$SECONDS_MEASURED" 2>/dev/null | grep '^RESULT')
    many_rps=$(field rps <<< "$many")
    warmed=$(field clients_warmed_s <<< "$many")
    p50=$(field p50_ms <<< "$many")
    p99=$(field p99_ms <<< "$many")
    errors=$(field errors <<< "$many")
    rss_end=$(status_mb VmRSS)
    rss_peak=$(status_mb VmHWM)
    sampled_peak=$(sort -n "$KEYWARD_DATA_DIR/rss" | tail -1 | awk '{ printf "%.1f", $1 / 1024 }')
    ratio=$(awk -v a="$many_rps" -v b="$one_rps" 'BEGIN { printf "%.0f", 100 * a / b }')
    line="run $run: ready ${ready} s, channel up ${live} s; healthz ${healthz_rps} req/s; token_basic 1 client ${one_rps} req/s; $N clients: warm-up ${warmed} s, ${many_rps} req/s (${ratio} % of 1 client), p50 ${p50} ms, p99 ${p99} ms, ${errors} errors; RSS ${rss_ready} MB at ready, ${rss_end} MB at the end, peak ${rss_peak} MB (sampled ${sampled_peak} MB)"
    echo "$line"
    summary+=("$line")
    stop_server
done

echo
echo "$N clients, $RUNS runs, ${SECONDS_MEASURED} s measured each, $(nproc) cores shared by the load generator, PostgreSQL and the server:"
printf '%s\n' "${summary[@]}"
