#!/usr/bin/python3
"""PyTorch 1.13 reference for bench_lenet5.c: the same LeNet-5, batch 256, same thread count.

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
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

torch.set_num_threads(threads)
torch.manual_seed(0)
BATCH, N = 256, 256 * 12


class LeNet5(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5, padding=2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(400, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = torch.flatten(x, 1)
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))


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
