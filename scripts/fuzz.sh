#!/usr/bin/env bash
# Builds the libFuzzer targets with clang, ASan and UBSan in build-fuzz/ and
# runs fuzz_tflite for ${FUZZ_SECONDS:-60} seconds on a copy of the committed
# seed corpus (tests/fuzz/corpus/tflite/ is never written to). Exits non-zero
# when the fuzzer finds a crash, leak, sanitizer report or broken invariant;
# the reproducer is left in build-fuzz/artifacts/.
#
#   scripts/fuzz.sh                 # 60 s
#   FUZZ_SECONDS=600 scripts/fuzz.sh
#   build-fuzz/fuzz_tflite build-fuzz/artifacts/crash-...   # replay one input
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build=${FUZZ_BUILD_DIR:-$root/build-fuzz}
seconds=${FUZZ_SECONDS:-60}
jobs=${FUZZ_BUILD_JOBS:-2}

command -v clang >/dev/null || { echo "fuzz.sh: clang is required" >&2; exit 2; }

# -O1 -g as libFuzzer recommends; no OpenMP (clang's runtime may be absent
# and threads only slow the fuzzer down); tests are not needed here.
CC=clang cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_FLAGS="-O1" \
    -DMOPT_FUZZ=ON -DMOPT_SANITIZE=ON -DMOPT_OPENMP=OFF -DMOPT_BUILD_TESTS=OFF >/dev/null
cmake --build "$build" --target fuzz_tflite -j "$jobs"

work=$(mktemp -d "${TMPDIR:-/tmp}/mopt-fuzz-corpus.XXXXXX")
trap 'rm -rf "$work"' EXIT
cp "$root"/tests/fuzz/corpus/tflite/* "$work"/
mkdir -p "$build/artifacts"

set +e
"$build/fuzz_tflite" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$build/artifacts/" "$work"
rc=$?
set -e
if [ "$rc" -ne 0 ]; then
    echo "fuzz.sh: fuzz_tflite failed (exit $rc); reproducer in $build/artifacts/" >&2
    exit "$rc"
fi
echo "fuzz.sh: no crash in $seconds s"
