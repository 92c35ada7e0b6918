#!/usr/bin/python3
"""Train a LeNet-5 in PyTorch on Fashion-MNIST and save it as safetensors with PyTorch's names.

The file (tests/data/models/lenet5_torch.safetensors) is the interop fixture: qhost must load it
unchanged and reach the test top-1 that PyTorch measured (stored in the metadata as test_top1)
within 0.05 points. Run with Debian's interpreter: /usr/bin/python3 tests/golden/gen_lenet_torch.py
"""
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

from torch_lenet5 import LeNet5, images, read_idx, save_safetensors

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "data", "models", "lenet5_torch.safetensors")


def main():
    torch.manual_seed(0)
    torch.set_num_threads(2)
    xtr, ytr = images("train-images-idx3-ubyte.gz"), torch.from_numpy(read_idx("train-labels-idx1-ubyte.gz").astype(np.int64))
    xte, yte = images("t10k-images-idx3-ubyte.gz"), torch.from_numpy(read_idx("t10k-labels-idx1-ubyte.gz").astype(np.int64))
    model = LeNet5()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    g = torch.Generator().manual_seed(0)
    for epoch in range(2):
        perm = torch.randperm(len(xtr), generator=g)
        for i in range(0, len(xtr), 128):
            idx = perm[i:i + 128]
            opt.zero_grad()
            F.cross_entropy(model(xtr[idx]), ytr[idx]).backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        logits = torch.cat([model(xte[i:i + 1000]) for i in range(0, len(xte), 1000)])
    pred = logits.argmax(1)
    top1 = 100.0 * (pred == yte).float().mean().item()
    loss = F.cross_entropy(logits, yte).item()
    meta = {"model": "lenet5", "dataset": "fashion-mnist", "epochs": "2", "test_top1": "%.4f" % top1,
            "test_loss": "%.6f" % loss, "test_samples": str(len(yte)), "framework": "pytorch " + torch.__version__}
    save_safetensors(OUT, model.state_dict(), meta)
    print("wrote %s: test top-1 %.2f %%, loss %.4f" % (OUT, top1, loss))


if __name__ == "__main__":
    sys.exit(main())
