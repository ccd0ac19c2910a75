#!/usr/bin/env bash
# A real runtime with kernel-object fds through prewarmd: ruby 3.1 holds two eventfds at its
# ready point. Cold launch and capture, then a restored launch that traps a signal, runs a thread
# and passes a result through a queue (tests/progs/ruby_app.rb).
# Usage: fds.sh BIN_DIR SOURCE_DIR
. "$(dirname "$0")/../lib/prelude.sh"
BIN=$(realpath "$1")
SRC=$(realpath "$2")
[ "$(id -u)" -eq 0 ] || skip "needs root (prewarmd ptraces the app)"
[ -x /usr/bin/ruby ] || skip "no /usr/bin/ruby (.ci/install-deps installs it)"
. "$(dirname "$0")/../lib/daemon.sh"
start_daemon
cleanup end_daemon

# ruby_run N: one launch given "N" on stdin once it settled; prints its answer line.
ruby_run() {
  local before
  before=$(launch_count rb)
  (feed rb "$before" "$1") | "$P" run rb 2>>"$SCRATCH/run.err" | grep '^input=' || true
}

step "register ruby, launch cold, captured once idle"
"$P" register rb --ready idle:300 -- /usr/bin/ruby "$SRC/tests/progs/ruby_app.rb" >/dev/null
a=$(ruby_run 1)
[ "$a" = "input=1 sum=2668667000 signal=usr1" ] || fail "cold answer: $a $(cat "$SCRATCH/run.err")"
[ "$(last rb mode)" = cold ] || fail "first launch not cold"
wait_for 60 state_is rb valid || fail "not captured: $(field rb state) $(field rb reason) $(tail -5 "$SCRATCH/prewarmd.log")"

step "launch again: restored, its eventfds working"
a=$(ruby_run 2)
[ "$a" = "input=2 sum=2668667000 signal=usr1" ] || fail "restored answer: $a $(cat "$SCRATCH/run.err")"
[ "$(last rb mode)" = restored ] || fail "second launch not restored: $(last rb mode)"
"$P" inspect --images "$(ls -d "$PREWARM_STATE_DIR"/store/*/)" --json | has FD_EVENTFD || fail "no eventfd in the image"
"$P" stats rb || true
echo "fds: PASS"
