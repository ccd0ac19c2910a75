#!/usr/bin/env bash
# The README's main command: install, build, then launch a real app (python3 importing sympy and
# numpy) cold, snapshot it when it is ready, and launch it again restored, printing both times.
set -eu
cd "$(dirname "$0")/.."
./.ci/install-deps
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" >/dev/null
prewarm=build/prewarmd/prewarm
app=(/usr/bin/python3 bench/progs/calc.py)
work=$(mktemp -d /tmp/prewarm-demo.XXXXXX)
trap 'rm -rf "$work"' EXIT
now_ms() { date +%s%3N; }
# The app should start with only stdio, as under systemd: descriptors this shell inherited would
# otherwise be inherited by the app (prewarm refuses pipes and sockets other than stdio).
for fd in $(ls /proc/$$/fd); do
  [ "$fd" -gt 2 ] && eval "exec $fd>&-" 2>/dev/null || true
done

echo "== cold launch: ${app[*]}"
mkfifo "$work/in"
t0=$(now_ms)
"${app[@]}" < "$work/in" > "$work/cold.out" &
pid=$!
exec 3> "$work/in"
until grep -q ready "$work/cold.out" 2>/dev/null; do sleep 0.005; done
t1=$(now_ms)
echo "   ready after $((t1 - t0)) ms (pid $pid)"

echo "== snapshot of the ready app (it keeps running)"
"$prewarm" dump --pid "$pid" --images "$work/calc.img"
echo 360 >&3
exec 3>&-
wait "$pid"
sed 's/^/   cold:     /' "$work/cold.out"

echo "== restored launches: prewarm restore --images $work/calc.img"
for n in 1 2 3; do
  t0=$(now_ms)
  echo $((360 * n)) | "$prewarm" restore --images "$work/calc.img" > "$work/warm.out"
  t1=$(now_ms)
  sed 's/^/   restored: /' "$work/warm.out"
  echo "   restored and answered after $((t1 - t0)) ms (the first also pays for fresh huge pages)"
done
"$prewarm" inspect --images "$work/calc.img" | head -6
