#!/usr/bin/python3
"""check_torch_export.py EXPORTED.safetensors FIXTURE.safetensors METRICS.json N

A model exported by qhost loads into PyTorch's LeNet-5 with load_state_dict(strict=True), its
parameters equal the fixture qhost started from, and PyTorch's top-1 on the first N Fashion-MNIST
test images equals what qhost reported in metrics.json. Exit 77 (skip) without torch."""
import json
import sys

try:
    import torch
except ImportError:
    sys.exit(77)

from torch_lenet5 import LeNet5, images, read_idx, load_safetensors


def main(exported, fixture, metrics, n):
    model = LeNet5()
    state = load_safetensors(exported)
    model.load_state_dict(state, strict=True)
    ref = load_safetensors(fixture)
    for name, t in ref.items():
        if not torch.equal(state[name], t):
            print(f"{name} differs from the fixture")
            return 1
    x = images("t10k-images-idx3-ubyte.gz")[:n]
    y = torch.from_numpy(read_idx("t10k-labels-idx1-ubyte.gz").astype("int64"))[:n]
    model.eval()
    with torch.no_grad():
        top1 = 100.0 * (model(x).argmax(1) == y).sum().item() / n
    ours = next(s for s in json.load(open(metrics))["stages"] if "top1" in s)["top1"]
    print(f"PyTorch top-1 {top1:.4f} %, qhost {ours:.4f} % on {n} test images")
    return 0 if abs(top1 - ours) < 1e-3 else 1  # one image is 0.05 points


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])))
