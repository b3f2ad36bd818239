#!/usr/bin/env bash
# The whole test suite: the README's test command (`make test`) and CI run this.
#  1. set-up (Debian packages, .venv with the pinned LiteRT oracle)
#  2. release build with -Werror; unit tests + CLI tests (ctest)
#  3. interop tests against LiteRT (pytest)
#  4. AddressSanitizer + UndefinedBehaviorSanitizer build; unit + CLI tests again
#  5. valgrind on the malformed-file and reader tests
#  6. libFuzzer on the TFLite, NPY and IDX readers for FUZZ_SECONDS (default 60)
# Ends with one line "tests: N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
JOBS=${JOBS:-2}
passed=0
failed=0
failures=()

step() { printf '\n==== %s ====\n' "$*"; }
record() { # name rc
  if [ "$2" = 0 ]; then passed=$((passed + 1)); else failed=$((failed + 1)); failures+=("$1"); fi
}

step "set-up"
scripts/setup.sh || { echo "setup failed"; exit 1; }
PY=${MOPT_VENV:-$ROOT/.venv}/bin/python

step "build (release, -Werror)"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DMOPT_WERROR=ON >/dev/null &&
  cmake --build build -j"$JOBS" || { echo "build failed"; exit 1; }

step "unit and CLI tests (ctest)"
(cd build && ctest --output-on-failure -j"$JOBS"); record ctest-release $?

step "interop tests against LiteRT (pytest)"
MOPT_BIN="$ROOT/build/mopt" "$PY" -m pytest -q tests/interop; rc=$?
[ $rc = 5 ] && { echo "pytest collected no tests"; rc=1; }
record pytest-interop $rc

step "sanitizers (ASan + UBSan)"
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DMOPT_SANITIZE=ON -DMOPT_OPENMP=OFF >/dev/null &&
  cmake --build build-asan -j"$JOBS" &&
  (cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
     ctest --output-on-failure -j"$JOBS"); record ctest-asan $?

step "valgrind (reader and malformed files)"
vg_rc=0
for t in build/tests/test_tflite_malformed build/tests/test_tflite_io build/tests/test_data; do
  [ -x "$t" ] || continue
  valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite "$t" >/dev/null 2>build/valgrind.log || {
    echo "valgrind: $t failed"; cat build/valgrind.log; vg_rc=1; }
done
record valgrind $vg_rc

step "fuzz the readers (${FUZZ_SECONDS:-60}s)"
if [ -x scripts/fuzz.sh ]; then
  scripts/fuzz.sh; record fuzz $?
else
  echo "scripts/fuzz.sh missing"; record fuzz 1
fi

echo
if [ ${#failures[@]} -gt 0 ]; then echo "failed steps: ${failures[*]}"; fi
echo "tests: $passed passed, $failed failed"
[ "$failed" = 0 ]
