# Sourced by the recording scripts (gen-golden.sh, gen-family-golden.sh): llama.cpp's server as
# the reference, with flash attention as llama.cpp picks it on PORT, and the same with flash
# attention off on PORT + 1 (how far llama.cpp's own rounding moves its output), on loopback.
#
#   start_pair LLAMA_BIN MODEL PORT LOG_PREFIX [extra llama-server args...]
#   stop_pair

pair_pids=()

start_pair() {
  local bin="$1" model="$2" port="$3" log="$4"
  shift 4
  local args=(-m "$model" --host 127.0.0.1 -np 1 -t "${RILL_GOLDEN_THREADS:-1}" --no-webui "$@")
  "$bin/llama-server" "${args[@]}" --port "$port" >"$log.log" 2>&1 &
  pair_pids+=($!)
  "$bin/llama-server" "${args[@]}" --port "$((port + 1))" -fa off >"$log-check.log" 2>&1 &
  pair_pids+=($!)
  for p in "$port" "$((port + 1))"; do
    for _ in $(seq 1 120); do
      curl -sf "http://127.0.0.1:$p/health" >/dev/null 2>&1 && break
      sleep 0.5
    done
  done
}

stop_pair() {
  for p in "${pair_pids[@]}"; do
    kill "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  pair_pids=()
}
