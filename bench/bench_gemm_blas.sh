#!/bin/sh
# bench_gemm_blas.sh - mopt's training GEMM vs Debian's OpenBLAS on the cnn's
# shapes (bench/bench_gemm_blas.c). Installs libopenblas-dev when missing
# (needs root; OpenBLAS is never a dependency of the library, CLI or tests),
# builds the benchmark against BUILD/libmopt.a and runs it at 1 and 2 threads.
#
#   bench/bench_gemm_blas.sh [BUILD_DIR (default build)] [batch (64)] [reps (15)]
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$here/build}
batch=${2:-64}
reps=${3:-15}
if ! dpkg -s libopenblas-dev >/dev/null 2>&1; then
    echo "installing libopenblas-dev (apt-get)" >&2
    apt-get install -y --no-install-recommends libopenblas-dev >/dev/null
fi
inc=/usr/include/x86_64-linux-gnu/openblas-pthread
[ -f "$inc/cblas.h" ] || inc=/usr/include/openblas
[ -f "$build/libmopt.a" ] || { echo "no $build/libmopt.a: build mopt first" >&2; exit 1; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
gcc -O2 -std=c11 -D_POSIX_C_SOURCE=200809L -I"$here/include" -I"$here/src" -I"$inc" \
    "$here/bench/bench_gemm_blas.c" "$build/libmopt.a" -lopenblas -lz -lm -lpthread -fopenmp \
    -o "$out/bench_gemm_blas"
# OpenBLAS 0.3.21 detects this CPU as Haswell (AVX2) unless told
OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-SkylakeX} "$out/bench_gemm_blas" "$batch" "$reps"
