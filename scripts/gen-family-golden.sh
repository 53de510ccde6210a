#!/usr/bin/env bash
# Records llama.cpp's greedy output on every tiny family model in tests/fixtures/models/ (made by
# scripts/make-tiny-models.sh) into tests/golden/families/, as scripts/gen-golden.sh does for the
# default model: the reference llama-server (flash attention as llama.cpp picks it) and a check
# server with flash attention off, on loopback. CI uses the committed fixtures and never runs this.
#
#   scripts/gen-family-golden.sh                 # every model
#   scripts/gen-family-golden.sh qwen3.Q8_0.gguf # some
#   HF_DIR=gemma2 scripts/gen-family-golden.sh /tmp/gemma2.f16.gguf
#       # the Hugging Face directory tests/fixtures/hf/gemma2, through the f16 GGUF llama.cpp's
#       # converter made of it (golden hf-gemma2.json)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="$("$root/scripts/llama-cpp-build.sh")"
port="${RILL_GOLDEN_PORT:-18191}"
models=("$@")
[ ${#models[@]} -gt 0 ] || mapfile -t models < <(cd "$root/tests/fixtures/models" && ls *.gguf)
mkdir -p "$root/tests/golden/families" "$root/.cache"
. "$root/scripts/llama-server-pair.sh"
trap stop_pair EXIT
for m in "${models[@]}"; do
  case "$m" in
    /*) path="$m" ;;
    *) path="$root/tests/fixtures/models/$m" ;;
  esac
  if [ -n "${HF_DIR:-}" ]; then field="hf/$HF_DIR" out="hf-$HF_DIR"; else field="models/$(basename "$m")" out="$(basename "${m%.gguf}")"; fi
  start_pair "$bin" "$path" "$port" "$root/.cache/family-golden" -c 0
  python3 "$root/scripts/family_golden_record.py" "http://127.0.0.1:$port" "http://127.0.0.1:$((port + 1))" \
    "$path" "$field" "$root/tests/golden/families/$out.json"
  stop_pair
done
