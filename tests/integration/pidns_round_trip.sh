#!/bin/bash
# Runs as pid 1 of a new pid namespace (unshare --pid --fork --mount-proc): the app's threads get
# tids from FIRST_PID + 1 on, small numbers its memory is full of. Dumps the app once it has
# printed "ready", lets it answer INPUT, restores the image in the namespace and lets that answer.
# Usage: pidns_round_trip.sh PREWARM FIRST_PID INPUT DIR -- APP [ARG...]
# Prints "cold: LINE", "restored: LINE" and "tid_words: N" (the image's rewritten held-lock words).
set -u
prewarm=$1 first=$2 input=$3 dir=$4
shift 5
# Nothing of the test runner's but stdio reaches the app (a pipe to outside would be refused).
for fd in $(ls /proc/$$/fd); do [ "$fd" -gt 2 ] && eval "exec $fd>&-" 2>/dev/null; done
echo "$first" > /proc/sys/kernel/ns_last_pid || { echo "cannot set ns_last_pid" >&2; exit 1; }
mkfifo "$dir/in"
"$@" < "$dir/in" > "$dir/out" 2> "$dir/err" &
app=$!
exec 3> "$dir/in"
for _ in $(seq 600); do grep -q '^ready' "$dir/out" && break; sleep 0.1; done
grep -q '^ready' "$dir/out" || { echo "the app did not get ready: $(cat "$dir/out" "$dir/err")" >&2; exit 1; }
sleep 0.3  # ready is printed before the runtime waits on its input: let its threads settle there
"$prewarm" dump --pid "$app" --images "$dir/img" >&2 || { echo "dump failed" >&2; exit 1; }
echo "$input" >&3
exec 3>&-
wait "$app"
echo "cold: $(grep -v '^ready' "$dir/out")"
echo "restored: $(echo "$input" | timeout 120 "$prewarm" restore --images "$dir/img" | grep -v '^ready')"
echo "tid_words: $("$prewarm" inspect --images "$dir/img" --json | python3 -c 'import json, sys; print(json.load(sys.stdin)["tid_words"])')"
