#!/usr/bin/env bash
# run.sh - issue 5's results table: weight quantization method x bits x granularity on Fashion-MNIST,
# every row from the same FP32 model, each a two-stage qhost pipeline (quantize, evaluate).
# Writes OUT_DIR/report.md.
# usage: examples/quant_table/run.sh [QHOST] [OUT_DIR] [WEIGHTS MODEL [MODEL_KEY=VALUE ...]]
#   LeNet-5 (default): trains base.ini's FP32 model first         (~3 minutes on the 2-core machine)
#   ResNet-20: run.sh build/apps/qhost/qhost runs/quant_table_r20 resnet20-fmnist.safetensors \
#              resnet20 shortcut=A                                 (~10 minutes)
set -euo pipefail
cd "$(dirname "$0")/../.."
qhost=${1:-build/apps/qhost/qhost}
out=${2:-runs/quant_table}
mkdir -p "$out"
if [ $# -ge 4 ]; then # a user-given FP32 model: evaluate it once as the baseline
    weights=$(realpath "$3") model=$4
    model_keys=("${@:5}")
    if [ ! -f "$out/base/metrics.json" ]; then
        printf '[pipeline]\nseed = 1\nthreads = 2\nstages = eval\n[model]\nplugin = %s\nweights = %s\n%s\n[dataset]\nplugin = idx\n[eval]\ntype = evaluate\n' \
            "$model" "$weights" "$(printf '%s\n' "${model_keys[@]/=/ = }")" >"$out/base.ini"
        "$qhost" -q -o "$out/base" "$out/base.ini"
    fi
else
    model=lenet5 model_keys=()
    weights=$(realpath -m "$out/base/fp32.safetensors")
    [ -f "$weights" ] || "$qhost" -q -o "$out/base" examples/quant_table/base.ini
fi

row() { # name, then plugin and its keys
    local name=$1 plugin=$2; shift 2
    local ini=$out/$name.ini
    {
        printf '[pipeline]\nseed = 1\nthreads = 2\nstages = quant, eval\n'
        printf '[model]\nplugin = %s\nweights = %s\n' "$model" "$weights"
        for kv in "${model_keys[@]}"; do printf '%s\n' "${kv/=/ = }"; done
        printf '[dataset]\nplugin = idx\n'
        printf '[quant]\ntype = quantize\nplugin = %s\n' "$plugin"
        for kv in "$@"; do printf '%s\n' "$kv"; done
        printf '[eval]\ntype = evaluate\n'
    } >"$ini"
    "$qhost" -q -o "$out/$name" "$ini"
}

for b in 8 6 4 3 2; do
    row "linear_tensor_$b" linear "bits = $b" "granularity = tensor"
    row "linear_channel_$b" linear "bits = $b" "granularity = channel"
    row "linear_block64_$b" linear "bits = $b" "granularity = block" "block_size = 64"
    row "linear_channel_asym_$b" linear "bits = $b" "granularity = channel" "mode = asymmetric"
    row "linear_channel_mse_$b" linear "bits = $b" "granularity = channel" "range = mse"
    row "kmeans_$b" kmeans "bits = $b"
done
for b in 8 4; do row "linear_seed001_tensor_$b" linear "bits = $b" "granularity = tensor" "mode = seed001"; done
for f in e4m3 e5m2; do
    for g in tensor channel; do row "fp8_${f}_$g" fp8 "format = $f" "granularity = $g"; done
    row "fp8_${f}_seed001" fp8 "format = $f" "granularity = row" "mode = seed001"
done
for b in 8 6 5 4 3; do
    row "dynamic_tree_$b" dynamic_tree "bits = $b"
    row "dynamic_tree_seed001_$b" dynamic_tree "bits = $b" "mode = seed001"
    row "stable_embedding_$b" stable_embedding "bits = $b"
done

/usr/bin/python3 - "$out" "$model" <<'PY'
import glob, json, os, sys
out = sys.argv[1]
base = json.load(open(os.path.join(out, "base", "metrics.json")))
fp32 = next(s for s in base["stages"] if s["type"] == "evaluate")
rows = []
for d in sorted(glob.glob(os.path.join(out, "*", "metrics.json"))):
    name = os.path.basename(os.path.dirname(d))
    if name == "base":
        continue
    st = json.load(open(d))["stages"]
    q = next(s for s in st if s["type"] == "quantize")
    e = next(s for s in st if s["type"] == "evaluate")
    t = q.get("quantization", {})
    rows.append((name, e["top1"], e["top1"] - fp32["top1"], e["model_bytes"], t.get("mse"), t.get("sqnr_db")))
lines = [f"# {sys.argv[2]} / Fashion-MNIST: weight quantization table", "",
         f"FP32: top-1 {fp32['top1']:.2f} %, {fp32['model_bytes']} bytes. Each row quantizes the conv/linear",
         "weight tensors of the same FP32 model (biases and batch norm stay FP32) and evaluates the 10,000 test images.", "",
         "| method | top-1 % | vs FP32 | model bytes | weight MSE | SQNR dB |", "|---|---:|---:|---:|---:|---:|"]
for name, top1, d, by, mse, sq in rows:
    mse_s = f"{mse:.3g}" if isinstance(mse, (int, float)) else "-"
    sq_s = f"{sq:.1f}" if isinstance(sq, (int, float)) else "-"
    lines.append(f"| {name} | {top1:.2f} | {d:+.2f} | {by} | {mse_s} | {sq_s} |")
open(os.path.join(out, "report.md"), "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PY
