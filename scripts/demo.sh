#!/usr/bin/env bash
# The demo (`make demo`): what mopt can do today, on Fashion-MNIST.
# Until the training and optimization issues land, it inspects and evaluates
# the committed float fixtures with mopt's own runtime.
set -euo pipefail
cd "$(dirname "$0")/.."
MOPT=build/mopt
DATA=fashion-mnist
if [ ! -f /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz ] && [ -z "${MOPT_FASHION_MNIST_DIR:-}" ]; then
  echo "demo: Debian's dataset-fashion-mnist is not installed; using the committed subset" >&2
  DATA=tests/data/fashion-mnist-subset
fi
echo "== mopt inspect tests/fixtures/cnn.tflite"
$MOPT inspect tests/fixtures/cnn.tflite
echo
echo "== accuracy and latency of every Fashion-MNIST fixture (mopt's float runtime, 10,000 test images)"
for m in cnn dscnn resnet mlp; do
  printf '%-8s ' "$m"
  $MOPT eval "tests/fixtures/$m.tflite" --data "$DATA"
done
echo
echo "== MobileNetV2 (alpha 0.35, 96x96x3) latency"
$MOPT bench tests/fixtures/mobilenetv2.tflite --threads 2 --runs 50
