#!/usr/bin/env bash
# Copies a tiny family's Hugging Face directory (made by scripts/make-tiny-models.sh, f32) into
# tests/fixtures/hf/FAMILY in bf16 (lossless: the tiny models' weights lie on the bf16 grid; half
# the size), with only the files rill reads, and records llama.cpp's output on the f16 GGUF its
# converter made of the same weights (tests/golden/families/hf-FAMILY.json).
#
#   scripts/make-hf-fixture.sh qwen3 [smollm3 ...]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
py="${RILL_TINY_VENV:-$root/.cache/tiny-venv}/bin/python"
for fam in "$@"; do
  src="$root/target/tiny-models/$fam/hf" dst="$root/tests/fixtures/hf/$fam"
  [ -d "$src" ] || { echo "no $src: run scripts/make-tiny-models.sh --families $fam" >&2; exit 1; }
  rm -rf "$dst" && mkdir -p "$dst"
  cp "$src"/{generation_config.json,tokenizer.json,tokenizer_config.json} "$dst/"
  "$py" - "$src" "$dst" <<'PY'
import json, sys, torch
from pathlib import Path
from safetensors.torch import load_file, save_file
src, dst = Path(sys.argv[1]), Path(sys.argv[2])
tensors = load_file(src / "model.safetensors")
half = {k: v.to(torch.bfloat16) for k, v in tensors.items()}
assert all(torch.equal(half[k].float(), v) for k, v in tensors.items()), "weights not on the bf16 grid"
save_file(half, dst / "model.safetensors", metadata={"format": "pt"})
cfg = json.loads((src / "config.json").read_text())
cfg["dtype"] = "bfloat16"
(dst / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
PY
  HF_DIR="$fam" "$root/scripts/gen-family-golden.sh" "$root/target/tiny-models/$fam/$fam.f16.gguf"
done
