#!/bin/bash
# torch_export.sh QHOST SOURCE_ROOT - a PyTorch-trained LeNet-5 goes through a qhost pipeline
# (load, evaluate, export) and the exported file loads back into PyTorch with strict=True, with
# the same parameters and the same top-1. Skips (77) where /usr/bin/python3 has no torch.
set -euo pipefail
qhost=$1 root=$2
/usr/bin/python3 -c 'import torch' 2>/dev/null || { echo "no torch: skipped"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
n=2000
cat >"$tmp/p.ini" <<INI
[pipeline]
stages = eval, export
[model]
plugin = lenet5
weights = $root/tests/data/models/lenet5_torch.safetensors
[dataset]
plugin = idx
test_limit = $n
[eval]
type = evaluate
[export]
type = export
file = lenet5.safetensors
INI
"$qhost" -q -o "$tmp/run" "$tmp/p.ini"
cd "$root/tests/golden"
/usr/bin/python3 check_torch_export.py "$tmp/run/lenet5.safetensors" \
    "$root/tests/data/models/lenet5_torch.safetensors" "$tmp/run/metrics.json" "$n"
