#!/usr/bin/python3
"""check_torch_zoo_eval.py MODEL FILE.safetensors [N] [--batch B]

An independent check of a qhost-trained zoo model on Fashion-MNIST: loads the exported
safetensors into the PyTorch definition the golden name lists come from (gen_model_names.py),
with load_state_dict(strict=True), and prints PyTorch's top-1 / top-5 / mean cross-entropy on the
first N test images (default all 10,000) at the native 1x28x28, normalized as qhost's idx dataset
does by default ((v/255 - 0.2860) / 0.3530). The first convolution is rebuilt for 1 input channel.

MODEL: resnet20, resnet20_a, mobilenetv2_cifar.
Run with Debian's /usr/bin/python3 (python3-torch). Not part of the test suite: it needs a trained
model, e.g. `check_torch_zoo_eval.py mobilenetv2_cifar runs/mobilenetv2_fmnist/mobilenetv2-fmnist.safetensors`."""
import argparse
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

import gen_model_names as zoo
from torch_lenet5 import images, load_safetensors, read_idx


def one_channel(model, name):
    """The zoo definitions are 3-channel; qhost builds the first conv from the dataset's channels."""
    if name == "mobilenetv2_cifar":
        old = model.features[0][0]
        model.features[0][0] = nn.Conv2d(1, old.out_channels, 3, old.stride, 1, bias=False)
    else:
        old = model.conv1
        model.conv1 = nn.Conv2d(1, old.out_channels, 3, old.stride, 1, bias=False)
    return model


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model", choices=["resnet20", "resnet20_a", "mobilenetv2_cifar"])
    ap.add_argument("file")
    ap.add_argument("n", type=int, nargs="?", default=10000)
    ap.add_argument("--batch", type=int, default=500)
    a = ap.parse_args()
    torch.manual_seed(0)
    model = one_channel(zoo.MODELS[a.model](), a.model)
    try:
        model.load_state_dict(load_safetensors(a.file), strict=True)
    except (OSError, ValueError, RuntimeError) as e:  # unreadable file, other dtypes, other names/shapes
        print(f"{a.file}: not a {a.model} model file for 1x28x28 input: {e}", file=sys.stderr)
        return 1
    model.eval()
    x = images("t10k-images-idx3-ubyte.gz")[:a.n]
    y = torch.from_numpy(read_idx("t10k-labels-idx1-ubyte.gz").astype("int64"))[:a.n]
    top1 = top5 = 0
    loss = 0.0
    with torch.no_grad():
        for i in range(0, len(y), a.batch):
            logits = model(x[i:i + a.batch]).double()
            t = y[i:i + a.batch]
            top1 += (logits.argmax(1) == t).sum().item()
            top5 += (logits.topk(5, 1).indices == t[:, None]).any(1).sum().item()
            loss += F.cross_entropy(logits, t, reduction="sum").item()
    n = len(y)
    print(f"PyTorch {torch.__version__}: {a.model} {a.file}: top-1 {100.0 * top1 / n:.2f} %, "
          f"top-5 {100.0 * top5 / n:.2f} %, loss {loss / n:.4f} over {n} test images")
    return 0


if __name__ == "__main__":
    sys.exit(main())
