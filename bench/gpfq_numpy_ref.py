"""The NumPy GPFQ reference (the anchors' py/gpfq.py, gpfq_layer_numpy: the loop of
YixuanSeanZhou/Quantized_Neural_Nets vectorized over all neurons) timed on the layers bench-gpfq -o DIR
wrote, so both implementations see the same W, X, X~. Also reports how many codes agree with qhost's.

usage: /usr/bin/python3 bench/gpfq_numpy_ref.py DIR [--reps R] [--case lenet5|synthetic] [--scalar 1.16]
Threads: ANCHOR_THREADS (default 2) sets OMP_NUM_THREADS / OPENBLAS_NUM_THREADS before NumPy loads.
Prints one JSON line per layer and a last line with the process's peak resident memory.
"""
import argparse
import json
import os
import resource
import statistics
import time

THREADS = os.environ.get("ANCHOR_THREADS", "2")
os.environ.setdefault("OMP_NUM_THREADS", THREADS)
os.environ.setdefault("OPENBLAS_NUM_THREADS", THREADS)

import numpy as np  # noqa: E402


def gpfq_layer_numpy(W, X, Xq, step, B):
    """As in the anchors' py/gpfq.py: columns of X as rows, U (N x m) updated for all neurons per t."""
    X, Xq = np.ascontiguousarray(X.T), np.ascontiguousarray(Xq.T)
    N, d = W.shape
    Q = np.zeros_like(W)
    U = np.zeros((N, X.shape[1]), dtype=np.float32)
    for t in range(d):
        U += np.outer(W[:, t], X[t])
        norm = float(Xq[t] @ Xq[t])
        arg = (U @ Xq[t]) / norm if norm > 0 else np.zeros(N, dtype=np.float32)
        Q[:, t] = np.sign(arg) * step * np.minimum(np.abs(np.floor(arg / step + 0.5)), B)
        U -= np.outer(Q[:, t], Xq[t])
    return Q, U


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--case", choices=["lenet5", "synthetic"], default=None)
    ap.add_argument("--scalar", type=float, default=1.16)
    a = ap.parse_args()
    with open(os.path.join(a.dir, "index.txt")) as f:
        layers = [line.split() for line in f if line.strip()]
    for name, bits in layers:
        case = "synthetic" if name == "synthetic" else "lenet5"
        if a.case and case != a.case:
            continue
        load = lambda what: np.load(os.path.join(a.dir, f"{name}_{what}.npy"))  # noqa: E731
        W, X, Xq, Qc = load("w"), load("x"), load("xq"), load("q")
        B = 2 ** (int(bits) - 1)
        step = a.scalar * float(np.abs(W).max(axis=1).mean()) / B   # percentile 1: the row maximum
        runs, cpu = [], []
        for _ in range(a.reps):
            t0, c0 = time.perf_counter(), time.process_time()
            Q, U = gpfq_layer_numpy(W, X, Xq, step, B)
            runs.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
        same = float(np.mean(np.rint(Q / step) == np.rint(Qc / step)))
        print(json.dumps({"impl": "numpy", "case": case, "layer": name, "N": W.shape[0], "d": W.shape[1],
                          "m": X.shape[0], "threads": int(THREADS), "quant_s": round(statistics.median(runs), 6),
                          "min_s": round(min(runs), 6), "cpu_s": round(statistics.median(cpu), 6),
                          "runs_s": [round(r, 6) for r in runs],
                          "codes_equal": round(same, 6)}), flush=True)
    print(json.dumps({"impl": "numpy", "case": a.case or "all",
                      "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1)}))


if __name__ == "__main__":
    main()
