#!/usr/bin/env bash
# A socket-activated HTTP server through prewarmd without systemd: each launch is `prewarm run`
# exec'ed by a small stand-in for systemd that binds a new unix listener at one path, puts it at
# fd 3 and sets LISTEN_PID/LISTEN_FDS/LISTEN_FDNAMES (sd_listen_fds(3)). The first launch is cold
# and captured; the next is restored and answers on its own launch's socket with the snapshot's
# token; a launch that passes no socket is refused the restore and starts cold as it is. An app
# that moves the socket to another fd is restored with this launch's socket there.
# Usage: listen.sh BIN_DIR SOURCE_DIR
. "$(dirname "$0")/../lib/prelude.sh"
BIN=$(realpath "$1")
SRC=$(realpath "$2")
[ "$(id -u)" -eq 0 ] || skip "needs root (prewarmd ptraces the app)"
. "$(dirname "$0")/../lib/daemon.sh"
start_daemon
cleanup end_daemon
SOCK=$SCRATCH/web.sock

# launch N APP [PATH]: `prewarm run APP` in the background with a new listener at PATH as fd 3
# (none without PATH); LAUNCH is its pid, which the app keeps, cold or restored.
launch() {
  python3 - "$P" "$2" "${3:-}" <<'EOF' >"$SCRATCH/launch.$1.out" 2>&1 &
import os, socket, sys
prewarm, app, path = sys.argv[1], sys.argv[2], sys.argv[3]
if path:
    if os.path.exists(path):
        os.unlink(path)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    s.listen(16)
    if s.fileno() == 3:
        os.set_inheritable(3, True)
    else:
        os.dup2(s.fileno(), 3)  # inheritable; s itself is close-on-exec
    os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS="1", LISTEN_FDNAMES="web")
os.execv(prewarm, [prewarm, "run", app])
EOF
  LAUNCH=$!
  cleanup "kill $LAUNCH 2>/dev/null || true"
}
get() {  # the body of GET / on the unix socket
  python3 -c '
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(20)
s.connect(sys.argv[1])
s.sendall(b"GET / HTTP/1.0\r\n\r\n")
print(s.makefile("rb").read().decode().split("\r\n\r\n", 1)[1].strip())' "$SOCK" 2>/dev/null
}
answered() { A=$(get) && [ -n "$A" ]; }
ended() { kill "$1" && wait "$1" 2>/dev/null || true; }
exited() { [ ! -e "/proc/$1" ] || has '^State:.*Z' <"/proc/$1/status"; }  # gone or a zombie

step "register the server; the first launch is cold and captured once idle"
"$P" register web --ready idle:300 -- /usr/bin/python3 "$SRC/tests/apps/listen_app.py" >/dev/null
launch 1 web "$SOCK"
wait_for 60 answered
echo "   cold answer: $A"
case "$A" in "token="*" pid=$LAUNCH fd3=socket:["*"]") ;; *) fail "cold answer from pid $LAUNCH: $A" ;; esac
cold_token=${A%% *}
[ "$(last web mode)" = cold ] || fail "first launch was $(last web mode)"
wait_for 60 state_is web valid || fail "not captured: $(field web state) $(field web reason)"
"$P" inspect --images "$(ls -d "$PREWARM_STATE_DIR"/store/*/)" --json | has '"FD_PASSED"' || fail "fd 3 is not recorded as the launch's"
ended "$LAUNCH"

step "a launch with a new socket at that path: restored, and the restored pid answers on it"
launch 2 web "$SOCK"
wait_for 60 answered
echo "   restored answer: $A"
case "$A" in "$cold_token pid=$LAUNCH fd3=socket:["*"]") ;; *) fail "restored answer from pid $LAUNCH: $A" ;; esac
wait_for 30 ready_known web
[ "$(last web mode)" = restored ] || fail "second launch was $(last web mode): $(last web fallback) $(cat "$SCRATCH/launch.2.out")"
ended "$LAUNCH"

step "a launch that passes no socket: the restore is refused by name, the app starts cold without one"
launch 3 web
wait_for 30 exited "$LAUNCH"
rc=0; wait "$LAUNCH" || rc=$?
echo "   fallback: $(last web fallback)"
[ "$(last web mode)" = cold ] || fail "a launch without sockets was $(last web mode)"
last web fallback | has "passed 1 socket (LISTEN_FDS), this launch passes none" || fail "fallback: $(last web fallback)"
has "listen_app: expected one socket" <"$SCRATCH/launch.3.out" || fail "the cold app did not run as launched (exit $rc): $(cat "$SCRATCH/launch.3.out")"

step "an app that moves the socket to fd 10 and closes fd 3 (as Go's net.FileListener does): restored at fd 10"
"$P" register web10 --ready idle:300 -- /usr/bin/python3 "$SRC/tests/apps/listen_app.py" --move-to=10 >/dev/null
launch 4 web10 "$SOCK"
wait_for 60 answered
echo "   cold answer: $A"
case "$A" in "token="*" pid=$LAUNCH fd10=socket:["*"]") ;; *) fail "cold answer from pid $LAUNCH: $A" ;; esac
cold_token=${A%% *}
wait_for 60 state_is web10 valid || fail "not captured: $(field web10 state) $(field web10 reason)"
ended "$LAUNCH"
launch 5 web10 "$SOCK"
wait_for 60 answered
echo "   restored answer: $A"
case "$A" in "$cold_token pid=$LAUNCH fd10=socket:["*"]") ;; *) fail "restored answer from pid $LAUNCH: $A" ;; esac
wait_for 30 ready_known web10
[ "$(last web10 mode)" = restored ] || fail "the moved socket's launch was $(last web10 mode): $(last web10 fallback)"
[ "$(ls "/proc/$LAUNCH/fd")" = "$(printf '0\n1\n10\n2')" ] || fail "the restored app's fds: $(ls "/proc/$LAUNCH/fd" | tr '\n' ' ')"
ended "$LAUNCH"
"$P" stats || true
echo "listen: PASS"
