# Shared prelude of the command-line tests (sourced): strict mode, a trap that names the failing
# command, a scratch directory per test, and small helpers.
set -eEu -o pipefail
TEST_NAME=$(basename "$0" .sh)
SCRATCH=$(mktemp -d "/tmp/prewarm-$TEST_NAME.XXXXXX")
CLEANUPS=()
on_exit() {
  local rc=$? _pw_i
  # The cleanups are eval'ed here: a name of their own keeps their loops off the index.
  for ((_pw_i = ${#CLEANUPS[@]} - 1; _pw_i >= 0; _pw_i--)); do eval "${CLEANUPS[_pw_i]}" || true; done
  # A check of the whole run (final_check, defined by a sourced helper) once everything has ended.
  if [ "$rc" -eq 0 ] && declare -F final_check >/dev/null; then final_check || rc=1; fi
  if [ "$rc" -eq 0 ]; then rm -rf "$SCRATCH"; else echo "$TEST_NAME: FAILED (rc $rc); scratch kept in $SCRATCH" >&2; fi
  exit "$rc"
}
trap 'echo "$TEST_NAME: line $LINENO: command failed: $BASH_COMMAND" >&2' ERR
trap on_exit EXIT
cleanup() { CLEANUPS+=("$1"); }
fail() { echo "$TEST_NAME: FAIL: $*" >&2; exit 1; }
skip() { echo "$TEST_NAME: SKIP: $*"; exit 77; }
step() { echo "== $*"; }
# cmd | has PATTERN: like grep -q, but reads all its input, so that under pipefail the writer
# never dies of SIGPIPE when the match comes early.
has() { grep "$@" >/dev/null; }
# wait_for SECONDS COMMAND...: polls until COMMAND succeeds.
wait_for() {
  local limit=$1; shift
  local end=$((SECONDS + limit))
  until "$@"; do
    [ "$SECONDS" -lt "$end" ] || fail "timed out after ${limit}s waiting for: $*"
    sleep 0.1
  done
}
# Descriptors this shell inherited (test harnesses leak some) would be inherited by apps, and
# prewarm rightly refuses pipes and sockets other than stdio.
for fd in $(ls /proc/$$/fd); do
  [ "$fd" -gt 2 ] && eval "exec $fd>&-" 2>/dev/null || true
done
