#!/usr/bin/env python3
"""A second, independent reference for scripts/gpu-check.sh: Hugging Face `transformers`.

Builds a small random LlamaForCausalLM (seeded), saves it as an HF directory rill can load
(config.json, model.safetensors in bf16, a byte-level tokenizer.json and tokenizer_config.json),
then runs it in float32 on the GPU (bf16 weights upcast, TF32 off) and writes the logits of
every position of a few prompts to reference_logits.json in the format
`rill check-backend --logits-reference` reads: {"prompts": [[ids]], "logits": [[[vocab]]]}.

Runs where torch and transformers are installed (the GPU machine); CPU works too, slowly.
"""
import argparse
import json
import os


def byte_level_tokenizer(path, vocab_size):
    """A byte-level BPE with no merges: one token per byte, then <s> and </s>."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from tokenizers.pre_tokenizers import ByteLevel

    alphabet = ByteLevel.alphabet()
    vocab = {ch: i for i, ch in enumerate(sorted(alphabet))}
    vocab["<s>"] = len(vocab)
    vocab["</s>"] = len(vocab)
    assert len(vocab) <= vocab_size
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(["<s>", "</s>"])
    tok.save(os.path.join(path, "tokenizer.json"))
    with open(os.path.join(path, "tokenizer_config.json"), "w") as f:
        json.dump({"bos_token": "<s>", "eos_token": "</s>", "add_bos_token": True,
                   "chat_template": "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"}, f)
    return vocab["<s>"], vocab["</s>"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True, help="directory to write the model and logits into")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    import torch

    torch.manual_seed(args.seed)
    from transformers import LlamaConfig, LlamaForCausalLM

    vocab = 512
    bos, eos = byte_level_tokenizer(args.out, vocab)
    config = LlamaConfig(
        vocab_size=vocab, hidden_size=256, intermediate_size=768, num_hidden_layers=4,
        num_attention_heads=4, num_key_value_heads=2, head_dim=64, max_position_embeddings=2048,
        rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=False,
        bos_token_id=bos, eos_token_id=eos,
    )
    model = LlamaForCausalLM(config)
    # Larger-than-default weights so the logits are not all near zero (a weak check).
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 2:
                p.normal_(0.0, 0.06)
            else:
                p.uniform_(0.8, 1.2)
    model = model.to(torch.bfloat16)
    model.save_pretrained(args.out)  # safetensors (the default since transformers 4.35)

    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    ref = model.to(torch.float32).to(device).eval()
    gen = torch.Generator().manual_seed(args.seed + 1)
    prompts = [torch.randint(0, 256, (n,), generator=gen).tolist() for n in (1, 9, 31, 48)]
    logits = []
    with torch.no_grad():
        for p in prompts:
            ids = torch.tensor([p], device=device)
            out = ref(input_ids=ids).logits[0].float().cpu()
            logits.append(out.tolist())
    with open(os.path.join(args.out, "reference_logits.json"), "w") as f:
        json.dump({"prompts": prompts, "logits": logits}, f)
    print(f"gpu_check_hf: wrote {args.out} (transformers {__import__('transformers').__version__}, torch {torch.__version__}, {device})")


if __name__ == "__main__":
    main()
