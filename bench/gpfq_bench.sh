#!/bin/bash
# gpfq_bench.sh - qhost's gpfq plugin and the NumPy GPFQ reference side by side on the same data:
# LeNet-5's five layers (2048 Fashion-MNIST calibration images, captured as a quantize stage does)
# and a synthetic layer of N = 512 neurons, d = 2304 inputs, m = 16384 samples. Prints per layer the
# wall time (median over rounds of each round's median, and the minimum of all runs), the CPU time
# (median), their ratios, the fraction of identical codes and each process's peak memory.
#
# usage: bench/gpfq_bench.sh BUILD_DIR LENET_WEIGHTS [THREADS] [REPS] [ROUNDS] [SYNTHETIC_NUMPY_REPS]
#   LENET_WEIGHTS: a LeNet-5 (variant modern) safetensors file, e.g. runs/gpfq_lenet5/model-train.safetensors
# Both sides run under `nice -n 10`, alternating for ROUNDS rounds (default 3) on the LeNet-5 layers,
# so that a busy machine disturbs both alike; the minimum is the least disturbed run.
set -euo pipefail
BUILD=${1:?usage: gpfq_bench.sh BUILD_DIR LENET_WEIGHTS [THREADS] [REPS] [ROUNDS] [SYNTHETIC_NUMPY_REPS]}
WEIGHTS=${2:?LeNet-5 weights}
THREADS=${3:-2}
REPS=${4:-5}
ROUNDS=${5:-3}
NREPS=${6:-1}
HERE=$(cd "$(dirname "$0")" && pwd)
DIR=$(mktemp -d /tmp/gpfq-bench-XXXXXX)
trap 'rm -rf "$DIR"' EXIT
NP="env ANCHOR_THREADS=$THREADS /usr/bin/python3 $HERE/gpfq_numpy_ref.py $DIR"

for r in $(seq 1 "$ROUNDS"); do
    nice -n 10 "$BUILD/bench/bench-gpfq" lenet5 "$WEIGHTS" -t "$THREADS" -r "$REPS" -o "$DIR" >> "$DIR/c.jsonl"
    nice -n 10 $NP --case lenet5 --reps "$REPS" >> "$DIR/np.jsonl"
done
if [ "$NREPS" -gt 0 ]; then  # SYNTHETIC_NUMPY_REPS = 0 leaves the synthetic layer out
    nice -n 10 "$BUILD/bench/bench-gpfq" synthetic 512 2304 16384 -t "$THREADS" -r "$REPS" -o "$DIR" >> "$DIR/c.jsonl"
    nice -n 10 $NP --case synthetic --reps "$NREPS" >> "$DIR/np.jsonl"
fi

/usr/bin/python3 - "$DIR" "$THREADS" <<'EOF'
import json, os, statistics, sys
d, threads = sys.argv[1], sys.argv[2]
runs, peaks = {}, {}
for impl, f in (("qhost", "c.jsonl"), ("numpy", "np.jsonl")):
    for line in open(os.path.join(d, f)):
        r = json.loads(line)
        if "peak_rss_mib" in r:
            peaks[(impl, r["case"])] = max(peaks.get((impl, r["case"]), 0), r["peak_rss_mib"])
        elif "layer" in r:
            runs.setdefault(r["layer"], {}).setdefault(impl, []).append(r)
def agg(rs):
    return (statistics.median(r["quant_s"] for r in rs), min(r["min_s"] for r in rs),
            statistics.median(r["cpu_s"] for r in rs), rs[0])
print(f"{threads} threads each. Wall: median of the rounds' medians / fastest run. CPU: median, all threads.")
print()
print("| layer | N x d | m | qhost wall s | NumPy wall s | speed-up wall | qhost CPU s | NumPy CPU s | speed-up CPU | codes equal |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
tot = [0.0] * 6
for name, r in runs.items():
    cq, cm, cc, c = agg(r["qhost"])
    nq, nm, nc, n = agg(r["numpy"])
    if name != "synthetic":
        for k, v in enumerate((cq, cm, cc, nq, nm, nc)):
            tot[k] += v
    print(f"| {name} | {c['N']} x {c['d']} | {c['m']} | {cq:.4f} / {cm:.4f} | {nq:.4f} / {nm:.4f} | "
          f"{nq / cq:.1f}x / {nm / cm:.1f}x | {cc:.4f} | {nc:.4f} | {nc / cc:.1f}x | "
          f"{100 * min(x['codes_equal'] for x in r['numpy']):.2f} % |")
cq, cm, cc, nq, nm, nc = tot
print(f"| LeNet-5, 5 layers | | | {cq:.4f} / {cm:.4f} | {nq:.4f} / {nm:.4f} | {nq / cq:.1f}x / {nm / cm:.1f}x | "
      f"{cc:.4f} | {nc:.4f} | {nc / cc:.1f}x | |")
print()
for k, v in sorted(peaks.items()):
    print(f"peak RSS {k[0]} {k[1]}: {v} MiB")
EOF
