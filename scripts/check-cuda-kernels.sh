#!/usr/bin/env bash
# Compiles every kernels/*.cu for sm_90 with `ptxas -v` and prints registers, shared memory,
# stack and spills per kernel. Fails (naming the kernel) when any kernel spills, or when a hot
# kernel (GEMV, attention, dequantization, embedding) has a stack frame: both mean local-memory
# traffic in the loops that set decode speed. No GPU needed.
#
# nvcc: $NVCC, else $RILL_CUDA_HOME/bin/nvcc, else the toolkit scripts/install-cuda-toolchain.sh
# installs (installed on first use), else nvcc on PATH.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

find_nvcc() {
  for c in "${NVCC:-}" "${RILL_CUDA_HOME:+$RILL_CUDA_HOME/bin/nvcc}" "$root/.cache/cuda-wheels/nvidia/cu13/bin/nvcc" nvcc; do
    if [ -n "$c" ] && "$c" --version >/dev/null 2>&1; then echo "$c"; return 0; fi
  done
  return 1
}
nvcc="$(find_nvcc)" || { scripts/install-cuda-toolchain.sh >/dev/null && nvcc="$(find_nvcc)"; } || {
  echo "check-cuda-kernels: nvcc not found: run scripts/install-cuda-toolchain.sh (or set NVCC)" >&2
  exit 1
}

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
# Kernels whose stack frame is allowed: rope's accurate sincosf keeps its Payne-Hanek range
# reduction table on the stack (only used for huge angles).
hot='^(gemv_|attn_|dequant_|embed_)'

status=0
printf '%-28s %5s %7s %6s %7s %7s\n' kernel regs smem stack spillst spillld
for cu in kernels/*.cu; do
  log="$tmp/$(basename "$cu").log"
  if ! "$nvcc" -std=c++17 -O3 -arch=sm_90 -cubin -Xptxas -v -I kernels -o "$tmp/out.cubin" "$cu" >"$log" 2>&1; then
    cat "$log" >&2
    echo "check-cuda-kernels: $cu does not compile" >&2
    exit 1
  fi
  # ptxas prints, per kernel: "Compiling entry function 'NAME'", then "N bytes stack frame,
  # N bytes spill stores, N bytes spill loads", then "Used N registers, ... N bytes smem".
  awk -v hot="$hot" '
    /Compiling entry function/ { match($0, /'\''[^'\'']+'\''/); name = substr($0, RSTART + 1, RLENGTH - 2); stack = st = ld = 0; next }
    /bytes stack frame/ { for (i = 1; i <= NF; i++) { if ($(i+1) == "bytes" && $(i+2) == "stack") stack = $i; if ($(i+2) == "spill" && $(i+3) == "stores,") st = $i; if ($(i+2) == "spill" && $(i+3) == "loads") ld = $i } next }
    /Used [0-9]+ registers/ {
      regs = 0; smem = 0
      for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^registers/) regs = $i; if ($(i+1) == "bytes" && $(i+2) ~ /^smem/) smem = $i }
      printf "%-28s %5d %7d %6d %7d %7d\n", name, regs, smem, stack, st, ld
      if (st > 0 || ld > 0) { printf "FAIL %s: spills %d/%d bytes\n", name, st, ld > "/dev/stderr"; bad = 1 }
      if (stack > 0 && name ~ hot) { printf "FAIL %s: %d-byte stack frame in a hot kernel\n", name, stack > "/dev/stderr"; bad = 1 }
    }
    END { exit bad }
  ' "$log" | sort || status=1
done
if [ "$status" -ne 0 ]; then
  echo "check-cuda-kernels: FAILED (see FAIL lines above)" >&2
  exit 1
fi
echo "check-cuda-kernels: ok (no spills; no stack frames in hot kernels)"
