#!/usr/bin/env bash
# Builds every libFuzzer target (tests/fuzz/fuzz_*.c) with clang, ASan and
# UBSan in build-fuzz/ and runs each on a copy of its committed seed corpus
# (tests/fuzz/corpus/<name>/, e.g. corpus/tflite/ for fuzz_tflite; the
# committed folders are never written to). ${FUZZ_SECONDS:-60} seconds are
# split between the targets: fuzz_tflite gets half (at least), the others
# share the rest equally (at least 1 s each). Every target runs even if an
# earlier one fails; the script exits non-zero when any fuzzer finds a
# crash, leak, sanitizer report or broken invariant. Reproducers are left in
# build-fuzz/artifacts/<target>/.
#
#   scripts/fuzz.sh                 # 60 s in all
#   FUZZ_SECONDS=600 scripts/fuzz.sh
#   FUZZ_TARGETS="fuzz_npy" FUZZ_SECONDS=60 scripts/fuzz.sh   # only some targets
#   build-fuzz/fuzz_tflite build-fuzz/artifacts/fuzz_tflite/crash-...   # replay one input
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build=${FUZZ_BUILD_DIR:-$root/build-fuzz}
seconds=${FUZZ_SECONDS:-60}
jobs=${FUZZ_BUILD_JOBS:-2}

command -v clang >/dev/null || { echo "fuzz.sh: clang is required" >&2; exit 2; }
case $seconds in '' | *[!0-9]*) echo "fuzz.sh: FUZZ_SECONDS must be a whole number" >&2; exit 2 ;; esac

if [ -n "${FUZZ_TARGETS:-}" ]; then
    read -r -a targets <<<"$FUZZ_TARGETS"
else
    targets=()
    for src in "$root"/tests/fuzz/fuzz_*.c; do
        [ -e "$src" ] || continue
        targets+=("$(basename "$src" .c)")
    done
fi
[ ${#targets[@]} -gt 0 ] || { echo "fuzz.sh: no fuzz targets in tests/fuzz/" >&2; exit 2; }

# Time budget: fuzz_tflite (the most complex reader) gets at least half.
others=0
for t in "${targets[@]}"; do [ "$t" = fuzz_tflite ] || others=$((others + 1)); done
has_tflite=$(( ${#targets[@]} - others ))
if [ "$has_tflite" -gt 0 ] && [ "$others" -gt 0 ]; then
    per_other=$(( seconds / 2 / others ))
    [ "$per_other" -ge 1 ] || per_other=1
    tflite_seconds=$(( seconds - per_other * others ))
    [ "$tflite_seconds" -ge 1 ] || tflite_seconds=1
elif [ "$has_tflite" -gt 0 ]; then
    tflite_seconds=$seconds
    per_other=0
else
    tflite_seconds=0
    per_other=$(( seconds / others ))
    [ "$per_other" -ge 1 ] || per_other=1
fi

# -O1 -g as libFuzzer recommends; no OpenMP (clang's runtime may be absent
# and threads only slow the fuzzer down); tests are not needed here.
CC=clang cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_FLAGS="-O1" \
    -DMOPT_FUZZ=ON -DMOPT_SANITIZE=ON -DMOPT_OPENMP=OFF -DMOPT_BUILD_TESTS=OFF >/dev/null
cmake --build "$build" --target "${targets[@]}" -j "$jobs"

work=$(mktemp -d "${TMPDIR:-/tmp}/mopt-fuzz-corpus.XXXXXX")
trap 'rm -rf "$work"' EXIT

failed=()
for t in "${targets[@]}"; do
    if [ "$t" = fuzz_tflite ]; then secs=$tflite_seconds; else secs=$per_other; fi
    corpus="$root/tests/fuzz/corpus/${t#fuzz_}"
    mkdir -p "$work/$t" "$build/artifacts/$t"
    if [ -d "$corpus" ]; then
        cp "$corpus"/* "$work/$t"/ 2>/dev/null || true
    else
        echo "fuzz.sh: warning: no seed corpus $corpus" >&2
    fi
    echo "fuzz.sh: $t for $secs s ($(find "$work/$t" -type f | wc -l) seeds)"
    set +e
    "$build/$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="$build/artifacts/$t/" "$work/$t"
    rc=$?
    set -e
    if [ "$rc" -ne 0 ]; then
        echo "fuzz.sh: $t failed (exit $rc); reproducer in $build/artifacts/$t/" >&2
        failed+=("$t")
    fi
done

if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz.sh: failed: ${failed[*]}" >&2
    exit 1
fi
echo "fuzz.sh: no crash in $seconds s (${targets[*]})"
