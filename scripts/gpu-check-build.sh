#!/usr/bin/env bash
# Builds what scripts/gpu-check.sh runs on a GPU machine that has no Rust: the release `rill`
# with the `cuda` feature and the CUDA backend's GPU test binary, copied into
# target/gpu-check-bin/ (carry that folder). Prints its path. The GPU tests are #[ignore]d;
# gpu-check.sh runs the binary with --include-ignored.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
scripts/install-cuda-toolchain.sh >/dev/null
cargo build --release --locked -p rill-cli --features cuda >&2
tests="$(cargo test --release --locked -p rill-backend-cuda --test gpu --no-run --message-format=json 2>/dev/null |
  python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "gpu": print(m["executable"])' | tail -1)"
out="$root/target/gpu-check-bin"
mkdir -p "$out"
cp target/release/rill "$out/rill"
[ -n "$tests" ] && cp "$tests" "$out/backend-cuda-gpu-tests"
strip --strip-debug "$out"/* 2>/dev/null || true
du -sh "$out" >&2
echo "$out"
