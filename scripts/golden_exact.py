"""An exact reference for the default model: a float64 numpy forward pass over weights
dequantized by gguf-py (llama.cpp's own Python package), written to be read, not to be fast.

llama.cpp quantizes activations to 8 bits and runs attention in f16, which moves logprobs of
this small model by ~0.1 nats; this reference has none of that, so rill's f32 forward pass must
match it tightly. It records the top-5 next-token logprobs after each golden prompt.

Usage: python3 scripts/golden_exact.py MODEL.gguf tests/golden/smollm2-135m-q4_1.json OUT.json
Needs: pip install numpy gguf
"""
import json
import sys

import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize


def main():
    model_path, fixture_path, out_path = sys.argv[1:4]
    r = GGUFReader(model_path)
    meta = {k: f.contents() for k, f in r.fields.items() if not k.startswith("tokenizer.")}
    arch = meta["general.architecture"]
    n_layers = meta[f"{arch}.block_count"]
    heads = meta[f"{arch}.attention.head_count"]
    kv_heads = meta.get(f"{arch}.attention.head_count_kv", heads)
    hd = meta[f"{arch}.embedding_length"] // heads
    eps = meta[f"{arch}.attention.layer_norm_rms_epsilon"]
    base = meta.get(f"{arch}.rope.freq_base", 10000.0)
    tensors = {t.name: t for t in r.tensors}

    def weight(name):
        t = tensors[name]
        a = dequantize(t.data, t.tensor_type).astype(np.float64)
        return a.reshape([int(x) for x in reversed(t.shape)]) if len(t.shape) > 1 else a.reshape(-1)

    emb = weight("token_embd.weight")
    out_w = weight("output.weight") if "output.weight" in tensors else emb
    names = ["attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm", "ffn_gate",
             "ffn_up", "ffn_down"]
    layers = [{k: weight(f"blk.{i}.{k}.weight") for k in names} for i in range(n_layers)]
    out_norm = weight("output_norm.weight")
    inv_freq = base ** (-np.arange(0, hd, 2) / hd)

    def rope(x, pos):  # x: [n, heads, hd]; GGUF llama rotates adjacent pairs (2i, 2i+1)
        ang = pos[:, None] * inv_freq[None, :]
        c, s = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
        x0, x1 = x[..., 0::2], x[..., 1::2]
        o = np.empty_like(x)
        o[..., 0::2] = x0 * c - x1 * s
        o[..., 1::2] = x0 * s + x1 * c
        return o

    def rms(x, w):
        return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * w

    def next_logprobs(tokens):
        n = len(tokens)
        pos = np.arange(n, dtype=np.float64)
        h = emb[tokens]
        mask = np.triu(np.full((n, n), -np.inf), 1)
        for l in layers:
            x = rms(h, l["attn_norm"])
            q = rope((x @ l["attn_q"].T).reshape(n, heads, hd), pos)
            k = rope((x @ l["attn_k"].T).reshape(n, kv_heads, hd), pos)
            v = (x @ l["attn_v"].T).reshape(n, kv_heads, hd)
            k = np.repeat(k, heads // kv_heads, axis=1)
            v = np.repeat(v, heads // kv_heads, axis=1)
            s = np.einsum("qhd,khd->hqk", q, k) / np.sqrt(hd) + mask
            p = np.exp(s - s.max(-1, keepdims=True))
            p /= p.sum(-1, keepdims=True)
            h = h + np.einsum("hqk,khd->qhd", p, v).reshape(n, heads * hd) @ l["attn_output"].T
            x = rms(h, l["ffn_norm"])
            g, u = x @ l["ffn_gate"].T, x @ l["ffn_up"].T
            h = h + (g / (1 + np.exp(-g)) * u) @ l["ffn_down"].T
        logits = rms(h[-1], out_norm) @ out_w.T
        m = logits.max()
        return logits - (m + np.log(np.exp(logits - m).sum()))

    cases = json.load(open(fixture_path))["cases"]
    out = {}
    for c in cases:
        lp = next_logprobs(np.array(c["prompt_tokens"]))
        out[c["name"]] = [[int(i), float(lp[i])] for i in np.argsort(-lp)[:5]]
        print(c["name"], out[c["name"]][:2])
    with open(out_path, "w") as f:
        json.dump({"reference": "float64 numpy forward pass (scripts/golden_exact.py)",
                   "top_logprobs": out}, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
