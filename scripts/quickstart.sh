#!/usr/bin/env bash
# quickstart.sh - install what is missing, build qhost, run examples/quickstart.ini
# (LeNet-5 on Fashion-MNIST: train, prune, fine-tune, quantize, evaluate, export).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
[ -f build/build.ninja ] || meson setup build --buildtype=release >/dev/null
ninja -C build
build/apps/qhost/qhost examples/quickstart.ini "$@"
echo "outputs: runs/quickstart (report.md, metrics.json, results.csv, manifest.json, model files)"
