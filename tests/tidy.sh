#!/usr/bin/env bash
# clang-tidy with the project's .clang-tidy over every product source (not tests, not the
# freestanding blob), in parallel; any finding fails. Usage: tests/tidy.sh BUILD_DIR [FILE...]
set -eu
cd "$(dirname "$0")/.."
build=$1; shift
[ -f "$build/compile_commands.json" ] || { echo "tidy: no $build/compile_commands.json (configure with -DCMAKE_EXPORT_COMPILE_COMMANDS=ON)" >&2; exit 1; }
files=("$@")
[ ${#files[@]} -gt 0 ] || mapfile -t files < <(git ls-files 'snapshot/*.cpp' 'policy/*.cpp' 'restorer/*.cpp' 'prewarmd/*.cpp' | grep -v '^restorer/blob/')
start=$SECONDS
# -Wno-sign-compare: the compiler's own -Wall covers it; clang also flags glibc's NLMSG_OK macro.
printf '%s\n' "${files[@]}" | xargs -P "$(nproc)" -n 4 clang-tidy -p "$build" --quiet --extra-arg=-Wno-sign-compare 2>/dev/null >"$build/tidy.log" || {
  grep -E 'warning:|error:' "$build/tidy.log" >&2 || cat "$build/tidy.log" >&2
  echo "tidy: FAILED (${#files[@]} files; full output in $build/tidy.log)" >&2
  exit 1
}
echo "tidy: ${#files[@]} files clean in $((SECONDS - start)) s"
