#!/usr/bin/python3
"""Regenerates tests/data/golden/dynamic_map.txt, the golden dynamic-tree code books of
tests/plugins/test_dynamic_tree.c.

    /usr/bin/python3 tests/golden/gen_dynamic_map.py [output file]

bitsandbytes' create_dynamic_map(signed=True, max_exponent_bits=N-1, total_bits=N) is written out
twice, independently of the C code, for N = 2..8:
  * `exact`: the construction in numpy float64 (linspace, midpoints, powers of ten), rounded once
    to float32 at the end;
  * `torch`: the construction as bitsandbytes runs it, in torch float32 (torch.linspace rounds a
    few boundaries differently depending on the build; 1.13 on AVX2 was used).
Both drop bitsandbytes' zero padding to 256 entries and are sorted ascending. Each line is
    N k exact torch
with the float32 values as Python float.hex() strings. CI has no torch: the file is committed.
"""
import sys

import numpy as np

try:
    import torch
except ImportError:  # the torch column cannot be regenerated without it
    torch = None


def dynamic_map(total_bits, linspace, f32):
    """bitsandbytes create_dynamic_map, signed, max_exponent_bits = total_bits - 1, no padding."""
    max_exponent_bits = total_bits - 1
    data = []
    non_sign_bits = total_bits - 1
    additional_items = 2 ** (non_sign_bits - max_exponent_bits) - 1
    assert additional_items == 0
    for i in range(max_exponent_bits):
        fraction_items = int(2 ** (i + non_sign_bits - max_exponent_bits) + 1)
        boundaries = linspace(fraction_items)
        means = (boundaries[:-1] + boundaries[1:]) / 2.0
        data += f32((10 ** (-(max_exponent_bits - 1) + i)) * means)
        data += f32(-(10 ** (-(max_exponent_bits - 1) + i)) * means)
    data.append(0.0)
    data.append(1.0)
    assert len(data) == 2 ** total_bits
    data = sorted(float(np.float32(v)) for v in data)
    assert len(set(data)) == 2 ** total_bits, "entries are not distinct"
    return data


def exact_map(n):
    return dynamic_map(n, lambda k: np.linspace(0.1, 1.0, k, dtype=np.float64),
                       lambda a: [float(np.float32(v)) for v in a])


def torch_map(n):
    return dynamic_map(n, lambda k: torch.linspace(0.1, 1, k, dtype=torch.float32),
                       lambda t: t.tolist())


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "tests/data/golden/dynamic_map.txt"
    lines = ["# N k exact torch  (see tests/golden/gen_dynamic_map.py)"]
    for n in range(2, 9):
        ex = exact_map(n)
        tm = torch_map(n) if torch is not None else ex
        diff = sum(a != b for a, b in zip(ex, tm))
        print(f"N={n}: {len(ex)} entries, {diff} differ between float64 and torch float32", file=sys.stderr)
        for k, (a, b) in enumerate(zip(ex, tm)):
            lines.append(f"{n} {k} {a.hex()} {b.hex()}")
    with open(out, "w") as fh:
        fh.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
