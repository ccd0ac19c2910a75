# Sourced after prelude.sh by the tests that drive a foreground prewarmd (needs BIN): its own
# runtime and state directories in the scratch dir, start/stop, and readers of `--json` output.
P=$BIN/prewarm
export PREWARM_RUNTIME_DIR=$SCRATCH/run PREWARM_STATE_DIR=$SCRATCH/state

start_daemon() {
  "$BIN/prewarmd" --runtime-dir "$PREWARM_RUNTIME_DIR" --state-dir "$PREWARM_STATE_DIR" >>"$SCRATCH/prewarmd.log" 2>&1 &
  DAEMON=$!
  wait_for 10 "$P" list >/dev/null 2>&1
}
stop_daemon() { kill "$DAEMON"; wait "$DAEMON" || true; }
field() {  # field APP KEY: from `prewarm list --json` ("missing" if no such app)
  "$P" list --json | python3 -c "import json,sys; a=[x for x in json.load(sys.stdin)['apps'] if x['name']=='$1']; print(a[0]['$2'] if a else 'missing')"
}
state_is() { [ "$(field "$1" state)" = "$2" ]; }
last() {  # last APP KEY: of the newest launch in `prewarm stats --json`
  "$P" stats "$1" --json | python3 -c "import json,sys; print(json.load(sys.stdin)['apps'][0]['recent'][-1]['$2'])"
}
