#!/usr/bin/env bash
# The token endpoint while retention purges (issue 12): p99 of token_basic
# with N expired clients in the store, without a purge and with `keyward
# purge` removing them during the measured window, RUNS times each.
# RATE=N measures open loop at N requests/s. INTERLEAVE=S: see below.
# Needs PostgreSQL on 127.0.0.1:5432 and a release build:
#   cargo build --release && cargo bench --bench load --no-run
#   N=100000 RUNS=3 bash scripts/purge-bench.sh
#   N=100000 RUNS=3 SECONDS_MEASURED=300 RATE=20000 INTERLEAVE=10 bash scripts/purge-bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-100000}
RUNS=${RUNS:-3}
SECONDS_MEASURED=${SECONDS_MEASURED:-20}
DB=keyward_purge_bench
export KEYWARD_DATABASE_URL="postgres://postgres@127.0.0.1:5432/$DB"
export KEYWARD_BIND=127.0.0.1:8090
export KEYWARD_DATA_DIR KEYWARD_KEYS_DIR
KEYWARD_DATA_DIR=$(mktemp -d)
KEYWARD_KEYS_DIR=$(mktemp -d)
export RUST_LOG=warn
BIN=target/release/keyward

psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS $DB" >/dev/null
psql -h 127.0.0.1 -U postgres -qc "CREATE DATABASE $DB" >/dev/null
"$BIN" serve > "$KEYWARD_DATA_DIR/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
    curl -sf "http://$KEYWARD_BIND/healthz" >/dev/null && break
    sleep 0.2
done

insert_expired() {
    # (After the insert, VACUUM ANALYZE, for the same reason as below.)
    psql "$KEYWARD_DATABASE_URL" -qc "
      INSERT INTO clients (client_id, kind, name, tenant_id, role, scopes, status,
        expires_at, can_renew, allowed_ips, access_token_ttl, token_lifetime,
        audience, metadata, created_at, updated_at, version)
      SELECT 'kwc_p' || lpad(g::text, 19, '0'), 'client_credentials', 'expired-' || g,
        (SELECT id FROM tenants WHERE parent_id IS NULL), 'reader', 'read', 'active',
        extract(epoch FROM now())::bigint - 40 * 86400, false, '[]', 3600, 2592000,
        '[]', '{}', 0, 0, 1
      FROM generate_series(1, $N) g
      ON CONFLICT (client_id) DO NOTHING" >/dev/null
    settle
}

# After a mass insert or delete: VACUUM ANALYZE (so autovacuum does not start
# during a measurement), then CHECKPOINT and sync, so that PostgreSQL's and
# the kernel's writing back of what changed does not either. Without this,
# the window measured first after the insert of 100,000 rows took the
# write-back: p99 240 ms and 44 ms in 60-second windows with no purge at all.
settle() {
    psql "$KEYWARD_DATABASE_URL" -qc "VACUUM ANALYZE" >/dev/null
    psql "$KEYWARD_DATABASE_URL" -qc "CHECKPOINT" >/dev/null
    sync
    sleep 2
}

# RATE=N: open loop at N requests/s (latency from each request's intended
# send time); unset: closed loop, as fast as the server answers.
measure() {
    cargo bench --quiet --bench load -- --url "http://$KEYWARD_BIND" --clients 1 \
        --scenarios token_basic --duration "$SECONDS_MEASURED" ${RATE:+--rate "$RATE"} 2>/dev/null |
        grep '^RESULT' | sed 's/^RESULT //'
}

# A purge killed mid-way leaves its lease to lapse (60 s); the next run's
# purge would find it held and leave. The script killed it, so it frees it.
release_lease() {
    psql "$KEYWARD_DATABASE_URL" -qc "UPDATE leases SET expires_at = 0" >/dev/null
}

count_expired() {
    psql "$KEYWARD_DATABASE_URL" -qtAc "SELECT count(*) FROM clients WHERE name LIKE 'expired-%'"
}

# INTERLEAVE=S: instead, RUNS long windows (SECONDS_MEASURED each), each
# with one purge that the load bench pauses (SIGSTOP) and resumes (SIGCONT)
# every S seconds (--alternate): p99 pooled over every request sent while
# the purge ran, against every request sent while it was paused, in the
# same window. Both sides then share the same server, store and minutes of
# the machine, which separate windows do not: over separate windows one
# stall of the machine decides a side's p99. The backlog is topped up to N
# before each run. GUARD_MS (500): requests intended this soon after a
# switch count for neither side.
if [ -n "${INTERLEAVE:-}" ]; then
    results=$(mktemp)
    for run in $(seq 1 "$RUNS"); do
        insert_expired
        "$BIN" purge > /dev/null 2> "$KEYWARD_DATA_DIR/purge.log" &
        purge=$!
        kill -STOP $purge
        before=$(count_expired)
        cargo bench --quiet --bench load -- --url "http://$KEYWARD_BIND" --clients 1 \
            --scenarios token_basic --duration "$SECONDS_MEASURED" ${RATE:+--rate "$RATE"} \
            --alternate $purge --alternate-every "$INTERLEAVE" \
            --alternate-guard-ms "${GUARD_MS:-500}" 2>/dev/null |
            grep '^RESULT' | sed 's/^RESULT //' | tee -a "$results"
        kill -CONT $purge 2>/dev/null || true
        kill $purge 2>/dev/null || true
        wait $purge 2>/dev/null || true
        release_lease
        echo "run $run: the purge removed $((before - $(count_expired))) clients"
    done
    python3 - "$results" <<'PY'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
for i, r in enumerate(runs, 1):
    a = r["alternate"]
    p, q = a["paused"], a["running"]
    print(f"run {i}: {r['requests']} requests, {r['errors']} errors, {r['unsent']} unsent; "
          f"purge paused / running: {p['requests']} / {q['requests']} requests, "
          f"p50 {p['p50_ms']} / {q['p50_ms']}, p99 {p['p99_ms']} / {q['p99_ms']} "
          f"({a['p99_change_pct']:+.1f} %), p99.9 {p['p999_ms']} / {q['p999_ms']} ms")
alts = [r["alternate"] for r in runs]
med = lambda side, k: statistics.median(a[side][k] for a in alts)
print(f"== medians of {len(alts)} runs, purge paused / running: "
      f"p50 {med('paused', 'p50_ms'):.2f} / {med('running', 'p50_ms'):.2f} ms, "
      f"p99 {med('paused', 'p99_ms'):.2f} / {med('running', 'p99_ms'):.2f} ms, "
      f"p99.9 {med('paused', 'p999_ms'):.2f} / {med('running', 'p999_ms'):.2f} ms; "
      f"median p99 change {statistics.median(a['p99_change_pct'] for a in alts):+.1f} %")
PY
    exit 0
fi

# A purge paces itself (about 0.2 % of the time), so a backlog of N takes
# hours: the window with the purge is measured while it runs, then
# the purge is stopped and the rest removed directly. Odd runs measure
# without the purge first, even runs with it first, so that neither side
# always has the fresher server or store.
results=$(mktemp)
without() {
    echo "run $run without purge: $(measure)" | tee -a "$results"
}
with() {
    "$BIN" purge > /dev/null 2> "$KEYWARD_DATA_DIR/purge.log" &
    purge=$!
    before=$(count_expired)
    echo "run $run with purge:    $(measure)" | tee -a "$results"
    after=$(count_expired)
    kill $purge 2>/dev/null || true
    wait $purge 2>/dev/null || true
    release_lease
    echo "run $run: the purge removed $((before - after)) clients during the measured window"
    psql "$KEYWARD_DATABASE_URL" -qc "DELETE FROM clients WHERE name LIKE 'expired-%'" >/dev/null
    settle
}
for run in $(seq 1 "$RUNS"); do
    insert_expired
    if [ $((run % 2)) = 1 ]; then
        without
        with
    else
        with
        insert_expired
        without
        psql "$KEYWARD_DATABASE_URL" -qc "DELETE FROM clients WHERE name LIKE 'expired-%'" >/dev/null
        settle
    fi
done
echo "== medians of $RUNS runs: p50_ms p99_ms p99.9_ms"
python3 - "$results" <<'PY'
import json, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    head, payload = line.split(": ", 1)
    rows.setdefault("with" if "with purge" in head else "without", []).append(json.loads(payload))
for side in ("without", "with"):
    runs = rows.get(side, [])
    med = lambda k: statistics.median(r[k] for r in runs)
    print(f"{side:8} p50 {med('p50_ms'):.2f}  p99 {med('p99_ms'):.2f}  p99.9 {med('p999_ms'):.2f}"
          f"  (p99 of each run: {', '.join(str(r['p99_ms']) for r in runs)})")
PY
