#!/usr/bin/env bash
# A hostile local user against prewarmd (root): a launch that execs a setuid program after its
# request (1), launches from processes that are gone or whose pid root's process took over (2),
# the image store (ownership and modes, a symlink swapped in during a removal, FIFOs and
# symlinks planted in it) (3), NOTIFY_SOCKET pointed at prewarmd itself, at a socket kept full
# and at a root-only socket (4), clients that trickle their request and a stopped prewarmd (5),
# and a --watch or argv file the user cannot read (6). Two unprivileged users, A and B, are
# created here; each item runs its own prewarmd.
# Usage: security_launch.sh BIN_DIR SOURCE_DIR
#   ONLY=3 (or ONLY=1,4) runs only those items; KEEP_GOING=1 goes on after a failed check and
#   reports every one (the exit status is still 1).
. "$(dirname "$0")/../lib/prelude.sh"
BIN=$(realpath "$1")
SRC=$(realpath "$2")
[ "$(id -u)" -eq 0 ] || skip "needs root (prewarmd runs as root; the test creates users)"
. "$(dirname "$0")/../lib/daemon.sh"
chmod 755 "$SCRATCH"
PY=/usr/bin/python3  # the users' python: the one first on PATH may be root's own
# ... and slow to start (a pyenv shim took 1.5 s here), which the polls of `field` pay each time.
export PATH=/usr/bin:/bin:$PATH
TOOLS=$SCRATCH/sec_tools.py
install -m 644 "$SRC/tests/apps/sec_tools.py" "$TOOLS"

want() { [ -z "${ONLY:-}" ] || [[ ",$ONLY," == *",$1,"* ]]; }
FAILED=0
bad() {
  echo "$TEST_NAME: FAIL: $*" >&2
  FAILED=1
  [ "${KEEP_GOING:-0}" = 1 ] || exit 1
}

ua=slxa$$ ub=slxb$$  # a prefix of its own: other tests clean up theirs
useradd --system --user-group --no-create-home --shell /usr/sbin/nologin "$ua"
cleanup "userdel $ua; groupdel $ua 2>/dev/null"
useradd --system --user-group --no-create-home --shell /usr/sbin/nologin "$ub"
cleanup "userdel $ub; groupdel $ub 2>/dev/null"
# Users' commands run with a small fixed environment: launches that should match a snapshot's
# key then do, whoever starts them.
run_as() {
  local u=$1; shift
  ${EXEC:-} env -i PATH=/usr/bin:/bin LANG=C.UTF-8 PREWARM_RUNTIME_DIR="$PREWARM_RUNTIME_DIR" PREWARM_STATE_DIR="$PREWARM_STATE_DIR" \
    ${EXTRA_ENV:+"$EXTRA_ENV"} setpriv --reuid="$(id -u "$u")" --regid="$(id -g "$u")" --init-groups "$@"
}
as_a() { run_as "$ua" "$@"; }
as_b() { run_as "$ub" "$@"; }
BD=$SCRATCH/b  # B's own directory
mkdir "$BD"
chown "$ub:$ub" "$BD"

# Everything started in the background is killed at the end of its item, by pid, and only
# while that pid is still the process started (some are not this shell's children, so their
# pids can be reused once they exit). In the background, users' commands run as
# `(EXEC=exec as_b ...) &`: $! is then the command's own pid.
BG=()
start_time() { sed 's/.*) //' /proc/"$1"/stat 2>/dev/null | cut -d' ' -f20; }
bg() { BG+=("$1:$(start_time "$1")"); }
end_bg() {
  local e keep=()
  for e in "${BG[@]}"; do
    if [ "${e%%:*}" = "$1" ]; then
      [ "$(start_time "$1")" != "${e#*:}" ] || kill -9 "$1" 2>/dev/null || true
      wait "$1" 2>/dev/null || true
    else
      keep+=("$e")
    fi
  done
  BG=(${keep[@]+"${keep[@]}"})
}
end_all_bg() { while [ ${#BG[@]} -gt 0 ]; do end_bg "${BG[0]%%:*}"; done; }
cleanup 'end_all_bg'
DAEMON=
# Each item gets its own prewarmd, state and runtime directories; a daemon a check left stuck
# or stopped is killed.
use_state() {
  export PREWARM_RUNTIME_DIR=$SCRATCH/$1/run PREWARM_STATE_DIR=$SCRATCH/$1/state
  mkdir -p "$SCRATCH/$1"
  chmod 755 "$SCRATCH/$1"
  LOG_FROM=$(stat -c %s "$SCRATCH/prewarmd.log" 2>/dev/null || echo 0)
}
log_since() { tail -c +$((LOG_FROM + 1)) "$SCRATCH/prewarmd.log"; }
stop_hard() {
  [ -n "$DAEMON" ] || return 0
  # A prewarmd that died on its own may have left its pid to another process.
  [ "$(cat /proc/"$DAEMON"/comm 2>/dev/null)" = prewarmd ] || { wait "$DAEMON" 2>/dev/null; DAEMON=; return 0; }
  kill -CONT "$DAEMON" 2>/dev/null || true
  kill "$DAEMON" 2>/dev/null || true
  local end=$((SECONDS + 5))
  while kill -0 "$DAEMON" 2>/dev/null && [ $SECONDS -lt $end ]; do sleep 0.1; done
  kill -9 "$DAEMON" 2>/dev/null || true
  wait "$DAEMON" 2>/dev/null || true
  DAEMON=
}
cleanup 'stop_hard'
sock() { echo "$PREWARM_RUNTIME_DIR/control.sock"; }
inflight() { "$P" list --json | python3 -c "import json,sys; print(json.load(sys.stdin).get('launches_in_flight', 'missing'))"; }
cpu_ticks() { awk '{print $14 + $15}' /proc/"$DAEMON"/stat; }
# cpu_percent SECONDS: prewarmd's CPU use over the next SECONDS, in percent of one core.
cpu_percent() {
  local t0 t1
  t0=$(cpu_ticks); sleep "$1"; t1=$(cpu_ticks)
  echo $(((t1 - t0) * 100 / ($(getconf CLK_TCK) * $1)))
}
# ms_of COMMAND...: runs COMMAND (its output dropped), prints how long it took ("N ms") and
# "(failed: exit N)" after it when it did not succeed.
ms_of() {
  local t0 rc=0
  t0=$(date +%s%N)
  "$@" >/dev/null 2>&1 || rc=$?
  echo "$((($(date +%s%N) - t0) / 1000000)) ms$([ "$rc" = 0 ] || echo " (failed: exit $rc)")"
}
# A capture of APP has come to an end: a valid image, or a state with a reason.
capture_over() {
  local s
  s=$(field "$1" state)
  [ "$s" = valid ] || { [ "$s" != capturing ] && [ -n "$(field "$1" reason)" ]; }
}
image_of() {  # image_of APP: the directory of APP's (one) image in the store
  local d
  for d in "$PREWARM_STATE_DIR"/store/*/; do
    python3 -c "import json,sys; sys.exit(json.load(open('$d/meta.json'))['app'] != '$1')" 2>/dev/null && echo "${d%/}"
  done
  return 0
}
# outcome SECONDS COMMAND...: like wait_for, but returns 1 instead of failing the test.
outcome() {
  local end=$((SECONDS + $1)); shift
  until "$@"; do
    [ "$SECONDS" -lt "$end" ] || return 1
    sleep 0.1
  done
}
euid_is() { [ "$(awk '/^Uid:/{print $3}' /proc/"$1"/status 2>/dev/null)" = "$2" ]; }
not_capturing() { [ "$(field "$1" state)" != capturing ]; }
# launch_b APP OUT: B launches APP in the background (stdin /dev/null, stdout and stderr to
# files, so every launch of a test has the same stdio kinds); LAUNCH is its pid.
launch_b() {
  (EXEC=exec as_b "$P" run "$1") </dev/null >"$2" 2>"$2.err" &
  LAUNCH=$!
  bg "$LAUNCH"
}
register_b() { (cd "$SCRATCH" && as_b "$P" register "$@" >/dev/null); }


if want 1; then
  step "1. a launch that execs a setuid-root program after its request is not captured"
  use_state i1
  start_daemon
  cp /bin/sleep "$SCRATCH/i1/suid-sleep"
  chmod 4755 "$SCRATCH/i1/suid-sleep"
  # Through the launcher: the registered command is a setuid-root program.
  register_b suid --ready delay:800 -- "$SCRATCH/i1/suid-sleep" 60
  launch_b suid "$SCRATCH/i1/suid.out"
  if outcome 10 euid_is "$LAUNCH" 0; then  # the exec made it root
    outcome 20 capture_over suid || true
    s=$(field suid state) r=$(field suid reason)
    [ "$s" != valid ] && [[ "$r" == *"capture refused"* ]] && [ "$(field suid images)" = 0 ] ||
      bad "a setuid-root process launched by B was captured into B's app (or no refusal said so): state $s, reason '$r', $(field suid images) images, store: $(ls -l "$PREWARM_STATE_DIR"/store/*/ 2>&1 | tr '\n' ' ')"
  else
    echo "   the launcher's exec of a setuid program did not raise its euid (no_new_privs?): $(grep '^Uid:' /proc/"$LAUNCH"/status 2>&1)"
  fi
  end_bg "$LAUNCH"
  # Without the launcher: B's own process asks for the launch, then execs the setuid program.
  # Ready 3 s after the request: the exec, right after the reply, comes first even on a loaded machine.
  register_b suid2 --ready delay:3000 -- /bin/sleep 60
  (EXEC=exec as_b "$PY" "$TOOLS" launch-exec "$(sock)" suid2 "$SCRATCH/i1/suid-sleep" 60) >"$SCRATCH/i1/suid2.out" 2>&1 &
  pid=$!
  bg "$pid"
  wait_for 60 euid_is "$pid" 0
  outcome 20 capture_over suid2 || true
  s=$(field suid2 state) r=$(field suid2 reason)
  [ "$s" != valid ] && [[ "$r" == *"capture refused"* ]] && [ "$(field suid2 images)" = 0 ] ||
    bad "B's raw launch that exec'ed a setuid-root program was captured: state $s, reason '$r' ($(cat "$SCRATCH/i1/suid2.out"))"
  end_bg "$pid"
  end_all_bg
  stop_hard
fi

if want 2; then
  step "2. launches of processes that are gone: not tracked, no CPU spent on them, no pid reuse"
  use_state i2
  start_daemon
  # idle readiness: prewarmd samples each tracked launch's /proc/PID/stat every 50 ms.
  register_b gone --ready idle:600000 -- /bin/sleep 60
  t0=$SECONDS; out=$(as_b timeout 150 "$PY" "$TOOLS" launch-gone "$(sock)" gone 1000) || fail "the clients did not finish: $out"
  echo "   1000 launches from gone processes in $((SECONDS - t0)) s: $out"
  sleep 1
  cpu=$(cpu_percent 3) n=$(inflight)
  [ "$n" = 0 ] && [ "$cpu" -lt 10 ] ||
    bad "after 1000 launches from processes that are gone: launches_in_flight $n, prewarmd uses ${cpu}% CPU"
  stop_hard
  # B connects and exits; root's process (holding a secret) takes the pid over; then B's
  # child sends the launch on B's connection. No image of root's process may appear.
  use_state i2b
  start_daemon
  register_b reuse --ready delay:1000 -- /bin/sleep 60
  secret="sec-secret-$$-$RANDOM$RANDOM"
  echo "$secret" >"$SCRATCH/i2b/secret"
  chmod 600 "$SCRATCH/i2b/secret"
  as_b "$PY" "$TOOLS" reuse-client "$(sock)" reuse "$BD/reuse.pid" "$BD/reuse.go" "$BD/reuse.reply"
  gone=$(cat "$BD/reuse.pid")
  wait_for 5 test -s "$BD/reuse.reply.pid"
  bg "$(cat "$BD/reuse.reply.pid")"
  wait_for 5 sh -c "! kill -0 $gone 2>/dev/null"
  if "$PY" "$TOOLS" reuse-pid "$gone" "$SCRATCH/i2b/secret" "$SCRATCH/i2b/reuser" >"$SCRATCH/i2b/reuse.out"; then
    bg "$(cat "$SCRATCH/i2b/reuser")"
    touch "$BD/reuse.go"
    wait_for 60 test -s "$BD/reuse.reply"
    sleep 2.5  # readiness after 1 s, then a capture of a small process
    wait_for 30 not_capturing reuse
    s=$(field reuse state)
    leaked=$(grep -rlas "$secret" "$PREWARM_STATE_DIR/store" || true)
    [ "$s" != valid ] && [ -z "$leaked" ] ||
      bad "root's process that took over the pid of B's gone client was captured for B: state $s, secret in: ${leaked:-nothing} (reply: $(cat "$BD/reuse.reply"))"
  else
    echo "   could not take pid $gone over on this busy machine ($(cat "$SCRATCH/i2b/reuse.out")); pid reuse not checked"
  fi
  end_all_bg
  stop_hard
fi

if want 3; then
  step "3a. images are root's and private; a launch hands B nothing it can list or write"
  use_state i3
  start_daemon
  register_b img --ready notify -- "$PY" "$TOOLS" hold 600
  launch_b img "$SCRATCH/i3/img.out"
  wait_for 30 capture_over img
  end_bg "$LAUNCH"
  state_is img valid || fail "img was not captured: $(field img state) $(field img reason)"
  img=$(image_of img)
  modes="$(stat -c '%U:%G %a' "$img") $(cd "$img" && stat -c '%n %U:%G %a' snapshot.pb pages.img meta.json | tr '\n' ' ')"
  [ "$modes" = "root:root 700 snapshot.pb root:root 600 pages.img root:root 600 meta.json root:root 600 " ] ||
    bad "image not root's and private: $modes"
  as_b "$PY" "$TOOLS" probe-image "$(sock)" img chardev,file,file >"$SCRATCH/i3/probe.out" 2>&1 || true
  ! grep -q "WRITABLE\|LISTED" "$SCRATCH/i3/probe.out" || bad "B can list or write its image: $(tr '\n' ' ' <"$SCRATCH/i3/probe.out")"
  grep -q "^mode=restore" "$SCRATCH/i3/probe.out" ||
    echo "   note: B's replayed launch was not a restore, nothing was handed over to probe: $(tr '\n' ' ' <"$SCRATCH/i3/probe.out")"

  step "3b. a symlink swapped in for a directory inside an image: invalidate leaves the victim intact"
  victim=$SCRATCH/i3/victim  # root's, outside the state directory
  mkdir "$victim"
  (cd "$victim" && seq -f 'v%04g' 0 999 | xargs touch)
  # B plants through what a launch hands over; where B cannot (as it should be), root plants
  # the same: the removal itself must not follow what it finds inside an image. The race is
  # won only sometimes: up to three rounds, each with a fresh image.
  for round in 1 2 3; do
    # B's replayed launch above took the image and exited without a restore: prewarmd took that
    # for a restore that died and quarantined the image, so round 1 may need a fresh one too.
    if [ "$round" -gt 1 ] || ! [ -d "$img" ]; then
      launch_b img "$SCRATCH/i3/img.out"
      wait_for 30 state_is img valid
      end_bg "$LAUNCH"
      img=$(image_of img)
    fi
    rm -f "$SCRATCH/i3/race.stop" "$SCRATCH/i3/race.started" "$BD/race.started"
    (EXEC=exec as_b "$PY" "$TOOLS" race "$victim" "$SCRATCH/i3/race.stop" "$BD/race.started" "$(sock)" img chardev,file,file) >"$BD/race.out" 2>&1 &
    racer=$!
    bg "$racer"
    end=$((SECONDS + 60))
    while [ ! -e "$BD/race.started" ] && kill -0 "$racer" 2>/dev/null; do
      [ $SECONDS -lt $end ] || fail "B's racer neither planted nor gave up"
      sleep 0.1
    done
    if [ -e "$BD/race.started" ]; then
      echo "   round $round: B planted symlinks inside its image directory"
    else
      echo "   round $round: B could not plant ($(cat "$BD/race.out")); root plants them"
      wait "$racer" 2>/dev/null || true
      if ! [ -d "$img" ]; then  # B's racer took the image and exited: quarantined (see above)
        launch_b img "$SCRATCH/i3/img.out"
        wait_for 30 state_is img valid
        end_bg "$LAUNCH"
        img=$(image_of img)
      fi
      "$PY" "$TOOLS" race "$victim" "$SCRATCH/i3/race.stop" "$SCRATCH/i3/race.started" --dir "$img" >"$SCRATCH/i3/race.out" 2>&1 &
      racer=$!
      bg "$racer"
      wait_for 60 test -e "$SCRATCH/i3/race.started"
    fi
    sleep 0.3
    as_b "$P" invalidate img >/dev/null || bad "B's invalidate of its own app failed"
    touch "$SCRATCH/i3/race.stop"
    wait "$racer" 2>/dev/null || true
    left=$(ls "$victim" | wc -l)
    [ "$left" = 1000 ] || { bad "prewarm invalidate (round $round) deleted $((1000 - left)) of the 1000 files in root's $victim"; break; }
  done

  step "3c. FIFOs and symlinks planted in the store: prewarmd starts, says so, launches start cold"
  # A fresh image of img (its pages.img becomes a FIFO) and one of img2 (moved outside the
  # state directory, a symlink left in its place).
  launch_b img "$SCRATCH/i3/img.out"
  wait_for 30 state_is img valid
  end_bg "$LAUNCH"
  register_b img2 --ready notify -- "$PY" "$TOOLS" hold 600
  launch_b img2 "$SCRATCH/i3/img2.out"
  wait_for 30 state_is img2 valid
  end_bg "$LAUNCH"
  img=$(image_of img) key2=$(basename "$(image_of img2)")
  stop_hard
  rm "$img/pages.img"
  mkfifo -m 600 "$img/pages.img"
  chown --reference="$img" "$img/pages.img"  # as the image's owner could have made it
  mkfifo -m 600 "$PREWARM_STATE_DIR/store/sec-fifo"
  fake=fefefefefefefefefefefefefefefefe
  mkdir -m 700 "$PREWARM_STATE_DIR/store/$fake"
  mkfifo -m 600 "$PREWARM_STATE_DIR/store/$fake/meta.json"
  mkdir "$SCRATCH/i3/outside"
  mv "$PREWARM_STATE_DIR/store/$key2" "$SCRATCH/i3/outside/"
  ln -s "$SCRATCH/i3/outside/$key2" "$PREWARM_STATE_DIR/store/$key2"
  LOG_FROM=$(stat -c %s "$SCRATCH/prewarmd.log")
  "$BIN/prewarmd" --runtime-dir "$PREWARM_RUNTIME_DIR" --state-dir "$PREWARM_STATE_DIR" --http 127.0.0.1:0 >>"$SCRATCH/prewarmd.log" 2>&1 &
  DAEMON=$!
  end=$((SECONDS + 5))
  until "$P" list >/dev/null 2>&1 || [ $SECONDS -ge $end ]; do sleep 0.1; done
  if ! "$P" list >/dev/null 2>&1; then
    bad "prewarmd did not answer within 5 s of its start with FIFOs and a symlink in its store: $(log_since | tail -3 | tr '\n' ' ')"
    stop_hard
    rm -rf "${PREWARM_STATE_DIR:?}/store/$fake"
    start_daemon
  fi
  for name in sec-fifo "$fake" "$key2"; do
    log_since | has -- "$name" || bad "prewarmd's log has no line naming the planted $name: $(log_since | tr '\n' ' ')"
  done
  # A launch of img must not open the FIFO (it would wait for a writer forever).
  launch_b img "$SCRATCH/i3/fifo.out"
  end=$((SECONDS + 8))
  until grep -q started "$SCRATCH/i3/fifo.out" || [ $SECONDS -ge $end ]; do sleep 0.1; done
  [ "$(last img mode)" = cold ] && grep -q started "$SCRATCH/i3/fifo.out" ||
    bad "prewarm run of an image whose pages.img is a FIFO did not start cold within 8 s (state $(field img state)): $(cat "$SCRATCH/i3/fifo.out.err")"
  # named at the start or at this launch: the file, or the image it is in
  log_since | has -- "pages.img\|$(basename "$img")" || bad "prewarmd's log has no line naming the FIFO $img/pages.img: $(log_since | tr '\n' ' ')"
  end_bg "$LAUNCH"
  # A launch of img2 must not restore the image the symlink points at.
  launch_b img2 "$SCRATCH/i3/link.out"
  end=$((SECONDS + 8))
  until grep -q started "$SCRATCH/i3/link.out" || [ $SECONDS -ge $end ]; do sleep 0.1; done
  [ "$(last img2 mode)" = cold ] && grep -q started "$SCRATCH/i3/link.out" ||
    bad "prewarm run of img2 did not start cold within 8 s: launch mode $(last img2 mode), it used the image behind the symlink store/$key2"
  end_bg "$LAUNCH"
  end_all_bg
  stop_hard
fi

if want 4; then
  step "4a. NOTIFY_SOCKET is prewarmd's own notify socket: prewarmd stays responsive"
  use_state i4
  start_daemon
  register_b loop --ready notify -- "$PY" "$TOOLS" notify-app "$BD/loop.ready"
  EXTRA_ENV=NOTIFY_SOCKET=$PREWARM_RUNTIME_DIR/notify.sock launch_b loop "$SCRATCH/i4/loop.out"
  wait_for 60 test -e "$BD/loop.ready"
  sleep 1
  t=$(ms_of as_a timeout 10 "$P" list)
  cpu=$(cpu_percent 2)
  [[ "$t" != *failed* ]] && [ "${t%% *}" -lt 3000 ] && [ "$cpu" -lt 20 ] ||
    bad "with NOTIFY_SOCKET set to prewarmd's own socket: A's prewarm list took $t, prewarmd uses ${cpu}% CPU"
  end_bg "$LAUNCH"
  stop_hard

  step "4b. a NOTIFY_SOCKET that B keeps full does not stall A's requests"
  use_state i4b
  start_daemon
  (EXEC=exec as_b "$PY" "$TOOLS" fill "$BD/full.sock" "$BD/full.ready") &
  bg $!
  wait_for 60 test -s "$BD/full.ready"
  register_b full --ready notify -- "$PY" "$TOOLS" notify-app "$BD/full.app"
  EXTRA_ENV=NOTIFY_SOCKET=$BD/full.sock launch_b full "$SCRATCH/i4/full.out"
  wait_for 60 test -e "$BD/full.app"
  sleep 1
  t=$(ms_of as_a timeout 10 "$P" list)
  [[ "$t" != *failed* ]] && [ "${t%% *}" -lt 3000 ] ||
    bad "with B's NOTIFY_SOCKET full ($(cat "$BD/full.ready")): A's prewarm list took $t"
  end_bg "$LAUNCH"
  stop_hard

  step "4c. a socket in a root-only directory never receives B's text signed uid 0"
  use_state i4c
  start_daemon
  mkdir -m 700 "$SCRATCH/i4/rootonly"
  "$PY" "$TOOLS" recv-creds "$SCRATCH/i4/rootonly/notify.sock" "$SCRATCH/i4/creds.log" &
  bg $!
  wait_for 60 test -S "$SCRATCH/i4/rootonly/notify.sock"
  register_b creds --ready notify -- "$PY" "$TOOLS" notify-app "$BD/creds.app" READY=1 "STATUS=sent by user B" MAINPID=1
  EXTRA_ENV=NOTIFY_SOCKET=$SCRATCH/i4/rootonly/notify.sock launch_b creds "$SCRATCH/i4/creds.out"
  wait_for 60 test -e "$BD/creds.app"
  sleep 1.5
  touch "$SCRATCH/i4/creds.log"
  ! grep "uid=0 .*sent by user B" "$SCRATCH/i4/creds.log" >/dev/null ||
    bad "B's text reached a root-only socket signed uid 0: $(head -3 "$SCRATCH/i4/creds.log" | tr '\n' ' ')"
  end_bg "$LAUNCH"
  end_all_bg
  stop_hard
fi

if want 5; then
  step "5a. clients that trickle their request do not delay A's requests"
  use_state i5
  start_daemon
  (EXEC=exec as_b "$PY" "$TOOLS" trickle "$(sock)") &
  bg $!
  sleep 0.5
  t=$(ms_of as_a timeout 10 "$P" list)
  [[ "$t" != *failed* ]] && [ "${t%% *}" -lt 3500 ] || bad "with one client of B trickling a byte every 1.5 s: A's prewarm list took $t"
  for i in $(seq 19); do
    (EXEC=exec as_b "$PY" "$TOOLS" trickle "$(sock)") &
    bg $!
  done
  sleep 1
  for round in 1 2; do
    t=$(ms_of as_a timeout 10 "$P" list)
    [[ "$t" != *failed* ]] && [ "${t%% *}" -lt 3500 ] || bad "with 20 clients of B trickling (round $round): A's prewarm list took $t"
    sleep 2
  done
  end_all_bg
  stop_hard

  step "5b. a stopped prewarmd: prewarm run starts cold within a few seconds"
  use_state i5b
  start_daemon
  "$P" register quick --ready delay:100 -- /bin/echo cold-start-ok >/dev/null
  kill -STOP "$DAEMON"
  t=$(ms_of sh -c "timeout 10 '$P' run quick </dev/null >'$SCRATCH/i5b.out' 2>'$SCRATCH/i5b.err'")
  kill -CONT "$DAEMON"
  grep -q cold-start-ok "$SCRATCH/i5b.out" && [[ "$t" != *failed* ]] && [ "${t%% *}" -lt 4000 ] &&
    grep -Eq "prewarmd.*(not reachable|did not answer)" "$SCRATCH/i5b.err" ||
    bad "with prewarmd stopped: prewarm run took $t, output '$(cat "$SCRATCH/i5b.out")', stderr '$(cat "$SCRATCH/i5b.err")'"
  t=$(ms_of "$P" list)
  [[ "$t" != *failed* ]] && [ "${t%% *}" -lt 3000 ] || bad "prewarmd did not answer after SIGCONT: $t"
  sleep 1
  [ "$(inflight)" = 0 ] || bad "the launch that gave up while prewarmd was stopped is still tracked: launches_in_flight $(inflight)"
  end_all_bg
  stop_hard
fi

if want 6; then
  step "6. a --watch or argv file the user cannot read makes the capture fail"
  use_state i6
  start_daemon
  mkdir -m 755 "$SCRATCH/i6/etc"
  secret=$SCRATCH/i6/etc/root-only.conf
  echo "root's secret $RANDOM" >"$secret"
  chmod 600 "$secret"
  register_b watch --ready notify --watch "$secret" -- "$PY" "$TOOLS" hold 600
  register_b argv --ready notify -- "$PY" "$TOOLS" hold 600 "$secret"
  for app in watch argv; do
    launch_b "$app" "$SCRATCH/i6/$app.out"
    wait_for 30 capture_over "$app"
    end_bg "$LAUNCH"
    s=$(field "$app" state) r=$(field "$app" reason)
    [ "$s" != valid ] && [[ "$r" == *"cannot record"* && "$r" == *"$secret"* && "$r" == *"Permission denied"* ]] ||
      bad "$app: a file B cannot read ($secret) was recorded for B's app: state $s, reason '$r'"
  done
  end_all_bg
  stop_hard
fi

[ "$FAILED" = 0 ] || exit 1
echo "security_launch: PASS"
