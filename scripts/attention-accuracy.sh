#!/usr/bin/env bash
# How far rill's attention arithmetics are from llama.cpp's, in llama.cpp's own units: the KL
# divergence from llama.cpp's next-token distributions over a text, at every position of the
# second half of chunks of CTX tokens (long contexts, where attention arithmetic matters most).
#
#   scripts/attention-accuracy.sh [TEXT] [CTX] [CHUNKS]
#
# 1. llama-perplexity (flash attention on, 2 threads) writes its log-probabilities (the base).
# 2. llama.cpp's own noise: llama-perplexity again with flash attention off, then with 1 thread,
#    each against the base.
# 3. rill perplexity --attention ggml and --attention fast against the same base.
# Defaults: the GPL-3 text Debian ships (~7,500 tokens), CTX 2048, 3 chunks.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
text="${1:-/usr/share/common-licenses/GPL-3}"
ctx="${2:-2048}"
chunks="${3:-3}"
model="models/SmolLM2-135M-Instruct.Q4_1.gguf"
threads=2

scripts/fetch-model.sh >/dev/null
bin="$(scripts/llama-cpp-build.sh)"
cargo build --release --locked -p rill-cli >&2
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

llama() {
  "$bin/llama-perplexity" -m "$model" -f "$text" -c "$ctx" --chunks "$chunks" -b "$ctx" "$@" 2>&1
}
# llama-perplexity's summary lines: "Mean    KLD:   0.000123 ±   0.000004" and the like.
summary() {
  grep -E "Mean +PPL\(Q\)|Mean +KLD|Maximum KLD|99\.0% +KLD|Median +KLD|Same top p" | sed 's/^/    /'
}

echo "text $text, $chunks chunks of $ctx tokens, model $model"
llama -t "$threads" -fa on --kl-divergence-base "$work/base.bin" >"$work/base.log" || { cat "$work/base.log"; exit 1; }
grep -E "Final estimate" "$work/base.log" | sed 's/^/llama.cpp (flash attention on, the base): /'
for variant in "-fa off -t $threads" "-fa on -t 1"; do
  echo "llama.cpp $variant against the base:"
  # shellcheck disable=SC2086
  llama $variant --kl-divergence-base "$work/base.bin" --kl-divergence | summary
done
for arithmetic in ggml fast; do
  echo "rill --attention $arithmetic against the base:"
  target/release/rill perplexity --model "$model" --threads "$threads" --attention "$arithmetic" \
    --kl-divergence-base "$work/base.bin" 2>/dev/null | sed 's/^/    /'
done
