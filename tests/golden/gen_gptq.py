#!/usr/bin/python3
"""Regenerates the GPTQ golden files of tests/plugins/test_gptq.c.

Run with the system interpreter that has torch (1.13 was used):
    /usr/bin/python3 tests/golden/gen_gptq.py [output dir, default tests/data/golden]
CI has no torch: the outputs are committed and this script only documents and regenerates them.

An independent implementation of GPTQ (Frantar et al. 2022, Algorithm 1), written the way the
authors' gptq.py is: H -> damping -> torch.linalg.cholesky -> cholesky_inverse -> upper cholesky,
then blocks of columns with the error pushed through the rows of that factor. All in float64.
The choices qhost makes where the reference leaves room, reproduced here:
  - dead inputs (H_ii == 0): H_ii = 1 and the weight column is zeroed (as the reference);
  - damping: damp * mean(diag H) after the dead fix (as the reference);
  - act order: columns by decreasing diag(H), ties by index (a stable sort);
  - groups: without act order, a group's grid comes from the *updated* weights when the loop
    reaches its first column (the paper); with act order, from the weights before any update
    (static groups), so a stored group is a run of consecutive columns;
  - grid (min-max, as quant.py): asymmetric lo = min(w, 0), hi = max(w, 0), scale = (hi - lo)/maxq,
    zero = round(-lo / scale); symmetric scale = 2 max|w| / maxq, codes in [-2^(b-1), 2^(b-1)-1];
    an all-zero group gets [-1, 1]; the scale is rounded to float32 (what qhost stores) before the
    zero point and the codes are computed; round half to even (torch.round).
X is drawn on a 1/16 grid so that H = X^T X is exact in float64 here and in C alike.

All cases share one layer and go into one file, gptq.qhg, in the layout of gen_golden.py ("QHG1",
tensor count, then per tensor a 32-byte name, int32 dtype (0 = float32, 1 = int32), int32 ndim,
int32 dims[4], little-endian data):
    h   float32 [cols, cols]  H = X^T X (exact: X on a 1/16 grid, so every entry fits float32)
    w   float32 [rows, cols]
    and per case k = 0, 1, ...:
    pK  int32 [7]             bits, group_size, act_order, symmetric, block_size, damp numerator, denominator
    cK  int32 [rows, cols]    codes
    sK  float32 [rows*groups] scales
    zK  int32 [rows*groups]   zero points (0 when symmetric)
"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen_golden import write_case  # noqa: E402

SEED = 20240722
ROWS, COLS, M = 16, 64, 128


def grid(w, bits, sym):
    """Scale (float32 value, as float64), zero point and code range of one group w (1-D float64)."""
    maxq = 2 ** bits - 1
    if sym:
        amax = float(w.abs().max())
        if amax == 0.0:
            amax = 1.0
        scale = float(torch.tensor(2.0 * amax / maxq, dtype=torch.float64).float())
        return scale, 0, -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    lo, hi = min(float(w.min()), 0.0), max(float(w.max()), 0.0)
    if lo == 0.0 and hi == 0.0:
        lo, hi = -1.0, 1.0
    scale = float(torch.tensor((hi - lo) / maxq, dtype=torch.float64).float())
    zero = int(torch.round(torch.tensor(-lo / scale, dtype=torch.float64)))
    return scale, min(max(zero, 0), maxq), 0, maxq


def quant(w, g):
    """Codes and float32 values of the column w (float64) on the per-row grids g."""
    scale = torch.tensor([x[0] for x in g], dtype=torch.float64)
    zero = torch.tensor([x[1] for x in g], dtype=torch.float64)
    qmin = torch.tensor([x[2] for x in g], dtype=torch.float64)
    qmax = torch.tensor([x[3] for x in g], dtype=torch.float64)
    code = torch.minimum(torch.maximum(torch.round(w / scale) + zero, qmin), qmax)
    value = scale.float() * (code - zero).float()  # float32, as qh_qtensor_dequantize
    return code.to(torch.int32), value


def gptq(w32, h, bits, group, act_order, sym, blocksize, damp):
    w = w32.double().clone()
    h = h.clone()
    rows, cols = w.shape
    dead = torch.diag(h) == 0
    h[dead, dead] = 1
    w[:, dead] = 0
    gsize = cols if group <= 0 or group >= cols else group
    ngr = (cols + gsize - 1) // gsize
    static = None
    if ngr == 1 or act_order:  # grids from the weights before any update
        static = [[grid(w[r, g * gsize:(g + 1) * gsize], bits, sym) for g in range(ngr)] for r in range(rows)]
    perm = torch.arange(cols)
    if act_order:
        perm = torch.sort(torch.diag(h), descending=True, stable=True).indices
    w, h = w[:, perm], h[perm][:, perm]
    h += damp * torch.mean(torch.diag(h)) * torch.eye(cols, dtype=torch.float64)
    hinv = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(h)), upper=True)
    codes = torch.zeros(rows, cols, dtype=torch.int32)
    deq = torch.zeros(rows, cols, dtype=torch.float32)
    grids = [[None] * ngr for _ in range(rows)]
    if static is not None:
        grids = static
    if not act_order and ngr > 1:  # whole groups per block, so a group's columns are up to date
        blocksize = max(gsize, blocksize // gsize * gsize)
    for i1 in range(0, cols, blocksize):
        i2 = min(i1 + blocksize, cols)
        w1 = w[:, i1:i2].clone()
        err1 = torch.zeros_like(w1)
        for i in range(i2 - i1):
            col = int(perm[i1 + i])
            if static is None and (i1 + i) % gsize == 0:
                gi = (i1 + i) // gsize
                for r in range(rows):
                    grids[r][gi] = grid(w1[r, i:i + gsize], bits, sym)
            g = [grids[r][col // gsize] for r in range(rows)]
            q, v = quant(w1[:, i], g)
            codes[:, col], deq[:, col] = q, v
            e = (w1[:, i] - v.double()) / hinv[i1 + i, i1 + i]
            w1[:, i:] -= e.unsqueeze(1).matmul(hinv[i1 + i, i1 + i:i2].unsqueeze(0))
            err1[:, i] = e
        w[:, i2:] -= err1.matmul(hinv[i1:i2, i2:])
    scale = torch.tensor([grids[r][g][0] for r in range(rows) for g in range(ngr)], dtype=torch.float32)
    zero = torch.tensor([grids[r][g][1] for r in range(rows) for g in range(ngr)], dtype=torch.int32)
    return codes, scale, zero, deq


def make_x(gen, dead_cols):
    z = torch.randn(M, COLS, generator=gen, dtype=torch.float64)
    mix = torch.eye(COLS, dtype=torch.float64) + 0.3 * torch.randn(COLS, COLS, generator=gen, dtype=torch.float64)
    common = torch.randn(M, 1, generator=gen, dtype=torch.float64)
    x = z.matmul(mix) + 1.5 * common
    x = torch.clamp(torch.round(x * 16) / 16, -7.9375, 7.9375)  # 1/16 grid: H exact in float64
    x[:, dead_cols] = 0
    return x


CASES = [  # bits, group, act_order, sym, blocksize, damp (num, den)
    (4, 16, 0, 0, 128, (1, 100)),
    (3, 16, 0, 0, 128, (1, 100)),
    (4, 16, 1, 0, 128, (1, 100)),
    (3, 16, 1, 0, 128, (1, 100)),
    (4, 0, 0, 1, 128, (1, 100)),
    (3, -1, 1, 1, 20, (1, 20)),
    (4, 24, 0, 0, 7, (1, 100)),
]


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    out_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "..", "data", "golden")
    os.makedirs(out_dir, exist_ok=True)
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(SEED)
    x = make_x(gen, [5, 40])
    w = torch.randn(ROWS, COLS, generator=gen, dtype=torch.float64).float()
    h = x.t().matmul(x)
    assert torch.equal(h.float().double(), h), "H must be exact in float32"
    t = {"h": h.float(), "w": w}
    for k, (bits, group, act, sym, bs, (dn, dd)) in enumerate(CASES):
        codes, scale, zero, _ = gptq(w, h, bits, group, act, sym, bs, dn / dd)
        t.update({f"p{k}": torch.tensor([bits, group, act, sym, bs, dn, dd]), f"c{k}": codes, f"s{k}": scale,
                  f"z{k}": zero})
    size = write_case(out_dir, "gptq", t)
    print(f"gptq.qhg: {len(CASES)} cases, {size} bytes")


if __name__ == "__main__":
    main()
