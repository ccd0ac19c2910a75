#!/usr/bin/env bash
# Faults and load around prewarmd: a disk that fills during a dump, an app killed during its dump
# and during its capture (no image either way), SIGKILL of the daemon in the middle of a capture
# (the app keeps running, no image is published, the next start cleans up), a capture stopped at
# its deadline,
# and 50 concurrent launches of one app and of different apps (every launch answers, the image
# stays intact, the daemon responds).
# Usage: faults.sh BIN_DIR SOURCE_DIR
. "$(dirname "$0")/../lib/prelude.sh"
BIN=$(realpath "$1")
SRC=$(realpath "$2")
[ "$(id -u)" -eq 0 ] || skip "needs root (ptrace of launched apps by the daemon)"
command -v strace >/dev/null || fail "strace is missing (.ci/install-deps installs it)"
. "$(dirname "$0")/../lib/daemon.sh"
start_daemon
cleanup end_daemon
cd "$SRC/bench/progs"

step "the disk fills during a dump: no image, a clear error, the app keeps running"
mkdir "$SCRATCH/small" "$SCRATCH/df"
mount -t tmpfs -o size=8m tmpfs "$SCRATCH/small"
cleanup "umount $SCRATCH/small"
mkfifo "$SCRATCH/df/in"
"$BIN/../bench/bench_anon64" <"$SCRATCH/df/in" >"$SCRATCH/df/out" &
app=$!
exec 3>"$SCRATCH/df/in"
wait_for 10 grep -q ready "$SCRATCH/df/out"
rc=0; "$P" dump --pid "$app" --images "$SCRATCH/small/img" 2>"$SCRATCH/df/err" || rc=$?
[ "$rc" = 1 ] || fail "dump onto a full disk: exit $rc"
grep -q "No space left on device" "$SCRATCH/df/err" || fail "no clear error: $(cat "$SCRATCH/df/err")"
[ -z "$(ls -A "$SCRATCH/small")" ] || fail "a partial image was left: $(ls -A "$SCRATCH/small")"
echo go >&3
exec 3>&-
wait "$app" || fail "the app did not survive the failed dump"
grep -q '^answer 3 ' "$SCRATCH/df/out" || fail "the app did not answer after the failed dump"

step "the app is killed during its dump: no image, a clear error"
mkdir "$SCRATCH/kd"
"$BIN/../bench/bench_anon64" <"$SCRATCH/df/in" >"$SCRATCH/kd/out" &
app=$!
exec 3>"$SCRATCH/df/in"
wait_for 10 grep -q ready "$SCRATCH/kd/out"
# strace slows each read of the app's memory by 300 ms, so the kill lands mid-dump.
strace -o "$SCRATCH/kd.strace" -e trace=process_vm_readv -e inject=process_vm_readv:delay_enter=300000 \
  "$P" dump --pid "$app" --images "$SCRATCH/kd/img" 2>"$SCRATCH/kd.err" &
dumper=$!
wait_for 20 grep -qs process_vm_readv "$SCRATCH/kd.strace"
kill -9 "$app"
rc=0; wait "$dumper" || rc=$?
exec 3>&-
wait "$app" 2>/dev/null || true
[ "$rc" = 1 ] || fail "dump of an app killed mid-dump: exit $rc: $(cat "$SCRATCH/kd.err")"
grep -q "was killed during the dump" "$SCRATCH/kd.err" || fail "no clear error: $(cat "$SCRATCH/kd.err")"
[ "$(ls -A "$SCRATCH/kd")" = out ] || fail "an image or a temporary was left: $(ls -A "$SCRATCH/kd")"

step "the app is killed during its capture by prewarmd: nothing published, the next launch is cold"
stop_daemon
start_daemon strace -f -o "$SCRATCH/daemon.strace" -e trace=process_vm_readv \
  -e inject=process_vm_readv:delay_enter=300000
"$P" register victim --ready idle:200 -- "$BIN/../bench/bench_anon64" >/dev/null
mkfifo "$SCRATCH/victim.in"
"$P" run victim <"$SCRATCH/victim.in" >"$SCRATCH/victim.out" 2>>"$SCRATCH/run.err" &
app=$!
exec 3>"$SCRATCH/victim.in"
wait_for 30 grep -qs process_vm_readv "$SCRATCH/daemon.strace"
kill -9 "$app"
wait "$app" 2>/dev/null || true
exec 3>&-
wait_for 30 grep -q "victim: capture failed: .*was killed during the dump" "$SCRATCH/prewarmd.log"
grep -q "victim: captured pid" "$SCRATCH/prewarmd.log" && fail "an image of the killed app was published"
state_is victim none || fail "victim: state $(field victim state) after a killed capture"
[ -z "$(ls "$PREWARM_STATE_DIR/store")" ] && [ -z "$(ls "$PREWARM_STATE_DIR/incoming")" ] || fail "a capture of a killed app left files"
stop_daemon
start_daemon
before=$(launch_count victim)
(feed victim "$before" 2) | "$P" run victim >"$SCRATCH/victim.out" 2>>"$SCRATCH/run.err"
grep -q '^answer' "$SCRATCH/victim.out" || fail "the next launch did not answer: $(cat "$SCRATCH/victim.out")"
[ "$(last victim mode)" = cold ] || fail "the next launch after a killed capture was not cold"
wait_for 30 state_is victim valid
"$P" unregister victim >/dev/null  # the steps below expect an empty store

step "SIGKILL of prewarmd during a capture"
# A slow capture on every machine: strace delays each read of the app's memory by 300 ms, so
# the kill lands mid-capture (unslowed, 64 MiB can be read before the kill on a fast machine).
stop_daemon
start_daemon strace -f -o "$SCRATCH/daemon-kill.strace" -e trace=process_vm_readv \
  -e inject=process_vm_readv:delay_enter=300000
"$P" register big --ready idle:200 -- "$BIN/../bench/bench_anon64" >/dev/null
mkfifo "$SCRATCH/in"
"$P" run big <"$SCRATCH/in" >"$SCRATCH/big.out" 2>>"$SCRATCH/run.err" &
app=$!
exec 3>"$SCRATCH/in"
end=$((SECONDS + 20))
until grep -q "big: capturing pid" "$SCRATCH/prewarmd.log"; do [ $SECONDS -lt $end ] || fail "no capture started"; done
kill -9 "$DAEMON"
grep -q "big: captured pid" "$SCRATCH/prewarmd.log" && fail "the capture finished before the kill; the test proves nothing"
wait "$DAEMON" 2>/dev/null || true
sleep 0.2
# The orphaned capture child finishes on its own (it is the app's tracer; it must not die mid-step).
wait_for 30 sh -c "! pgrep -f '^$BIN/prewarmd --runtime-dir $PREWARM_RUNTIME_DIR' >/dev/null"
kill -0 "$app" || fail "the app died with the daemon"
grep -q "^T\|^t" <(awk '/^State:/{print $2}' /proc/"$app"/status) && fail "the app was left stopped"
[ -z "$(ls "$PREWARM_STATE_DIR/store")" ] || fail "an image was published by a killed capture"
start_daemon
[ -z "$(ls "$PREWARM_STATE_DIR/incoming")" ] || fail "the restarted daemon left the interrupted capture behind"
state_is big valid && fail "an interrupted capture counts as a snapshot"
echo 1 >&3
exec 3>&-
wait "$app" || fail "the app did not finish normally after the daemon was killed"
grep -q "^answer" "$SCRATCH/big.out" || fail "the app did not answer: $(cat "$SCRATCH/big.out")"

step "a capture that does not end in time is stopped: the app runs on, nothing is kept"
# A thread waiting in vfork cannot be stopped; with the freeze's own wait made longer than the
# capture's deadline, the deadline is what ends the capture.
stop_daemon
PREWARM_FREEZE_TIMEOUT_MS=600000 DAEMON_OPTS="${DAEMON_OPTS:-} --capture-timeout-s 1" start_daemon
"$P" register stuck --ready delay:300 -- "$BIN/../tests/progs/prog_vfork_wait" >/dev/null
mkfifo "$SCRATCH/stuck.in"
"$P" run stuck <"$SCRATCH/stuck.in" >"$SCRATCH/stuck.out" 2>>"$SCRATCH/run.err" &
app=$!
exec 3>"$SCRATCH/stuck.in"
wait_for 30 grep -q "stuck: capture failed: the capture did not end within 1 s" "$SCRATCH/prewarmd.log"
wait_for 10 sh -c "! grep -q '^State:.*[tT]' /proc/$app/status"
state_is stuck none || fail "stuck: state $(field stuck state) after a stopped capture"
[ -z "$(ls "$PREWARM_STATE_DIR/store")" ] && [ -z "$(ls "$PREWARM_STATE_DIR/incoming")" ] || fail "a stopped capture left files"
echo go >&3
exec 3>&-
wait "$app" || fail "the app did not finish normally after its capture was stopped"
grep -q "^answer 0" "$SCRATCH/stuck.out" || fail "the app did not answer: $(cat "$SCRATCH/stuck.out")"
"$P" unregister stuck >/dev/null
stop_daemon

step "a capture stuck inside a system call it runs in the app: the app is killed, never let go with the capture's registers"
# The fault knob holds the capture's first injected call, registers in place, as a thread stuck
# in that call would be; killing the capture alone would leave the app running from there.
PREWARM_FAULT_INJECTED_CALL_STALL_MS=600000 DAEMON_OPTS="${DAEMON_OPTS:-} --capture-timeout-s 1" start_daemon
"$P" register inside --ready delay:300 -- "$BIN/../tests/progs/prog_nanosleep" >/dev/null
"$P" run inside >"$SCRATCH/inside.out" 2>>"$SCRATCH/run.err" &
app=$!
wait_for 20 grep -q "inside: the capture of pid $app is late and inside a system call it runs in the app" "$SCRATCH/prewarmd.log" ||
  fail "inside: no wait for the injected call: $(tail -5 "$SCRATCH/prewarmd.log")"
wait_for 30 grep -q "inside: capture failed: .*the app was killed: it was stuck inside a system call the capture ran in it" \
  "$SCRATCH/prewarmd.log" || fail "inside: the capture's end not logged: $(tail -5 "$SCRATCH/prewarmd.log")"
rc=0
wait "$app" || rc=$?
[ "$rc" -eq 137 ] || fail "inside: the app was not killed (exit $rc): $(cat "$SCRATCH/inside.out")"
grep -q "^woke" "$SCRATCH/inside.out" && fail "inside: the app ran on after its capture was killed mid-call"
state_is inside none || fail "inside: state $(field inside state) after a killed capture"
[ -z "$(ls "$PREWARM_STATE_DIR/store")" ] && [ -z "$(ls "$PREWARM_STATE_DIR/incoming")" ] || fail "a killed capture left files"
"$P" unregister inside >/dev/null
stop_daemon
start_daemon

step "50 concurrent launches of one app, restored"
"$P" register calc --ready notify -- /usr/bin/python3 calc.py >/dev/null
# stdout to a file, like the launches below: the kind of stdio is part of the key
# (input only after the capture: read before it, it would be consumed inside the snapshot)
(wait_for 120 state_is calc valid; echo 1) | "$P" run calc >"$SCRATCH/prime.out" 2>>"$SCRATCH/run.err"
wait_for 30 state_is calc valid
img=$(ls -d "$PREWARM_STATE_DIR"/store/*)
sum_before=$(cat "$img/pages.img" "$img/snapshot.pb" | md5sum)
t0=$(date +%s%N); "$P" list >/dev/null; t1=$(date +%s%N)
idle_ms=$(((t1 - t0) / 1000000))
pids=()
for i in $(seq 50); do
  (sleep 2; echo "$((1000 + i))") | "$P" run calc >"$SCRATCH/out.$i" 2>>"$SCRATCH/run.err" &
  pids+=($!)
done
# The daemon answers while 50 launches are in flight. The bound scales with this machine's
# idle answer time, measured in the same run (a fixed one fails on slow machines).
t0=$(date +%s%N); "$P" list >/dev/null; t1=$(date +%s%N)
loaded_ms=$(((t1 - t0) / 1000000))
limit_ms=$((idle_ms * 50 > 5000 ? idle_ms * 50 : 5000))
[ "$loaded_ms" -lt "$limit_ms" ] || fail "prewarm list took $loaded_ms ms under load ($idle_ms ms idle, limit $limit_ms ms)"
for p in "${pids[@]}"; do wait "$p" || fail "a launch failed"; done
for i in $(seq 50); do
  n=$((1000 + i))
  grep -q "sum=$((n * (n - 1) / 2)) " "$SCRATCH/out.$i" || fail "launch $i answered wrongly: $(cat "$SCRATCH/out.$i")"
done
[ "$(cat "$img/pages.img" "$img/snapshot.pb" | md5sum)" = "$sum_before" ] || fail "the image changed under load"
[ "$(field calc restored)" -ge 50 ] || fail "only $(field calc restored) of the launches were restored"

step "a launch that took an image and died before the restore was in place: the image goes, the next launch is cold"
# The launcher's own request, caught by a stand-in for prewarmd (the launcher then starts cold),
# is sent again by a process that takes the image and exits: to prewarmd that is a restore that
# failed past the point of no return (the blob exits 125) or was killed during it.
mkdir -p "$SCRATCH/fake"
/usr/bin/python3 - "$SCRATCH/fake/control.sock" "$SCRATCH/request.json" <<'EOF' &
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.bind(sys.argv[1])
s.listen(1)
s.settimeout(30)
c, _ = s.accept()
data = b""
while not data.endswith(b"\n"):
    data += c.recv(1 << 16)
open(sys.argv[2], "wb").write(data)
EOF
fake=$!
cleanup "kill $fake 2>/dev/null"
wait_for 10 test -S "$SCRATCH/fake/control.sock"
echo 7 | PREWARM_RUNTIME_DIR="$SCRATCH/fake" "$P" run calc >"$SCRATCH/fake.out" 2>"$SCRATCH/fake.err" || true
wait "$fake" || fail "the stand-in caught no request: $(cat "$SCRATCH/fake.err")"
img=$(ls -d "$PREWARM_STATE_DIR"/store/*)
/usr/bin/python3 - "$PREWARM_RUNTIME_DIR/control.sock" "$SCRATCH/request.json" "$SCRATCH/fake" "$PREWARM_RUNTIME_DIR" <<'EOF' ||
import array, json, socket, sys
sock, path, fake, real = sys.argv[1:5]
req = json.loads(open(path).read())
req["env"] = [e.replace("PREWARM_RUNTIME_DIR=" + fake, "PREWARM_RUNTIME_DIR=" + real) for e in req["env"]]
req.pop("t0_ns", None)
s = socket.socket(socket.AF_UNIX)
s.connect(sock)
s.sendall(json.dumps(req).encode() + b"\n")
data, fds = b"", []
while not data.endswith(b"\n"):
    msg, anc, _, _ = s.recvmsg(1 << 16, socket.CMSG_SPACE(16 * 4))
    if not msg:
        break
    data += msg
    for level, kind, body in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds += array.array("i", body[: len(body) - len(body) % 4])
reply = json.loads(data)
assert reply.get("mode") == "restore" and len(fds) == 2, reply
EOF
  fail "the replayed launch was not handed the image"
died() { has "exited before the restore reported it in place" "$SCRATCH/prewarmd.log"; }
wait_for 10 died
gone() { ! [ -e "$img" ]; }
wait_for 10 gone
[ "$(field calc images)" = 0 ] || fail "calc still lists $(field calc images) images"
a=$(run_calc calc 360) || fail "the launch after the dead restore did not answer"
[ "$(last calc mode)" = cold ] || fail "the launch after the dead restore was $(last calc mode), not cold"
[ "${a#answer pid=* }" != "$a" ] || fail "unexpected answer: $a"

step "a restore that fails past the point of no return: prewarmd logs the restorer's words, the image goes, the next launch is cold"
# Under a seccomp filter that fails mremap(MREMAP_FIXED) with EPERM (tests/progs/seccomp_deny.c)
# the cold launch runs and is captured as usual, its seccomp state then matches the restored
# launch's, and the blob's first mremap (the vDSO move) fails: it exits 125 and tells prewarmd why.
DENY=("$BIN/../tests/progs/prog_seccomp_deny" mremap-fixed)
"$P" register denied --ready notify -- /usr/bin/python3 calc.py >/dev/null
a=$(run_calc denied 5 "${DENY[@]}") || fail "the cold launch under the filter did not answer"
wait_for 120 state_is denied valid
# stdio as run_calc's (stdout a pipe), so this launch's context is the captured one's.
echo 9 | { "${DENY[@]}" "$P" run denied 2>"$SCRATCH/denied.err" && echo 0 >"$SCRATCH/denied.rc" || echo $? >"$SCRATCH/denied.rc"; } |
  cat >"$SCRATCH/denied.out"
rc=$(cat "$SCRATCH/denied.rc")
[ "$rc" = 125 ] || fail "the restore under the filter: exit $rc, not 125: $(cat "$SCRATCH/denied.err")"
grep -q 'prewarm restorer: mremap of the vDSO failed (errno 1)' "$SCRATCH/denied.err" ||
  fail "no word from the restorer on stderr: $(cat "$SCRATCH/denied.err")"
said() { has "the restorer said: mremap of the vDSO failed (errno 1)" "$SCRATCH/prewarmd.log"; }
wait_for 10 said
case "$(field denied reason)" in
  *"the restorer said: mremap of the vDSO failed (errno 1)"*) ;;
  *) fail "the app's status does not name the failure: $(field denied reason)" ;;
esac
[ "$(field denied images)" = 0 ] || fail "denied still lists $(field denied images) images"
# Counted as a failed launch (not a fallback: nothing went on cold).
counted() {
  "$P" stats denied --json | python3 -c "import json,sys; a=json.load(sys.stdin)['apps'][0]
sys.exit(0 if a['launches']['failed'] == 1 and a['launches']['fallbacks'] == 0 else 1)"
}
wait_for 10 counted
"$P" stats denied | has -E '^denied +1 +0 +0 +1 ' || fail "stats does not show the failed launch: $("$P" stats denied)"
a=$(run_calc denied 11 "${DENY[@]}") || fail "the launch after the failed restore did not answer"
[ "$(last denied mode)" = cold ] || fail "the launch after the failed restore was $(last denied mode), not cold"
"$P" unregister denied >/dev/null

step "50 concurrent launches of 5 different apps, cold and captured"
for a in 1 2 3 4 5; do "$P" register "app$a" --ready notify -- /usr/bin/python3 calc.py >/dev/null; done
pids=()
for i in $(seq 50); do
  (wait_for 300 state_is "app$((i % 5 + 1))" valid; echo "$i") | "$P" run "app$((i % 5 + 1))" >"$SCRATCH/mix.$i" 2>>"$SCRATCH/run.err" &
  pids+=($!)
done
for p in "${pids[@]}"; do wait "$p" || fail "a launch failed"; done
for i in $(seq 50); do grep -q "sum=$((i * (i - 1) / 2)) " "$SCRATCH/mix.$i" || fail "mixed launch $i: $(cat "$SCRATCH/mix.$i")"; done
for a in 1 2 3 4 5; do wait_for 60 state_is "app$a" valid; done
kill -0 "$DAEMON" || fail "prewarmd died under load"
echo "faults: PASS"
