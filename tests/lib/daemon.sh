# Sourced after prelude.sh by the tests that drive a foreground prewarmd (needs BIN): its own
# runtime and state directories in the scratch dir, start/stop, and readers of `--json` output.
P=$BIN/prewarm
# The JSON readers below run python3 at every poll: Debian's, not a slower shim earlier on PATH.
export PATH=/usr/bin:/bin:$PATH
export PREWARM_RUNTIME_DIR=$SCRATCH/run PREWARM_STATE_DIR=$SCRATCH/state

# start_daemon [WRAPPER...]: under a wrapper (strace), DAEMON is still prewarmd's own pid.
# DAEMON_OPTS: more prewarmd options, for every start of the test.
start_daemon() {
  # shellcheck disable=SC2086 # options, split on spaces
  "$@" "$BIN/prewarmd" --runtime-dir "$PREWARM_RUNTIME_DIR" --state-dir "$PREWARM_STATE_DIR" --http 127.0.0.1:0 ${DAEMON_OPTS:-} >>"$SCRATCH/prewarmd.log" 2>&1 &
  DAEMON=$!
  if [ $# -gt 0 ]; then
    wait_for 10 pgrep -P "$DAEMON" -x prewarmd >/dev/null
    DAEMON=$(pgrep -P "$DAEMON" -x prewarmd)
  fi
  wait_for 10 "$P" list >/dev/null 2>&1
}
stop_daemon() {
  kill "$DAEMON"
  wait "$DAEMON" 2>/dev/null || wait_for 10 sh -c "! kill -0 $DAEMON 2>/dev/null"
}
# The tests' exit cleanup: a stopped daemon is continued, and waited for, because it saves its state
# as it exits and the scratch directory is removed next (a daemon still writing made that rm fail).
end_daemon() {
  kill -CONT "$DAEMON" 2>/dev/null || return 0
  kill "$DAEMON" 2>/dev/null || return 0
  local i
  for i in $(seq 300); do kill -0 "$DAEMON" 2>/dev/null || break; sleep 0.1; done
  wait "$DAEMON" 2>/dev/null || true
}
# Run with PREWARM_FORCE_PAGEMAP_FALLBACK=1 (ctest's .pagemap copies), every capture the daemon
# published must have found its pages through the fallback, and there must have been one.
final_check() {
  [ "${PREWARM_FORCE_PAGEMAP_FALLBACK:-}" = 1 ] || return 0
  local all with
  all=$(grep -c ": captured pid" "$SCRATCH/prewarmd.log" || true)
  with=$(grep -cE ": captured pid .*, pages found with pagemap( \||$)" "$SCRATCH/prewarmd.log" || true)
  [ "$all" -gt 0 ] || { echo "$TEST_NAME: FAIL: PREWARM_FORCE_PAGEMAP_FALLBACK=1, but prewarmd published no capture" >&2; return 1; }
  [ "$all" -eq "$with" ] || { echo "$TEST_NAME: FAIL: PREWARM_FORCE_PAGEMAP_FALLBACK=1, but $((all - with)) of $all captures did not use the pagemap fallback" >&2; return 1; }
  echo "$TEST_NAME: $all captures, every one through the pagemap fallback"
}
field() {  # field APP KEY: from `prewarm list --json` ("missing" if no such app)
  "$P" list --json | python3 -c "import json,sys; a=[x for x in json.load(sys.stdin)['apps'] if x['name']=='$1']; print(a[0]['$2'] if a else 'missing')"
}
state_is() { [ "$(field "$1" state)" = "$2" ]; }
last() {  # last APP KEY: of the newest launch in `prewarm stats --json`
  "$P" stats "$1" --json | python3 -c "import json,sys; print(json.load(sys.stdin)['apps'][0]['recent'][-1]['$2'])"
}
launch_count() {  # launch_count APP: launches of APP prewarmd has recorded
  "$P" stats "$1" --json | python3 -c "import json,sys; l=json.load(sys.stdin)['apps'][0]['launches']; print(l['cold']+l['restored'])"
}
# settled APP BEFORE: APP has more than BEFORE launches, the newest is ready and no capture of APP
# runs. Input an app reads before its capture would be consumed inside the snapshot, so tests
# hand over stdin only then (a loaded machine can take seconds to a cold app's READY=1).
settled() { [ "$(launch_count "$1")" -gt "$2" ] && [ "$(last "$1" ready_ms)" != None ] && [ "$(field "$1" state)" != capturing ]; }
# feed APP BEFORE LINE, as in `feed APP "$(launch_count APP)" LINE | prewarm run APP`.
feed() { wait_for 120 settled "$1" "$2"; echo "$3"; }
# run_calc APP N [RUNNER...]: one launch that answers N, given on stdin once the launch settled;
# prints the answer line.
run_calc() {
  local app=$1 n=$2 before; shift 2
  before=$(launch_count "$app")
  (feed "$app" "$before" "$n") | "$@" "$P" run "$app" 2>>"$SCRATCH/run.err" | grep '^answer'
}
ready_known() { [ "$(last "$1" ready_ms)" != None ]; }  # ready_known APP: its newest launch has a time to ready
