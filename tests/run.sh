#!/usr/bin/env bash
# The README's test command: install dependencies, build with warnings as errors, run every test.
set -eu
cd "$(dirname "$0")/.."
./.ci/install-deps
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPREWARM_WERROR=ON >/dev/null
cmake --build build -j"$(nproc)"
cd build
ctest --output-on-failure -j2 "$@"
