#!/usr/bin/env bash
# The README's test command: install dependencies, build with warnings as errors, lint, run every
# test (then fuzz the image parser and the plan builder for a short, fixed time).
set -eu
cd "$(dirname "$0")/.."
./.ci/install-deps
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPREWARM_WERROR=ON -DCMAKE_EXPORT_COMPILE_COMMANDS=ON >/dev/null
cmake --build build -j"$(nproc)"
# clang-tidy over the product sources (.clang-tidy): any finding fails the run.
./tests/tidy.sh build
# The image parser and plan builder under libFuzzer: a clang build of their own (tests/fuzz/).
cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ -DPREWARM_FUZZ=ON \
  -DPREWARM_WERROR=ON >/dev/null
cmake --build build-fuzz -j"$(nproc)"
(cd build && ctest --output-on-failure -j2 "$@")
(cd build-fuzz && ctest --output-on-failure -j2)
