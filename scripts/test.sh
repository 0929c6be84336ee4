#!/usr/bin/env bash
# Runs every test: the suite on a Release build (gcc), again under AddressSanitizer +
# UndefinedBehaviorSanitizer (clang), a warning check with the other compiler, and a short fuzz run.
#   bash scripts/test.sh            # everything (fuzzing: FUZZ_SECONDS=30 per end-to-end target and
#                                   # FUZZ_FAST_SECONDS=10 per parse-only one, about 4 minutes in all)
#   QUICK=1 bash scripts/test.sh    # only the Release suite
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=$(nproc)
SHARED=${LLAMAC_SHARED:-$(cd .. && pwd)/shared}
[ -d "$SHARED" ] || { echo "test: shared data not found at $SHARED (set LLAMAC_SHARED)" >&2; exit 1; }

echo "== Release build (gcc) and test suite"
cmake -B build -DCMAKE_BUILD_TYPE=Release -DCMAKE_C_COMPILER=gcc -DLLAMAC_SHARED_DIR="$SHARED" >/dev/null
cmake --build build -j"$JOBS"
(cd build && ctest --output-on-failure -j"$JOBS")
[ -n "${QUICK:-}" ] && exit 0

echo "== warning check with clang"
cmake -B build-clang -DCMAKE_BUILD_TYPE=Release -DCMAKE_C_COMPILER=clang -DLLAMAC_SHARED_DIR="$SHARED" >/dev/null
cmake --build build-clang -j"$JOBS"

echo "== ASan + UBSan build (clang) and test suite"
# -O1, as AddressSanitizer's documentation advises: every check stays, and the suite runs several times
# faster than at -O0 (test_engine: 23 s instead of 187 s on the same loaded 2-core machine).
cmake -B build-asan -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_FLAGS_DEBUG="-g -O1" -DCMAKE_C_COMPILER=clang \
      -DLLAMAC_SANITIZE=ON -DLLAMAC_SHARED_DIR="$SHARED" >/dev/null
cmake --build build-asan -j"$JOBS"
(cd build-asan && LLAMAC_SANITIZE=1 ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
   UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ctest --output-on-failure -j"$JOBS")

if [ -f scripts/fuzz.sh ]; then
  echo "== fuzzing (${FUZZ_SECONDS:=30} s per end-to-end target, ${FUZZ_FAST_SECONDS:=10} s per fast one)"
  FUZZ_SECONDS=$FUZZ_SECONDS FUZZ_FAST_SECONDS=$FUZZ_FAST_SECONDS bash scripts/fuzz.sh
fi
echo "test: all passed"
