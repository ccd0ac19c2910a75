#!/usr/bin/env bash
# `prewarm register --on-restore SIGNAL` through a foreground prewarmd: restores are clones (two
# restored launches of a python app draw the same random number), and the app's SIGUSR1 handler,
# run after each restore, makes them differ.
# Usage: on_restore.sh BIN_DIR SOURCE_DIR
. "$(dirname "$0")/../lib/prelude.sh"
BIN=$(realpath "$1")
SRC=$(realpath "$2")
[ "$(id -u)" -eq 0 ] || skip "needs root (prewarmd ptraces the app)"
. "$(dirname "$0")/../lib/daemon.sh"
start_daemon
cleanup end_daemon
APP=$SRC/tests/progs/reseed.py

# draw APP: one launch that gets its line once settled; prints "random=... reseeded=N".
draw() {
  local before
  before=$(launch_count "$1")
  (feed "$1" "$before" go) | "$P" run "$1" 2>>"$SCRATCH/run.err" | grep '^random='
}

for app in plain reseeding; do
  step "$app: cold launch, captured once idle"
  extra=()
  [ "$app" = reseeding ] && extra=(--on-restore SIGUSR1)
  "$P" register "$app" --ready idle:300 "${extra[@]}" -- /usr/bin/python3 "$APP" >/dev/null
  draw "$app" >/dev/null
  wait_for 60 state_is "$app" valid
done

step "without --on-restore, two restores are clones"
a=$(draw plain); b=$(draw plain)
[ "$(last plain mode)" = restored ] || fail "plain launch not restored"
[ "$a" = "$b" ] || fail "two restores differ without --on-restore: $a / $b"
case "$a" in *reseeded=0) ;; *) fail "handler ran without --on-restore: $a" ;; esac

step "with --on-restore SIGUSR1, each restore reseeds first"
a=$(draw reseeding); b=$(draw reseeding)
[ "$(last reseeding mode)" = restored ] || fail "reseeding launch not restored: $(cat "$SCRATCH/run.err")"
[ "$a" != "$b" ] || fail "two restores with --on-restore drew the same number: $a"
case "$a$b" in *reseeded=1*reseeded=1) ;; *) fail "handler did not run once per restore: $a / $b" ;; esac

step "a signal that is not catchable is refused at register"
rc=0
"$P" register bad --on-restore SIGKILL -- /usr/bin/python3 "$APP" >/dev/null 2>"$SCRATCH/bad.err" || rc=$?
[ "$rc" -eq 2 ] || fail "register --on-restore SIGKILL: exit $rc, not 2"
has "not a signal an app can catch" < "$SCRATCH/bad.err" || fail "no reason given: $(cat "$SCRATCH/bad.err")"
echo "on_restore: PASS"
