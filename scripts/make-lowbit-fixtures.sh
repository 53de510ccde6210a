#!/usr/bin/env bash
# Makes the tiny Qwen3 fixtures of the low-bit weight types (tests/fixtures/models/qwen3.{Q2_K,
# Q3_K_S,IQ4_NL,IQ4_XS}.gguf) from the f16 tiny model scripts/make-tiny-models.sh writes, with
# llama-quantize --pure: every matrix in the named type where its rows allow, else llama.cpp's
# fallback (rows of 128 are not whole 256-blocks: Q2_K/Q3_K -> Q4_0, IQ4_XS -> IQ4_NL). So the four
# files hold Q2_K, Q3_K, IQ4_XS and IQ4_NL tensors (IQ4_NL also as the embedding and the output
# head). Their golden outputs: scripts/gen-family-golden.sh qwen3.Q2_K.gguf ...
#
#   scripts/make-lowbit-fixtures.sh [path/to/qwen3.f16.gguf]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="$("$root/scripts/llama-cpp-build.sh")"
src="${1:-$root/target/tiny-models/qwen3/qwen3.f16.gguf}"
mkdir -p "$root/.cache"
log="$root/.cache/lowbit-fixtures.log"
for t in Q2_K Q3_K_S IQ4_NL IQ4_XS; do
  "$bin/llama-quantize" --allow-requantize --pure "$src" "$root/tests/fixtures/models/qwen3.$t.gguf" "$t" 2 >"$log" 2>&1 || { cat "$log" >&2; exit 1; }
done
