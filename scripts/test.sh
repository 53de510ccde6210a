#!/usr/bin/env bash
# The one test command (README, .ci/run): fetches the default model, builds, lints and runs
# every test (Rust unit and integration tests, then the OpenAI SDK tests in tests/python).
# Needs only cargo, python3 with pip and venv, and PyPI/crates.io access.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

# Some machine images ship /dev/null as a regular file: whatever is "discarded" piles up in it, and
# cargo's rustc probe (which reads /dev/null as its stdin) then fails to parse that junk. Restore
# the device when we may; otherwise empty the file before each cargo step.
if [ ! -c /dev/null ]; then
  echo "scripts/test.sh: /dev/null is not a character device; restoring it" >&2
  rm -f /dev/null && mknod -m 666 /dev/null c 1 3 || echo "scripts/test.sh: could not; emptying it before each cargo step" >&2
fi
# A clean clone builds everything once: incremental caches would only double target/ on disk.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
cargo() {
  [ -c /dev/null ] || : >/dev/null
  command cargo "$@"
}

scripts/fetch-model.sh >/dev/null
# llama.cpp's vocab-only GGUFs, which the tokenizer tests compare against (source only, no build).
scripts/fetch-llama-cpp-sdist.sh >/dev/null
# The CUDA backend builds everywhere (nvcc from NVIDIA's pip wheels, nothing CUDA at link time);
# its kernels must compile without register spills. Without a GPU its tests check the clean
# "no device" errors; scripts/gpu-check.sh runs the rest on a GPU machine.
scripts/install-cuda-toolchain.sh >/dev/null
scripts/check-cuda-kernels.sh
cargo build --workspace --all-targets --locked
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo clippy --locked -p rill-cli -p rill-server --features cuda --all-targets -- -D warnings
cargo test --workspace --all-targets --locked

# The official OpenAI SDK against `rill serve` (release build: the model runs at full speed),
# built with CUDA support as shipped; without a GPU `--device cuda` must fail cleanly.
cargo build --release --locked -p rill-cli --features cuda
if no_gpu="$(target/release/rill generate --device cuda --model models/SmolLM2-135M-Instruct.Q4_1.gguf --prompt hi 2>&1)"; then
  echo "rill generate --device cuda succeeded: this machine has a GPU, skipping the no-GPU check"
else
  code=$?
  [ "$code" -eq 1 ] && grep -q "cuda:0 is not available" <<<"$no_gpu" || { echo "--device cuda without a GPU: exit $code, output: $no_gpu"; exit 1; }
fi
# Headless Chromium for the web UI test (Debian's package; Playwright drives it).
if ! command -v chromium >/dev/null; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null
fi
export RILL_REQUIRE_CHROMIUM=1
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r tests/python/requirements.txt
.venv/bin/python -m pytest -q tests/python
echo "scripts/test.sh: all tests passed"
