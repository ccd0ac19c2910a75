#!/usr/bin/env bash
# The README's main command: install, build, start prewarmd in the foreground, register a real app
# (python3 importing sympy and numpy, ready via READY=1), launch it cold (prewarmd snapshots it once
# ready), then launch it restored, and print both times to ready as prewarmd measured them.
set -eu
cd "$(dirname "$0")/.."
./.ci/install-deps
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" >/dev/null
bin=$PWD/build/prewarmd
work=$(mktemp -d /tmp/prewarm-demo.XXXXXX)
export PREWARM_RUNTIME_DIR=$work/run PREWARM_STATE_DIR=$work/state
# The app should start with only stdio, as under systemd: descriptors this shell inherited would
# otherwise be inherited by it (prewarm refuses pipes and sockets other than stdio).
for fd in $(ls /proc/$$/fd); do
  [ "$fd" -gt 2 ] && eval "exec $fd>&-" 2>/dev/null || true
done

echo "== prewarmd in the foreground (state in $work)"
"$bin/prewarmd" --runtime-dir "$PREWARM_RUNTIME_DIR" --state-dir "$PREWARM_STATE_DIR" </dev/null >"$work/prewarmd.log" 2>&1 &
daemon=$!
trap 'kill $daemon 2>/dev/null; wait $daemon 2>/dev/null; rm -rf "$work"' EXIT
until "$bin/prewarm" list >/dev/null 2>&1; do sleep 0.05; done

cd bench/progs
"$bin/prewarm" register calc --ready notify -- /usr/bin/python3 calc.py
state() { "$bin/prewarm" list --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["apps"][0]["state"])'; }
last_ready() {
  "$bin/prewarm" stats calc --json | python3 -c '
import json, sys
r = json.load(sys.stdin)["apps"][0]["recent"][-1]
print("%s launch, ready after %.1f ms" % (r["mode"], r["ready_ms"]))'
}
ready_known() { "$bin/prewarm" stats calc --json | python3 -c 'import json,sys; sys.exit(json.load(sys.stdin)["apps"][0]["recent"][-1]["ready_ms"] is None)'; }
launch() {  # one launch that answers $1, given on stdin once the app is up and captured
  (sleep 0.3; until ready_known && [ "$(state)" != capturing ]; do sleep 0.05; done; echo "$1") |
    "$bin/prewarm" run calc | grep '^answer' | sed 's/^/   /'
  echo "   $(last_ready)"
}

echo "== prewarm run calc   (no snapshot yet: cold start; prewarmd captures it when it sends READY=1)"
launch 360
until [ "$(state)" = valid ]; do sleep 0.1; done
for n in 1 2 3; do
  echo "== prewarm run calc   (restored from the snapshot, same pid as the launcher, new input)"
  launch $((1000 + n))
done
echo "== prewarm list; prewarm stats"
"$bin/prewarm" list
"$bin/prewarm" stats
url=$(cat "$PREWARM_RUNTIME_DIR/dashboard" 2>/dev/null || true)
if [ -n "$url" ]; then
  echo "== the dashboard: ${url}app/calc   (/metrics, a few of its lines:)"
  /usr/bin/python3 -c 'import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1]).read().decode())' "${url}metrics" |
    grep -E '^prewarm_(launches_total|time_to_ready_seconds_count|cache_bytes)' | sed 's/^/   /'
  # prewarmd stays up so the dashboard can be looked at; the state dir goes with it.
  trap - EXIT
  echo "== prewarmd (pid $daemon) keeps serving it; stop it with: kill $daemon; rm -rf $work"
else
  echo "== no dashboard: $(grep -m1 dashboard "$work/prewarmd.log" || echo 'see '"$work/prewarmd.log")"
fi
