#!/usr/bin/python3
"""PyTorch 1.13 reference for bench_models.c: the same zoo model, batch, input shape and threads.

The models are the golden-listing definitions of tests/golden/gen_model_names.py (the state_dict
names qhost's plugins are checked against), so both sides run the same architecture.
Training = SGD(lr 0.01, momentum 0.9) steps with cross-entropy over K batches of random data
(one "epoch" as in the C bench, batches drawn by a shuffled index); inference = eval +
inference_mode forward, ~0.5 s per measurement. Medians of repeated runs. Prints one JSON line.
GFLOP/s = 2 * forward MACs (conv + linear, as qhost --summary counts them) * img/s; training 3x.

usage: /usr/bin/python3 bench/pytorch_models.py MODEL C H W [-b BATCH] [-t THREADS] [-r REPS]
       [-k TRAIN_BATCHES] [--no-train] [--no-infer] [--label TEXT]
MODEL: resnet20, resnet20_a (option-A shortcuts), mobilenetv2_cifar, alexnet_small, resnet18_cifar.
Run with Debian's interpreter (/usr/bin/python3), which has python3-torch.
"""
import argparse
import json
import os
import sys
import time

ap = argparse.ArgumentParser()
ap.add_argument("model")
ap.add_argument("c", type=int)
ap.add_argument("h", type=int)
ap.add_argument("w", type=int)
ap.add_argument("-b", dest="batch", type=int, default=256)
ap.add_argument("-t", dest="threads", type=int, default=2)
ap.add_argument("-r", dest="reps", type=int, default=5)
ap.add_argument("-k", dest="train_batches", type=int, default=4)
ap.add_argument("--no-train", action="store_true")
ap.add_argument("--no-infer", action="store_true")
ap.add_argument("--label")
args = ap.parse_args()
os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "golden"))
import gen_model_names as zoo  # noqa: E402  (the definitions the golden name lists come from)


class AlexNetSmall(zoo.AlexNetSmall):
    """The listing class declares the modules only; the seed's forward, as the plugin computes it."""

    def __init__(self, in_ch=3, num_classes=10):
        super().__init__(in_ch, num_classes)

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


MODELS = {
    "resnet20": lambda c: zoo.ResNetCifar([16, 32, 64], [3, 3, 3], in_ch=c),
    "resnet20_a": lambda c: zoo.ResNetCifar([16, 32, 64], [3, 3, 3], in_ch=c, shortcut_a=True),
    "resnet18_cifar": lambda c: zoo.ResNetCifar([64, 128, 256, 512], [2, 2, 2, 2], in_ch=c, maxpool=True),
    "mobilenetv2_cifar": lambda c: zoo.mobilenetv2_cifar() if c == 3 else None,
    "alexnet_small": lambda c: AlexNetSmall(in_ch=c),
}


def forward_macs(model, x):
    """Conv and linear multiply-accumulates of one sample, counted by hooks on a forward pass."""
    total = [0]

    def hook(m, inp, out):
        if isinstance(m, nn.Conv2d):
            total[0] += out[0].numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]
        elif isinstance(m, nn.Linear):
            total[0] += m.in_features * m.out_features

    hs = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        model.eval()(x[:1])
    for h in hs:
        h.remove()
    return total[0]


torch.set_num_threads(args.threads)
torch.manual_seed(0)
model = MODELS[args.model](args.c)
B, K = args.batch, args.train_batches
N = B * K
x = torch.randn(N, args.c, args.h, args.w)
y = torch.randint(0, 10, (N,))
opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
macs = forward_macs(model, x)


def epoch():
    model.train()
    perm = torch.randperm(N)
    for i in range(0, N, B):
        idx = perm[i:i + B]
        opt.zero_grad()
        F.cross_entropy(model(x[idx]), y[idx]).backward()
        opt.step()


def infer_rate():
    model.eval()
    iters, t0 = 0, time.perf_counter()
    with torch.inference_mode():
        while True:
            k = iters % K
            model(x[k * B:(k + 1) * B])
            iters += 1
            t = time.perf_counter() - t0
            if t >= 0.5:
                return iters * B / t


def train_rate():
    t0 = time.perf_counter()
    epoch()
    return N / (time.perf_counter() - t0)


def measure(fn):
    fn()  # warm-up
    return sorted(fn() for _ in range(args.reps))


R = args.reps
inf = [0.0] * R if args.no_infer else measure(infer_rate)
trn = [0.0] * R if args.no_train else measure(train_rate)
print(json.dumps({"impl": "pytorch " + torch.__version__, "model": args.label or args.model,
                  "threads": args.threads, "batch": B, "reps": R, "macs_per_img": macs,
                  "infer_img_s": round(inf[R // 2], 1), "infer_min": round(inf[0], 1),
                  "infer_max": round(inf[-1], 1), "infer_gflops": round(2e-9 * macs * inf[R // 2], 1),
                  "train_img_s": round(trn[R // 2], 1), "train_min": round(trn[0], 1),
                  "train_max": round(trn[-1], 1), "train_gflops": round(6e-9 * macs * trn[R // 2], 1)}))
