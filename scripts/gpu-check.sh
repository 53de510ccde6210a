#!/usr/bin/env bash
# The one GPU check, for a machine with an NVIDIA GPU, CUDA 13 driver, python3 with torch and
# transformers, and no Rust or network (the lent H200). Build here first, then carry the binaries:
#   scripts/gpu-check-build.sh      # here: target/gpu-check-bin/{rill,backend-cuda-gpu-tests}
#   scripts/gpu-check.sh            # there, from the repository root, target/gpu-check-bin carried
# Steps, each on fresh random data (the seed is printed):
#   0. the CUDA backend's own GPU tests (crates/backend-cuda/tests/gpu.rs, ignored by a plain
#      `cargo test`), when carried;
#   1. every kernel against its CPU twin (rill check-backend: named tolerances, poisoned outputs)
#      and end-to-end greedy-token parity CUDA vs CPU on seeded dummy models (Q4_0 and BF16) and
#      on the tiny mixture-of-experts GGUFs;
#   2. HF transformers as a second reference: a random LlamaForCausalLM saved as an HF directory,
#      loaded by rill (CUDA and CPU), logits of every position compared;
#   3. speed on a dummy Llama-3-8B shape in BF16 and Q4_0: decode tok/s at batch 1, 8, 64 with the
#      memory traffic it implies, against a device copy bandwidth measured in the same run, and
#      prefill tok/s against a bf16 matmul rate measured in the same run.
# Prints one table at the end; the full log goes to $GPU_CHECK_OUT/gpu-check.log ($OUT or
# target/gpu-check by default). Finishes in well under 8 minutes on an H200.
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
out="${GPU_CHECK_OUT:-${OUT:-$root/target/gpu-check}}"
mkdir -p "$out"
log="$out/gpu-check.log"
: >"$log"
bin_dir="$root/target/gpu-check-bin"
rill="${RILL:-$bin_dir/rill}"
[ -x "$rill" ] || rill="$root/target/release/rill"
seed="${SEED:-$(date +%s)}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
say() { echo "$*" | tee -a "$log"; }
step() { say; say "== $*"; }

[ -x "$rill" ] || { echo "gpu-check: no rill binary: run scripts/gpu-check-build.sh here and carry target/gpu-check-bin" >&2; exit 2; }

# cuBLAS ships with PyTorch's NVIDIA wheels on these machines; the driver library is on the
# loader's path already.
cublas_dir="$(python3 - <<'EOF' 2>/dev/null
import glob, os, site, sys
roots = site.getsitepackages() + [site.getusersitepackages(), "/usr/local/cuda/lib64", "/usr/lib/x86_64-linux-gnu"]
for r in roots:
    hits = glob.glob(os.path.join(r, "**", "libcublas.so.13*"), recursive=True)
    if hits:
        print(os.path.dirname(hits[0])); sys.exit()
EOF
)"
[ -n "$cublas_dir" ] && export LD_LIBRARY_PATH="$cublas_dir:${LD_LIBRARY_PATH:-}"

step "machine"
{ nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem --format=csv,noheader; "$rill" --version; echo "seed $seed, libcublas from ${cublas_dir:-<not found>}"; } 2>&1 | tee -a "$log"

declare -A result
run_check() { # name, args...
  local name="$1"; shift
  if "$rill" check-backend --device cuda --seed "$seed" "$@" >>"$log" 2>&1; then result[$name]=pass; else result[$name]=FAIL; fi
  say "$name: ${result[$name]} ($(grep -c '^ok ' "$log") ok lines so far, $(grep -c '^FAIL' "$log") FAIL lines so far)"
}

if [ -x "$bin_dir/backend-cuda-gpu-tests" ]; then
  step "0. backend-cuda GPU tests"
  # They are #[ignore]d (they need a GPU): --include-ignored runs them here.
  if "$bin_dir/backend-cuda-gpu-tests" --include-ignored --test-threads=1 --nocapture >>"$log" 2>&1; then result["backend-cuda GPU tests"]=pass; else result["backend-cuda GPU tests"]=FAIL; fi
  say "backend-cuda GPU tests: ${result["backend-cuda GPU tests"]}"
fi

step "1. kernels vs CPU twins, end-to-end parity on dummy models"
run_check "kernels + e2e (tiny dummy, q4_0)" --model configs/models/tiny-llama.json --load-format dummy --dummy-dtype q4_0
run_check "e2e (tiny dummy, bf16)" --model configs/models/tiny-llama.json --load-format dummy --dummy-dtype bf16 --skip-kernels
run_check "e2e (tiny dummy, q4_1/q8_0 as the default model)" --model configs/models/smollm2-135m.json --load-format dummy --dummy-dtype q4_1 --skip-kernels
run_check "e2e (tiny Qwen2-MoE GGUF: routed + shared experts)" --model tests/fixtures/models/qwen2moe.Q8_0.gguf --skip-kernels
run_check "e2e (tiny Mixtral GGUF)" --model tests/fixtures/models/mixtral.Q8_0.gguf --skip-kernels

step "2. HF transformers reference"
if python3 scripts/gpu_check_hf.py --out "$work/hf-tiny" --seed "$seed" 2>&1 | tee -a "$log"; then
  run_check "HF model: CUDA logits vs transformers, tokens vs CPU" --model "$work/hf-tiny" --skip-kernels --logits-reference "$work/hf-tiny/reference_logits.json"
  if "$rill" check-backend --device cpu --seed "$seed" --model "$work/hf-tiny" --skip-kernels --logits-reference "$work/hf-tiny/reference_logits.json" >>"$log" 2>&1; then
    result["HF model: CPU logits vs transformers"]=pass
  else
    result["HF model: CPU logits vs transformers"]=FAIL
  fi
else
  result["HF model (transformers)"]="FAIL (could not build the reference)"
fi

step "3. speed"
python3 - "$out/ceilings.json" <<'EOF' 2>&1 | tee -a "$log"
import json, sys, torch
dev = torch.device("cuda")
def timed(fn, reps):
    for _ in range(3): fn()
    torch.cuda.synchronize()
    ts = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record(); fn(); b.record(); torch.cuda.synchronize(); ts.append(a.elapsed_time(b) / 1e3)
    ts.sort(); return ts[len(ts) // 2]
n = 4 << 30
src = torch.randint(0, 255, (n,), dtype=torch.uint8, device=dev); dst = torch.empty_like(src)
copy_s = timed(lambda: dst.copy_(src), 20)
copy_gbs = 2 * n / copy_s / 1e9
m = 8192
x = torch.randn(m, m, device=dev, dtype=torch.bfloat16); y = torch.randn(m, m, device=dev, dtype=torch.bfloat16)
mm_s = timed(lambda: x @ y, 20)
tflops = 2 * m ** 3 / mm_s / 1e12
print(f"device copy {copy_gbs:.0f} GB/s (read + write), bf16 matmul {m}^3 {tflops:.0f} TFLOP/s")
json.dump({"copy_gbs": copy_gbs, "bf16_tflops": tflops}, open(sys.argv[1], "w"))
EOF
for dtype in bf16 q4_0; do
  if ! "$rill" bench-engine --device cuda --model configs/models/llama-3-8b.json --load-format dummy --dummy-dtype "$dtype" \
      --batch 1,8,64 --context 512 --steps 32 --prefill-tokens 512,2048 --max-num-batched-tokens 2048 \
      --json "$out/bench-$dtype.json" >>"$log" 2>&1; then
    result["speed $dtype"]=FAIL
  fi
done

step "summary"
{
  echo "| check | result |"
  echo "|---|---|"
  for k in "${!result[@]}"; do echo "| $k | ${result[$k]} |"; done | sort
  echo
  python3 - "$out" <<'EOF'
import json, os, sys
out = sys.argv[1]
try:
    c = json.load(open(os.path.join(out, "ceilings.json")))
except Exception:
    c = {"copy_gbs": float("nan"), "bf16_tflops": float("nan")}
print(f"ceilings: copy {c['copy_gbs']:.0f} GB/s, bf16 matmul {c['bf16_tflops']:.0f} TFLOP/s")
print("| 8B dummy | prefill 512: tok/s, TFLOP/s (/ matmul; target 60%) | prefill 2048 | decode b1: tok/s, GB/s (/ copy; target 80%) | b8 tok/s | b64 tok/s |")
print("|---|---|---|---|---:|---:|")
for dtype in ("bf16", "q4_0"):
    p = os.path.join(out, f"bench-{dtype}.json")
    if not os.path.exists(p):
        print(f"| {dtype} | failed (see log) | | | | |"); continue
    r = json.load(open(p)); d = {x["batch"]: x for x in r["decode"]}; pf = {x["tokens"]: x for x in r.get("prefill", [])}
    def pre(n):
        x = pf.get(n)
        return f"{x['tokens_per_sec']:.0f}, {x['tflops']:.0f} ({x['tflops'] / c['bf16_tflops']:.0%})" if x else "-"
    b1 = d.get(1)
    dec = f"{b1['tokens_per_sec']:.0f}, {b1['gb_per_sec']:.0f} ({b1['gb_per_sec'] / c['copy_gbs']:.0%})" if b1 else "-"
    print(f"| {dtype} | {pre(512)} | {pre(2048)} | {dec} | {d.get(8, {}).get('tokens_per_sec', 0):.0f} | {d.get(64, {}).get('tokens_per_sec', 0):.0f} |")
EOF
  echo "full log: $log"
} 2>&1 | tee -a "$log" | tee "$out/summary.md"
for v in "${result[@]}"; do [ "$v" = pass ] || exit 1; done
