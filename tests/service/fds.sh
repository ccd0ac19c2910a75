#!/usr/bin/env bash
# A real runtime with kernel-object fds through prewarmd: ruby 3.1 holds two eventfds at its
# ready point. Cold launch and capture, then a restored launch that traps a signal, runs a thread
# and passes a result through a queue (tests/progs/ruby_app.rb); a python app holding its own
# /proc/self/stat open, restored with that fd on the restored process; a python app watching a
# directory with inotify.
# Usage: fds.sh BIN_DIR SOURCE_DIR
. "$(dirname "$0")/../lib/prelude.sh"
BIN=$(realpath "$1")
SRC=$(realpath "$2")
[ "$(id -u)" -eq 0 ] || skip "needs root (prewarmd ptraces the app)"
[ -x /usr/bin/ruby ] || skip "no /usr/bin/ruby (.ci/install-deps installs it)"
. "$(dirname "$0")/../lib/daemon.sh"
start_daemon
cleanup end_daemon

# app_run APP N: one launch of APP given "N" on stdin once it settled; prints its answer line.
app_run() {
  local before
  before=$(launch_count "$1")
  (feed "$1" "$before" "$2") | "$P" run "$1" 2>>"$SCRATCH/run.err" | grep '^input=' || true
}
# cold_then_restored APP ANSWER: a cold launch (input 1) captured, then a restored one (input 2),
# each answering "input=N ANSWER".
cold_then_restored() {
  local a
  a=$(app_run "$1" 1)
  [ "$a" = "input=1 $2" ] || fail "$1: cold answer: $a $(cat "$SCRATCH/run.err")"
  [ "$(last "$1" mode)" = cold ] || fail "$1: first launch not cold"
  wait_for 60 state_is "$1" valid || fail "$1: not captured: $(field "$1" state) $(field "$1" reason)"
  a=$(app_run "$1" 2)
  [ "$(last "$1" mode)" = restored ] ||
    fail "$1: second launch not restored: $(last "$1" mode) $(grep "$1" "$SCRATCH/prewarmd.log" | tail -3)"
  [ "$a" = "input=2 $2" ] || fail "$1: restored answer: $a $(cat "$SCRATCH/run.err")"
}

step "ruby: a cold launch captured once idle, then a restored one, its eventfds working"
"$P" register rb --ready idle:300 -- /usr/bin/ruby "$SRC/tests/progs/ruby_app.rb" >/dev/null
cold_then_restored rb "sum=2668667000 signal=usr1"
"$P" inspect --images "$(ls -d "$PREWARM_STATE_DIR"/store/*/)" --json | has FD_EVENTFD || fail "no eventfd in the image"
"$P" stats rb || true
step "an app holding its own /proc entry open: captured, then restored with the fd on the restored process"
# The dump records the fd as /proc/self/stat; prewarmd's own stat of that path is prewarmd's, so
# it must not be one of the files whose change makes the image stale.
cat >"$SCRATCH/proc_app.py" <<'EOF'
import os, sys
f = open("/proc/self/stat")
line = sys.stdin.readline().strip()
f.seek(0)
print("input=%s fd_pid_is_mine=%s" % (line, int(f.read().split()[0]) == os.getpid()), flush=True)
EOF
"$P" register procself --ready delay:300 -- /usr/bin/python3 "$SCRATCH/proc_app.py" >/dev/null
cold_then_restored procself "fd_pid_is_mine=True"
# It watches a directory for new entries. The cold launch, which runs on after its capture, makes
# none (input 1): an entry made after the snapshot is an event the image never holds, and refuses
# the restore. The restored launch makes one and hears it.
step "an app watching a directory with inotify: captured, then restored with its watch at its wd"
mkdir "$SCRATCH/watched"
cat >"$SCRATCH/watch_app.py" <<EOF
import ctypes, os, struct, sys
libc = ctypes.CDLL(None, use_errno=True)
fd = libc.inotify_init1(os.O_CLOEXEC)
wd = libc.inotify_add_watch(fd, b"$SCRATCH/watched", 0x100)  # IN_CREATE
line = sys.stdin.readline().strip()
if line == "1":
    print("input=1 wd=%d" % wd, flush=True)
    sys.exit(0)
open("$SCRATCH/watched/f" + line, "w").close()
ev_wd, mask, cookie, length = struct.unpack("iIII", os.read(fd, 4096)[:16])
print("input=%s wd=%d event=%d:%x" % (line, wd, ev_wd, mask), flush=True)
EOF
"$P" register watcher --ready delay:300 -- /usr/bin/python3 "$SCRATCH/watch_app.py" >/dev/null
a=$(app_run watcher 1)
[ "$a" = "input=1 wd=1" ] || fail "watcher: cold answer: $a $(cat "$SCRATCH/run.err")"
wait_for 60 state_is watcher valid || fail "watcher: not captured: $(field watcher state) $(field watcher reason)"
a=$(app_run watcher 2)
[ "$(last watcher mode)" = restored ] ||
  fail "watcher: second launch not restored: $(last watcher mode) $(grep watcher "$SCRATCH/prewarmd.log" | tail -3)"
[ "$a" = "input=2 wd=1 event=1:100" ] || fail "watcher: restored answer: $a $(cat "$SCRATCH/run.err")"
echo "fds: PASS"
