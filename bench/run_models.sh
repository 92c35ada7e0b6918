#!/usr/bin/env bash
# run_models.sh - qhost vs PyTorch 1.13 on the zoo models (batch 256), side by side in one invocation.
# For each model, alternates the two implementations ROUNDS times so machine noise hits both, then
# prints the medians (over rounds, of per-run medians), the ratios qhost / PyTorch and GFLOP/s
# against the 2-thread fp32 FMA peak. Needs python3-torch (Debian) and a built tree.
# usage: bench/run_models.sh [BUILD_DIR] [THREADS] [ROUNDS] [MODEL...]
# MODEL: resnet20 (option-B shortcuts), resnet20_a (option A), mobilenetv2_cifar, alexnet_small (inference
# for all, training for ResNet-20, batch 256), mobilenetv2_train (MobileNetV2 training at batch 128, the
# batch of examples/mobilenetv2_fmnist.ini).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
threads=${2:-2}
rounds=${3:-3}
shift $(($# < 3 ? $# : 3))
models=("$@")
[ ${#models[@]} -gt 0 ] || models=(resnet20 resnet20_a mobilenetv2_cifar alexnet_small)
peak=${QH_PEAK_GFLOPS:-197}
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for m in "${models[@]}"; do
    # qhost model name + options, PyTorch model name, and what each side measures
    p=$m
    case $m in
        resnet20) q=(resnet20) what=() reps=(-r 5 -k 4) ;;
        resnet20_a) q=(resnet20 -s shortcut=A --label resnet20_a) what=() reps=(-r 5 -k 4) ;;
        mobilenetv2_cifar) q=(mobilenetv2_cifar) what=(--no-train) reps=(-r 3 -k 2) ;;
        mobilenetv2_train) q=(mobilenetv2_cifar) p=mobilenetv2_cifar what=(--no-infer -b 128 --label "$m")
                           reps=(-r 3 -k 2) ;;
        alexnet_small) q=(alexnet_small) what=(--no-train) reps=(-r 5 -k 2) ;;
        *) echo "run_models.sh: unknown model $m" >&2; exit 2 ;;
    esac
    for r in $(seq "$rounds"); do
        "$build/bench/bench-models" "${q[0]}" 3 32 32 "${q[@]:1}" -t "$threads" "${reps[@]}" "${what[@]}" >>"$out"
        /usr/bin/python3 bench/pytorch_models.py "$p" 3 32 32 -t "$threads" "${reps[@]}" "${what[@]}" >>"$out"
    done
done
/usr/bin/python3 - "$out" "$peak" "$rounds" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
peak, rounds = float(sys.argv[2]), int(sys.argv[3])
print(f"{rows[0]['threads']} threads, 3x32x32, {rounds} alternating rounds "
      f"(median over rounds of each run's median; range = min..max of the run medians)")
print(f"{'model':18} {'pass':6} {'batch':>5} {'qhost img/s':>18} {'pytorch img/s':>18} {'ratio':>6} "
      f"{'qhost GFLOP/s':>14} {'% peak':>7} {'torch GFLOP/s':>14}")
models = list(dict.fromkeys(r["model"] for r in rows))
for m in models:
    q = [r for r in rows if r["model"] == m and r["impl"] == "qhost"]
    t = [r for r in rows if r["model"] == m and r["impl"] != "qhost"]
    for k, name in (("infer", "infer"), ("train", "train")):
        qv, tv = [r[k + "_img_s"] for r in q], [r[k + "_img_s"] for r in t]
        if not any(qv) or not any(tv):
            continue
        a, b = statistics.median(qv), statistics.median(tv)
        ga, gb = statistics.median(r[k + "_gflops"] for r in q), statistics.median(r[k + "_gflops"] for r in t)
        rq = f"{a:.0f} ({min(qv):.0f}-{max(qv):.0f})"
        rt = f"{b:.0f} ({min(tv):.0f}-{max(tv):.0f})"
        print(f"{m:18} {name:6} {q[0]['batch']:5} {rq:>18} {rt:>18} {a / b:5.2f}x {ga:14.1f} {100 * ga / peak:6.0f}% "
              f"{gb:14.1f}")
PY
