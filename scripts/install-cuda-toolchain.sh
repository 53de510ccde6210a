#!/usr/bin/env bash
# Installs the CUDA 13.0 compiler toolchain from NVIDIA's PyPI wheels (no GPU, no driver, no root
# needed) into .cache/cuda-wheels, for `cargo build --features cuda`. Idempotent. Pinned to 13.0.x:
# newer NVRTC/nvcc emit PTX that the 13.0 ptxas and the H200's driver 580 reject.
# Prints the toolkit folder (…/nvidia/cu13) on success; build.rs finds it there by default.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
target="${RILL_CUDA_WHEELS:-$root/.cache/cuda-wheels}"
toolkit="$target/nvidia/cu13"
pins=(
  "nvidia-cuda-nvcc==13.0.88"
  "nvidia-cuda-crt==13.0.88"
  "nvidia-nvvm==13.0.88"
  "nvidia-cuda-runtime==13.0.96"
  "nvidia-cuda-cccl==13.0.85"
  "nvidia-cuda-nvrtc==13.0.88"
)
stamp="$target/.installed-$(printf '%s\n' "${pins[@]}" | sha256sum | cut -c1-16)"
if [ -f "$stamp" ] && [ -x "$toolkit/bin/nvcc" ]; then
  echo "$toolkit"
  exit 0
fi
command -v python3 >/dev/null || { echo "install-cuda-toolchain: python3 is required" >&2; exit 1; }
python3 -m pip --version >/dev/null 2>&1 || { echo "install-cuda-toolchain: pip is required (apt install python3-pip)" >&2; exit 1; }
rm -rf "$target"
mkdir -p "$target"
if ! python3 -m pip install --quiet --disable-pip-version-check --no-deps --target "$target" "${pins[@]}" >&2; then
  echo "install-cuda-toolchain: pip could not install the CUDA wheels (is PyPI reachable?)" >&2
  exit 1
fi
[ -x "$toolkit/bin/nvcc" ] || { echo "install-cuda-toolchain: nvcc missing under $toolkit/bin after install" >&2; exit 1; }
touch "$stamp"
echo "$toolkit"
