"""A Hugging Face model directory (safetensors, tokenizer.json, transformers-5 config.json with
`rope_parameters`) loaded by rill, checked against an independent float64 numpy forward pass:
every position's logits (`rill check-backend --logits-reference`), plus `rill generate` on it."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(Path(__file__).parent))

import gpu_check_hf  # noqa: E402  (the byte-level tokenizer the GPU check writes too)
import hf_reference  # noqa: E402

RILL = os.environ.get("RILL_BIN", str(ROOT / "target" / "release" / "rill"))
CFG = {"hidden_size": 256, "intermediate_size": 768, "num_hidden_layers": 3, "num_attention_heads": 4,
       "num_key_value_heads": 2, "head_dim": 64, "vocab_size": 512, "rope_theta": 10000.0}


def test_hf_directory_matches_a_numpy_reference(tmp_path):
    out = str(tmp_path)
    bos, eos = gpu_check_hf.byte_level_tokenizer(out, CFG["vocab_size"])
    hf_reference.write_random_llama(out, {**CFG, "bos_token_id": bos, "eos_token_id": eos}, seed=3)
    rng = np.random.default_rng(4)
    prompts = [rng.integers(0, 256, n).tolist() for n in (1, 9, 40)]
    logits = [hf_reference.forward(out, CFG, p).tolist() for p in prompts]
    ref = tmp_path / "reference_logits.json"
    ref.write_text(json.dumps({"prompts": prompts, "logits": logits}))

    run = subprocess.run([RILL, "check-backend", "--model", out, "--skip-kernels", "--prompts", "2", "--tokens", "8",
                          "--logits-reference", str(ref), "--threads", "2"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    lines = [l for l in run.stdout.splitlines() if " logits prompt " in l]
    assert len(lines) == 3 and all(l.startswith("ok") for l in lines), run.stdout

    # Reference logits 5 % off must fail the same comparison.
    wrong = [(np.array(x) * 1.05).tolist() for x in logits]
    ref.write_text(json.dumps({"prompts": prompts, "logits": wrong}))
    run = subprocess.run([RILL, "check-backend", "--model", out, "--skip-kernels", "--prompts", "1", "--tokens", "2",
                          "--logits-reference", str(ref), "--threads", "2"], capture_output=True, text=True, timeout=300)
    assert run.returncode != 0 and "FAIL logits" in run.stdout, run.stdout

    gen = subprocess.run([RILL, "generate", "--model", out, "--prompt", "hello", "--max-tokens", "4", "--threads", "2"],
                         capture_output=True, text=True, timeout=300)
    assert gen.returncode == 0, gen.stderr
    assert "generated: 4 tokens" in gen.stderr
