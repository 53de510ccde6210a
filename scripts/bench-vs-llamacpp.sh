#!/usr/bin/env bash
# rill against llama.cpp's llama-server on the same GGUF, the same threads and the same
# machine, measured from the outside with `rill bench` (OpenAI API over loopback HTTP).
# One server runs at a time; each run starts rill, runs every scenario, stops it, then does the
# same with llama.cpp; RUNS runs interleave the two and the table shows medians.
#
# Scenarios: single-stream decode (32-token prompt, 128 new tokens), prefill (1000-token prompt,
# 1 new token: prompt tokens / TTFT), closed-loop load at 16 and 64 streams (128-token prompts,
# 128 new tokens each), a long prompt (6,000 tokens: its prefill rate, then single-stream decode
# at that context), and a repetitive single stream (benches/prompts/repeat.txt: a text to copy,
# greedy) with each server's n-gram speculation (rill --speculation ngram, llama.cpp
# --spec-type ngram-simple, each server restarted with it) and without. Every scenario has its
# own prompt seed, so no scenario finds another's prompt in a prefix cache.
#
#   scripts/bench-vs-llamacpp.sh            # RUNS=3, load at 16 and 64 streams
#   QUICK=1 scripts/bench-vs-llamacpp.sh    # one run, fewer requests, load at 16 only
#
# Environment (defaults in brackets): THREADS [nproc], RUNS [3; QUICK: 1], LOAD_LEVELS
# ["16 64"; QUICK: "16"], LOAD_ROUNDS [2; QUICK: 1] (requests per load level = rounds ×
# streams), DECODE_PROMPT [32], DECODE_TOKENS [128], DECODE_REQUESTS [4; QUICK: 2],
# PREFILL_PROMPT [1000], PREFILL_REQUESTS [4; QUICK: 2], LOAD_PROMPT [128], LOAD_TOKENS [128],
# LONG_PROMPT [6000], LONG_TOKENS [64], LONG_REQUESTS [2; QUICK: 1], REPEAT_FILE
# [benches/prompts/repeat.txt], REPEAT_TOKENS [256], REPEAT_REQUESTS [2; QUICK: 1],
# LLAMA_NP [16] (llama.cpp slots; a load level above it restarts llama-server with one slot per
# stream), LEVEL_TIMEOUT [900] (seconds per scenario), RILL_PORT [18080], RILL_ADMIN_PORT
# [18081], LLAMA_PORT [18090], RESULTS [target/bench-vs-llamacpp], MODEL [the default model],
# SKIP_BUILD [0: build target/release/rill], RILL_BIN [target/release/rill: another build, e.g.
# an older commit's, to compare; implies SKIP_BUILD], RILL_ARGS / LLAMA_ARGS (extra server flags).
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

QUICK="${QUICK:-0}"
quick() { [ "$QUICK" = "1" ]; }
THREADS="${THREADS:-$(nproc)}"
RUNS="${RUNS:-$(quick && echo 1 || echo 3)}"
LOAD_LEVELS="${LOAD_LEVELS:-$(quick && echo 16 || echo "16 64")}"
LOAD_ROUNDS="${LOAD_ROUNDS:-$(quick && echo 1 || echo 2)}"
DECODE_PROMPT="${DECODE_PROMPT:-32}"
DECODE_TOKENS="${DECODE_TOKENS:-128}"
DECODE_REQUESTS="${DECODE_REQUESTS:-$(quick && echo 2 || echo 4)}"
PREFILL_PROMPT="${PREFILL_PROMPT:-1000}"
PREFILL_REQUESTS="${PREFILL_REQUESTS:-$(quick && echo 2 || echo 4)}"
LOAD_PROMPT="${LOAD_PROMPT:-128}"
LOAD_TOKENS="${LOAD_TOKENS:-128}"
LONG_PROMPT="${LONG_PROMPT:-6000}"
LONG_TOKENS="${LONG_TOKENS:-64}"
LONG_REQUESTS="${LONG_REQUESTS:-$(quick && echo 1 || echo 2)}"
REPEAT_FILE="${REPEAT_FILE:-$root/benches/prompts/repeat.txt}"
REPEAT_TOKENS="${REPEAT_TOKENS:-256}"
REPEAT_REQUESTS="${REPEAT_REQUESTS:-$(quick && echo 1 || echo 2)}"
LLAMA_NP="${LLAMA_NP:-16}"
LEVEL_TIMEOUT="${LEVEL_TIMEOUT:-900}"
RILL_PORT="${RILL_PORT:-18080}"
RILL_ADMIN_PORT="${RILL_ADMIN_PORT:-18081}"
LLAMA_PORT="${LLAMA_PORT:-18090}"
RESULTS="${RESULTS:-$root/target/bench-vs-llamacpp}"
RILL_BIN="${RILL_BIN:-}"
SKIP_BUILD="${SKIP_BUILD:-$([ -n "$RILL_BIN" ] && echo 1 || echo 0)}"
RILL_ARGS="${RILL_ARGS:-}"
LLAMA_ARGS="${LLAMA_ARGS:-}"

die() { echo "bench-vs-llamacpp: $*" >&2; exit 1; }
say() { echo "bench-vs-llamacpp: $*" >&2; }

command -v curl >/dev/null || die "curl is required"
command -v python3 >/dev/null || die "python3 is required"

# --- servers: at most one at a time, always stopped on exit -------------------------------------
server_pid=""
stop_server() {
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill "$server_pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.2; done
    kill -9 "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  server_pid=""
}
trap stop_server EXIT
trap 'stop_server; exit 130' INT TERM

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# wait_ready URL LOG: until URL answers 200, the server dies (its log tail shown), or 180 s.
wait_ready() {
  for _ in $(seq 1 360); do
    curl -sf -o /dev/null "$1" && return 0
    kill -0 "$server_pid" 2>/dev/null || { tail -n 20 "$2" >&2; die "the server exited before $1 answered (log: $2)"; }
    sleep 0.5
  done
  tail -n 20 "$2" >&2
  die "no answer from $1 after 180 s (log: $2)"
}

vmhwm_kb() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

# --- build ---------------------------------------------------------------------------------------
model="${MODEL:-$("$root/scripts/fetch-model.sh")}"
[ -f "$model" ] || die "model file $model not found"
llama_bin="$("$root/scripts/llama-cpp-build.sh")"
[ -x "$llama_bin/llama-server" ] || die "llama-server not found in $llama_bin"
if [ "$SKIP_BUILD" != "1" ]; then
  say "building target/release/rill"
  cargo build --release --locked -p rill-cli >&2
fi
rill="${RILL_BIN:-$root/target/release/rill}"
[ -x "$rill" ] || die "$rill not found (build it, or unset SKIP_BUILD)"

for p in "$RILL_PORT" "$RILL_ADMIN_PORT" "$LLAMA_PORT"; do
  if port_busy "$p"; then die "port $p on 127.0.0.1 is in use (set RILL_PORT / RILL_ADMIN_PORT / LLAMA_PORT)"; fi
done

max_level=1
for c in $LOAD_LEVELS; do if [ "$c" -gt "$max_level" ]; then max_level="$c"; fi; done
# One llama.cpp slot must hold the longest scenario (llama.cpp splits -c across its slots).
slot_ctx=$(( DECODE_PROMPT + DECODE_TOKENS ))
repeat_ctx=$(( $(wc -w <"$REPEAT_FILE") * 2 + REPEAT_TOKENS ))
for need in $(( PREFILL_PROMPT + 1 )) $(( LOAD_PROMPT + LOAD_TOKENS )) $(( LONG_PROMPT + LONG_TOKENS )) "$repeat_ctx"; do if [ "$need" -gt "$slot_ctx" ]; then slot_ctx="$need"; fi; done
slot_ctx=$(( slot_ctx + 64 ))
load_slot_ctx=$(( LOAD_PROMPT + LOAD_TOKENS + 64 ))

rm -rf "$RESULTS"
mkdir -p "$RESULTS"

# bench NAME URL SEED CONCURRENCY REQUESTS PROMPT TOKENS: one `rill bench` run into NAME.json.
bench() {
  local name="$1" url="$2" seed="$3" conc="$4" reqs="$5" prompt="$6" tokens="$7"
  say "  $name: concurrency $conc, $reqs requests, $prompt prompt tokens, $tokens new tokens"
  "$rill" bench --base-url "$url" --concurrency "$conc" --requests "$reqs" --prompt-tokens "$prompt" \
    --max-tokens "$tokens" --seed "$seed" --timeout-s "$LEVEL_TIMEOUT" --json "$dir/$name.json" >"$dir/$name.txt" 2>&1 \
    || { cat "$dir/$name.txt" >&2; say "  $name: no request succeeded"; }
}

# repeat NAME URL: the repetitive single stream (a text to copy) into NAME.json.
repeat() {
  say "  $1: 1 stream, $REPEAT_REQUESTS requests, prompt $REPEAT_FILE, $REPEAT_TOKENS new tokens"
  "$rill" bench --base-url "$2" --concurrency 1 --requests "$REPEAT_REQUESTS" --prompt-file "$REPEAT_FILE" \
    --max-tokens "$REPEAT_TOKENS" --timeout-s "$LEVEL_TIMEOUT" --json "$dir/$1.json" >"$dir/$1.txt" 2>&1 \
    || { cat "$dir/$1.txt" >&2; say "  $1: no request succeeded"; }
}

# scenarios URL SEED [LEVELS]: warm-up, decode, prefill, the long prompt, the repetitive stream
# and the load levels given (default all).
scenarios() {
  local url="$1" seed="$2" levels="${3-$LOAD_LEVELS}"
  "$rill" bench --base-url "$url" --concurrency 1 --requests 1 --prompt-tokens 16 --max-tokens 8 \
    --seed 999999 --timeout-s 120 >/dev/null 2>&1 || true
  bench decode "$url" "$seed" 1 "$DECODE_REQUESTS" "$DECODE_PROMPT" "$DECODE_TOKENS"
  bench prefill "$url" "$(( seed + 1000 ))" 1 "$PREFILL_REQUESTS" "$PREFILL_PROMPT" 1
  bench prefill_long "$url" "$(( seed + 2000 ))" 1 "$LONG_REQUESTS" "$LONG_PROMPT" 1
  bench decode_long "$url" "$(( seed + 3000 ))" 1 "$LONG_REQUESTS" "$LONG_PROMPT" "$LONG_TOKENS"
  repeat repeat "$url"
  load_levels "$url" "$(( seed + 4000 ))" "$levels"
}

load_levels() {
  local url="$1" seed="$2" c
  for c in $3; do
    bench "load$c" "$url" "$seed" "$c" $(( c * LOAD_ROUNDS )) "$LOAD_PROMPT" "$LOAD_TOKENS"
  done
}

run_rill() {
  local run="$1" log
  dir="$RESULTS/run$run/rill"
  mkdir -p "$dir"
  log="$dir/server.log"
  say "run $run: rill (--threads $THREADS)"
  # shellcheck disable=SC2086
  "$rill" serve --model "$model" --served-model-name smollm2 --host 127.0.0.1 --port "$RILL_PORT" \
    --admin-port "$RILL_ADMIN_PORT" --models-root "$(dirname "$model")" --threads "$THREADS" \
    --max-num-seqs "$(( max_level > 64 ? max_level : 64 ))" $RILL_ARGS >"$log" 2>&1 &
  server_pid=$!
  wait_ready "http://127.0.0.1:$RILL_PORT/ready" "$log"
  scenarios "http://127.0.0.1:$RILL_PORT/v1" "$run"
  curl -sf "http://127.0.0.1:$RILL_ADMIN_PORT/admin/models" >"$dir/admin-models.json" || echo '{}' >"$dir/admin-models.json"
  echo "{\"vmhwm_kb\": $(vmhwm_kb "$server_pid"), \"file_bytes\": $(stat -c %s "$model")}" >"$dir/memory.json"
  stop_server
  say "  rill --speculation ngram"
  # shellcheck disable=SC2086
  "$rill" serve --model "$model" --served-model-name smollm2 --host 127.0.0.1 --port "$RILL_PORT" \
    --admin-port "$RILL_ADMIN_PORT" --models-root "$(dirname "$model")" --threads "$THREADS" \
    --speculation ngram $RILL_ARGS >"$dir/server-spec.log" 2>&1 &
  server_pid=$!
  wait_ready "http://127.0.0.1:$RILL_PORT/ready" "$dir/server-spec.log"
  repeat repeat_spec "http://127.0.0.1:$RILL_PORT/v1"
  curl -sf "http://127.0.0.1:$RILL_PORT/metrics" | grep '^rill_spec_' >"$dir/spec-metrics.txt" || true
  stop_server
}

# start_llama NP CTX LOG [EXTRA ARGS...]
start_llama() {
  local np="$1" ctx="$2" log="$3"
  shift 3
  say "  llama-server -t $THREADS -np $np -cb -c $ctx $*"
  # shellcheck disable=SC2086
  "$llama_bin/llama-server" -m "$model" --host 127.0.0.1 --port "$LLAMA_PORT" -t "$THREADS" -np "$np" -cb -c "$ctx" \
    --no-webui "$@" $LLAMA_ARGS >"$log" 2>&1 &
  server_pid=$!
  wait_ready "http://127.0.0.1:$LLAMA_PORT/health" "$log"
}

run_llama() {
  local run="$1" small="" big="" c peak=0 hwm
  dir="$RESULTS/run$run/llamacpp"
  mkdir -p "$dir"
  say "run $run: llama.cpp (-t $THREADS)"
  for c in $LOAD_LEVELS; do if [ "$c" -le "$LLAMA_NP" ]; then small="$small $c"; else big="$big $c"; fi; done
  start_llama "$LLAMA_NP" $(( LLAMA_NP * slot_ctx )) "$dir/server.log"
  scenarios "http://127.0.0.1:$LLAMA_PORT/v1" "$run" "$small"
  peak="$(vmhwm_kb "$server_pid")"
  stop_server
  for c in $big; do
    start_llama "$c" $(( c * load_slot_ctx )) "$dir/server-np$c.log"
    load_levels "http://127.0.0.1:$LLAMA_PORT/v1" "$run" "$c"
    hwm="$(vmhwm_kb "$server_pid")"
    if [ "$hwm" -gt "$peak" ]; then peak="$hwm"; fi
    stop_server
  done
  start_llama 1 "$slot_ctx" "$dir/server-spec.log" --spec-type ngram-simple
  repeat repeat_spec "http://127.0.0.1:$LLAMA_PORT/v1"
  stop_server
  echo "{\"vmhwm_kb\": $peak, \"file_bytes\": $(stat -c %s "$model")}" >"$dir/memory.json"
}

for run in $(seq 1 "$RUNS"); do
  run_rill "$run"
  run_llama "$run"
done

machine="$(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -n1), $(nproc) cores"
python3 - "$RESULTS" "$RUNS" "$THREADS" "$machine" "$model" "$LOAD_LEVELS" <<'PY'
import datetime, json, os, statistics, sys

results, runs, threads, machine, model, levels = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6].split()
servers = ["rill", "llamacpp"]

def load(run, server, name):
    try:
        with open(os.path.join(results, f"run{run}", server, name)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None

def level(run, server, scenario):
    doc = load(run, server, scenario + ".json")
    return doc["levels"][0] if doc and doc.get("levels") else None

def output(l):
    return l.get("output_tok_s")

def decode_itl(l):
    return 1000.0 / l["itl_ms_p50"] if l.get("itl_ms_p50") else None

def prefill(l):
    if l.get("mean_prompt_tokens") and l.get("ttft_ms_p50"):
        return l["mean_prompt_tokens"] / (l["ttft_ms_p50"] / 1000.0)
    return None

# (label, scenario or (rill's, llama.cpp's), value from a level, target ratio rill/llama.cpp,
# higher is better)
rows = [
    ("decode tok/s, 1 stream (1000 / ITL p50)", "decode", decode_itl, 1.3, True),
    ("decode tok/s, 1 stream (output tok/s)", "decode", output, 1.3, True),
    ("prefill tok/s (prompt tokens / TTFT p50)", "prefill", prefill, 1.5, True),
    ("prefill tok/s, 6,000-token prompt", "prefill_long", prefill, 2.0, True),
    ("decode tok/s at 6,000 tokens of context (1000 / ITL p50)", "decode_long", decode_itl, 1.3, True),
    ("repetitive stream tok/s, both without speculation", "repeat", output, None, True),
    ("repetitive stream tok/s, both with n-gram speculation", "repeat_spec", output, 1.5, True),
    ("repetitive stream tok/s, rill n-gram vs llama.cpp plain", ("repeat_spec", "repeat"), output, 1.5, True),
]
for c in levels:
    rows.append((f"aggregate output tok/s, {c} streams", f"load{c}", lambda l: l.get("output_tok_s"), 2.5, True))
    rows.append((f"TTFT p50 ms, {c} streams", f"load{c}", lambda l: l.get("ttft_ms_p50"), None, False))
    rows.append((f"TTFT p99 ms, {c} streams", f"load{c}", lambda l: l.get("ttft_ms_p99"), 0.5 if c == "64" else None, False))
    rows.append((f"ITL p50 ms, {c} streams", f"load{c}", lambda l: l.get("itl_ms_p50"), None, False))

def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None

def fmt(v):
    if v is None:
        return "n/a"
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.1f}"

lines = [
    f"# rill vs llama.cpp, {datetime.date.today().isoformat()}",
    "",
    f"Machine: {machine}. Threads: {threads} for both. Model: {os.path.basename(model)}. "
    f"Runs: {runs} (medians). Ratio = rill ÷ llama.cpp on every row: higher is better for tok/s, lower for ms.",
    "",
    "| metric | rill (median) | llama.cpp (median) | ratio rill/llama.cpp | target | met? |",
    "|---|---:|---:|---:|---:|:---:|",
]
for label, scenario, value, target, higher in rows:
    med = {}
    for k, s in enumerate(servers):
        vals = []
        for r in range(1, runs + 1):
            l = level(r, s, scenario[k] if isinstance(scenario, tuple) else scenario)
            vals.append(value(l) if l and l.get("ok") else None)
        med[s] = median(vals)
    ratio = med["rill"] / med["llamacpp"] if med["rill"] is not None and med["llamacpp"] else None
    if target is None:
        tgt, met = "", ""
    else:
        tgt = f"≥ {target}×" if higher else f"≤ {target}×"
        met = "n/a" if ratio is None else ("yes" if (ratio >= target if higher else ratio <= target) else "no")
    lines.append(f"| {label} | {fmt(med['rill'])} | {fmt(med['llamacpp'])} | {'n/a' if ratio is None else f'{ratio:.2f}×'} | {tgt} | {met} |")

# Memory: peak RSS (VmHWM) of each server, next to the model file and rill's KV pool.
def mem(server):
    return [load(r, server, "memory.json") or {} for r in range(1, runs + 1)]
mib = lambda b: f"{b / 2**20:,.0f} MiB" if b else "n/a"
rill_hwm = median([m.get("vmhwm_kb") for m in mem("rill")])
llama_hwm = median([m.get("vmhwm_kb") for m in mem("llamacpp")])
file_bytes = next((m["file_bytes"] for m in mem("rill") if m.get("file_bytes")), None)
kv_tokens = kv_bytes = None
admin = load(1, "rill", "admin-models.json") or {}
for m in admin.get("data", []):
    if m.get("kv_cache_tokens") is not None and m.get("memory_bytes") is not None and file_bytes:
        kv_tokens, kv_bytes = m["kv_cache_tokens"], m["memory_bytes"] - file_bytes
lines += [
    "",
    f"Memory: rill peak RSS (VmHWM) {mib(rill_hwm and rill_hwm * 1024)}; model file {mib(file_bytes)}; "
    + (f"rill KV pool {mib(kv_bytes)} ({kv_tokens:,} tokens, reserved, touched on use)" if kv_bytes is not None else "rill KV pool: not reported")
    + f". llama.cpp peak RSS {mib(llama_hwm and llama_hwm * 1024)}.",
]

failures = []
for r in range(1, runs + 1):
    for s in servers:
        d = os.path.join(results, f"run{r}", s)
        if not os.path.isdir(d):
            continue
        for name in sorted(os.listdir(d)):
            if name.endswith(".json") and name not in ("memory.json", "admin-models.json"):
                doc = load(r, s, name)
                for l in (doc or {}).get("levels", []):
                    for reason, n in l.get("failures", {}).items():
                        failures.append(f"run {r} {s} {name[:-5]}: {n} failed: {reason}")
        for name in ("decode", "prefill", "prefill_long", "decode_long", "repeat", "repeat_spec") + tuple(f"load{c}" for c in levels):
            if load(r, s, name + ".json") is None:
                failures.append(f"run {r} {s} {name}: no result (see {name}.txt)")
if failures:
    lines += ["", "Failures:", ""] + [f"- {f}" for f in failures]

table = "\n".join(lines) + "\n"
with open(os.path.join(results, "table.md"), "w") as f:
    f.write(table)
sys.stdout.write(table)
PY
say "raw JSON per run under $RESULTS/run*/, table in $RESULTS/table.md"
