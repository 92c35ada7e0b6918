#!/usr/bin/env bash
# run_lenet5.sh - qhost vs PyTorch 1.13 on LeNet-5 (batch 256), side by side in one invocation.
# Alternates the two implementations ROUNDS times so machine noise hits both, then prints the
# medians and the ratios qhost / PyTorch. Needs python3-torch (Debian) and a built tree.
# usage: bench/run_lenet5.sh [BUILD_DIR] [THREADS] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
threads=${2:-2}
rounds=${3:-3}
out=$(mktemp)
for r in $(seq "$rounds"); do
    "$build/bench/bench-models" lenet5 1 28 28 -t "$threads" -r 5 -k 12 >>"$out"
    /usr/bin/python3 bench/pytorch_lenet5.py "$threads" 5 >>"$out"
done
/usr/bin/python3 - "$out" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
q = [r for r in rows if r["impl"] == "qhost"]
assert q and all(r["batch"] == 256 for r in rows), "both sides must run batch 256"
t = [r for r in rows if r["impl"] != "qhost"]
def med(rs, k): return statistics.median(r[k] for r in rs)
print(f"LeNet-5, batch 256, {q[0]['threads']} threads, {len(q)} alternating rounds (medians of medians)")
print(f"{'':12} {'qhost img/s':>12} {t[0]['impl'] + ' img/s':>22} {'ratio':>7}")
for k, name in (("infer_img_s", "inference"), ("train_img_s", "training")):
    a, b = med(q, k), med(t, k)
    print(f"{name:12} {a:12.0f} {b:22.0f} {a / b:7.2f}x")
PY
rm -f "$out"
