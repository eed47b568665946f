#!/usr/bin/env bash
# Screenshots of the console, to look at it (docs/console/*.png): starts a
# fresh keyward, makes a person and a few clients, signs in, and has headless
# Chromium (Debian's `chromium`) take the sign-in and clients pages at
# 1280x800 and 390x844. Chromium takes no cookie on its command line, so a
# tiny local proxy adds the session cookie to each request it passes on.
#
#   scripts/console-screenshots.sh [OUT_DIR]   # default docs/console
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-docs/console}"
mkdir -p "$OUT"
BIN="${KEYWARD_BIN:-target/debug/keyward}"
[ -x "$BIN" ] || cargo build --bin keyward
WORK="$(mktemp -d "${TMPDIR:-/tmp}/keyward-shots.XXXXXX")"
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
PORT="$(free_port)"; PROXY_PORT="$(free_port)"
BASE="http://127.0.0.1:$PORT"
export KEYWARD_BIND="127.0.0.1:$PORT" KEYWARD_DATA_DIR="$WORK/data" KEYWARD_KEYS_DIR="$WORK/keys"
unset KEYWARD_DATABASE_URL KEYWARD_ISSUER
mkdir -p "$WORK/data" "$WORK/keys"
RUST_LOG=warn "$BIN" serve >"$WORK/server.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do curl -fs "$BASE/healthz" >/dev/null 2>&1 && [ -f "$WORK/data/bootstrap-admin.json" ] && break; sleep 0.3; done

PASSWORD="a long demo password"
echo "$PASSWORD" | "$BIN" user create --email ada@example.com --name "Ada Lovelace" --role admin --password-stdin >/dev/null
ADMIN_TOKEN="$(python3 - "$BASE" "$WORK/data/bootstrap-admin.json" <<'PY'
import base64, json, sys, urllib.request
base, path = sys.argv[1], sys.argv[2]
creds = json.load(open(path))
basic = base64.b64encode(f"{creds['client_id']}:{creds['client_secret']}".encode()).decode()
req = urllib.request.Request(base + "/oauth/token", data=b"grant_type=client_credentials",
    headers={"Authorization": "Basic " + basic, "Content-Type": "application/x-www-form-urlencoded"})
print(json.load(urllib.request.urlopen(req))["access_token"])
PY
)"
client() {
    curl -fs -X POST "$BASE/admin/v1/clients" -H "Authorization: Bearer $ADMIN_TOKEN" \
        -H "Content-Type: application/json" -d "$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["client_id"])'
}
client '{"name": "billing-sync", "role": "reader", "expires_in": "1y"}' >/dev/null
client '{"name": "warehouse-scanner-04", "role": "reader", "expires_in": 259200}' >/dev/null
client '{"name": "metrics-exporter", "role": "reader"}' >/dev/null
client '{"name": "provisioning-bot", "role": "admin", "expires_in": "3m"}' >/dev/null
OLD="$(client '{"name": "legacy-printer", "role": "reader"}')"
curl -fs -X POST "$BASE/admin/v1/clients/$OLD/disable" -H "Authorization: Bearer $ADMIN_TOKEN" >/dev/null

COOKIE="$(curl -s -o /dev/null -D - -X POST "$BASE/console/sign-in" \
    --data-urlencode "email=ada@example.com" --data-urlencode "password=$PASSWORD" \
    | tr -d '\r' | sed -n 's/^[Ss]et-[Cc]ookie: \([^;]*\).*/\1/p')"
[ -n "$COOKIE" ] || { echo "no session cookie" >&2; exit 1; }

# The proxy: GET only, the cookie added.
python3 - "$PROXY_PORT" "$BASE" "$COOKIE" <<'PY' &
import http.server, sys, urllib.request
port, base, cookie = int(sys.argv[1]), sys.argv[2], sys.argv[3]
class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *a, **k): return None
opener = urllib.request.build_opener(NoRedirect)
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        req = urllib.request.Request(base + self.path, headers={"Cookie": cookie, "Accept": "text/html"})
        try:
            r = opener.open(req)
        except urllib.error.HTTPError as e:
            r = e
        body = r.read()
        self.send_response(r.status)
        for k, v in r.headers.items():
            if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
PY
PIDS+=($!)
sleep 1
PROXY="http://127.0.0.1:$PROXY_PORT"

shot() { # name url width height
    chromium --headless --disable-gpu --no-sandbox --hide-scrollbars --user-data-dir="$WORK/chromium" \
        --screenshot="$OUT/$1.png" --window-size="$3,$4" "$2" >/dev/null 2>&1
    echo "$OUT/$1.png"
}
shot sign-in-1280 "$BASE/console/sign-in" 1280 800
shot sign-in-390 "$BASE/console/sign-in" 390 844
shot clients-1280 "$PROXY/console" 1280 800
shot clients-390 "$PROXY/console" 390 844
