#!/bin/bash
# gpfq_bench.sh - qhost's gpfq plugin and the NumPy GPFQ reference side by side on the same data:
# LeNet-5's five layers (2048 Fashion-MNIST calibration images, captured as a quantize stage does)
# and a synthetic layer of N = 512 neurons, d = 2304 inputs, m = 16384 samples. Prints the per-layer
# times, their ratio, the fraction of identical codes and each process's peak memory.
#
# usage: bench/gpfq_bench.sh BUILD_DIR LENET_WEIGHTS [THREADS] [REPS] [NUMPY_SYNTHETIC_REPS]
#   LENET_WEIGHTS: a LeNet-5 (variant modern) safetensors file, e.g. runs/gpfq_lenet5/model-train.safetensors
# Both sides run under `nice -n 10` one after the other; on a shared machine compare the ratios.
set -euo pipefail
BUILD=${1:?usage: gpfq_bench.sh BUILD_DIR LENET_WEIGHTS [THREADS] [REPS] [NUMPY_SYNTHETIC_REPS]}
WEIGHTS=${2:?LeNet-5 weights}
THREADS=${3:-2}
REPS=${4:-3}
NREPS=${5:-1}
HERE=$(cd "$(dirname "$0")" && pwd)
DIR=$(mktemp -d /tmp/gpfq-bench-XXXXXX)
trap 'rm -rf "$DIR"' EXIT

nice -n 10 "$BUILD/bench/bench-gpfq" lenet5 "$WEIGHTS" -t "$THREADS" -r "$REPS" -o "$DIR" > "$DIR/c_lenet.jsonl"
nice -n 10 "$BUILD/bench/bench-gpfq" synthetic 512 2304 16384 -t "$THREADS" -r "$REPS" -o "$DIR" > "$DIR/c_syn.jsonl"
nice -n 10 env ANCHOR_THREADS="$THREADS" /usr/bin/python3 "$HERE/gpfq_numpy_ref.py" "$DIR" --case lenet5 \
    --reps "$REPS" > "$DIR/np_lenet.jsonl"
nice -n 10 env ANCHOR_THREADS="$THREADS" /usr/bin/python3 "$HERE/gpfq_numpy_ref.py" "$DIR" --case synthetic \
    --reps "$NREPS" > "$DIR/np_syn.jsonl"

/usr/bin/python3 - "$DIR" <<'EOF'
import json, os, sys
d = sys.argv[1]
rows = {}
peaks = {}
for f in ("c_lenet.jsonl", "c_syn.jsonl", "np_lenet.jsonl", "np_syn.jsonl"):
    for line in open(os.path.join(d, f)):
        r = json.loads(line)
        if "peak_rss_mib" in r:
            peaks[(r["impl"], r["case"])] = r["peak_rss_mib"]
        elif "layer" in r:
            rows.setdefault(r["layer"], {})[r["impl"]] = r
print("| layer | N x d | m | qhost s (median / min) | NumPy s (median / min) | speed-up (median / min) | codes equal |")
print("|---|---|---:|---:|---:|---:|---:|")
tot = {k: 0.0 for k in ("cq", "cm", "nq", "nm")}
for name, r in rows.items():
    c, n = r["qhost"], r["numpy"]
    if name != "synthetic":
        tot["cq"] += c["quant_s"]; tot["cm"] += c["min_s"]; tot["nq"] += n["quant_s"]; tot["nm"] += n["min_s"]
    print(f"| {name} | {c['N']} x {c['d']} | {c['m']} | {c['quant_s']:.4f} / {c['min_s']:.4f} | "
          f"{n['quant_s']:.4f} / {n['min_s']:.4f} | {n['quant_s'] / c['quant_s']:.1f}x / {n['min_s'] / c['min_s']:.1f}x | "
          f"{100 * n['codes_equal']:.2f} % |")
print(f"| LeNet-5, 5 layers | | | {tot['cq']:.4f} / {tot['cm']:.4f} | {tot['nq']:.4f} / {tot['nm']:.4f} | "
      f"{tot['nq'] / tot['cq']:.1f}x / {tot['nm'] / tot['cm']:.1f}x | |")
print()
for k, v in sorted(peaks.items()):
    print(f"peak RSS {k[0]} {k[1]}: {v} MiB")
EOF
