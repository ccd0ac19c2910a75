#!/usr/bin/env bash
# What prewarm's binaries are linked with: mimalloc is malloc for every library in both (on
# purpose, not by link order luck), the CLI's C++ libraries are archives (its start-up is every
# launch's), and prewarmd, a root daemon that ptraces apps, pulls in no TLS
# library nor brotli (its HTTP server is its own).
# Usage: linkage.sh BIN_DIR SOURCE_DIR
. "$(dirname "$0")/../lib/prelude.sh"
BIN=$(realpath "$1")

for exe in prewarm prewarmd; do
  step "$exe: malloc and free bind to mimalloc in every library (operator new calls malloc)"
  LD_DEBUG=bindings LD_DEBUG_OUTPUT="$SCRATCH/$exe.bind" "$BIN/$exe" --help >/dev/null
  for sym in malloc free; do
    # Every library that calls it (libc itself, libstdc++, libprotobuf...) binds it to mimalloc.
    grep -h "normal symbol \`$sym'" "$SCRATCH/$exe".bind.* >"$SCRATCH/$sym" || fail "$exe: no binding of $sym seen"
    other=$(grep -v 'to /[^ ]*libmimalloc\.so' "$SCRATCH/$sym" || true)
    [ -z "$other" ] || fail "$exe: $sym bound elsewhere than mimalloc: $other"
  done
  readelf -d "$BIN/$exe" | has 'NEEDED.*libmimalloc' || fail "$exe does not link libmimalloc"
done

step "prewarm links its C++ libraries in (it starts every launch), prewarmd links them shared"
needed() { readelf -d "$BIN/$1" | sed -n 's/.*NEEDED.*\[\(.*\)\]/\1/p'; }
extra=$(needed prewarm | grep -v -x -e 'libc\.so\.6' -e 'libmimalloc\.so\.2' -e 'ld-linux-x86-64\.so\.2' || true)
[ -z "$extra" ] || fail "prewarm needs shared libraries besides libc and mimalloc: $extra"
needed prewarmd | has -x 'libprotobuf\.so\..*' || fail "prewarmd does not link the shared libprotobuf: $(needed prewarmd)"

step "prewarmd names its allocator at start-up"
mkdir -p "$SCRATCH/run" "$SCRATCH/state"
"$BIN/prewarmd" --runtime-dir "$SCRATCH/run" --state-dir "$SCRATCH/state" --http off >"$SCRATCH/log" 2>&1 &
pid=$!
cleanup "kill $pid 2>/dev/null"
wait_for 10 test -S "$SCRATCH/run/control.sock"
has 'malloc: mimalloc [0-9]' "$SCRATCH/log" || fail "no allocator line in prewarmd's log: $(cat "$SCRATCH/log")"
kill "$pid"; wait "$pid" || true

step "prewarmd loads no TLS, crypto or brotli library"
libs=$(ldd "$BIN/prewarmd")
bad=$(echo "$libs" | grep -E 'libssl|libcrypto|libbrotli|libcpp-httplib' || true)
[ -z "$bad" ] || fail "prewarmd loads: $bad"
echo "linkage: ok"
