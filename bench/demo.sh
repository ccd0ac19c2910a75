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
"$bin/prewarmd" --runtime-dir "$PREWARM_RUNTIME_DIR" --state-dir "$PREWARM_STATE_DIR" 2>"$work/prewarmd.log" &
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
launch() {  # one launch that answers $1, read from stdin once it is up
  (sleep "$2"; echo "$1") | "$bin/prewarm" run calc | grep '^answer' | sed 's/^/   /'
  until [ "$("$bin/prewarm" stats calc --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["apps"][0]["recent"][-1]["ready_ms"] >= 0)')" = True ]; do sleep 0.05; done
  echo "   $(last_ready)"
}

echo "== prewarm run calc   (no snapshot yet: cold start; prewarmd captures it when it sends READY=1)"
launch 360 1.5
until [ "$(state)" = valid ]; do sleep 0.1; done
for n in 1 2 3; do
  echo "== prewarm run calc   (restored from the snapshot, same pid as the launcher, new input)"
  launch $((1000 + n)) 0.3
done
echo "== prewarm list; prewarm stats"
"$bin/prewarm" list
"$bin/prewarm" stats
