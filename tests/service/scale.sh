#!/usr/bin/env bash
# prewarmd at scale, without timings: a query in progress does not hold up a launch (a client reads
# its `prewarm list` reply a byte at a time, or its answer is held up on the query thread, while a
# launch is asked for, answered and recorded; queries over a user's pace wait their turn);
# list and stats answer from running totals that survive a restart; `prewarm stats NAME --history`
# pages through the history newest first with a cursor. The timings are bench/scale.py's.
# Usage: scale.sh BIN_DIR SOURCE_DIR
. "$(dirname "$0")/../lib/prelude.sh"
BIN=$(realpath "$1")
[ "$(id -u)" -eq 0 ] || skip "needs root (prewarmd follows launches of any user)"
. "$(dirname "$0")/../lib/daemon.sh"
# A store of 4 MiB (2 MiB a user): the step on status changes needs a capture that fails every time.
DAEMON_OPTS="--store-max-mib 4"
start_daemon
cleanup end_daemon

step "20 apps with 60 KiB command lines: a list reply of more than a MiB"
long=$(head -c 2000 /dev/zero | tr '\0' x)
args=()
for i in $(seq 30); do args+=("$long"); done
for i in $(seq -w 20); do "$P" register "big$i" --ready delay:1 -- /bin/echo "${args[@]}" >/dev/null; done
"$P" register t --ready delay:1 -- /bin/true >/dev/null
total=$("$P" list --json | wc -c)
# A unix stream socket holds at most the sender's buffer (wmem_default) of a reply the peer has
# not read: any more than that still unread is still being written by prewarmd's loop.
sndbuf=$(cat /proc/sys/net/core/wmem_default)
[ "$total" -gt $((4 * sndbuf)) ] || fail "the list reply ($total bytes) is not large against the socket buffer ($sndbuf)"

step "a launch is answered and recorded while a client reads its list reply a byte at a time"
cat >"$SCRATCH/slow_reader.py" <<'EOF'
import json, os, socket, sys, time
sock, done, out = sys.argv[1:4]
s = socket.socket(socket.AF_UNIX)
s.connect(sock)
s.sendall(b'{"op": "list"}\n')
data = s.recv(1)  # the reply has begun: it is computed and being written
open(out + ".started", "w").close()
eof = not data
while not os.path.exists(done) and not eof:
    b = s.recv(1)
    eof = not b
    data += b
    time.sleep(0.02)
at_done, cut = len(data), eof  # cut: the connection ended before the launch was done
while not eof:
    b = s.recv(1 << 16)
    eof = not b
    data += b
reply = json.loads(data.decode()) if data.endswith(b"\n") else None
with open(out, "w") as f:
    json.dump({"at_done": at_done, "cut": cut, "total": len(data), "apps": len(reply["apps"]) if reply else -1}, f)
EOF
before=$(launch_count t)
/usr/bin/python3 "$SCRATCH/slow_reader.py" "$PREWARM_RUNTIME_DIR/control.sock" "$SCRATCH/launched" "$SCRATCH/reader.json" &
reader=$!
cleanup "kill $reader 2>/dev/null"
wait_for 30 test -e "$SCRATCH/reader.json.started"
"$P" run t 2>"$SCRATCH/t.err" || fail "the launch failed: $(cat "$SCRATCH/t.err")"
# Answered by prewarmd (not its 1 s give-up and a cold start without it) and recorded.
if has -e "not reachable" -e "starting cold without" "$SCRATCH/t.err"; then fail "prewarmd did not answer the launch: $(cat "$SCRATCH/t.err")"; fi
[ "$(launch_count t)" -gt "$before" ] || fail "the launch was not recorded"
touch "$SCRATCH/launched"
wait "$reader" || fail "the slow reader failed"
read -r at_done total apps eof_early < <(/usr/bin/python3 -c "import json; r=json.load(open('$SCRATCH/reader.json')); print(r['at_done'], r['total'], r['apps'], int(r['cut']))")
[ "$eof_early" = 0 ] || fail "prewarmd cut the slow reader before the launch was done (reply deadline 2 s): this machine took too long for a trivial launch"
[ "$apps" = 21 ] || fail "the slow reader's reply is not a complete list ($apps apps, $total of $total bytes)"
[ $((total - at_done)) -gt "$sndbuf" ] ||
  fail "the list reply was no longer in progress when the launch completed ($at_done of $total bytes read, socket buffer $sndbuf)"
echo "launch done with $at_done of $total bytes of the list reply read"

step "list and stats count from running totals, and the totals survive a restart"
for i in 1 2 3; do "$P" run t 2>/dev/null; done
n=$(launch_count t)
[ "$n" = 4 ] || fail "4 launches of t, each counted once its mode settled: counted $n"
listed=$(($(field t cold) + $(field t restored)))
[ "$listed" = "$n" ] || fail "list counts $listed launches, stats $n"
stop_daemon
start_daemon
[ "$(launch_count t)" = "$n" ] || fail "after a restart stats counts $(launch_count t) launches, not $n"

step "a status change (a failed capture) reaches registry.json within a second, and the last one survives a stop and a start"
# 8 MiB of random memory in a store with room for 2: each capture is rejected, the pid in its reason.
saved_reason() { python3 -c "import json; print(json.load(open('$PREWARM_STATE_DIR/registry.json'))['apps']['$1']['status']['reason'])"; }
reason_saved() { [ "$(saved_reason "$1")" = "$(field "$1" reason)" ] && [ -n "$(field "$1" reason)" ]; }
has_reason() { [ -n "$(field "$1" reason)" ] && [ "$(field "$1" state)" != capturing ]; }
# launch_v: one launch of v in the background, ended once its capture has given v a new reason.
launch_v() {
  local old=$1 pid
  "$P" run v </dev/null >/dev/null 2>&1 &
  pid=$!
  cleanup "kill $pid 2>/dev/null"
  changed() { [ "$(field v reason)" != "$old" ] && has_reason v; }
  wait_for 60 changed
  kill "$pid"
  wait "$pid" 2>/dev/null || true
}
"$P" register v --ready idle:300 -- /usr/bin/python3 "$2/tests/apps/sec_mem.py" 8 >/dev/null
launch_v ""
has budget <<<"$(field v reason)" || fail "v's capture failed for another reason than the store budget: $(field v reason)"
wait_for 3 reason_saved v
launch_v "$(saved_reason v)"
want=$(field v reason)
stop_daemon
[ "$(saved_reason v)" = "$want" ] || fail "the last status was not saved at shutdown: saved '$(saved_reason v)', had '$want'"
start_daemon
[ "$(field v reason)" = "$want" ] || fail "after a restart v's reason is '$(field v reason)', not '$want'"

step "prewarm stats NAME --history: newest first, in bounded pages, with a cursor to older ones"
"$P" stats t --history --limit 2 >"$SCRATCH/page1"
has '^older: prewarm stats t --history --before [0-9]' "$SCRATCH/page1" || fail "no cursor: $(cat "$SCRATCH/page1")"
cursor=$(sed -n 's/^older: .*--before \([0-9]*\)$/\1/p' "$SCRATCH/page1")
"$P" stats t --history --limit 2 --before "$cursor" --json >"$SCRATCH/page2.json"
/usr/bin/python3 - "$SCRATCH/page1" "$SCRATCH/page2.json" "$n" <<'EOF'
import json, sys
first = [int(l.split()[0]) for l in open(sys.argv[1]) if l[:1].isdigit()]
second = [l["id"] for l in json.load(open(sys.argv[2]))["history"]["launches"]]
assert len(first) == 2 and len(second) == 2, (first, second)
ids = first + second
assert ids == sorted(ids, reverse=True) and len(set(ids)) == 4, ids
EOF
step "list serves each app's entry from a cache: a re-registration and a new launch show at once"
# u is never launched: before and after its re-registration its state, reason, counts and images
# are alike, so only its configuration tells the two entries apart.
"$P" register u --ready delay:1 -- /bin/echo first >/dev/null
"$P" list --json >/dev/null  # every entry cached
"$P" register u --ready delay:2 -- /bin/echo again >/dev/null
[ "$(field u argv)" = "['/bin/echo', 'again']" ] || fail "list shows the old command after re-registration: $(field u argv)"
[ "$(field u ready)" = delay:2 ] || fail "list shows the old --ready after re-registration: $(field u ready)"
before=$(field t cold)
"$P" run t >/dev/null 2>&1
cold_above() { [ "$(field t cold)" -gt "$1" ]; }
wait_for 10 cold_above "$before"

rc=0; "$P" stats --history >/dev/null 2>&1 || rc=$?
[ "$rc" = 2 ] || fail "--history without a NAME: exit $rc, not 2 (usage)"

step "a launch is answered and recorded while a query is held up (PREWARM_FAULT_QUERY_STALL_MS)"
before=$(launch_count t)
stop_daemon
# Each list or stats answer now waits 8 s before it is computed, as one over a stalled disk would
# (longer than any trivial launch takes on a loaded machine).
PREWARM_FAULT_QUERY_STALL_MS=8000 start_daemon
# lists.py SOCK N OUT: N lists one after the other; OUT.sent once the first is asked, then OUT.
cat >"$SCRATCH/lists.py" <<'EOF'
import json, socket, sys, time
sock, n, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
t0, apps = time.monotonic(), []
for i in range(n):
    s = socket.socket(socket.AF_UNIX)
    s.connect(sock)
    s.sendall(b'{"op": "list"}\n')
    if i == 0:
        open(out + ".sent", "w").close()
    data = b""
    while not data.endswith(b"\n"):
        b = s.recv(1 << 16)
        if not b:
            break
        data += b
    apps.append(len(json.loads(data)["apps"]) if data.endswith(b"\n") else -1)
json.dump({"seconds": time.monotonic() - t0, "apps": apps}, open(out, "w"))
EOF
# lists_while_launching N OUT WHY: N lists from one client, and a launch of t answered by prewarmd
# and recorded while the client still waits (WHY: what holds it); then the client's replies whole.
lists_while_launching() {
  local n=$1 out=$2 why=$3 client before
  before=$(launch_count t)
  /usr/bin/python3 "$SCRATCH/lists.py" "$PREWARM_RUNTIME_DIR/control.sock" "$n" "$out" &
  client=$!
  cleanup "kill $client 2>/dev/null"
  wait_for 30 test -e "$out.sent"
  "$P" run t 2>"$out.err" || fail "the launch failed: $(cat "$out.err")"
  if has -e "not reachable" -e "starting cold without" "$out.err"; then fail "prewarmd did not answer the launch while $why: $(cat "$out.err")"; fi
  kill -0 "$client" 2>/dev/null || fail "the lists were answered before the launch was done: nothing held them ($why)"
  wait "$client" || fail "the list client failed"
  [ "$(/usr/bin/python3 -c "import json; print(min(json.load(open('$out'))['apps']))")" -ge 21 ] || fail "a list reply is not complete: $(cat "$out")"
  [ "$(launch_count t)" -gt "$before" ] || fail "the launch made while $why was not recorded"
}
lists_while_launching 1 "$SCRATCH/held.json" "a query was held (is PREWARM_FAULT_QUERY_STALL_MS read?)"

step "list and stats are paced per user: over the pace a query waits its turn, answered whole, and a launch goes on meanwhile"
stop_daemon
DAEMON_OPTS="--store-max-mib 4 --queries-per-second 1"
start_daemon
lists_while_launching 8 "$SCRATCH/paced.json" "queries waited their turn"
seconds=$(/usr/bin/python3 -c "import json; print(json.load(open('$SCRATCH/paced.json'))['seconds'])")
# At least seven of the eight wait a turn of a second each (launch_count's stats took the burst).
/usr/bin/python3 -c "import sys; sys.exit(0 if $seconds >= 6.5 else 1)" || fail "8 lists at 1 a second took $seconds s"
echo "8 lists at 1 a second: $seconds s"
echo "scale: ok"
