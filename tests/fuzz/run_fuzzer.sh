#!/usr/bin/env bash
# run_fuzzer.sh FUZZER SEEDS_DIR SECONDS: replays every committed input, then fuzzes for SECONDS
# starting from them. New inputs go to a scratch directory; a crashing input is kept in
# fuzz-artifacts/ next to the fuzzer and its name printed, to be added to SEEDS_DIR once fixed.
set -eu
fuzzer=$1 seeds=$2 secs=$3
work=$(mktemp -d "/tmp/prewarm-$(basename "$fuzzer").XXXXXX")
trap 'rm -rf "$work"' EXIT
artifacts=$(dirname "$fuzzer")/fuzz-artifacts
mkdir -p "$artifacts"
common=(-timeout=10 -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$artifacts/")
echo "== replaying $(ls "$seeds" | wc -l) committed inputs"
FUZZ_REPORT_ACCEPTED=1 "$fuzzer" "${common[@]}" -runs=0 "$seeds" 2>"$work/replay.log" || { cat "$work/replay.log"; exit 1; }
# A fuzzer whose seeds are all refused early only ever tests the first checks.
accepted=$(grep -c '^accepted$' "$work/replay.log" || true)
echo "$accepted of the committed inputs were accepted all the way"
[ "$accepted" -gt 0 ] || { echo "no committed input reaches the end of $(basename "$fuzzer")" >&2; exit 1; }
echo "== fuzzing for ${secs}s"
"$fuzzer" "${common[@]}" -max_total_time="$secs" "$work" "$seeds"
