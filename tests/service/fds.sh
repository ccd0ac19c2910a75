#!/usr/bin/env bash
# A real runtime with kernel-object fds through prewarmd: ruby 3.1 holds two eventfds at its
# ready point. Cold launch and capture, then a restored launch that traps a signal, runs a thread
# and passes a result through a queue (tests/progs/ruby_app.rb); a python app holding its own
# /proc/self/stat open, restored with that fd on the restored process; a python app watching a
# file with inotify.
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
proc_run() {
  local before
  before=$(launch_count procself)
  (feed procself "$before" "$1") | "$P" run procself 2>>"$SCRATCH/run.err" | grep '^input=' || true
}
a=$(proc_run 1)
[ "$a" = "input=1 fd_pid_is_mine=True" ] || fail "cold answer: $a $(cat "$SCRATCH/run.err")"
wait_for 60 state_is procself valid || fail "not captured: $(field procself state) $(field procself reason)"
a=$(proc_run 2)
[ "$(last procself mode)" = restored ] ||
  fail "second launch not restored: $(last procself mode) $(grep procself "$SCRATCH/prewarmd.log" | tail -3)"
[ "$a" = "input=2 fd_pid_is_mine=True" ] || fail "restored answer: $a $(cat "$SCRATCH/run.err")"
# It watches a file for reads: a write, or a new entry in a watched directory, made after the
# snapshot (by the cold launch that runs on, say) would make the image's watch stale, and refuse it.
step "an app watching a file with inotify: captured, then restored with its watch at its wd"
echo data >"$SCRATCH/watched"
cat >"$SCRATCH/watch_app.py" <<EOF
import ctypes, os, struct, sys
libc = ctypes.CDLL(None, use_errno=True)
fd = libc.inotify_init1(os.O_CLOEXEC)
wd = libc.inotify_add_watch(fd, b"$SCRATCH/watched", 0x1)  # IN_ACCESS
line = sys.stdin.readline().strip()
with open("$SCRATCH/watched") as f:
    f.read()
ev_wd, mask, cookie, length = struct.unpack("iIII", os.read(fd, 4096)[:16])
print("input=%s wd=%d event=%d:%x" % (line, wd, ev_wd, mask), flush=True)
EOF
"$P" register watcher --ready delay:300 -- /usr/bin/python3 "$SCRATCH/watch_app.py" >/dev/null
watch_run() {
  local before
  before=$(launch_count watcher)
  (feed watcher "$before" "$1") | "$P" run watcher 2>>"$SCRATCH/run.err" | grep '^input=' || true
}
a=$(watch_run 1)
[ "$a" = "input=1 wd=1 event=1:1" ] || fail "cold answer: $a $(cat "$SCRATCH/run.err")"
wait_for 60 state_is watcher valid || fail "not captured: $(field watcher state) $(field watcher reason)"
a=$(watch_run 2)
[ "$(last watcher mode)" = restored ] ||
  fail "second launch not restored: $(last watcher mode) $(grep watcher "$SCRATCH/prewarmd.log" | tail -3)"
[ "$a" = "input=2 wd=1 event=1:1" ] || fail "restored answer: $a $(cat "$SCRATCH/run.err")"
echo "fds: PASS"
