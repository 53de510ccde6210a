"""An independent float64 Llama forward pass in numpy over an HF directory (safetensors), the
reference `rill check-backend --logits-reference` is compared against in test_hf_model.py."""
import json

import numpy as np
from safetensors.numpy import load_file, save_file


def write_random_llama(out, cfg, seed):
    """Random weights of `cfg`'s shapes (F32 safetensors) and a transformers-5-style config.json."""
    rng = np.random.default_rng(seed)
    h, f, v = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    nh, kv, hd = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
    t = {"model.embed_tokens.weight": rng.normal(0, 0.06, (v, h)), "model.norm.weight": rng.uniform(0.8, 1.2, h),
         "lm_head.weight": rng.normal(0, 0.06, (v, h))}
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        t[p + "input_layernorm.weight"] = rng.uniform(0.8, 1.2, h)
        t[p + "post_attention_layernorm.weight"] = rng.uniform(0.8, 1.2, h)
        for name, shape in (("self_attn.q_proj", (nh * hd, h)), ("self_attn.k_proj", (kv * hd, h)), ("self_attn.v_proj", (kv * hd, h)),
                            ("self_attn.o_proj", (h, nh * hd)), ("mlp.gate_proj", (f, h)), ("mlp.up_proj", (f, h)), ("mlp.down_proj", (h, f))):
            t[p + name + ".weight"] = rng.normal(0, 0.06, shape)
    save_file({k: x.astype(np.float32) for k, x in t.items()}, f"{out}/model.safetensors", metadata={"format": "pt"})
    config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_act": "silu", "attention_bias": False,
              "mlp_bias": False, "max_position_embeddings": 2048, "rms_norm_eps": 1e-5, "tie_word_embeddings": False,
              "rope_parameters": {"rope_type": "default", "rope_theta": cfg["rope_theta"]}, "dtype": "float32", **cfg}
    del config["rope_theta"]
    json.dump(config, open(f"{out}/config.json", "w"))


def forward(out, cfg, ids):
    """Logits of every position of `ids`, in float64, NeoX-style rotary as HF Llama computes it."""
    w = {k: x.astype(np.float64) for k, x in load_file(f"{out}/model.safetensors").items()}
    nh, kv, hd, eps = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"], 1e-5
    n = len(ids)
    pos = np.arange(n, dtype=np.float64)
    inv = 1.0 / cfg["rope_theta"] ** (np.arange(0, hd, 2) / hd)
    cos, sin = np.cos(pos[:, None] * inv)[:, None, :], np.sin(pos[:, None] * inv)[:, None, :]

    def rms(x, g):
        return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * g

    def rope(x):
        a, b = x[..., : hd // 2], x[..., hd // 2:]
        return np.concatenate([a * cos - b * sin, b * cos + a * sin], -1)

    x = w["model.embed_tokens.weight"][np.array(ids)]
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        hs = rms(x, w[p + "input_layernorm.weight"])
        q = rope((hs @ w[p + "self_attn.q_proj.weight"].T).reshape(n, nh, hd))
        k = rope((hs @ w[p + "self_attn.k_proj.weight"].T).reshape(n, kv, hd))
        v = (hs @ w[p + "self_attn.v_proj.weight"].T).reshape(n, kv, hd)
        att = np.zeros((n, nh, hd))
        for head in range(nh):
            g = head // (nh // kv)
            s = q[:, head] @ k[:, g].T / np.sqrt(hd)
            s[np.triu_indices(n, 1)] = -np.inf
            pr = np.exp(s - s.max(-1, keepdims=True))
            att[:, head] = (pr / pr.sum(-1, keepdims=True)) @ v[:, g]
        x = x + att.reshape(n, -1) @ w[p + "self_attn.o_proj.weight"].T
        hs = rms(x, w[p + "post_attention_layernorm.weight"])
        gate, up = hs @ w[p + "mlp.gate_proj.weight"].T, hs @ w[p + "mlp.up_proj.weight"].T
        x = x + (gate / (1 + np.exp(-gate)) * up) @ w[p + "mlp.down_proj.weight"].T
    return rms(x, w["model.norm.weight"]) @ w["lm_head.weight"].T
