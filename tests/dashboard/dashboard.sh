#!/usr/bin/env bash
# The dashboard end to end: a real app launched cold (captured) and then restored through a
# foreground prewarmd, its launches in the history with the restore's phases, /metrics counting
# them, another local user seeing none of it, and the app's page loaded in headless Chromium with
# both series plotted.
# Usage: dashboard.sh BIN_DIR SOURCE_DIR
. "$(dirname "$0")/../lib/prelude.sh"
BIN=$(realpath "$1")
SRC=$(realpath "$2")
. "$(dirname "$0")/../lib/daemon.sh"
[ -x /usr/bin/chromium ] || fail "no /usr/bin/chromium (.ci/install-deps installs Debian's chromium)"
start_daemon
cleanup end_daemon
get() { /usr/bin/python3 -c 'import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=10).read().decode())' "$URL${1#/}"; }

step "the dashboard's address is published and it serves on loopback"
wait_for 10 test -s "$PREWARM_RUNTIME_DIR/dashboard"
URL=$(cat "$PREWARM_RUNTIME_DIR/dashboard")
case "$URL" in http://127.0.0.1:*/) ;; *) fail "dashboard not on loopback: $URL" ;; esac
get / | has '<html' || fail "no overview page"

step "the dashboard and the list/stats queries are served from threads of their own, run only when launches leave a CPU idle"
for name in prewarmd-http prewarmd-query; do
  t=$(grep -l -x "$name" /proc/"$DAEMON"/task/*/comm | head -1) || fail "no thread named $name in prewarmd"
  t=${t%/comm}
  policy=$(chrt -p "${t##*/}") || fail "chrt -p ${t##*/} ($name) failed"
  has SCHED_IDLE <<<"$policy" || fail "$name is not SCHED_IDLE: $policy"
done
has SCHED_OTHER <<<"$(chrt -p "$DAEMON")" || fail "prewarmd's loop is not SCHED_OTHER: $(chrt -p "$DAEMON")"

step "one cold launch (captured) and one restored launch of a real app"
cd "$SRC/bench/progs"
"$P" register calc --ready notify -- /usr/bin/python3 calc.py >/dev/null
run_calc calc 360 >/dev/null || fail "cold launch did not answer"
wait_for 60 state_is calc valid
run_calc calc 1001 >/dev/null || fail "restored launch did not answer"
[ "$(last calc mode)" = restored ] || fail "second launch was not restored"
wait_for 10 ready_known calc

step "the history has both launches; the restore's phases add up to its time to ready"
get /api/apps/calc > "$SCRATCH/calc.json"
/usr/bin/python3 - "$SCRATCH/calc.json" <<'EOF' || fail "API data: $(cat "$SCRATCH/calc.json")"
import json, sys
d = json.load(open(sys.argv[1]))
cold = [l for l in d["launches"] if l["mode"] == "cold"]
rest = [l for l in d["launches"] if l["mode"] == "restored"]
assert len(cold) == 1 and len(rest) == 1, d["launches"]
assert cold[0]["ready_ms"] > 0 and cold[0]["phases"] is None, cold[0]
r = rest[0]
p = r["phases"]
assert p and all(p[k] >= 0 for k in ("validate_ms", "read_ms", "map_ms", "resume_ms")), r
assert abs(sum(p.values()) - r["ready_ms"]) < 0.01, r  # phases partition the time to ready
assert r["bytes_read"] > 1 << 20, r
assert len(d["snapshots"]) == 1 and d["snapshots"][0]["ok"] and d["snapshots"][0]["image_bytes"] > 0, d["snapshots"]
assert d["app"]["launches"] == {"cold": 1, "restored": 1, "fallbacks": 0, "failed": 0}, d["app"]
EOF

step "/metrics counts them"
get /metrics > "$SCRATCH/metrics"
grep -qx 'prewarm_launches_total{app="calc",mode="cold"} 1' "$SCRATCH/metrics" || fail "cold counter: $(grep launches_total "$SCRATCH/metrics")"
grep -qx 'prewarm_launches_total{app="calc",mode="restored"} 1' "$SCRATCH/metrics" || fail "restored counter"
grep -qx 'prewarm_launches_total{app="calc",mode="failed"} 0' "$SCRATCH/metrics" || fail "failed counter"
grep -qx 'prewarm_time_to_ready_seconds_count{app="calc",mode="restored"} 1' "$SCRATCH/metrics" || fail "histogram count"
grep -q '^prewarm_cache_bytes [1-9]' "$SCRATCH/metrics" || fail "cache size"

step "another local user sees nothing of root's app: not listed, 404 for it, no series"
setpriv --reuid=65534 --regid=65534 --clear-groups /usr/bin/python3 - "$URL" <<'EOF' || fail "user 65534 saw root's app"
import json, sys, urllib.error, urllib.request
def get(path):
    try:
        with urllib.request.urlopen(sys.argv[1] + path, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
status, body = get("api/apps")
assert status == 200 and json.loads(body)["apps"] == [], (status, body)
status, body = get("api/apps/calc")
assert status == 404, (status, body)
status, body = get("metrics")
assert status == 200 and 'app="calc"' not in body, body
EOF

step "the app's page in headless Chromium plots the cold and the restored launch"
/usr/bin/python3 "$SRC/tests/dashboard/browser_check.py" "${URL}app/calc" "$SCRATCH/calc.png" --expect-series cold=1,restored=1 ||
  fail "the page did not plot both launches (screenshot in $SCRATCH/calc.png)"
/usr/bin/python3 "$SRC/tests/dashboard/browser_check.py" "$URL" "$SCRATCH/index.png" || fail "overview page"
echo "dashboard: PASS"
