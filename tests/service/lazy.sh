#!/usr/bin/env bash
# `prewarm run NAME --lazy` through a foreground prewarmd: a root app restored lazily, a user's
# app launched by root (the userfaultfd is made before the launcher drops to the user, so it is
# lazy too), and the user's own launch, which has no such userfaultfd here and is eager, saying why.
# Every answer is the cold one.
# Usage: lazy.sh BIN_DIR SOURCE_DIR
. "$(dirname "$0")/../lib/prelude.sh"
BIN=$(realpath "$1")
SRC=$(realpath "$2")
[ "$(id -u)" -eq 0 ] || skip "needs root (prewarmd ptraces the app)"
. "$(dirname "$0")/../lib/daemon.sh"
# The launcher says what it leaves to the page server; set for every launch, cold ones too (the
# snapshot key covers the environment).
export PREWARM_TRACE=1
as_nobody() { setpriv --reuid=65534 --regid=65534 --clear-groups "$@"; }
chmod 755 "$SCRATCH"
cp "$SRC/bench/progs/calc.py" "$SCRATCH/calc.py"
cd "$SCRATCH"
start_daemon
cleanup end_daemon

# lazy_run APP N [RUNNER...]: as run_calc, with --lazy; stderr to $SCRATCH/lazy.err.
lazy_run() {
  local app=$1 n=$2 before; shift 2
  before=$(launch_count "$app")
  (feed "$app" "$before" "$n") | "$@" "$P" run "$app" --lazy 2>"$SCRATCH/lazy.err" | grep '^answer'
}

step "root's app: cold, captured, then restored lazily with the cold answer"
"$P" register calc --ready notify -- /usr/bin/python3 "$SCRATCH/calc.py" >/dev/null
cold=$(run_calc calc 360)
wait_for 60 state_is calc valid
a=$(lazy_run calc 360)
[ "$(last calc mode)" = restored ] || fail "not restored: $(cat "$SCRATCH/lazy.err")"
[ "${a#answer pid=* }" = "${cold#answer pid=* }" ] || fail "lazy answer differs: $a vs $cold"
has "left to the page server" < "$SCRATCH/lazy.err" || fail "not restored lazily: $(cat "$SCRATCH/lazy.err")"

step "a user's app launched by root: the userfaultfd is made before the drop, so lazy"
as_nobody "$P" register mine --ready notify -- /usr/bin/python3 "$SCRATCH/calc.py" >/dev/null
cold=$(run_calc mine 36 as_nobody)
wait_for 60 state_is mine valid
before=$(launch_count mine)
a=$( (feed mine "$before" 36) | "$P" run nobody/mine --lazy 2>"$SCRATCH/lazy.err" | grep '^answer')
[ "$(last mine mode)" = restored ] || fail "not restored: $(cat "$SCRATCH/lazy.err")"
[ "${a#answer pid=* }" = "${cold#answer pid=* }" ] || fail "lazy answer differs: $a vs $cold"
has "left to the page server" < "$SCRATCH/lazy.err" || fail "root-launched restore not lazy: $(cat "$SCRATCH/lazy.err")"

step "the user's own launch: lazy only with a userfaultfd that serves every fault"
a=$(lazy_run mine 36 as_nobody)
[ "$(last mine mode)" = restored ] || fail "not restored: $(cat "$SCRATCH/lazy.err")"
[ "${a#answer pid=* }" = "${cold#answer pid=* }" ] || fail "answer differs: $a vs $cold"
if as_nobody "$P" check --json | python3 -c 'import json,sys; sys.exit(0 if [c for c in json.load(sys.stdin)["checks"] if c["name"] == "userfaultfd"][0]["value"].get("lazy_restore") else 1)' 2>/dev/null; then
  has "left to the page server" < "$SCRATCH/lazy.err" || fail "not lazy although check says it works: $(cat "$SCRATCH/lazy.err")"
else
  has "lazy restore unavailable" < "$SCRATCH/lazy.err" || fail "no reason for the eager restore: $(cat "$SCRATCH/lazy.err")"
fi
echo "lazy: PASS"
