#!/usr/bin/env bash
# The wheels that benchmarks/gpu_check.py needs on a lent GPU machine and that its image lacks
# (nothing can be downloaded there): kornia and captum for the CUDA tests and the explainers,
# lightly and byol-pytorch (with byol-pytorch's beartype) for the peers section. torchvision is
# the image's own (built for the image's torch and CUDA); a PyPI torchvision would not match it.
# Run here, in the repository root; .whl/ is ignored by git and travels with `carry: [".whl"]`.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .whl kornia==0.9.0 kornia_rs==0.2.0 captum==0.9.0 lightly==1.6.0 byol-pytorch==0.9.1 beartype==0.23.1
ls -l .whl
