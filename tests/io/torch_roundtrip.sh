#!/bin/sh
# torch_roundtrip.sh WRITER GOLDEN CHECK_SCRIPT
# qhost reads the PyTorch-made GOLDEN file and writes it again; PyTorch then loads qhost's file.
# Exit 77 (meson: skipped) where /usr/bin/python3 has no torch, as on CI.
set -eu
writer=$1 golden=$2 check=$3
python=/usr/bin/python3
if ! [ -x "$python" ] || ! "$python" -c 'import torch' >/dev/null 2>&1; then
    echo "skipped: $python cannot import torch"
    exit 77
fi
dir=$(mktemp -d "${TMPDIR:-/tmp}/qh-torch-rt-XXXXXX")
trap 'rm -rf "$dir"' EXIT
"$writer" "$golden" "$dir/qhost.safetensors"
"$python" "$check" "$dir/qhost.safetensors"
