#!/usr/bin/python3
"""Checks that a safetensors file written by qhost loads in PyTorch with the expected values.

Usage: check_torch_roundtrip.py FILE [EXPECTED_JSON]
FILE was written by qhost's writer from tests/data/safetensors/golden.safetensors; EXPECTED_JSON
(default: tests/data/safetensors/golden_expected.json) holds the values torch put there.
The parser below is the format as the reference implementation validates it (no safetensors package
on Debian): header padded to 8 bytes, offsets back to back from 0 to the end of the file.
Exit 0 when everything matches, 1 with a message otherwise.
"""
import json
import math
import os
import struct
import sys

import torch

TORCH_DTYPE = {
    "F32": torch.float32, "F64": torch.float64, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
    "U8": torch.uint8, "BOOL": torch.bool,
}


def fail(msg):
    print("check_torch_roundtrip: " + msg, file=sys.stderr)
    sys.exit(1)


def load(path):
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    if n % 8 != 0:
        fail(f"header length {n} is not a multiple of 8")
    text = raw[8:8 + n]
    if text.rstrip(b" ") != text.rstrip():
        fail("header padding is not spaces")
    header = json.loads(text)
    data = raw[8 + n:]
    meta = header.pop("__metadata__", {})
    tensors, expect_begin = {}, 0
    for name, info in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
        begin, end = info["data_offsets"]
        if begin != expect_begin:
            fail(f"{name}: data starts at {begin}, expected {expect_begin} (not back to back)")
        expect_begin = end
        dtype = TORCH_DTYPE[info["dtype"]]
        buf = bytearray(data[begin:end])
        flat = torch.frombuffer(buf, dtype=dtype) if buf else torch.empty(0, dtype=dtype)
        tensors[name] = flat.reshape(info["shape"])
    if expect_begin != len(data):
        fail(f"data buffer has {len(data)} bytes, tensors cover {expect_begin}")
    return tensors, meta, list(header)


def expected_tensor(entry):
    def value(v):
        if isinstance(v, str):
            return {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}[v]
        return v
    dtype = TORCH_DTYPE[entry["dtype"]]
    return torch.tensor([value(v) for v in entry["values"]], dtype=dtype).reshape(entry["shape"])


def same(a, b):
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if a.is_floating_point():  # bitwise: keeps -0.0 apart from 0.0, NaN equal to NaN
        bits = {2: torch.int16, 4: torch.int32, 8: torch.int64}[a.element_size()]
        nan = torch.isnan(a) & torch.isnan(b)
        return bool(torch.all(nan | (a.view(bits) == b.view(bits))))
    return torch.equal(a, b)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    expected_path = sys.argv[2] if len(sys.argv) > 2 else os.path.join(
        here, "..", "data", "safetensors", "golden_expected.json")
    with open(expected_path) as f:
        expected = json.load(f)
    tensors, meta, header_order = load(sys.argv[1])
    want_order = [e["name"] for e in expected["tensors"]]
    if header_order != want_order:
        fail(f"header order {header_order}, expected {want_order}")
    for entry in expected["tensors"]:
        got, want = tensors[entry["name"]], expected_tensor(entry)
        if not same(got, want):
            fail(f"{entry['name']}: got {got}, expected {want}")
    if meta != expected["metadata"]:
        fail(f"metadata {meta}, expected {expected['metadata']}")
    print(f"ok: {len(tensors)} tensors and {len(meta)} metadata keys match in torch {torch.__version__}")


if __name__ == "__main__":
    main()
