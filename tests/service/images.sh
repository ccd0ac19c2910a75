#!/usr/bin/env bash
# Bad images, end to end: each kind of damage (truncated pages.img, a flipped byte in a page run,
# a snapshot.pb that does not parse, an unknown version, overlapping mappings, a mapping past the
# address space, a run past the end of pages.img, a mapping below vm.mmap_min_addr) is refused
# by `prewarm restore` with a clear message before the point of no return, and under `prewarm
# run` gives a cold start that answers and a quarantined image. Then an image whose recorded
# executable is missing or changed, and an executable replaced between prewarmd's validation
# and the restore.
# Usage: images.sh BIN_DIR SOURCE_DIR
. "$(dirname "$0")/../lib/prelude.sh"
BIN=$(realpath "$1")
SRC=$(realpath "$2")
[ "$(id -u)" -eq 0 ] || skip "needs root (ptrace of launched apps by the daemon)"
command -v strace >/dev/null || fail "strace is missing (.ci/install-deps installs it)"
. "$(dirname "$0")/../lib/daemon.sh"
start_daemon
# CONT first: the race below holds prewarmd stopped, and a stopped process ignores SIGTERM.
cleanup end_daemon
MANIFEST="/usr/bin/python3 $SRC/tests/lib/manifest.py $SRC/snapshot/snapshot.proto"

# The app: a private copy of the pattern program, so the test can replace its executable.
APP=$SCRATCH/pattern
cp "$BIN/../tests/progs/prog_pattern" "$APP"
"$P" register pat --ready idle:300 -- "$APP" >/dev/null
n=0
# launch_pat: one launch, input handed over once it settled; its answer goes to $SCRATCH/out.N.
launch_pat() {
  n=$((n + 1))
  local before; before=$(launch_count pat)
  (feed pat "$before" "in$n") | "$P" run pat >"$SCRATCH/out.$n" 2>>"$SCRATCH/run.err"
  grep -q "input=in$n\$" "$SCRATCH/out.$n" || fail "launch $n did not answer: $(cat "$SCRATCH/out.$n")"
}
# The newest quarantined image (KEY-MS; prewarmd keeps only the last few).
quarantined() { ls "$PREWARM_STATE_DIR/quarantine" | sort -t- -k2n | tail -1; }
damage() {  # damage KIND IMAGE_DIR
  case $1 in
    truncated) truncate -s -4096 "$2/pages.img" ;;
    flipped) /usr/bin/python3 -c "import sys; f=open(sys.argv[1],'r+b'); f.seek(100); b=f.read(1); f.seek(100); f.write(bytes([b[0]^0xff]))" "$2/pages.img" ;;
    garbage) printf 'not a manifest at all' >"$2/snapshot.pb" ;;
    *) $MANIFEST "$2" "$1" ;;
  esac
}

step "a cold launch is captured; the next one restores"
launch_pat
wait_for 30 state_is pat valid
launch_pat
[ "$(last pat mode)" = restored ] || fail "an intact image was not restored"
wait_for 10 ready_known pat
cp -a "$(ls -d "$PREWARM_STATE_DIR"/store/*)" "$SCRATCH/pristine"

declare -A said=(
  [truncated]="truncated or replaced"
  [flipped]="checksum mismatch"
  [garbage]="does not parse"
  [version]="format version 99 is not supported"
  [overlap]="mappings overlap"
  [beyond]="beyond the user address space"
  [past_end]="past the end of pages.img"
  [below_min]="outside the user address range"
)
kinds="truncated flipped garbage version overlap beyond past_end below_min"
# below_min puts a mapping at address 0, which is below vm.mmap_min_addr only where that is not
# 0 (root may then map page 0, and restoring it there is right).
if [ "$(cat /proc/sys/vm/mmap_min_addr)" = 0 ]; then
  echo "   below_min not tried: vm.mmap_min_addr is 0 here, so nothing is below it"
  kinds=${kinds% below_min}
fi
for kind in $kinds; do
  step "$kind: refused by prewarm restore, cold start and quarantine under prewarm run"
  rm -rf "$SCRATCH/try"
  cp -a "$SCRATCH/pristine" "$SCRATCH/try"
  damage "$kind" "$SCRATCH/try"
  rc=0
  echo x | "$P" restore --images "$SCRATCH/try" >"$SCRATCH/restore.out" 2>"$SCRATCH/restore.err" || rc=$?
  [ "$rc" = 1 ] || fail "$kind: prewarm restore exited $rc (125 would mean past the point of no return): $(cat "$SCRATCH/restore.err")"
  grep -q "${said[$kind]}" "$SCRATCH/restore.err" || fail "$kind: unclear message: $(cat "$SCRATCH/restore.err")"
  [ ! -s "$SCRATCH/restore.out" ] || fail "$kind: the app ran from a refused image: $(cat "$SCRATCH/restore.out")"

  wait_for 30 state_is pat valid
  q=$(quarantined)
  damage "$kind" "$(ls -d "$PREWARM_STATE_DIR"/store/*)"
  launch_pat
  [ "$(last pat mode)" = cold ] || fail "$kind: the damaged image was used"
  last pat fallback | has "${said[$kind]}" || fail "$kind: fallback reason: $(last pat fallback)"
  [ "$(quarantined)" != "$q" ] || fail "$kind: the image was not quarantined"
done

step "the recorded executable is changed or missing: prewarm restore refuses"
mkfifo "$SCRATCH/in"
"$APP" <"$SCRATCH/in" >"$SCRATCH/dumped.out" &
app=$!
exec 3>"$SCRATCH/in"
wait_for 10 grep -q ready "$SCRATCH/dumped.out"
"$P" dump --pid "$app" --images "$SCRATCH/own" --kill 2>/dev/null
exec 3>&-
wait "$app" 2>/dev/null || true
cp -a "$APP" "$SCRATCH/pattern.orig"
printf 'x' >>"$APP"
rc=0; echo x | "$P" restore --images "$SCRATCH/own" >/dev/null 2>"$SCRATCH/restore.err" || rc=$?
[ "$rc" = 1 ] && grep -q "$APP" "$SCRATCH/restore.err" || fail "changed executable: exit $rc: $(cat "$SCRATCH/restore.err")"
rm "$APP"
rc=0; echo x | "$P" restore --images "$SCRATCH/own" >/dev/null 2>"$SCRATCH/restore.err" || rc=$?
[ "$rc" = 1 ] && grep -q "$APP" "$SCRATCH/restore.err" || fail "missing executable: exit $rc: $(cat "$SCRATCH/restore.err")"
cp -a "$SCRATCH/pattern.orig" "$APP"

# race WHO: a launch whose executable is replaced (as a package manager does it: a new file
# renamed over the old one) while strace holds the launcher for 3 s right after prewarmd's
# answer, which carries the image. WHO=daemon: prewarmd sees the change first and drops the
# image under the launcher. WHO=launcher: prewarmd is held with SIGSTOP meanwhile, so the
# launcher's own check of the mapped files must catch it (prewarmd then both quarantines the
# image and sees it stale, in either order). Prints the fallback reason.
race() {
  launch_pat  # after an upgrade the snapshot is stale: cold, and captured again
  wait_for 30 state_is pat valid
  launch_pat
  [ "$(last pat mode)" = restored ] || fail "$1: no restore before the race"
  wait_for 10 ready_known pat
  local before launcher refusals
  before=$(launch_count pat)
  n=$((n + 1))
  rm -f "$SCRATCH/strace.log"
  (feed pat "$before" "in$n") | strace -o "$SCRATCH/strace.log" -e trace=connect,recvmsg \
    -e inject=recvmsg:delay_exit=3000000:when=1 "$P" run pat >"$SCRATCH/out.$n" 2>>"$SCRATCH/run.err" &
  launcher=$!
  cleanup "kill $launcher 2>/dev/null"
  refusals=$(grep -c "cannot restore the snapshot" "$SCRATCH/run.err" || true)
  wait_for 20 grep -qs recvmsg "$SCRATCH/strace.log"
  [ "$1" = launcher ] && kill -STOP "$DAEMON"
  cp "$SCRATCH/pattern.orig" "$SCRATCH/pattern.new"
  printf 'upgraded %s' "$n" >>"$SCRATCH/pattern.new"
  mv "$SCRATCH/pattern.new" "$APP"
  if [ "$1" = launcher ]; then
    # The launcher says why it starts cold before it reports that to prewarmd.
    wait_for 20 sh -c "[ \$(grep -c 'cannot restore the snapshot' '$SCRATCH/run.err') -gt $refusals ]"
    kill -CONT "$DAEMON"
  fi
  wait "$launcher" || fail "$1: the launch failed"
  grep -q "input=in$n\$" "$SCRATCH/out.$n" || fail "$1: no answer after the race: $(cat "$SCRATCH/out.$n")"
  [ "$(last pat mode)" = cold ] || fail "$1: an image of the old executable was restored"
  [ -z "$(ls "$PREWARM_STATE_DIR/store")" ] || fail "$1: an image of the old executable is still in the store"
  last pat fallback
}

step "the executable is replaced between validation and restore: prewarmd notices first"
why=$(race daemon)
# The launcher holds read-only fds of the image's files, so their removal does not reach it; its
# own check of the mapped files refuses the replaced executable.
case "$why" in *"$APP"*replaced*) ;; *) fail "unclear reason: $why" ;; esac

step "the executable is replaced between validation and restore: the launcher notices first"
why=$(race launcher)
case "$why" in *"$APP"*replaced*) ;; *) fail "the reason does not name the replaced executable: $why" ;; esac

step "after the upgrade, a fresh snapshot of the new executable"
launch_pat
[ "$(last pat mode)" = cold ] || fail "the next launch did not start cold"
wait_for 30 state_is pat valid
launch_pat
[ "$(last pat mode)" = restored ] || fail "no fresh snapshot of the new executable"
echo "images: PASS"
