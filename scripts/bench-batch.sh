#!/usr/bin/env bash
# Interactive latency beside a large batch: `rill bench` at STREAMS closed-loop chat streams
# against one `rill serve`, alone, then while a batch of BATCH_LINES lines runs through the Batch
# API, then alone again (the batch cancelled). Reports TTFT p99 (and out tok/s) of each phase and
# the ratio of "with batch" to the mean of the two "alone" phases. The batch must still be running
# when its phase ends, or the figure would not be one; the script says so and fails.
#
#   scripts/bench-batch.sh
#
# Environment (defaults in brackets): THREADS [nproc], STREAMS [16], REQUESTS [64 per phase],
# PROMPT [64], TOKENS [64], BATCH_LINES [4000], BATCH_TOKENS [64], PORT [18180], ADMIN_PORT
# [18181], RESULTS [target/bench-batch], MODEL [the default model], SKIP_BUILD [0].
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
THREADS="${THREADS:-$(nproc)}"
STREAMS="${STREAMS:-16}"
REQUESTS="${REQUESTS:-64}"
PROMPT="${PROMPT:-64}"
TOKENS="${TOKENS:-64}"
BATCH_LINES="${BATCH_LINES:-4000}"
BATCH_TOKENS="${BATCH_TOKENS:-64}"
PORT="${PORT:-18180}"
ADMIN_PORT="${ADMIN_PORT:-18181}"
RESULTS="${RESULTS:-target/bench-batch}"
MODEL="${MODEL:-models/SmolLM2-135M-Instruct.Q4_1.gguf}"
[ "${SKIP_BUILD:-0}" = "1" ] || cargo build --release --locked -p rill-cli >/dev/null

mkdir -p "$RESULTS"
data="$(mktemp -d)"
base="http://127.0.0.1:$PORT"
target/release/rill serve --model "$MODEL" --served-model-name smollm2 --port "$PORT" --admin-port "$ADMIN_PORT" \
  --threads "$THREADS" --data-dir "$data" >"$RESULTS/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; rm -rf "$data"' EXIT
until curl -sf "$base/ready" >/dev/null; do sleep 0.2; done

bench() {
  target/release/rill bench --base-url "$base/v1" --endpoint chat --concurrency "$STREAMS" --requests "$REQUESTS" \
    --prompt-tokens "$PROMPT" --max-tokens "$TOKENS" --json "$RESULTS/$1.json" >"$RESULTS/$1.txt" 2>&1
}
field() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['levels'][0][sys.argv[2]])" "$RESULTS/$1.json" "$2"; }
batch_field() { curl -sf "$base/v1/batches/$batch" | python3 -c "import json,sys; b=json.load(sys.stdin); print(eval(sys.argv[1]))" "$1"; }

bench warmup   # a new server's first requests are slower (page faults, cold caches): not counted
bench alone1

python3 - "$BATCH_LINES" "$BATCH_TOKENS" >"$data/input.jsonl" <<'EOF'
import json, sys
lines, tokens = int(sys.argv[1]), int(sys.argv[2])
for i in range(lines):
    body = {"model": "smollm2", "messages": [{"role": "user", "content": f"Write a short note about item {i}."}], "max_tokens": tokens, "ignore_eos": True}
    print(json.dumps({"custom_id": f"line-{i}", "method": "POST", "url": "/v1/chat/completions", "body": body}))
EOF
file="$(curl -sf "$base/v1/files" -F purpose=batch -F "file=@$data/input.jsonl" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')"
batch="$(curl -sf "$base/v1/batches" -H 'Content-Type: application/json' \
  -d "{\"input_file_id\": \"$file\", \"endpoint\": \"/v1/chat/completions\", \"completion_window\": \"24h\"}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')"
until [ "$(batch_field "b['request_counts']['completed']")" -ge 8 ]; do sleep 0.5; done
bench with_batch
status="$(batch_field "b['status']")"
done_lines="$(batch_field "b['request_counts']['completed']")"
curl -sf -X POST "$base/v1/batches/$batch/cancel" >/dev/null
until [ "$(batch_field "b['status']")" = "cancelled" ]; do sleep 0.5; done
bench alone2

python3 - "$RESULTS" "$status" "$done_lines" "$STREAMS" <<'EOF'
import json, sys
results, status, done, streams = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
get = lambda name: json.load(open(f"{results}/{name}.json"))["levels"][0]
a1, wb, a2 = get("alone1"), get("with_batch"), get("alone2")
print(f"{'phase':<12} {'TTFT p50 ms':>12} {'TTFT p99 ms':>12} {'ITL p99 ms':>11} {'out tok/s':>10}")
for name, l in [("alone", a1), ("with batch", wb), ("alone again", a2)]:
    print(f"{name:<12} {l['ttft_ms_p50']:>12.1f} {l['ttft_ms_p99']:>12.1f} {l['itl_ms_p99']:>11.1f} {l['output_tok_s']:>10.1f}")
alone = (a1["ttft_ms_p99"] + a2["ttft_ms_p99"]) / 2
print(f"TTFT p99 with a batch running / alone ({streams} streams): {wb['ttft_ms_p99'] / alone:.2f}x; "
      f"the batch was {status} with {done} lines done when its phase ended")
if status != "in_progress":
    sys.exit("the batch did not run through the whole phase: raise BATCH_LINES")
EOF
