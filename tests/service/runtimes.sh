#!/usr/bin/env bash
# Multi-threaded runtimes through prewarmd: node (libuv, its worker threads), an OpenJDK
# program (JIT, GC and a thread pool), a Go program (goroutines preempted by signals) and
# python3 + numpy on OpenBLAS's threads. Each is registered, launched cold and captured, then
# launched again and restored, with the cold launch's answer (tests/apps: runtime_app.js,
# RuntimeApp.java, go_app.go, blas_app.py).
# Usage: runtimes.sh BIN_DIR SOURCE_DIR JAVA_CLASS_DIR [GO_APP]
. "$(dirname "$0")/../lib/prelude.sh"
BIN=$(realpath "$1")
SRC=$(realpath "$2")
CLASSES=${3:-}
GO_APP=${4:-}
[ "$(id -u)" -eq 0 ] || skip "needs root (prewarmd ptraces the app)"
[ -x /usr/bin/node ] || skip "no /usr/bin/node (.ci/install-deps installs nodejs)"
. "$(dirname "$0")/../lib/daemon.sh"
start_daemon
cleanup end_daemon

# hang_report PID: what a launch that does not end is doing, thread by thread.
hang_report() {
  local t
  echo "launch $1 still running after ${LAUNCH_LIMIT}s:"
  for t in /proc/"$1"/task/*; do
    echo "  tid ${t##*/} $(cat "$t/comm" 2>/dev/null) state=$(awk '{print $3}' "$t/stat" 2>/dev/null)" \
      "wchan=$(cat "$t/wchan" 2>/dev/null) syscall=$(cat "$t/syscall" 2>/dev/null | cut -d' ' -f1-3)"
  done
  echo "prewarm list: $("$P" list 2>&1 | tail -3)"
  echo "prewarmd.log:"; tail -15 "$SCRATCH/prewarmd.log"
}
# launch APP N: one launch given "N" on stdin once it settled; prints its answer line. A launch
# that does not end within LAUNCH_LIMIT seconds fails the test with what its threads were doing
# (a restored runtime that deadlocks must not hang the suite until ctest's timeout).
LAUNCH_LIMIT=240
launch() {
  local before pid end
  before=$(launch_count "$1")
  (feed "$1" "$before" "$2") | "$P" run "$1" >"$SCRATCH/launch.out" 2>>"$SCRATCH/run.err" &
  pid=$!  # the last element of the pipeline: prewarm run, which becomes the app
  end=$((SECONDS + LAUNCH_LIMIT))
  while kill -0 "$pid" 2>/dev/null; do
    if [ "$SECONDS" -ge "$end" ]; then
      hang_report "$pid" >&2
      kill -KILL "$pid" 2>/dev/null || true
      fail "$1: launch did not end"
    fi
    sleep 0.2
  done
  wait %% || true  # the whole pipeline, feed too, as a pipeline in the foreground would
  grep '^answer=' "$SCRATCH/launch.out" || true
}

# cold_then_restored APP EXPECTED: the first launch is cold and captured, the second restored.
cold_then_restored() {
  local a
  a=$(launch "$1" 12345)
  [ "$a" = "$2" ] || fail "$1 cold answer: '$a' $(tail -5 "$SCRATCH/run.err")"
  [ "$(last "$1" mode)" = cold ] || fail "$1: first launch not cold"
  wait_for 90 state_is "$1" valid || fail "$1 not captured: $(field "$1" state) $(field "$1" reason) $(tail -5 "$SCRATCH/prewarmd.log")"
  a=$(launch "$1" 12345)
  [ "$a" = "$2" ] || fail "$1 restored answer: '$a' $(tail -5 "$SCRATCH/run.err")"
  [ "$(last "$1" mode)" = restored ] || fail "$1: second launch not restored: $(last "$1" mode) $(last "$1" fallback_reason 2>/dev/null)"
}

step "node: cold and captured, then restored"
# Its interval timer keeps it from ever being idle: a fixed delay after its start.
"$P" register node-app --ready delay:2000 -- /usr/bin/node "$SRC/tests/apps/runtime_app.js" >/dev/null
cold_then_restored node-app "answer=8cb2 gz=true ticking=true"

if [ -n "$CLASSES" ] && [ -f "$CLASSES/RuntimeApp.class" ]; then
  step "OpenJDK: cold and captured, then restored"
  "$P" register jvm-app --ready delay:3000 -- /usr/bin/java -XX:-UsePerfData -cp "$CLASSES" RuntimeApp >/dev/null
  cold_then_restored jvm-app "answer=8cb2 threads=true"
else
  echo "no compiled RuntimeApp (no JDK at build time): the OpenJDK step is not run"
fi
if [ -n "$GO_APP" ] && [ -x "$GO_APP" ]; then
  step "Go: cold and captured, then restored (its runtime's thread ids rewritten)"
  # Its ticker goroutine keeps it from being idle; its answer needs goroutine preemption.
  "$P" register go-app --ready delay:1500 -- "$GO_APP" >/dev/null
  cold_then_restored go-app "answer=8cb2 spun=1 gc=true"
else
  echo "no Go app (no Go toolchain at build time): the Go step is not run"
fi
OPENBLAS=/usr/lib/x86_64-linux-gnu/openblas-pthread
if [ -f "$OPENBLAS/libblas.so.3" ] && /usr/bin/python3 -c "import numpy" 2>/dev/null; then
  step "python3 + numpy on OpenBLAS threads: cold and captured, then restored"
  # The launch's environment is the app's: prewarm run's own picks the threaded BLAS.
  "$P" register blas-app --ready delay:2500 -- /usr/bin/python3 "$SRC/tests/apps/blas_app.py" >/dev/null
  LD_LIBRARY_PATH=$OPENBLAS OPENBLAS_NUM_THREADS=2 cold_then_restored blas-app "answer=-39950486601741 threads=True"
else
  echo "no libopenblas0-pthread or numpy for /usr/bin/python3: the OpenBLAS step is not run"
fi
"$P" list
echo "runtimes: PASS"
