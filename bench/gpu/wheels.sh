#!/usr/bin/env bash
# Download the wheels kdtool needs on the GPU machine into bench/gpu/wheels (git-ignored; carry that folder).
#
#   bench/gpu/wheels.sh [DEST]        # run where pip can reach PyPI; PYTHON picks the pip (default python3)
#
# The GPU image (Python 3.12, manylinux x86-64) already has torch 2.11, triton 3.6, numpy, onnx, onnxruntime,
# safetensors 0.8, click, pyyaml, tqdm, psutil, matplotlib, accelerate, pytest, hypothesis. What kdtool needs
# there and the image lacks or has in an incompatible version, at the exact versions of constraints.txt:
#   transformers     the image has 5.x; kdtool pins <4.58 (its torch-triton adapter and losses use 4.57's API)
#   tokenizers       transformers 4.57 needs <=0.23.0; the image has 0.23.2
#   huggingface_hub  transformers 4.57 needs <1.0; the image has 1.x
#   optimum, optimum-onnx   absent; kdtool.export imports them (pytest collects tests/test_export_*.py)
# Pure-Python or manylinux wheels only, no dependencies resolved (--no-deps): the rest is on the image.
# Fails if the folder exceeds 60 MiB (the device tool carries 64 MiB in all, the repository included).
set -euo pipefail
cd "$(dirname "$0")/../.."
DEST=${1:-bench/gpu/wheels}
PY=${PYTHON:-python3}
PACKAGES=(transformers tokenizers huggingface_hub optimum optimum-onnx)
LIMIT_MIB=60

pins=()
for name in "${PACKAGES[@]}"; do
    pin=$(grep -i -E "^${name}==" constraints.txt || true)
    if [ -z "$pin" ]; then
        echo "wheels.sh: $name has no exact pin in constraints.txt" >&2
        exit 2
    fi
    pins+=("$pin")
done

rm -rf "$DEST"
mkdir -p "$DEST"
platforms=()
for tag in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64; do
    platforms+=(--platform "$tag")
done
"$PY" -m pip download --disable-pip-version-check --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp "${platforms[@]}" -d "$DEST" "${pins[@]}"

count=$(find "$DEST" -name '*.whl' | wc -l)
if [ "$count" -ne "${#PACKAGES[@]}" ]; then
    echo "wheels.sh: expected ${#PACKAGES[@]} wheels in $DEST, found $count" >&2
    exit 1
fi
bytes=$(du -sb "$DEST" | cut -f1)
mib=$(( (bytes + 1048575) / 1048576 ))
ls -l "$DEST"
if [ "$mib" -gt "$LIMIT_MIB" ]; then
    echo "wheels.sh: $DEST holds $mib MiB, over the $LIMIT_MIB MiB limit" >&2
    exit 1
fi
echo "wheels.sh: ${#PACKAGES[@]} wheels, $mib MiB in $DEST (limit $LIMIT_MIB MiB): ${pins[*]}"
