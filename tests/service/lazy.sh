#!/usr/bin/env bash
# `prewarm run NAME --lazy` through a foreground prewarmd: a root app restored lazily; a user's
# app, launched by root or by the user, lazy only if that user could make a userfaultfd that
# serves kernel faults (root never hands one over: vm.unprivileged_userfaultfd=0 withholds it),
# else eager, saying why.
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
cold_root=$cold
wait_for 60 state_is calc valid
a=$(lazy_run calc 360)
[ "$(last calc mode)" = restored ] || fail "not restored: $(cat "$SCRATCH/lazy.err")"
[ "${a#answer pid=* }" = "${cold#answer pid=* }" ] || fail "lazy answer differs: $a vs $cold"
has "left to the page server" < "$SCRATCH/lazy.err" || fail "not restored lazily: $(cat "$SCRATCH/lazy.err")"

# lazy_as_user_can: lazy if nobody can make such a userfaultfd here, else eager with the reason.
lazy_as_user_can() {
  if as_nobody "$P" check --json | python3 -c 'import json,sys; sys.exit(0 if [c for c in json.load(sys.stdin)["checks"] if c["name"] == "userfaultfd"][0]["value"].get("lazy_restore") else 1)' 2>/dev/null; then
    has "left to the page server" < "$SCRATCH/lazy.err" || fail "not lazy although check says it works: $(cat "$SCRATCH/lazy.err")"
  else
    has "lazy restore unavailable" < "$SCRATCH/lazy.err" || fail "no reason for the eager restore: $(cat "$SCRATCH/lazy.err")"
  fi
}

step "a user's app launched by root: root's userfaultfd is not handed over"
as_nobody "$P" register mine --ready notify -- /usr/bin/python3 "$SCRATCH/calc.py" >/dev/null
cold=$(run_calc mine 36 as_nobody)
wait_for 60 state_is mine valid
before=$(launch_count mine)
a=$( (feed mine "$before" 36) | "$P" run nobody/mine --lazy 2>"$SCRATCH/lazy.err" | grep '^answer')
[ "$(last mine mode)" = restored ] || fail "not restored: $(cat "$SCRATCH/lazy.err")"
[ "${a#answer pid=* }" = "${cold#answer pid=* }" ] || fail "answer differs: $a vs $cold"
lazy_as_user_can

step "the user's own launch: lazy only with a userfaultfd that serves every fault"
a=$(lazy_run mine 36 as_nobody)
[ "$(last mine mode)" = restored ] || fail "not restored: $(cat "$SCRATCH/lazy.err")"
[ "${a#answer pid=* }" = "${cold#answer pid=* }" ] || fail "answer differs: $a vs $cold"
lazy_as_user_can

step "a bad page found lazily: the app is killed, the image quarantined, the next launch cold"
img=$(grep -l '"uid": 0\b' "$PREWARM_STATE_DIR"/store/*/meta.json | sed -n 1p | xargs -r dirname)
[ -n "$img" ] || fail "no image of root's app in the store"
off=$(/usr/bin/python3 "$SRC/tests/lib/lazy_run_offset.py" "$SRC/snapshot/snapshot.proto" "$img")
/usr/bin/python3 -c 'import sys; f=open(sys.argv[1],"r+b"); f.seek(int(sys.argv[2])); b=f.read(1); f.seek(int(sys.argv[2])); f.write(bytes([b[0]^0x40]))' "$img/pages.img" "$off"
rc=0
# stdout a pipe, as in the launches that made the image (the snapshot key covers stdio kinds);
# no feed: the app may be killed before it is ready
echo 360 | "$P" run calc --lazy 2>"$SCRATCH/lazy.err" | cat >"$SCRATCH/bad.out" || rc=$?
[ "$rc" = 125 ] || fail "lazy launch of a bad image: exit $rc, not 125: $(cat "$SCRATCH/lazy.err")"
has "checksum mismatch" < "$SCRATCH/lazy.err" || fail "no reason on stderr: $(cat "$SCRATCH/lazy.err")"
has '^answer' < "$SCRATCH/bad.out" && fail "the app answered from a bad image"
wait_for 10 sh -c "! [ -e '$img' ]" || fail "the bad image is still in the store"
has "lazy restore killed the app" < "$SCRATCH/prewarmd.log" || fail "prewarmd logged nothing"
a=$(run_calc calc 360)
[ "$(last calc mode)" = cold ] || fail "the launch after the bad image was not cold"
[ "${a#answer pid=* }" = "${cold_root#answer pid=* }" ] || fail "cold answer differs: $a"
echo "lazy: PASS"
