#!/usr/bin/python3
"""Regenerates tests/data/safetensors/golden.safetensors and golden_expected.json.

Run with /usr/bin/python3 (it has torch). Debian ships no `safetensors` package, so the format is
written by hand here: u64 little-endian header length N, N bytes of JSON padded with spaces to a
multiple of 8, then the data buffer. The values come from torch; the expected-values JSON lists each
tensor in data-offset order with its values flattened (floats as Python repr, which round-trips
exactly, and "nan", "inf", "-inf" as strings since JSON has no spelling for them).

The header keys are sorted by name while the data is laid out in definition order, so a reader that
assumes header order == offset order fails the test.
"""
import json
import math
import os
import struct
import sys

import torch

ST_DTYPE = {
    torch.float32: "F32", torch.float64: "F64", torch.float16: "F16", torch.bfloat16: "BF16",
    torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8",
    torch.uint8: "U8", torch.bool: "BOOL",
}


def make_tensors():
    g = torch.Generator().manual_seed(1234)
    specials = torch.tensor([0.0, -0.0, 1.0, -2.5, 1e-30, 3.4e38, float("inf"), float("-inf"), float("nan")])
    return [
        ("fc1.weight", torch.randn(3, 4, generator=g)),
        ("f32.specials", specials),
        ("f64.values", torch.randn(2, 3, generator=g, dtype=torch.float64) * 1e10),
        ("f16.values", torch.tensor([0.0, 1.0, -1.5, 65504.0, 6.1e-5, 5.96e-8, -0.0, 0.333]).to(torch.float16)),
        ("bf16.values", (torch.randn(2, 2, 2, generator=g) * 100).to(torch.bfloat16)),
        ("i64.values", torch.tensor([-(2**63), 2**63 - 1, 0, -1, 123456789012345], dtype=torch.int64)),
        ("i32.values", torch.randint(-2**31, 2**31 - 1, (2, 3), generator=g, dtype=torch.int32)),
        ("i16.values", torch.tensor([[-32768, 32767], [0, -7]], dtype=torch.int16)),
        ("i8.values", torch.tensor([-128, 127, 0, -1, 42], dtype=torch.int8)),
        ("u8.values", torch.tensor([0, 255, 1, 128], dtype=torch.uint8)),
        ("mask.bool", torch.tensor([[True, False, True], [False, False, True]])),
        ("scalar.f32", torch.tensor(0.125)),
        ("empty.f32", torch.zeros(0, 3)),
    ]


def raw_bytes(t):
    t = t.contiguous()
    if t.dtype == torch.bfloat16:  # numpy has no bfloat16: reinterpret the bits
        t = t.view(torch.int16)
    return t.numpy().tobytes()


def json_value(v):
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
    return v


def write_safetensors(path, tensors, metadata):
    header, blobs, offset = {}, [], 0
    for name, t in tensors:
        b = raw_bytes(t)
        header[name] = {"dtype": ST_DTYPE[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    ordered = {"__metadata__": metadata}
    ordered.update(sorted(header.items()))
    text = json.dumps(ordered, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(root, "data", "safetensors")
    tensors = make_tensors()
    metadata = {"format": "pt", "producer": "gen_safetensors.py", "torch": torch.__version__.split("+")[0]}
    write_safetensors(os.path.join(out_dir, "golden.safetensors"), tensors, metadata)
    expected = {
        "metadata": metadata,
        "tensors": [{"name": n, "dtype": ST_DTYPE[t.dtype], "shape": list(t.shape),
                     "values": [json_value(v) for v in t.flatten().tolist()]} for n, t in tensors],
    }
    with open(os.path.join(out_dir, "golden_expected.json"), "w") as f:
        json.dump(expected, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
