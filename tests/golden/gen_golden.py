#!/usr/bin/python3
"""Regenerates the PyTorch golden files of tests/kernels/test_golden.c.

Run with the system interpreter that has torch (1.13 was used):
    /usr/bin/python3 tests/golden/gen_golden.py [output dir, default tests/data/golden]
CI has no torch: the outputs are committed and this script only documents and regenerates them.

Each case is one little-endian file <case>.qhg:
    "QHG1"  uint32 tensor count
    per tensor: name (32 bytes, NUL padded), int32 dtype (0 = float32, 1 = int32),
                int32 ndim (1..4), int32 dims[4] (unused dims are 1), then the data, row-major.
Integer layer parameters live in an int32 tensor named "params"; the order is per op (see OPS).
Float hyperparameters (eps, momentum, label smoothing) live in a float32 tensor named "hyper".
Gradients are those of sum(y * dy) for a random upstream gradient dy (stored as "dy").
"""
import os
import struct
import sys

import torch
import torch.nn.functional as F

SEED = 20240611
MAGIC = b"QHG1"
NAME_LEN = 32


def write_case(out_dir, case, tensors):
    path = os.path.join(out_dir, case + ".qhg")
    blob = bytearray(MAGIC + struct.pack("<I", len(tensors)))
    for name, t in tensors.items():
        t = t.detach().contiguous()
        if t.dtype == torch.float32:
            code, fmt = 0, "f"
        elif t.dtype in (torch.int32, torch.int64):
            t, code, fmt = t.to(torch.int32), 1, "i"
        else:
            raise TypeError(f"{case}.{name}: unsupported dtype {t.dtype}")
        dims = list(t.shape) or [1]
        assert 1 <= len(dims) <= 4 and len(name) < NAME_LEN, (case, name)
        blob += name.encode().ljust(NAME_LEN, b"\0")
        blob += struct.pack("<6i", code, len(dims), *(dims + [1] * (4 - len(dims))))
        values = t.reshape(-1).tolist()
        blob += struct.pack("<%d%s" % (len(values), fmt), *values)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(blob)
    os.replace(tmp, path)
    return len(blob)


def leaf(*shape):
    return torch.randn(*shape, dtype=torch.float32).requires_grad_(True)


def backward(y):
    dy = torch.randn_like(y)
    y.backward(dy)
    return dy


def conv2d_case(n, c_in, hw, c_out, k, stride, pad, groups, bias=True):
    x = leaf(n, c_in, *hw)
    w = leaf(c_out, c_in // groups, *k)
    b = leaf(c_out) if bias else None
    y = F.conv2d(x, w, b, stride=stride, padding=pad, groups=groups)
    dy = backward(y)
    t = {"params": torch.tensor([k[0], k[1], stride[0], stride[1], pad[0], pad[1], groups]),
         "x": x, "w": w}
    if bias:
        t["b"] = b
    t.update({"dy": dy, "y": y, "dx": x.grad, "dw": w.grad})
    if bias:
        t["db"] = b.grad
    return t


def linear_case(n, fin, fout):
    x, w, b = leaf(n, fin), leaf(fout, fin), leaf(fout)
    y = F.linear(x, w, b)
    dy = backward(y)
    return {"x": x, "w": w, "b": b, "dy": dy, "y": y, "dx": x.grad, "dw": w.grad, "db": b.grad}


def unary_case(fn, shape):
    x = leaf(*shape)
    y = fn(x)
    dy = backward(y)
    return {"x": x, "dy": dy, "y": y, "dx": x.grad}


def pool_params(k, s, p):
    return torch.tensor([k[0], k[1], s[0], s[1], p[0], p[1]])


def maxpool_case(shape, k, s, p):
    x = leaf(*shape)
    y, idx = F.max_pool2d(x, k, s, p, return_indices=True)
    dy = backward(y)
    return {"params": pool_params(k, s, p), "x": x, "dy": dy, "y": y, "argmax": idx, "dx": x.grad}


def avgpool_case(shape, k, s, p):
    x = leaf(*shape)
    y = F.avg_pool2d(x, k, s, p, count_include_pad=True)
    dy = backward(y)
    return {"params": pool_params(k, s, p), "x": x, "dy": dy, "y": y, "dx": x.grad}


def xent_case(n, classes):
    z = (3.0 * torch.randn(n, classes)).requires_grad_(True)
    labels = torch.randint(0, classes, (n,))
    loss = F.cross_entropy(z, labels)  # mean over the batch
    loss.backward()
    return {"logits": z, "labels": labels, "loss": loss.reshape(1), "dlogits": z.grad}


# ---------------------------------------------------------------- model-zoo layers (issue 3)
# Appended after the first cases, so those keep drawing the same random numbers.

BN_EPS, BN_MOMENTUM = 1e-5, 0.1


def bn_train_case(n, c, hw):
    bn = torch.nn.BatchNorm2d(c, eps=BN_EPS, momentum=BN_MOMENTUM).train()
    with torch.no_grad():
        bn.weight.copy_(1.0 + 0.5 * torch.randn(c))
        bn.bias.copy_(torch.randn(c))
        bn.running_mean.copy_(torch.randn(c))
        bn.running_var.copy_(0.5 + torch.rand(c))
    rm0, rv0 = bn.running_mean.clone(), bn.running_var.clone()
    # an offset and a spread per channel, so the mean and variance matter
    x = (1.5 * torch.randn(n, c, *hw) + torch.randn(1, c, 1, 1) * 3.0).requires_grad_(True)
    y = bn(x)
    dy = backward(y)
    return {"hyper": torch.tensor([BN_EPS, BN_MOMENTUM], dtype=torch.float32), "x": x,
            "gamma": bn.weight, "beta": bn.bias, "rm0": rm0, "rv0": rv0, "dy": dy, "y": y,
            "rm": bn.running_mean, "rv": bn.running_var, "dx": x.grad, "dgamma": bn.weight.grad,
            "dbeta": bn.bias.grad}


def bn_eval_case(n, c, hw):
    bn = torch.nn.BatchNorm2d(c, eps=BN_EPS, momentum=BN_MOMENTUM).eval()
    with torch.no_grad():
        bn.weight.copy_(1.0 + 0.5 * torch.randn(c))
        bn.bias.copy_(torch.randn(c))
        bn.running_mean.copy_(torch.randn(c))
        bn.running_var.copy_(0.5 + torch.rand(c))
    x = 2.0 * torch.randn(n, c, *hw)
    with torch.no_grad():
        y = bn(x)
    return {"hyper": torch.tensor([BN_EPS], dtype=torch.float32), "x": x, "gamma": bn.weight,
            "beta": bn.bias, "rm": bn.running_mean, "rv": bn.running_var, "y": y}


def relu6_case(shape):
    # spread over [-3, 9] so both clamps are hit
    x = (3.0 * torch.randn(*shape) + 3.0).requires_grad_(True)
    y = F.relu6(x)
    dy = backward(y)
    return {"x": x, "dy": dy, "y": y, "dx": x.grad}


def adaptive_pool_case(shape, out):
    x = leaf(*shape)
    y = F.adaptive_avg_pool2d(x, out)
    dy = backward(y)
    return {"x": x, "dy": dy, "y": y, "dx": x.grad}


def resize_case(shape, out):
    x = leaf(*shape)
    # size= (not scale_factor=) so the scale is in / out, as the kernel computes it
    y = F.interpolate(x, size=out, mode="bilinear", align_corners=False)
    dy = backward(y)
    return {"x": x, "dy": dy, "y": y, "dx": x.grad}


def shortcut_case(shape, stride, c_out):
    x = leaf(*shape)
    p = c_out - shape[1]
    y = F.pad(x[:, :, ::stride, ::stride], (0, 0, 0, 0, p // 2, p - p // 2))
    dy = backward(y)
    return {"params": torch.tensor([stride, c_out]), "x": x, "dy": dy, "y": y, "dx": x.grad}


def xent_ls_case(n, classes, smoothing):
    z = (3.0 * torch.randn(n, classes)).requires_grad_(True)
    labels = torch.randint(0, classes, (n,))
    loss = F.cross_entropy(z, labels, label_smoothing=smoothing)
    loss.backward()
    return {"hyper": torch.tensor([smoothing], dtype=torch.float32), "logits": z, "labels": labels,
            "loss": loss.reshape(1), "dlogits": z.grad}


# case name -> builder; the C test holds the same names.
OPS = {
    # conv2d params: kh kw sh sw ph pw groups
    "conv2d_plain": lambda: conv2d_case(2, 3, (6, 7), 4, (3, 3), (1, 1), (0, 0), 1),
    "conv2d_s2p1": lambda: conv2d_case(2, 3, (7, 8), 5, (3, 3), (2, 2), (1, 1), 1),
    "conv2d_g2": lambda: conv2d_case(2, 4, (6, 6), 6, (3, 3), (1, 1), (1, 1), 2),
    "conv2d_asym_nobias": lambda: conv2d_case(1, 2, (7, 5), 3, (3, 2), (2, 1), (0, 1), 1, bias=False),
    "linear": lambda: linear_case(5, 7, 4),
    "relu": lambda: unary_case(F.relu, (3, 4, 5)),
    "tanh": lambda: unary_case(torch.tanh, (3, 4, 5)),
    # pool params: kh kw sh sw ph pw
    "maxpool_2x2": lambda: maxpool_case((2, 3, 6, 7), (2, 2), (2, 2), (0, 0)),
    "maxpool_3x3s2p1": lambda: maxpool_case((2, 3, 7, 8), (3, 3), (2, 2), (1, 1)),
    "avgpool_2x2": lambda: avgpool_case((2, 3, 6, 6), (2, 2), (2, 2), (0, 0)),
    "avgpool_3x3s2p1": lambda: avgpool_case((2, 2, 7, 9), (3, 3), (2, 2), (1, 1)),
    "xent": lambda: xent_case(6, 10),
    # model-zoo layers; float "hyper" holds eps, momentum / eps / smoothing
    "bn_train": lambda: bn_train_case(3, 4, (5, 6)),
    "bn_eval": lambda: bn_eval_case(2, 3, (4, 5)),
    "relu6": lambda: relu6_case((3, 4, 5)),
    "adaptive_1x1": lambda: adaptive_pool_case((2, 3, 5, 7), (1, 1)),
    "adaptive_6x6": lambda: adaptive_pool_case((2, 2, 13, 13), (6, 6)),
    "adaptive_2x3": lambda: adaptive_pool_case((2, 3, 7, 7), (2, 3)),
    "resize_up": lambda: resize_case((1, 2, 8, 8), (56, 56)),
    "resize_down": lambda: resize_case((2, 2, 7, 9), (4, 5)),
    # shortcut params: stride c_out
    "shortcut_a": lambda: shortcut_case((2, 16, 8, 8), 2, 32),
    "shortcut_a_odd": lambda: shortcut_case((1, 3, 7, 5), 2, 8),
    "xent_ls": lambda: xent_ls_case(6, 10, 0.1),
}


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    out_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "..", "data", "golden")
    os.makedirs(out_dir, exist_ok=True)
    torch.manual_seed(SEED)
    torch.set_num_threads(1)
    total = 0
    for case, build in OPS.items():
        total += write_case(out_dir, case, build())
    print(f"wrote {len(OPS)} cases, {total} bytes, to {os.path.normpath(out_dir)}")


if __name__ == "__main__":
    main()
