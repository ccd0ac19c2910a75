#!/usr/bin/env bash
# End to end with a real systemd (PID 1 of a pid+mount namespace on an overlay of /): install,
# socket-activate prewarmd, launch a python3+sympy+numpy app through prewarm@.service cold, then
# restored (MainPID is the restored app and answers), survive prewarmd restarts, go cold again
# after an upgrade of the app's executable, never snapshot an app with a perf_event mapping, and
# restore a socket-activated HTTP server (a .socket unit for prewarm@web) on the socket systemd
# passes to the restoring launch, or start it cold when that socket is not the snapshot's.
# Usage: e2e.sh BUILD_DIR SOURCE_DIR
. "$(dirname "$0")/../lib/prelude.sh"
BUILD=$(realpath "$1")
SRC=$(realpath "$2")
[ "$(id -u)" -eq 0 ] || skip "needs root (namespaces, overlay mounts)"
command -v unshare >/dev/null && [ -x /lib/systemd/systemd ] || skip "needs unshare and systemd"

step "boot systemd in a pid+mount namespace on an overlay of /"
mkdir -p "$SCRATCH/ns"
setsid unshare --pid --fork --mount --propagation private "$SRC/tests/systemd/boot.sh" "$SCRATCH/ns" \
  </dev/null >"$SCRATCH/boot.log" 2>&1 &
UNSHARE=$!
cleanup "kill -9 $UNSHARE 2>/dev/null; wait $UNSHARE 2>/dev/null"
find_pid1() { SD=$(pgrep -P "$UNSHARE" -x systemd || true); [ -n "$SD" ]; }
wait_for 20 find_pid1
IN() { nsenter -t "$SD" -a "$@"; }
cleanup 'IN systemctl poweroff --no-block >/dev/null 2>&1; for i in $(seq 50); do kill -0 '"$UNSHARE"' 2>/dev/null || break; sleep 0.2; done'
running() { [ "$(IN systemctl is-system-running 2>/dev/null)" = running ] || [ "$(IN systemctl is-system-running 2>/dev/null)" = degraded ]; }
wait_for 30 running

step "install and start prewarmd through its socket"
# Through /proc/PID/root, so the build and source trees need not be visible inside (its /tmp is new).
ROOT=/proc/$SD/root
DESTDIR=$ROOT cmake --install "$BUILD" --prefix /usr/local >/dev/null
IN systemctl daemon-reload
IN systemctl start prewarmd.socket
IN test -S /run/prewarm/control.sock || fail "no control socket"
# The first request activates the service.
IN /usr/local/bin/prewarm list >/dev/null
[ "$(IN systemctl show -P Type prewarmd.service)" = notify ] || fail "prewarmd.service is not Type=notify"
[ "$(IN systemctl is-active prewarmd.service)" = active ] || fail "prewarmd did not start"
[ "$(IN stat -c %a /var/lib/prewarm)" = 711 ] || fail "state directory is not 0711 (StateDirectoryMode=)"
[ "$(IN stat -c %a /var/lib/prewarm/store)" = 700 ] || fail "the image store is not 0700"

step "register a python3+sympy+numpy app (its own copy of the interpreter, to upgrade it later)"
IN mkdir -p /opt/e2e /var/tmp/e2e
IN cp /usr/bin/python3.11 /opt/e2e/python3
cp "$SRC/tests/apps/notify_app.py" "$SRC/tests/apps/perf_app.py" "$ROOT/opt/e2e/"
# numpy's BLAS pinned to one thread: where OpenBLAS is the system's libblas.so.3 every numpy
# process has a second thread, and a multi-threaded app is never snapshotted.
IN sh -c 'cd /opt/e2e && /usr/local/bin/prewarm register calc --ready notify -- /usr/bin/env OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 /opt/e2e/python3 /opt/e2e/notify_app.py /var/tmp/e2e'

json() { IN /usr/local/bin/prewarm "$@" --json; }
app_state() { json list | python3 -c "import json,sys; a=[x for x in json.load(sys.stdin)['apps'] if x['name']=='$1']; print(a[0]['state'] if a else 'missing')"; }
app_reason() { json list | python3 -c "import json,sys; print([x for x in json.load(sys.stdin)['apps'] if x['name']=='$1'][0]['reason'])"; }
last_mode() { json stats "$1" | python3 -c "import json,sys; print(json.load(sys.stdin)['apps'][0]['recent'][-1]['mode'])"; }
state_is() { [ "$(app_state "$1")" = "$2" ]; }
main_pid() { IN systemctl show -P MainPID "prewarm@$1.service"; }
# ask N: the running app answers through its request box; prints the answer line.
ask() {
  IN rm -f /var/tmp/e2e/answer
  IN sh -c "echo $1 > /var/tmp/e2e/request.tmp && mv /var/tmp/e2e/request.tmp /var/tmp/e2e/request"
  wait_for 20 IN test -e /var/tmp/e2e/answer
  IN cat /var/tmp/e2e/answer
}
check_answer() {  # ask 360 and check pid and results
  local a pid
  a=$(ask 360)
  pid=$(main_pid calc)
  echo "   answer: $a (MainPID $pid)"
  case "$a" in "pid=$pid factors={2: 3, 3: 2, 5: 1} sum=64620 integral=x**3/3") ;; *) fail "wrong answer: $a" ;; esac
}

step "first start: cold, captured once ready"
IN systemctl start prewarm@calc.service   # returns once READY=1 reached systemd (Type=notify)
[ "$(IN systemctl is-active prewarm@calc.service)" = active ] || fail "unit not active"
[ "$(last_mode calc)" = cold ] || fail "first launch was not cold"
# Captured before it is asked: a capture that freezes it while it writes answer.tmp, renamed as
# soon as it runs on, finds that file gone when recording it and fails.
wait_for 30 state_is calc valid
check_answer

step "restart prewarmd: registrations and images survive"
IN systemctl restart prewarmd.service
state_is calc valid || fail "after a prewarmd restart calc is $(app_state calc)"

step "second start: restored; MainPID is the restored app and answers"
IN systemctl stop prewarm@calc.service
IN systemctl start prewarm@calc.service
[ "$(IN systemctl is-active prewarm@calc.service)" = active ] || fail "restored unit not active"
[ "$(last_mode calc)" = restored ] || fail "second launch was $(last_mode calc), not restored"
check_answer
IN systemctl stop prewarm@calc.service

step "upgrade the app's executable: stale, the next start is cold and captured again"
IN sh -c 'cp /opt/e2e/python3 /opt/e2e/python3.new && mv /opt/e2e/python3.new /opt/e2e/python3'
wait_for 10 state_is calc stale   # noticed by inotify, before any launch
app_reason calc | has /opt/e2e/python3 || fail "stale reason does not name the executable: $(app_reason calc)"
IN systemctl restart prewarmd.service
IN systemctl start prewarm@calc.service
[ "$(last_mode calc)" = cold ] || fail "launch after the upgrade was not cold"
wait_for 30 state_is calc valid
check_answer
IN systemctl stop prewarm@calc.service
IN systemctl start prewarm@calc.service
[ "$(last_mode calc)" = restored ] || fail "launch after the re-capture was not restored"
check_answer
IN systemctl stop prewarm@calc.service

step "an app with a perf_event mapping: always cold, listed as unsupported with the reason"
# The feature program says "skip: ..." where perf_event_open is not available.
perf_probe=$("$BUILD/tests/progs/prog_perf_event" </dev/null | sed -n 1p || true)
case "$perf_probe" in
  skip*) echo "   not tried: $perf_probe" ;;
  *)
    IN sh -c 'cd /opt/e2e && /usr/local/bin/prewarm register perf --ready notify -- /usr/bin/python3 /opt/e2e/perf_app.py'
    IN systemctl start prewarm@perf.service
    wait_for 30 state_is perf unsupported
    app_reason perf | has 'anon_inode:\[perf_event\]' || fail "reason does not name the perf mapping: $(app_reason perf)"
    [ "$(IN systemctl is-active prewarm@perf.service)" = active ] || fail "perf app is not running after the refused capture"
    IN systemctl stop prewarm@perf.service
    IN systemctl restart prewarmd.service
    IN systemctl start prewarm@perf.service
    [ "$(last_mode perf)" = cold ] || fail "perf app was not started cold"
    state_is perf unsupported || fail "perf app lost its unsupported state"
    IN systemctl stop prewarm@perf.service
    ;;
esac

step "a user's app through prewarm@USER:NAME: cold and captured, then restored (prewarmd's capabilities suffice)"
NB() { IN setpriv --reuid=65534 --regid=65534 --clear-groups "$@"; }
IN install -d -o 65534 -g 65534 /var/tmp/e2e-nobody
NB sh -c 'cd /var/tmp/e2e-nobody && /usr/local/bin/prewarm register uapp --ready idle:300 -- /usr/bin/python3 -c "import json, time; print(json.dumps({\"up\": 1}), flush=True); time.sleep(1e6)"' >/dev/null
nb_state() { NB /usr/local/bin/prewarm list --json | python3 -c "import json,sys; print([x for x in json.load(sys.stdin)['apps'] if x['name']=='uapp'][0]['state'])"; }
nb_mode() { NB /usr/local/bin/prewarm stats uapp --json | python3 -c "import json,sys; print(json.load(sys.stdin)['apps'][0]['recent'][-1]['mode'])"; }
IN systemctl start prewarm@nobody:uapp.service
[ "$(nb_mode)" = cold ] || fail "the user's first launch was $(nb_mode)"
nb_valid() { [ "$(nb_state)" = valid ]; }
wait_for 60 nb_valid
IN systemctl stop prewarm@nobody:uapp.service
IN systemctl start prewarm@nobody:uapp.service
[ "$(nb_mode)" = restored ] || fail "the user's second launch was $(nb_mode), not restored"
[ "$(IN stat -c %U "/proc/$(main_pid nobody:uapp)")" = nobody ] || fail "the user's restored app does not run as nobody"
IN systemctl stop prewarm@nobody:uapp.service
NB /usr/local/bin/prewarm unregister uapp >/dev/null

step "a socket-activated HTTP server (a .socket unit for prewarm@web): cold, then restored on systemd's socket"
cp "$SRC/tests/apps/listen_app.py" "$ROOT/opt/e2e/"
# The namespace shares the machine's network: a port free now, on loopback only.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
web_socket() {  # PORT: (re)writes and starts e2e-web.socket, which activates prewarm@web.service
  printf '[Socket]\nListenStream=127.0.0.1:%s\nFileDescriptorName=web\nService=prewarm@web.service\n' "$1" \
    > "$ROOT/etc/systemd/system/e2e-web.socket"
  IN systemctl daemon-reload
  IN systemctl restart e2e-web.socket
}
get() { IN python3 -c "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:$1/', timeout=30).read().decode().strip())"; }
last_fallback() { json stats "$1" | python3 -c "import json,sys; print(json.load(sys.stdin)['apps'][0]['recent'][-1]['fallback'])"; }
# The answer's fd 3 must be a socket systemd (PID 1 there) holds itself, and MainPID must answer.
check_web() {  # ANSWER: prints the token
  local a=$1 pid ino
  pid=$(main_pid web)
  case "$a" in "token="*" pid=$pid fd3=socket:["*"]") ;; *) fail "wrong answer from prewarm@web (MainPID $pid): $a" ;; esac
  ino=${a##*fd3=}
  IN sh -c "ls -l /proc/1/fd | grep -qF '$ino'" || fail "fd 3 of the app ($ino) is not a socket systemd holds"
  a=${a#token=}
  echo "${a%% *}"
}
IN sh -c 'cd /opt/e2e && /usr/local/bin/prewarm register web --ready idle:300 -- /usr/bin/python3 /opt/e2e/listen_app.py' >/dev/null
PORT=$(free_port)
web_socket "$PORT"
[ "$(IN systemctl is-active prewarm@web.service)" = inactive ] || fail "prewarm@web started before any connection"
a=$(get "$PORT"); echo "   cold answer: $a"
[ "$(last_mode web)" = cold ] || fail "the first socket-activated launch was not cold"
cold_token=$(check_web "$a")
wait_for 30 state_is web valid
IN systemctl stop prewarm@web.service   # the socket stays; the next connection starts it again
[ "$(IN systemctl is-active e2e-web.socket)" = active ] || fail "e2e-web.socket is not listening"
a=$(get "$PORT"); echo "   restored answer: $a"
[ "$(last_mode web)" = restored ] || fail "the second socket-activated launch was $(last_mode web) ($(last_fallback web))"
token=$(check_web "$a")
[ "$token" = "$cold_token" ] || fail "the restored server's token is not the snapshot's: $a"
a=$(get "$PORT"); token=$(check_web "$a")   # and it goes on serving
IN systemctl stop prewarm@web.service

step "the socket moves to another port: that launch's socket is not the snapshot's, so it starts cold on it; the next is restored"
PORT2=$(free_port)
web_socket "$PORT2"
a=$(get "$PORT2"); echo "   answer: $a"
[ "$(last_mode web)" = cold ] || fail "a launch passing a socket on another address was $(last_mode web)"
echo "   fallback: $(last_fallback web)"
last_fallback web | has "127.0.0.1:$PORT2" || fail "the fallback does not name the new address: $(last_fallback web)"
token=$(check_web "$a")
[ "$token" != "$cold_token" ] || fail "the launch on the new socket did not start afresh: $a"
wait_for 30 state_is web valid   # the refused image is quarantined, the cold start captured
IN systemctl stop prewarm@web.service
a=$(get "$PORT2"); echo "   answer: $a"
[ "$(last_mode web)" = restored ] || fail "the launch after the capture on the new socket was $(last_mode web) ($(last_fallback web))"
restored_token=$(check_web "$a")
[ "$restored_token" = "$token" ] || fail "restored on the new socket with another token: $a"
IN systemctl stop prewarm@web.service e2e-web.socket
IN /usr/local/bin/prewarm unregister web >/dev/null

step "another user sees none of root's apps and cannot launch them"
[ "$(IN setpriv --reuid=65534 --regid=65534 --clear-groups /usr/local/bin/prewarm list --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["apps"]))')" = 0 ] \
  || fail "uid 65534 can list root's apps"
rc=0; IN setpriv --reuid=65534 --regid=65534 --clear-groups /usr/local/bin/prewarm run calc </dev/null >/dev/null 2>&1 || rc=$?
[ "$rc" = 4 ] || fail "uid 65534 running root's app: exit $rc, expected 4"
echo "e2e: PASS"
