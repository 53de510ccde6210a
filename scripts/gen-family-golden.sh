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
check_port=$((port + 1))
models=("$@")
[ ${#models[@]} -gt 0 ] || mapfile -t models < <(cd "$root/tests/fixtures/models" && ls *.gguf)
mkdir -p "$root/tests/golden/families" "$root/.cache"

servers=()
stop() { for p in "${servers[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; servers=(); }
trap stop EXIT
for m in "${models[@]}"; do
  case "$m" in
    /*) path="$m" ;;
    *) path="$root/tests/fixtures/models/$m" ;;
  esac
  if [ -n "${HF_DIR:-}" ]; then field="hf/$HF_DIR" out="hf-$HF_DIR"; else field="models/$(basename "$m")" out="$(basename "${m%.gguf}")"; fi
  for spec in "$port:on" "$check_port:off"; do
    p="${spec%%:*}" fa="${spec##*:}"
    args=(-m "$path" --host 127.0.0.1 --port "$p" -np 1 -c 0 -t "${RILL_GOLDEN_THREADS:-1}" --no-webui)
    [ "$fa" = off ] && args+=(-fa off)
    "$bin/llama-server" "${args[@]}" >"$root/.cache/family-golden-$fa.log" 2>&1 &
    servers+=($!)
  done
  for p in "$port" "$check_port"; do
    for _ in $(seq 1 120); do
      curl -sf "http://127.0.0.1:$p/health" >/dev/null 2>&1 && break
      sleep 0.5
    done
  done
  python3 "$root/scripts/family_golden_record.py" "http://127.0.0.1:$port" "http://127.0.0.1:$check_port" \
    "$path" "$field" "$root/tests/golden/families/$out.json"
  stop
done
