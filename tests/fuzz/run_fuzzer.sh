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
"$fuzzer" "${common[@]}" -runs=0 "$seeds"
echo "== fuzzing for ${secs}s"
"$fuzzer" "${common[@]}" -max_total_time="$secs" "$work" "$seeds"
