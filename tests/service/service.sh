#!/usr/bin/env bash
# prewarmd in the foreground (as on machines without systemd as PID 1) driven through the CLI:
# cold launch and capture, restore, idle and delay readiness, a corrupted image (cold start and
# quarantine), invalidation, persistence across a daemon restart, prewarmd down, and per-user
# isolation of apps and images (root and nobody, and two users created by the test), and names
# that are not UTF-8.
# Usage: service.sh BIN_DIR SOURCE_DIR
. "$(dirname "$0")/../lib/prelude.sh"
BIN=$(realpath "$1")
SRC=$(realpath "$2")
[ "$(id -u)" -eq 0 ] || skip "needs root (runs apps as another user)"
. "$(dirname "$0")/../lib/daemon.sh"
# image_of_uid UID: the image directory whose meta.json names UID as its app's user.
image_of_uid() {
  grep -l "\"uid\": $1\b" "$PREWARM_STATE_DIR"/store/*/meta.json 2>/dev/null | sed -n 1p | xargs -r dirname
}
chmod 755 "$SCRATCH"
start_daemon
cleanup end_daemon


step "register, launch cold, captured once ready (notify)"
cd "$SRC/bench/progs"
"$P" register calc --ready notify -- /usr/bin/python3 calc.py >/dev/null
state_is calc none
a=$(run_calc calc 360)
case "$a" in *"factors={2: 3, 3: 2, 5: 1} sum=64620"*) ;; *) fail "cold answer: $a" ;; esac
[ "$(last calc mode)" = cold ] || fail "first launch not cold"
wait_for 30 state_is calc valid
ready_known calc || fail "no time to ready for the cold launch"

step "launch again: restored, with a new pid and the new input"
a=$(run_calc calc 1001)
case "$a" in *"factors={7: 1, 11: 1, 13: 1} sum=500500"*) ;; *) fail "restored answer: $a" ;; esac
[ "$(last calc mode)" = restored ] || fail "second launch not restored"
wait_for 30 ready_known calc

step "the image belongs to root and is private: its app's user cannot read it"
img=$(ls -d "$PREWARM_STATE_DIR"/store/*)
[ "$(stat -c '%U %a' "$PREWARM_STATE_DIR")" = "root 711" ] || fail "state dir not root's 0711"
[ "$(stat -c '%U %a' "$PREWARM_STATE_DIR/store")" = "root 700" ] || fail "the store is not root's 0700"
[ "$(stat -c '%U:%G %a' "$img")" = "root:root 700" ] || fail "image dir not root's 0700: $(stat -c '%U:%G %a' "$img")"
for f in snapshot.pb pages.img meta.json; do
  [ "$(stat -c '%U:%G %a' "$img/$f")" = "root:root 600" ] || fail "$f not root's 0600: $(stat -c '%U:%G %a' "$img/$f")"
done
# Through a descriptor of the image directory (as a launch would hold one) the state directory's
# 0700 is out of the way: only the image's own modes keep the app's user (and anyone) out.
img_uid=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['uid'])" "$img/meta.json")
for u in "$img_uid" 65534; do
  [ "$u" = 0 ] && continue
  setpriv --reuid="$u" --regid="$u" --clear-groups cat /proc/self/fd/3/pages.img 3<"$img" >/dev/null 2>&1 &&
    fail "uid $u can read pages.img"
done

step "a launch with other stdio kinds does not use the snapshot taken with pipes"
before=$(launch_count calc)
(feed calc "$before" 12) | "$P" run calc 2>/dev/null > "$SCRATCH/file-stdout"
grep -q '^answer' "$SCRATCH/file-stdout" || fail "no answer with stdout to a file"
[ "$(last calc mode)" = cold ] || fail "stdout to a file restored a snapshot taken with a pipe"

step "a corrupted image: the launch starts cold, the image is quarantined"
wait_for 30 state_is calc valid
for d in "$PREWARM_STATE_DIR"/store/*; do
  printf 'garbage' | dd of="$d/pages.img" bs=1 seek=4096 conv=notrunc status=none
done
a=$(run_calc calc 360)
case "$a" in *"sum=64620"*) ;; *) fail "answer after a corrupted image: $a" ;; esac
[ "$(last calc mode)" = cold ] || fail "corrupted image was not refused"
[ -n "$(last calc fallback)" ] || fail "no fallback reason recorded"
grep -q "cannot restore the snapshot" "$SCRATCH/run.err" || fail "the launcher did not say why it started cold"
[ -n "$(ls "$PREWARM_STATE_DIR/quarantine")" ] || fail "image not quarantined"

step "invalidation: an edit of the app's script makes the snapshot stale before any launch"
wait_for 30 state_is calc valid
cp calc.py "$SCRATCH/calc.py"; cd "$SCRATCH"
"$P" register calc2 --ready idle:300 -- /usr/bin/python3 "$SCRATCH/calc.py" >/dev/null
run_calc calc2 10 >/dev/null
wait_for 30 state_is calc2 valid
echo "# upgraded" >> "$SCRATCH/calc.py"
wait_for 30 state_is calc2 stale
field calc2 reason | has "$SCRATCH/calc.py" || fail "stale reason does not name the script"
run_calc calc2 10 >/dev/null
[ "$(last calc2 mode)" = cold ] || fail "launch after an edit was not cold"

step "delay readiness and explicit invalidate"
"$P" register calc3 --ready delay:1500 -- /usr/bin/python3 "$SCRATCH/calc.py" >/dev/null
run_calc calc3 10 >/dev/null
wait_for 30 state_is calc3 valid
"$P" invalidate calc3 >/dev/null
state_is calc3 none
[ "$(field calc3 images)" = 0 ] || fail "invalidate left images"

step "a delay that ends before the launcher has executed the app: ready, and captured, only once it has"
# The launcher's execv held for 500 ms (LD_PRELOAD), against delay:1: the capture must be of
# sleep, never of the launcher frozen in its wait.
cat >"$SCRATCH/slow_exec.c" <<'EOF'
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <unistd.h>
int execv(const char* path, char* const argv[]) {
  int (*real)(const char*, char* const[]) = (int (*)(const char*, char* const[]))dlsym(RTLD_NEXT, "execv");
  unsetenv("LD_PRELOAD");
  usleep(500 * 1000);
  return real(path, argv);
}
EOF
cc -shared -fPIC -o "$SCRATCH/slow_exec.so" "$SCRATCH/slow_exec.c" -ldl || fail "cannot build the execv shim"
"$P" register slowexec --ready delay:1 -- /bin/sleep 60 >/dev/null
LD_PRELOAD=$SCRATCH/slow_exec.so "$P" run slowexec </dev/null >/dev/null 2>"$SCRATCH/slowexec.err" &
slow=$!
cleanup "kill $slow 2>/dev/null"
capture_done() { local s; s=$(field "$1" state); [ "$s" != none ] && [ "$s" != capturing ]; }
wait_for 30 capture_done slowexec
state_is slowexec valid || fail "slowexec not captured: $(field slowexec state) ($(field slowexec reason))"
img=$(grep -l '"app": "slowexec"' "$PREWARM_STATE_DIR"/store/*/meta.json | xargs dirname)
"$P" inspect --images "$img" | has '^  process   pid [0-9]* (sleep), /usr/bin/sleep$' ||
  fail "the image is not of sleep: $("$P" inspect --images "$img" | sed -n 2p)"
ms=$(last slowexec ready_ms)
python3 -c "import sys; sys.exit(0 if $ms >= 500 else 1)" || fail "ready after $ms ms, before the launcher's exec (500 ms)"
kill "$slow"
wait "$slow" 2>/dev/null || true

step "prewarmd restart keeps registrations and images"
wait_for 30 state_is calc2 valid
stop_daemon
start_daemon
state_is calc valid && state_is calc2 valid || fail "state lost over a restart: calc $(field calc state), calc2 $(field calc2 state)"
run_calc calc 360 >/dev/null
[ "$(last calc mode)" = restored ] || fail "no restore after a daemon restart"

step "prewarmd down: prewarm run still launches, cold"
stop_daemon
a=$( (sleep 0.5; echo 360) | "$P" run calc 2>>"$SCRATCH/run.err" | grep '^answer')
case "$a" in *"sum=64620"*) ;; *) fail "no cold start without prewarmd: $a" ;; esac
grep -q "prewarmd is not reachable" "$SCRATCH/run.err" || fail "no message about prewarmd being down"
start_daemon

step "users: another user neither sees, runs, invalidates nor replaces root's app"
as_nobody() { setpriv --reuid=65534 --regid=65534 --clear-groups "$@"; }
[ "$(as_nobody "$P" list --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["apps"]))')" = 0 ] || fail "nobody sees root's apps"
rc=0; as_nobody "$P" run calc </dev/null >/dev/null 2>&1 || rc=$?; [ "$rc" = 4 ] || fail "nobody ran root's app (exit $rc)"
rc=0; as_nobody "$P" invalidate calc >/dev/null 2>&1 || rc=$?; [ "$rc" = 4 ] || fail "nobody invalidated root's app (exit $rc)"
rc=0; as_nobody "$P" register calc -- /bin/true >/dev/null 2>&1 || rc=$?; [ "$rc" != 0 ] || fail "nobody replaced root's app"
as_nobody cat "$img/pages.img" >/dev/null 2>&1 && fail "nobody can read root's image"

step "a user's own app: runs as that user, its image is that user's"
"$P" list >/dev/null
(cd "$SCRATCH" && as_nobody "$P" register mine --ready notify -- /usr/bin/python3 "$SCRATCH/calc.py" >/dev/null)
run_calc mine 36 as_nobody >/dev/null || fail "user app did not answer"
wait_for 30 state_is mine valid
mine_img=$(image_of_uid 65534)
[ -n "$mine_img" ] && [ "$(stat -c '%U %a' "$mine_img/pages.img")" = "root 600" ] || fail "the user's image is not root's alone"
as_nobody cat "$mine_img/pages.img" >/dev/null 2>&1 && fail "the app's own user can read its image"
a=$(run_calc mine 36 as_nobody)
[ "$(last mine mode)" = restored ] || fail "the user's own app was not restored"
# root launching it drops to the user: the process runs as uid 65534
before=$(launch_count mine)
rc=0; "$P" run mine </dev/null >/dev/null 2>"$SCRATCH/root.err" || rc=$?
[ "$rc" = 4 ] && grep -q "nobody/mine\|USER/mine" "$SCRATCH/root.err" || fail "root ran a user's app by its bare name (exit $rc)"
(wait_for 60 test -e "$SCRATCH/go"; echo 36) | "$P" run nobody/mine 2>>"$SCRATCH/run.err" >/dev/null &
launch=$!
wait_for 60 settled mine "$before"
pid=$(last mine pid)
[ "$(stat -c %u /proc/"$pid")" = 65534 ] || fail "root's launch of the user's app does not run as the user"
touch "$SCRATCH/go"
wait "$launch"

step "two unprivileged users created here: B can neither see, run, capture, drop nor read A's app"
ua=pwa$$ ub=pwb$$
useradd --system --user-group --no-create-home --shell /usr/sbin/nologin "$ua"
cleanup "userdel $ua; groupdel $ua 2>/dev/null"
useradd --system --user-group --no-create-home --shell /usr/sbin/nologin "$ub"
cleanup "userdel $ub; groupdel $ub 2>/dev/null"
as_a() { setpriv --reuid="$(id -u "$ua")" --regid="$(id -g "$ua")" --init-groups "$@"; }
as_b() { setpriv --reuid="$(id -u "$ub")" --regid="$(id -g "$ub")" --init-groups "$@"; }
(cd "$SCRATCH" && as_a "$P" register appa --ready notify -- /usr/bin/python3 "$SCRATCH/calc.py" >/dev/null)
run_calc appa 36 as_a >/dev/null || fail "A's app did not answer"
wait_for 30 state_is appa valid
a_img=$(image_of_uid "$(id -u "$ua")")
[ -n "$a_img" ] && [ "$(stat -c '%U %a' "$a_img")" = "root 700" ] && [ "$(stat -c '%U %a' "$a_img/pages.img")" = "root 600" ] ||
  fail "A's image is not root's alone: $(ls -ld "$a_img" "$a_img/pages.img")"
[ "$(as_b "$P" list --json | python3 -c 'import json,sys; print([a["name"] for a in json.load(sys.stdin)["apps"]])')" = "[]" ] ||
  fail "B sees A's app"
for cmd in "run appa" "snapshot appa" "invalidate appa" "unregister appa" "stats appa"; do
  rc=0; as_b "$P" $cmd </dev/null >/dev/null 2>"$SCRATCH/b.err" || rc=$?
  [ "$rc" = 4 ] || fail "B: prewarm $cmd exited $rc: $(cat "$SCRATCH/b.err")"
done
# B cannot take the name (and so the app) over, nor read or restore A's image itself.
rc=0; (cd "$SCRATCH" && as_b "$P" register appa -- /bin/true >/dev/null 2>"$SCRATCH/b.err") || rc=$?
[ "$rc" != 0 ] || fail "B registered over A's app"
as_b cat "$a_img/pages.img" >/dev/null 2>&1 && fail "B read A's image"
rc=0; echo 36 | as_b "$P" restore --images "$a_img" >"$SCRATCH/b.out" 2>"$SCRATCH/b.err" || rc=$?
[ "$rc" = 1 ] && grep -q "Permission denied" "$SCRATCH/b.err" && [ ! -s "$SCRATCH/b.out" ] ||
  fail "B restoring A's image: exit $rc: $(cat "$SCRATCH/b.err" "$SCRATCH/b.out")"
# A's app is intact and still A's: the next launch by A is restored.
run_calc appa 36 as_a >/dev/null || fail "A's app did not answer after B's attempts"
[ "$(last appa mode)" = restored ] || fail "A's launch after B's attempts was not restored"

step "stats and list speak JSON and text"
"$P" stats calc | has '^calc' || fail "stats text"
"$P" stats --json | python3 -c 'import json,sys; d=json.load(sys.stdin); assert all("cold_ready_ms" in a for a in d["apps"])'
rc=0; "$P" run nosuchapp </dev/null >/dev/null 2>&1 || rc=$?; [ "$rc" = 4 ] || fail "unknown app: exit $rc"
"$P" unregister calc3 >/dev/null
[ "$(field calc3 state)" = missing ] || fail "unregister kept the app"

step "a command that is not UTF-8 is refused at registration, not altered"
bad="$SCRATCH/app-$(printf '\xff')"
cp /bin/true "$bad"
rc=0; "$P" register badname -- "$bad" 2>"$SCRATCH/reg.err" || rc=$?
[ "$rc" = 2 ] && grep -q "not valid UTF-8" "$SCRATCH/reg.err" || fail "non-UTF-8 command: exit $rc: $(cat "$SCRATCH/reg.err")"
[ "$(field badname state)" = missing ] || fail "a non-UTF-8 command was registered"
# An app that maps such a file: unsupported (not captured again and again), always cold.
printf 'data' >"$bad"
cat >"$SCRATCH/maps_bad.py" <<EOF
import mmap, os, sys
with open(os.fsencode("$SCRATCH/app-") + b"\xff", "rb") as f:
    m = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)
print("ready", flush=True)
print("answer", sys.stdin.readline().strip(), m[:4].decode(), flush=True)
EOF
"$P" register mapsbad --ready idle:300 -- /usr/bin/python3 "$SCRATCH/maps_bad.py" >/dev/null
[ "$(run_calc mapsbad 1)" = "answer 1 data" ] || fail "the app did not answer"
wait_for 30 state_is mapsbad unsupported
field mapsbad reason | has "not UTF-8" || fail "unclear reason: $(field mapsbad reason)"
[ "$(run_calc mapsbad 2)" = "answer 2 data" ] || fail "the app did not answer cold"
[ "$(last mapsbad mode)" = cold ] || fail "an unsupported app was not cold"
step "an app that moves itself to a cgroup or a namespace of its own is unsupported, and says which"
# A restore runs in its launcher's cgroup and namespaces; what the app set up there would be lost.
cg2=$(awk '$3 == "cgroup2" { print $2; exit }' /proc/self/mounts)  # /sys/fs/cgroup, or .../unified
here=$(sed -n 's/^0:://p' /proc/self/cgroup)  # the app's launch is in this shell's cgroup
cg=$cg2${here%/}/prewarm-service-$$
if [ -n "$cg2" ] && mkdir "$cg" 2>/dev/null; then
  cleanup "rmdir $cg"
  cat >"$SCRATCH/own_place.py" <<EOF
import ctypes, sys
with open("$cg/cgroup.procs", "w") as f:
    f.write("0")
if ctypes.CDLL(None, use_errno=True).unshare(0x04000000) != 0:  # CLONE_NEWUTS
    sys.exit("unshare: errno %d" % ctypes.get_errno())
print("ready", flush=True)
v2 = [l.strip() for l in open("/proc/self/cgroup") if l.startswith("0::")]
print("answer", sys.stdin.readline().strip(), *v2, flush=True)
EOF
  "$P" register ownplace --ready idle:300 -- /usr/bin/python3 "$SCRATCH/own_place.py" >/dev/null
  [ "$(run_calc ownplace 1)" = "answer 1 0::${here%/}/prewarm-service-$$" ] || fail "the app did not answer"
  wait_for 30 state_is ownplace unsupported
  why=$(field ownplace reason)
  echo "$why" | has "uts namespace other than its launch's" || fail "the uts namespace is not named: $why"
  echo "$why" | has "below its launch's cgroup" || fail "the cgroup is not named: $why"
  [ "$(run_calc ownplace 2)" = "answer 2 0::${here%/}/prewarm-service-$$" ] || fail "the app did not answer cold"
  [ "$(last ownplace mode)" = cold ] || fail "an unsupported app was not cold"
else
  echo "(skipped: no writable cgroup2 mount)"
fi
step "a capture that finds the app's READY=1 socket still open tries again, and the snapshot is taken"
# The socket stays open 1.5 s after READY=1: the first capture (100 ms after it) and the second
# (1 s later) find it connected to prewarmd; the third finds it closed.
cat >"$SCRATCH/slow_close.py" <<'EOF'
import os, socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
path = os.environ["NOTIFY_SOCKET"]
s.connect("\0" + path[1:] if path.startswith("@") else path)
s.send(b"READY=1")
time.sleep(1.5)
s.close()
print("answer", sys.stdin.readline().strip(), flush=True)
EOF
"$P" register slowclose --ready notify -- /usr/bin/python3 "$SCRATCH/slow_close.py" >/dev/null
[ "$(run_calc slowclose 7)" = "answer 7" ] || fail "the app did not answer"
wait_for 60 state_is slowclose valid
has "slowclose: capture found .*connected to a peer outside the process; trying again in 1 s" "$SCRATCH/prewarmd.log" ||
  fail "the first capture did not find the socket open: the test proves nothing ($(field slowclose reason))"
[ "$(run_calc slowclose 8)" = "answer 8" ] || fail "the restored app did not answer"
[ "$(last slowclose mode)" = restored ] || fail "the launch after the retried capture was $(last slowclose mode)"

echo "service: PASS"
