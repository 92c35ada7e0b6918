#!/usr/bin/python3
"""PyTorch 1.13 reference for `bench-models lenet5` (bench/bench_models.c): the same LeNet-5, batch 256, same thread count.

Training = SGD(lr 0.01, momentum 0.9) steps with cross-entropy over 12 batches of random data
(one "epoch" as in the C bench, batches drawn by a shuffled index); inference = eval +
inference_mode forward of one batch. Medians of repeated runs. Prints one JSON line.
Run with Debian's interpreter (/usr/bin/python3), which has python3-torch.
"""
import json
import os
import sys
import time

threads = int(sys.argv[1]) if len(sys.argv) > 1 else 2
reps = int(sys.argv[2]) if len(sys.argv) > 2 else 7
os.environ.setdefault("OMP_NUM_THREADS", str(threads))
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "golden"))
from torch_lenet5 import LeNet5  # noqa: E402  (the same model the fixtures use)

torch.set_num_threads(threads)
torch.manual_seed(0)
BATCH, N = 256, 256 * 12


model = LeNet5()
x = torch.randn(N, 1, 28, 28)
y = torch.randint(0, 10, (N,))
opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)


def epoch():
    model.train()
    perm = torch.randperm(N)
    for i in range(0, N, BATCH):
        idx = perm[i:i + BATCH]
        opt.zero_grad()
        F.cross_entropy(model(x[idx]), y[idx]).backward()
        opt.step()


def infer_rate():
    model.eval()
    iters, t0 = 0, time.perf_counter()
    with torch.inference_mode():
        while True:
            k = iters % 12
            model(x[k * BATCH:(k + 1) * BATCH])
            iters += 1
            t = time.perf_counter() - t0
            if t >= 0.5:
                return iters * BATCH / t


infer_rate()
inf = sorted(infer_rate() for _ in range(reps))
epoch()
trn = []
for _ in range(reps):
    t0 = time.perf_counter()
    epoch()
    trn.append(N / (time.perf_counter() - t0))
trn.sort()
print(json.dumps({"impl": "pytorch " + torch.__version__, "threads": threads, "batch": BATCH, "reps": reps,
                  "infer_img_s": round(inf[reps // 2], 1), "infer_min": round(inf[0], 1),
                  "infer_max": round(inf[-1], 1), "train_img_s": round(trn[reps // 2], 1),
                  "train_min": round(trn[0], 1), "train_max": round(trn[-1], 1)}))
