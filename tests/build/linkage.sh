#!/usr/bin/env bash
# What prewarm's binaries are linked with: mimalloc is malloc for every library in both (on
# purpose, not by link order luck), and prewarmd, a root daemon that ptraces apps, pulls in no TLS
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
