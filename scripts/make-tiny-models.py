#!/usr/bin/env python3
"""Makes tiny random-weight test models for rill, as Hugging Face directories and as GGUF files made
by llama.cpp's own tools, then checks every GGUF with llama.cpp itself.

Run it through scripts/make-tiny-models.sh (pinned venv). Output, per family, under
target/tiny-models/<family>/:
  hf/                       config.json, generation_config.json, model.safetensors (f32, or bf16
                            with --hf-dtype bf16: lossless, half the size),
                            tokenizer.json (+ tokenizer.model for SentencePiece families),
                            tokenizer_config.json (with the family's chat_template), special_tokens_map.json
  <family>.f16.gguf         convert_hf_to_gguf.py --outtype f16 (bit-exact: see "Weights")
  <family>.<Q>.gguf         llama-quantize of the f16 file, Q in Q8_0 Q4_K_M Q5_0 Q5_1
and target/tiny-models/no-template/<family>.no-template.Q8_0.gguf for one BPE family (llama) and one
SentencePiece family (mistral): the same model converted with the chat template removed, for the
"no template in the file" fallback. target/tiny-models/report.json holds sizes, sha256, tensor-type
histograms, logit margins and llama.cpp's verdicts; manifest.sha256 the checksums alone.

Families (HF class -> llama.cpp arch):
  llama          LlamaForCausalLM, Llama-3 style: rope_scaling llama3 (factor 8, original ctx 256, so
                 it changes most rotary dims; the GGUF gets a rope_freqs tensor), BPE (llama-bpe),
                 Llama-3.2 chat template, untied lm_head (Llama-3-8B style)
  mistral        MistralForCausalLM, sliding_window 16, Llama-2 style SentencePiece vocab (legacy),
                 [INST] template (Mistral-7B-Instruct-v0.1), untied. NB: llama.cpp has no sliding
                 window for this arch and the GGUF has no key for it: llama.cpp == HF only while
                 prompt + generated tokens <= 16 (verification compares with HF with the window off)
  qwen3          Qwen3ForCausalLM, q_norm/k_norm, head_dim 64 != hidden/heads (as in real Qwen3),
                 BPE (qwen2 pre, NFC), <think> etc. as non-special added tokens, untied (Qwen3-8B style)
  gemma2         Gemma2ForCausalLM, sliding window 16 on every other layer, attn softcap 10 and final
                 softcap 20 (smaller than the real 50/30 so they change the numbers), query_pre_attn_scalar
                 = head_dim (llama.cpp ignores the key and uses head_dim), SPM (gemma), tied
  gemma3         Gemma3ForCausalLM (text only, Gemma3TextConfig), 6 layers: 5 sliding (window 16) + 1
                 global, rope_local_base_freq 10000 vs rope_theta 1e6, q_norm/k_norm, SPM (gemma), tied
  phi3           Phi3ForCausalLM, fused qkv_proj/gate_up_proj, SPM + <|user|>.. added tokens (rstrip),
                 no BOS, untied
  phi3-longrope  the same with rope_scaling longrope (16 short/long factors, original ctx 2048, max
                 8192, attention factor sqrt(1 + ln 4 / ln 2048)). llama.cpp picks the long factors when
                 n_ctx > 2048 (HF: when the sequence is longer than 2048): at -c 2048 both use short.
  smollm3        SmolLM3ForCausalLM, 4 layers, no_rope_layers [1,1,1,0] (llama.cpp: every 4th layer),
                 BPE (llama-bpe), ChatML template with <think>, no BOS added, tied

Sizes: hidden 128, intermediate 256, 4 heads, 2 KV heads, head_dim 32 (64 for gemma and qwen3),
2 layers (smollm3 4, gemma3 6), ~1000-token vocab. k-quants need rows that are a multiple of 256:
here that holds for the matrices whose input is 256 wide (ffn_down everywhere, attn_output where
n_head*head_dim = 256) and llama-quantize falls back for the 128-wide rows (Q4_K -> Q5_0,
Q6_K -> Q8_0, ...): so a Q4_K_M file holds Q4_K, Q6_K, Q5_0, Q8_0 and F32 tensors. The per-file
histogram is in report.json.

Weights: a fixed seed per tensor (numpy PCG64 seeded from SEED and the tensor name, so the values do
not depend on torch). Linear layers N(0, gain/sqrt(fan_in)) so every layer moves the residual
stream, q/k with gain 1.5 so attention is peaked enough that RoPE/masking bugs change the numbers,
norms 1 +- 0.3 noise (a missing norm weight shows), the final norm scaled so that the logits have
std LOGIT_STD over the vocabulary. Plain random logits are a poor fixture: their top-2 gap is often
under 1% of their spread and llama.cpp's own activation quantization flips greedy paths within a
few tokens. So the output side has a seeded structure (add_successor_structure): the current
token's embedding lines up with one output row, so each step has one clear winner (a fixed random
successor chain for untied models, pair partners for tied ones) while all layers still shape every
logprob. The cost: the greedy *tokens* hardly depend on the context (report.json
margins.follows_structure counts the steps that follow the structure), so attention/RoPE/cache bugs
show in the logprobs, not in the argmax; compare logprobs, not only tokens. LOGIT_STD = 2 keeps the
distribution soft enough for that: the winner has p ~ 0.99 and the runners-up sit at logprob -5..-10
(report.json reference[].top5 has HF's top-5 per step).
Every value is rounded to the bfloat16 grid (and |w| < 2^-14 flushed to 0), so the f32 safetensors,
a bf16 copy and the f16 GGUF hold exactly the same numbers (verification checks it bit for bit): an
HF-vs-GGUF comparison in rill differs only by the math, never by the weights. f32 on disk: exact, no
dtype question in the reference, and tiny anyway.

Tokenizers, trained here on a deterministic generated corpus (make_corpus):
  BPE (llama, qwen3, smollm3): byte-level BPE from the `tokenizers` library, pre-tokenizer regex of
    the family (Llama-3's \\p{N}{1,3} or Qwen2's \\p{N}), ignore_merges like Llama-3, the family's
    special/added tokens appended after the trained vocab.
  SentencePiece (mistral, phi3, gemma2, gemma3): `sentencepiece` model_type=bpe, byte_fallback,
    split_digits, wrapped as LlamaTokenizerFast / GemmaTokenizerFast, so tokenizer.model is kept and
    convert_hf_to_gguf writes tokenizer.ggml.model = llama.

Converter workaround: convert_hf_to_gguf.py names a BPE pre-tokenizer by hashing how the tokenizer
splits a fixed text (get_vocab_base_pre / chkhsh); a freshly trained vocab matches no known hash.
So the conversion runs in this same script (`--convert-worker PRE ...`), which imports the
converter from the sdist, replaces TextModel.get_vocab_base_pre with one that logs the hash and
returns the pre name we chose for the family (llama-bpe for llama and smollm3, qwen2 for qwen3:
the names whose llama.cpp regex is the one our tokenizer.json uses), and then runs the converter's
own main(). SentencePiece families never reach that function. --model-name tiny-<family> is passed
so general.name is stable (and contains "phi3" for the phi3 files, which turns on llama.cpp's
rstrip handling of Phi-3's special tokens, matching the rstrip flags in tokenizer.json).

Verification (unless --skip-verify): each GGUF is loaded by llama-server (127.0.0.1, free port,
-c 2048 -t 2 -np 1 --jinja); /tokenize must equal the HF tokenizer on a few texts, /apply-template
is compared with HF's apply_chat_template (equal up to the leading BOS, which llama.cpp adds at
tokenization), and /completion greedy-decodes the HF prompt ids (N_GEN tokens). Its tokens are
compared with HF transformers' greedy decoding (full recompute, f32, eager attention) of (a) the
f32 safetensors and (b) the same model with the weights read back from that GGUF (dequantized by
gguf-py, converter transforms undone: hf_from_gguf). For the f16 file (b) must equal the
safetensors bit for bit; for a quantized file (b) isolates llama.cpp's own numerics from the weight
rounding, which is what rill-vs-llama.cpp on the same file sees. Besides the agreeing prefix, the
largest |logprob difference| over llama.cpp's top-5 tokens (n_probs 5) is reported against both.

Deterministic and idempotent: each family directory is removed and rebuilt; same versions give the
same bytes (manifest.sha256 shows it).
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import math
import os
import random
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zlib
from pathlib import Path

SEED = 20250611
ROUTER_GAIN = 4.0      # router logits' scale in a mixture of experts
LOGIT_STD = 2.0        # target std of the (pre-softcap) logits over the vocabulary
QK_GAIN = 1.5          # q/k projection gain: attention scores with std ~2
EMBED_RMS = 1.0        # rms of the (scaled) token embeddings with 2 layers; x sqrt(layers / 2) beyond
NORM_NOISE = 0.3       # norm weights are 1 + U(-NORM_NOISE, NORM_NOISE)
QUANTS = ["Q8_0", "Q4_K_M", "Q5_0", "Q5_1"]
N_GEN = 24             # greedy tokens per prompt for the margins and the llama.cpp comparison
BPE_VOCAB = 1000       # trained tokens (256 byte symbols included), specials come on top
SPM_VOCAB = 1000       # SentencePiece pieces (256 byte-fallback pieces and control tokens included)

LLAMA3_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
               r"|\s*[\r\n]+|\s+(?!\S)|\s+")

# Chat templates not shipped in the sdist's models/templates (the others are read from there).
MISTRAL_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}"
    "{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}"
)
GEMMA3_TEMPLATE = """{{ bos_token }}
{%- if messages[0]['role'] == 'system' -%}
    {%- if messages[0]['content'] is string -%}
        {%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}
    {%- else -%}
        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '\n\n' -%}
    {%- endif -%}
    {%- set loop_messages = messages[1:] -%}
{%- else -%}
    {%- set first_user_prefix = "" -%}
    {%- set loop_messages = messages -%}
{%- endif -%}
{%- for message in loop_messages -%}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}
        {{ raise_exception("Conversation roles must alternate user/assistant/user/assistant/...") }}
    {%- endif -%}
    {%- if (message['role'] == 'assistant') -%}
        {%- set role = "model" -%}
    {%- else -%}
        {%- set role = message['role'] -%}
    {%- endif -%}
    {{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else "") }}
    {%- if message['content'] is string -%}
        {{ message['content'] | trim }}
    {%- elif message['content'] is iterable -%}
        {%- for item in message['content'] -%}
            {%- if item['type'] == 'image' -%}
                {{ '<start_of_image>' }}
            {%- elif item['type'] == 'text' -%}
                {{ item['text'] | trim }}
            {%- endif -%}
        {%- endfor -%}
    {%- else -%}
        {{ raise_exception("Invalid content type") }}
    {%- endif -%}
    {{ '<end_of_turn>\n' }}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{'<start_of_turn>model\n'}}
{%- endif -%}
"""

# --- families -------------------------------------------------------------------------------------

COMMON = dict(hidden_size=128, intermediate_size=256, num_attention_heads=4, num_key_value_heads=2,
              max_position_embeddings=2048)

FAMILIES: dict[str, dict] = {
    "llama": dict(
        tok="bpe", regex=LLAMA3_REGEX, nfc=False, ignore_merges=True, pre="llama-bpe",
        specials=["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
                  "<|eot_id|>", "<|eom_id|>", "<|python_tag|>", "<|finetune_right_pad_id|>"],
        added=[], bos="<|begin_of_text|>", eos="<|eot_id|>", pad="<|finetune_right_pad_id|>",
        add_bos=True, eos_ids=["<|end_of_text|>", "<|eom_id|>", "<|eot_id|>"],
        template_file="meta-llama-Llama-3.2-3B-Instruct.jinja",
        hf_class="LlamaForCausalLM", config_class="LlamaConfig",
        config=dict(num_hidden_layers=2, head_dim=32, rope_theta=500000.0, rms_norm_eps=1e-5,
                    tie_word_embeddings=False, hidden_act="silu",
                    rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                  "high_freq_factor": 4.0, "original_max_position_embeddings": 256}),
    ),
    "mistral": dict(
        tok="spm-llama", legacy=True, added=[], bos="<s>", eos="</s>", pad=None, unk="<unk>",
        add_bos=True, template=MISTRAL_TEMPLATE,
        hf_class="MistralForCausalLM", config_class="MistralConfig",
        config=dict(num_hidden_layers=2, head_dim=32, rope_theta=10000.0, rms_norm_eps=1e-5,
                    sliding_window=16, tie_word_embeddings=False, hidden_act="silu"),
    ),
    "qwen3": dict(
        tok="bpe", regex=QWEN2_REGEX, nfc=True, ignore_merges=False, pre="qwen2",
        specials=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        added=["<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>", "<think>", "</think>"],
        bos=None, eos="<|im_end|>", pad="<|endoftext|>", add_bos=False, eos_ids=["<|im_end|>", "<|endoftext|>"],
        template_file="Qwen-Qwen3-0.6B.jinja",
        hf_class="Qwen3ForCausalLM", config_class="Qwen3Config",
        config=dict(num_hidden_layers=2, head_dim=64, rope_theta=1000000.0, rms_norm_eps=1e-6,
                    tie_word_embeddings=False, hidden_act="silu", attention_bias=False,
                    use_sliding_window=False),
    ),
    "gemma2": dict(
        tok="spm-gemma", added=[], bos="<bos>", eos="<eos>", pad="<pad>", unk="<unk>", add_bos=True,
        eos_ids=["<eos>", "<end_of_turn>"], template_file="google-gemma-2-2b-it.jinja",
        hf_class="Gemma2ForCausalLM", config_class="Gemma2Config",
        config=dict(num_hidden_layers=2, head_dim=64, query_pre_attn_scalar=64, sliding_window=16,
                    attn_logit_softcapping=10.0, final_logit_softcapping=20.0, rope_theta=10000.0,
                    rms_norm_eps=1e-6, hidden_activation="gelu_pytorch_tanh", tie_word_embeddings=True),
    ),
    "gemma3": dict(
        tok="spm-gemma", added=[], bos="<bos>", eos="<eos>", pad="<pad>", unk="<unk>", add_bos=True,
        eos_ids=["<eos>", "<end_of_turn>"], template=GEMMA3_TEMPLATE,
        hf_class="Gemma3ForCausalLM", config_class="Gemma3TextConfig",
        config=dict(num_hidden_layers=6, head_dim=64, query_pre_attn_scalar=64, sliding_window=16,
                    sliding_window_pattern=6, rope_theta=1000000.0, rope_local_base_freq=10000.0,
                    rms_norm_eps=1e-6, hidden_activation="gelu_pytorch_tanh", tie_word_embeddings=True,
                    final_logit_softcapping=None, attn_logit_softcapping=None),
    ),
    "phi3": dict(
        tok="spm-phi3", legacy=True,
        added=["<|endoftext|>", "<|assistant|>", "<|system|>", "<|end|>", "<|user|>"],
        bos="<s>", eos="<|endoftext|>", pad="<|endoftext|>", unk="<unk>", add_bos=False,
        eos_ids=["<|endoftext|>", "<|end|>", "<|assistant|>"],
        template_file="microsoft-Phi-3.5-mini-instruct.jinja",
        hf_class="Phi3ForCausalLM", config_class="Phi3Config",
        config=dict(num_hidden_layers=2, rope_theta=10000.0, rms_norm_eps=1e-5, hidden_act="silu",
                    original_max_position_embeddings=2048, sliding_window=None, tie_word_embeddings=False),
    ),
    "smollm3": dict(
        tok="bpe", regex=LLAMA3_REGEX, nfc=False, ignore_merges=True, pre="llama-bpe",
        specials=["<|begin_of_text|>", "<|end_of_text|>", "<|im_start|>", "<|im_end|>"],
        added=["<think>", "</think>"],
        bos="<|begin_of_text|>", eos="<|im_end|>", pad="<|end_of_text|>", add_bos=False,
        eos_ids=["<|im_end|>"], template_file="HuggingFaceTB-SmolLM3-3B.jinja",
        hf_class="SmolLM3ForCausalLM", config_class="SmolLM3Config",
        config=dict(num_hidden_layers=4, rope_theta=2000000.0, rms_norm_eps=1e-6, hidden_act="silu",
                    tie_word_embeddings=True, no_rope_layer_interval=4, use_sliding_window=False),
    ),
}
# Phi-3 with LongRoPE: the same model, a longer context and long/short factors.
FAMILIES["phi3-longrope"] = dict(
    FAMILIES["phi3"],
    config=dict(FAMILIES["phi3"]["config"], max_position_embeddings=8192,
                rope_scaling="LONGROPE"),  # filled in by make_config (factors depend on head_dim)
)
# Mixtures of experts: 8 experts, 2 per token, on the dense families' tokenizers and attention.
MOE = dict(num_experts=8, num_experts_per_tok=2, moe_intermediate_size=64, decoder_sparse_step=1, mlp_only_layers=[])
FAMILIES["qwen3moe"] = dict(
    FAMILIES["qwen3"], hf_class="Qwen3MoeForCausalLM", config_class="Qwen3MoeConfig",
    # llama.cpp always normalizes Qwen3-MoE's top-k weights (as the released models' configs ask)
    config=dict(FAMILIES["qwen3"]["config"], **MOE, norm_topk_prob=True),
)
FAMILIES["qwen2moe"] = dict(
    FAMILIES["qwen3"], hf_class="Qwen2MoeForCausalLM", config_class="Qwen2MoeConfig",
    config=dict(num_hidden_layers=2, rope_theta=1000000.0, rms_norm_eps=1e-6, tie_word_embeddings=False,
                hidden_act="silu", use_sliding_window=False, **MOE, shared_expert_intermediate_size=128,
                norm_topk_prob=False),
)
FAMILIES["mixtral"] = dict(
    FAMILIES["mistral"], hf_class="MixtralForCausalLM", config_class="MixtralConfig",
    config=dict(num_hidden_layers=2, head_dim=32, rope_theta=1000000.0, rms_norm_eps=1e-5, sliding_window=None,
                tie_word_embeddings=False, hidden_act="silu", num_local_experts=8, num_experts_per_tok=2,
                intermediate_size=64),  # Mixtral's experts are intermediate_size wide
)
NO_TEMPLATE = ["llama", "mistral"]  # one BPE and one SentencePiece family

FIXED_DATE = "26 Jul 2024"
RAW_PROMPTS = ["The capital of France is", "def fibonacci(n):\n", "Once upon a time, in a small village by the sea,"]
CHAT = [{"role": "user", "content": "Tell me about the history of Rome."}]
CHAT2 = [{"role": "user", "content": "Hello!"}, {"role": "assistant", "content": "Hi, how can I help?"},
         {"role": "user", "content": "Write a haiku about the ocean."}]
TOKENIZE_TEXTS = ["Hello world! It's 2024-06-11, 12345 apples cost $3.50.",
                  "  leading spaces,\ttabs\nand\n\nnewlines  ",
                  "Unicode: café, naïve, Größe, Привет, 日本語, 🦙🚀",
                  "def f(x):\n    return x ** 2  # square\n"]


# --- corpus ---------------------------------------------------------------------------------------

_WORDS = """time year people way day man thing woman life child world school state family student group
country problem hand part place case week company system program question work government number night
point home water room mother area money story fact month lot right study book eye job word business issue
side kind head house service friend father power hour game line end member law car city community name
president team minute idea kid body information back parent face others level office door health person art
war history party result change morning reason research girl guy moment air teacher force education river
planet ocean mountain island forest village sea sun moon star garden river bridge castle king queen dragon
computer function variable value list string number file server model token language code test error""".split()
_ADJ = """good new first last long great little own other old right big high different small large next early
young important few public bad same able red blue green quick lazy bright dark ancient modern simple small
happy sad strange quiet loud warm cold deep tiny random greedy""".split()
_VERBS = """is was has had makes made sees saw knows knew takes took finds found gives gave tells told becomes
became leaves left feels felt brings brought begins began keeps kept holds held writes wrote stands stood
hears heard lets meant sets set meets met runs ran pays paid sits sat speaks spoke lies led reads read grows
grew loses lost falls fell sends sent builds built returns returned""".split()
_PLACES = ["France", "Paris", "Rome", "Italy", "Germany", "Berlin", "Spain", "Madrid", "Japan", "Tokyo",
           "Egypt", "Cairo", "Canada", "Ottawa", "Brazil", "Lisbon", "London", "England", "China", "Beijing"]
_CODE = [
    "def fibonacci(n):\n    if n < 2:\n        return n\n    return fibonacci(n - 1) + fibonacci(n - 2)\n",
    "import numpy as np\n\nx = np.arange(10)\nprint(x.sum())\n",
    "for i in range(10):\n    print(i, i * i)\n",
    "class Node:\n    def __init__(self, value):\n        self.value = value\n        self.next = None\n",
    "<html>\n<head>\n<title>Hello</title>\n</head>\n<body>\n<p>Hello, world!</p>\n</body>\n</html>\n",
    "fn main() {\n    let v: Vec<u32> = (0..10).collect();\n    println!(\"{:?}\", v);\n}\n",
    "SELECT name, age FROM users WHERE age > 30 ORDER BY name;\n",
    "{\"name\": \"rill\", \"version\": \"0.1.0\", \"tokens\": [1, 2, 3]}\n",
]
_UNICODE = ["Le café est très bon, merci beaucoup.", "Die Größe der Straße ist schön.",
            "Привет, как дела? Всё хорошо.", "日本語のテキストです。東京は大きい。", "中文文本，我想在北京工作。",
            "¿Dónde está la biblioteca? ¡Aquí!", "Emoji: 🦙 🚀 ✅ 😁 ❤️", "naïve façade coöperate résumé"]


def make_corpus() -> list[str]:
    """A deterministic English-ish corpus (~250 kB): sentences, Q&A, numbers, code, some Unicode."""
    rng = random.Random(SEED)
    lines: list[str] = []
    for i in range(4000):
        k = rng.randrange(10)
        if k < 5:
            n = rng.randrange(1, 4)
            sent = []
            for _ in range(n):
                s = (f"The {rng.choice(_ADJ)} {rng.choice(_WORDS)} {rng.choice(_VERBS)} "
                     f"{rng.choice(['the', 'a', 'my', 'their', 'every'])} {rng.choice(_ADJ)} {rng.choice(_WORDS)}")
                if rng.random() < 0.3:
                    s += f" in {rng.choice(_PLACES)}"
                sent.append(s + rng.choice([".", ".", ".", "!", "?", ";"]))
            lines.append(" ".join(sent))
        elif k == 5:
            p = rng.choice(_PLACES)
            lines.append(f"Question: What is the capital of {p}? Answer: The capital of {p} is {rng.choice(_PLACES)}.")
        elif k == 6:
            start = rng.randrange(0, 2000)
            step = rng.choice([1, 2, 5, 10, 100])
            lines.append(", ".join(str(start + j * step) for j in range(rng.randrange(3, 9))) + ",")
            if rng.random() < 0.5:
                lines.append(f"In {rng.randrange(1000, 2025)}, {rng.randrange(2, 99)}.{rng.randrange(0, 99)}% of "
                             f"{rng.randrange(100, 99999)} {rng.choice(_WORDS)}s cost ${rng.randrange(1, 999)}.{rng.randrange(10, 99)}.")
        elif k == 7:
            lines.append(rng.choice(_CODE))
        elif k == 8:
            lines.append(rng.choice(["Monday, Tuesday, Wednesday, Thursday, Friday, Saturday, Sunday.",
                                     "Once upon a time, in a small village by the sea, there lived an old fisherman.",
                                     "Water boils at 100 degrees Celsius and freezes at 0 degrees.",
                                     "The three primary colors are red, blue and yellow.",
                                     "The largest planet in our solar system is Jupiter.",
                                     "Tell me about the history of Rome. Write a haiku about the ocean.",
                                     "Hello! Hi, how can I help you today? I'm fine, thank you; you're kind.",
                                     "It's, I've, we'll, they'd, you're, she's: contractions everywhere."]))
        else:
            lines.append(rng.choice(_UNICODE))
        if rng.random() < 0.05:
            lines.append(" " * rng.randrange(1, 9) + "indented\t\ttext  with   runs of    spaces")
    return lines


# --- weights --------------------------------------------------------------------------------------

def bf16_grid(a):
    """Round float32 to the nearest bfloat16 value (ties to even); flush |x| < 2^-14 to zero so the
    value is also exact in float16."""
    import numpy as np
    a = np.ascontiguousarray(a, dtype=np.float32)
    u = a.view(np.uint32).astype(np.uint64)
    u = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16) << 16
    out = u.astype(np.uint32).view(np.float32)
    out = np.where(np.abs(out) < 2.0 ** -14, np.float32(0), out).astype(np.float32)
    return out


def tensor_rng(name: str):
    import numpy as np
    return np.random.default_rng([SEED, zlib.crc32(name.encode())])


def init_weights(model, fam: dict):
    """Overwrite every parameter with seeded values (see module docstring)."""
    import numpy as np
    import torch
    gemma = fam["hf_class"].startswith("Gemma")
    hidden = model.config.hidden_size
    # the residual stream sums ~2 layer outputs of rms ~1 per layer: the embedding keeps pace
    emb_rms = EMBED_RMS * math.sqrt(model.config.num_hidden_layers / 2)
    with torch.no_grad():
        for name, p in model.named_parameters():
            rng = tensor_rng(name)
            shape = tuple(p.shape)
            if name.endswith(".bias"):  # Qwen2's q/k/v biases: small offsets
                arr = rng.uniform(-0.1, 0.1, size=shape)
            elif p.ndim == 1:  # RMSNorm weights
                noise = rng.uniform(-NORM_NOISE, NORM_NOISE, size=shape)
                gain = QK_GAIN if ("q_norm" in name or "k_norm" in name) else 1.0
                w = gain * (1.0 + noise)
                if gemma:  # Gemma stores w with the norm computing x * (1 + w)
                    w = w - 1.0
                arr = w
            elif "embed_tokens" in name:  # see add_successor_structure
                std = emb_rms / math.sqrt(hidden) if gemma else emb_rms  # Gemma scales by sqrt(hidden)
                arr = rng.standard_normal(shape) * std
            elif "lm_head" in name:
                arr = rng.standard_normal(shape) / math.sqrt(hidden)
            else:
                fan_in = shape[1]
                gain = 1.0
                if any(k in name for k in ("q_proj", "k_proj")):
                    gain = QK_GAIN
                if name.endswith("mlp.gate.weight") or name.endswith("block_sparse_moe.gate.weight"):
                    gain = ROUTER_GAIN  # peaked routing: no near-ties for rounding to flip
                arr = rng.standard_normal(shape) * (gain / math.sqrt(fan_in))
                if "qkv_proj" in name:  # Phi-3 fused q|k|v: scale the q and k rows
                    cfg = model.config
                    hd = cfg.hidden_size // cfg.num_attention_heads
                    nq = cfg.num_attention_heads * hd
                    nk = cfg.num_key_value_heads * hd
                    arr[: nq + nk] *= QK_GAIN
            p.copy_(torch.from_numpy(bf16_grid(arr)))
        return add_successor_structure(model, gemma)


def add_successor_structure(model, gemma: bool):
    """Give greedy decoding a clear winner at (nearly) every step; returns succ[t], the token that
    the structure makes follow token t.

    With plain random weights the logits are a random vector over ~1000 tokens and the top-2 gap is
    often < 1% of their spread: llama.cpp's own activation quantization flips greedy paths within a
    few tokens. Here the current token's embedding, which the residual stream carries to the end,
    lines up with exactly one output row:
      untied: lm_head row j = embedding row perm[j] (a seeded random permutation), so the spike is at
              succ[t] = perm^-1[t]: greedy text follows a fixed pseudo-random token chain;
      tied:   embeddings come in seeded random pairs (e, D e) with D = diag(+-1) (half the signs
              flipped, so e . De ~ 0) and the final norm weight carries D, so the spike is at the
              pair partner: greedy alternates t, partner(t) unless the context overrules it.
    EMBED_RMS sets how far the spike stands above the context-dependent part of the logits (which all
    layers shape: rill bugs still move every logprob)."""
    import numpy as np
    import torch
    E = model.get_input_embeddings().weight
    V, H = E.shape
    rng = np.random.default_rng([SEED, 1])
    En = E.detach().numpy().copy()
    if model.config.tie_word_embeddings:
        d = np.ones(H, dtype=np.float32)
        d[rng.permutation(H)[: H // 2]] = -1.0
        order = rng.permutation(V)
        succ = np.arange(V)
        for a, b in order[: V // 2 * 2].reshape(-1, 2):
            En[b] = d * En[a]
            succ[a], succ[b] = b, a
        E.copy_(torch.from_numpy(En))
        w = final_norm_param(model)
        eff = (w.detach().numpy() + 1.0) if gemma else w.detach().numpy()
        eff = eff * d
        w.copy_(torch.from_numpy(bf16_grid(eff - 1.0 if gemma else eff)))
    else:
        perm = rng.permutation(V)
        rows = En[perm]
        rows = rows / np.sqrt((rows ** 2).mean(axis=1, keepdims=True)) / math.sqrt(H)
        model.get_output_embeddings().weight.copy_(torch.from_numpy(bf16_grid(rows)))
        succ = np.empty(V, dtype=np.int64)
        succ[perm] = np.arange(V)
    return succ


def final_norm_param(model):
    return model.model.norm.weight


def pre_softcap_logits(model, ids):
    import torch
    with torch.no_grad():
        h = model.model(input_ids=ids).last_hidden_state
        return h @ model.get_output_embeddings().weight.T


def calibrate_logits(model, fam: dict, prompt_ids: list[list[int]]):
    """Scale the final norm so the logits' std over the vocabulary is LOGIT_STD (logits are linear
    in the final norm weight)."""
    import numpy as np
    import torch
    stds = []
    for ids in prompt_ids:
        lg = pre_softcap_logits(model, torch.tensor([ids]))
        stds.append(lg[0].std(dim=-1).mean().item())
    c = LOGIT_STD / float(np.mean(stds))
    gemma = fam["hf_class"].startswith("Gemma")
    w = final_norm_param(model)
    with torch.no_grad():
        eff = (w + 1.0) if gemma else w.clone()
        eff = eff * c
        new = (eff - 1.0) if gemma else eff
        w.copy_(torch.from_numpy(bf16_grid(new.numpy())))
    return c


# --- tokenizers -----------------------------------------------------------------------------------

def build_bpe_tokenizer(fam: dict, lines: list[str]):
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    if fam["nfc"]:
        tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(fam["regex"]), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=BPE_VOCAB, min_frequency=2, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=[])
    tok.train_from_iterator(lines, trainer=trainer)
    if fam["ignore_merges"]:  # Llama-3's tokenizer.json: a whole pre-token found in the vocab is one token
        j = json.loads(tok.to_str())
        j["model"]["ignore_merges"] = True
        tok = Tokenizer.from_str(json.dumps(j))
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in fam["specials"]])
    if fam["added"]:
        tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in fam["added"]])
    post = [processors.ByteLevel(trim_offsets=False)]
    if fam["add_bos"]:
        bos_id = tok.token_to_id(fam["bos"])
        post.append(processors.TemplateProcessing(single=f"{fam['bos']} $A", pair=f"{fam['bos']} $A {fam['bos']} $B",
                                                  special_tokens=[(fam["bos"], bos_id)]))
    tok.post_processor = processors.Sequence(post)
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=fam["bos"], eos_token=fam["eos"],
                                 pad_token=fam["pad"], clean_up_tokenization_spaces=False,
                                 model_max_length=COMMON["max_position_embeddings"])
    return hf


def train_spm(lines: list[str], gemma: bool) -> bytes:
    import sentencepiece as spm
    buf = io.BytesIO()
    kw = dict(model_type="bpe", vocab_size=SPM_VOCAB, byte_fallback=True, character_coverage=0.9995,
              split_digits=True, allow_whitespace_only_pieces=True, remove_extra_whitespaces=False,
              normalization_rule_name="identity", num_threads=1, input_sentence_size=0,
              shuffle_input_sentence=False, max_sentence_length=8192, minloglevel=2)
    if gemma:
        kw.update(add_dummy_prefix=False, pad_id=0, eos_id=1, bos_id=2, unk_id=3,
                  pad_piece="<pad>", eos_piece="<eos>", bos_piece="<bos>", unk_piece="<unk>",
                  control_symbols=["<mask>"], user_defined_symbols=["<start_of_turn>", "<end_of_turn>"])
    else:
        kw.update(add_dummy_prefix=True, unk_id=0, bos_id=1, eos_id=2, pad_id=-1)
    spm.SentencePieceTrainer.train(sentence_iterator=iter(lines), model_writer=buf, **kw)
    return buf.getvalue()


def build_spm_tokenizer(fam: dict, lines: list[str], workdir: Path):
    from tokenizers import AddedToken
    from transformers import GemmaTokenizerFast, LlamaTokenizerFast

    gemma = fam["tok"] == "spm-gemma"
    model_path = workdir / "tokenizer.model"
    model_path.write_bytes(train_spm(lines, gemma))
    if gemma:
        hf = GemmaTokenizerFast(vocab_file=str(model_path), add_bos_token=fam["add_bos"], add_eos_token=False,
                                clean_up_tokenization_spaces=False)
        hf.add_special_tokens({"additional_special_tokens": [
            AddedToken("<start_of_turn>", special=True, normalized=False),
            AddedToken("<end_of_turn>", special=True, normalized=False)]})
    else:
        # add_prefix_space=True: the .model has add_dummy_prefix; without it the converted
        # tokenizer.json gets Metaspace(prepend_scheme="never") and drops the leading "▁".
        hf = LlamaTokenizerFast(vocab_file=str(model_path), legacy=fam["legacy"], from_slow=True, add_prefix_space=True,
                                add_bos_token=fam["add_bos"], add_eos_token=False,
                                clean_up_tokenization_spaces=False, pad_token=None)
        if fam["added"]:
            # Phi-3: <|endoftext|> keeps the whitespace after it, the chat tokens strip it (rstrip),
            # as in the real tokenizer_config and as llama.cpp does for general.name ~ "phi3".
            hf.add_special_tokens({"additional_special_tokens": [
                AddedToken(t, special=True, normalized=False, rstrip=(t != "<|endoftext|>"), lstrip=False)
                for t in fam["added"]]})
            if fam["eos"] in fam["added"]:
                hf.eos_token = fam["eos"]
            if fam["pad"]:
                hf.pad_token = fam["pad"]
    hf.model_max_length = COMMON["max_position_embeddings"]
    return hf


def chat_template_for(fam: dict, sdist: Path) -> str:
    if "template" in fam:
        return fam["template"]
    return (sdist / "models" / "templates" / fam["template_file"]).read_text(encoding="utf-8")


def save_tokenizer(hf, fam: dict, hf_dir: Path, template: str | None):
    hf.save_pretrained(str(hf_dir))
    for extra in ("chat_template.jinja", "chat_template.json"):
        (hf_dir / extra).unlink(missing_ok=True)
    cfg_path = hf_dir / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    cfg.pop("chat_template", None)
    if template is not None:
        cfg["chat_template"] = template
    cfg["add_bos_token"] = bool(fam["add_bos"])
    cfg["add_eos_token"] = False
    if fam["tok"] == "bpe":
        cfg["bos_token"] = fam["bos"]
    cfg_path.write_text(json.dumps(cfg, indent=2, ensure_ascii=False, sort_keys=True) + "\n", encoding="utf-8")


# --- model ----------------------------------------------------------------------------------------

def make_config(fam: dict, tok):
    import transformers
    cls = getattr(transformers, fam["config_class"])
    kw = dict(COMMON)
    kw.update(fam["config"])
    kw["vocab_size"] = len(tok)
    if kw.get("rope_scaling") == "LONGROPE":
        hd = kw["hidden_size"] // kw["num_attention_heads"]
        n = hd // 2
        kw["rope_scaling"] = {
            "type": "longrope",
            "short_factor": [round(1.0 + 0.5 * (i / (n - 1)) ** 2, 4) for i in range(n)],
            "long_factor": [round(1.0 + 15.0 * (i / (n - 1)) ** 3, 4) for i in range(n)],
        }
    ids = lambda t: tok.convert_tokens_to_ids(t) if t else None
    kw["bos_token_id"] = ids(fam["bos"])
    kw["pad_token_id"] = ids(fam["pad"])
    eos = [ids(t) for t in fam.get("eos_ids", [fam["eos"]])]
    kw["eos_token_id"] = eos[0] if len(eos) == 1 else eos
    kw["torch_dtype"] = "float32"
    cfg = cls(**kw)
    cfg.architectures = [fam["hf_class"]]
    return cfg


def load_hf(hf_dir: Path, fam: dict):
    import torch
    import transformers
    cls = getattr(transformers, fam["hf_class"])
    model = cls.from_pretrained(str(hf_dir), torch_dtype=torch.float32, attn_implementation="eager")
    model.eval()
    return model


def greedy(model, ids: list[int], n: int):
    """Greedy decoding by full recompute (no cache: the plainest reference); returns the tokens, the
    top-1 minus top-2 logit margin at every step and the log-softmax rows (steps x vocab)."""
    import numpy as np
    import torch
    toks, margins, lps = [], [], []
    cur = list(ids)
    with torch.no_grad():
        for _ in range(n):
            lg = model(input_ids=torch.tensor([cur])).logits[0, -1]
            top = torch.topk(lg, 2)
            toks.append(int(top.indices[0]))
            margins.append(float(top.values[0] - top.values[1]))
            lps.append(torch.log_softmax(lg.double(), -1).numpy())
            cur.append(toks[-1])
    return toks, margins, np.stack(lps)


def prompt_sets(tok):
    out = [("raw", p, tok(p).input_ids) for p in RAW_PROMPTS]
    for name, msgs in (("chat", CHAT), ("chat2", CHAT2)):
        # date_string pins the Llama-3 template's "Today Date" (it would use strftime_now): stable ids
        text = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True, date_string=FIXED_DATE)
        out.append((name, text, tok(text, add_special_tokens=False).input_ids))
    return out


def build_family(name: str, fam: dict, out: Path, sdist: Path, corpus: list[str], log, hf_dtype: str = "f32") -> dict:
    import numpy as np
    import torch
    import transformers

    fam_dir = out / name
    if fam_dir.exists():
        shutil.rmtree(fam_dir)
    hf_dir = fam_dir / "hf"
    hf_dir.mkdir(parents=True)

    if fam["tok"] == "bpe":
        tok = build_bpe_tokenizer(fam, corpus)
    else:
        tok = build_spm_tokenizer(fam, corpus, hf_dir)
    template = chat_template_for(fam, sdist)
    save_tokenizer(tok, fam, hf_dir, template)
    tok = transformers.AutoTokenizer.from_pretrained(str(hf_dir))

    cfg = make_config(fam, tok)
    torch.manual_seed(SEED)
    model = getattr(transformers, fam["hf_class"])(cfg)
    model.eval()
    succ = init_weights(model, fam)
    prompts = prompt_sets(tok)
    scale = calibrate_logits(model, fam, [p[2] for p in prompts])
    if hf_dtype == "bf16":  # lossless: every value is on the bf16 grid (half the safetensors size)
        model = model.to(torch.bfloat16)
        model.config.torch_dtype = torch.bfloat16
    model.save_pretrained(str(hf_dir), safe_serialization=True)
    gc_path = hf_dir / "generation_config.json"
    if gc_path.exists():  # greedy by default; nothing else in it
        gc = json.loads(gc_path.read_text())
        gc.pop("transformers_version", None)
        gc_path.write_text(json.dumps(gc, indent=2, sort_keys=True) + "\n")

    # Reload from disk (what rill will read) and record the reference greedy paths and margins.
    model = load_hf(hf_dir, fam)
    ref = []
    all_m = []
    follows = 0
    for kind, text, ids in prompts:
        toks, margins, lps = greedy(model, ids, N_GEN)
        all_m += margins
        follows += sum(int(succ[a] == b) for a, b in zip([ids[-1]] + toks[:-1], toks))
        top5 = np.argsort(-lps, axis=1)[:, :5]
        ref.append(dict(kind=kind, text=text, ids=ids, greedy=toks, margins=[round(m, 4) for m in margins],
                        top5=[[[int(i), round(float(lps[k, i]), 5)] for i in row] for k, row in enumerate(top5)],
                        _lps=lps,
                        decoded=tok.decode(toks)))
    m = np.array(all_m)
    summary = dict(min=round(float(m.min()), 4), p05=round(float(np.percentile(m, 5)), 4),
                   p10=round(float(np.percentile(m, 10)), 4), median=round(float(np.median(m)), 4),
                   below_0_1=int((m < 0.1).sum()), below_0_5=int((m < 0.5).sum()), steps=len(m),
                   follows_structure=follows)
    log(f"[{name}] vocab {len(tok)}, params {sum(p.numel() for p in model.parameters())}, "
        f"final-norm scale {scale:.3f}, margins {summary}")
    return dict(vocab=len(tok), params=int(sum(p.numel() for p in model.parameters())),
                final_norm_scale=round(scale, 4), margins=summary, reference=ref)


# --- conversion -----------------------------------------------------------------------------------

def convert_worker(argv: list[str]):
    """Runs inside a subprocess: `--convert-worker SDIST PRE -- <convert_hf_to_gguf args>`."""
    sdist, pre = Path(argv[0]), argv[1]
    conv_args = argv[3:]
    sys.path.insert(0, str(sdist))
    sys.path.insert(1, str(sdist / "gguf-py"))
    import convert_hf_to_gguf  # noqa: E402  (the converter's own module: argument parsing, main())
    from conversion.base import TextModel, logger  # noqa: E402
    from hashlib import sha256

    def get_vocab_base_pre(self, tokenizer) -> str:
        # The converter's own chktxt, so the hash we log is the one it would have compared.
        consts = TextModel.__dict__["_rill_orig_pre"].__code__.co_consts
        text = next((c for c in consts if isinstance(c, str) and c.startswith("\n \n\n")), "Hello World")
        chkhsh = sha256(str(tokenizer.encode(text)).encode()).hexdigest()
        logger.info(f"rill: unrecognised trained vocab (chkhsh {chkhsh}); tokenizer.ggml.pre = {pre!r}")
        return pre

    TextModel._rill_orig_pre = TextModel.get_vocab_base_pre
    TextModel.get_vocab_base_pre = get_vocab_base_pre
    sys.argv = ["convert_hf_to_gguf.py"] + conv_args
    convert_hf_to_gguf.main()


def run(cmd: list[str], log_path: Path, env=None):
    with open(log_path, "a", encoding="utf-8") as lf:
        lf.write("$ " + " ".join(cmd) + "\n")
        lf.flush()
        r = subprocess.run(cmd, stdout=lf, stderr=subprocess.STDOUT, env=env)
    if r.returncode != 0:
        tail = log_path.read_text(encoding="utf-8", errors="replace")[-3000:]
        raise RuntimeError(f"command failed ({r.returncode}): {' '.join(cmd)}\n{tail}")


def convert(hf_dir: Path, outfile: Path, fam: dict, name: str, sdist: Path, log_path: Path, outtype="f16"):
    cmd = [sys.executable, str(Path(__file__).resolve()), "--convert-worker", str(sdist), fam.get("pre", "none"), "--",
           str(hf_dir), "--outfile", str(outfile), "--outtype", outtype, "--model-name", f"tiny-{name}"]
    run(cmd, log_path)  # the converter puts the sdist's gguf-py on sys.path itself


def quantize(bin_dir: Path, src: Path, dst: Path, qtype: str, log_path: Path):
    run([str(bin_dir / "llama-quantize"), str(src), str(dst), qtype, "2"], log_path)


def gguf_info(path: Path, sdist: Path) -> dict:
    if str(sdist / "gguf-py") not in sys.path:
        sys.path.insert(0, str(sdist / "gguf-py"))
    import gguf
    r = gguf.GGUFReader(str(path))
    hist: dict[str, int] = {}
    per: dict[str, str] = {}
    for t in r.tensors:
        hist[t.tensor_type.name] = hist.get(t.tensor_type.name, 0) + 1
        per[t.name] = t.tensor_type.name
    kv = {}
    for key in ("general.architecture", "general.name", "tokenizer.ggml.model", "tokenizer.ggml.pre",
                "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id", "tokenizer.ggml.add_bos_token"):
        f = r.fields.get(key)
        if f is not None:
            v = f.contents()
            kv[key] = v
    kv["has_chat_template"] = "tokenizer.chat_template" in r.fields
    return dict(types=dict(sorted(hist.items())), tensors=per, kv=kv)


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# --- HF on the GGUF's own weights -------------------------------------------------------------------

def unpermute(w, n_head: int):
    """Inverse of the converter's LlamaModel.permute (q/k rows reordered for llama.cpp's RoPE)."""
    return w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def hf_from_gguf(hf_dir: Path, fam: dict, gguf_path: Path, sdist: Path):
    """The HF model with every weight replaced by the dequantized tensor of gguf_path (the converter's
    transforms undone: q/k permutation for llama-arch files, Gemma's +1 on norms). The f16 file must
    give back the safetensors bit for bit; a quantized file gives the reference that isolates
    llama.cpp's own numerics (activation quantization, f16 KV cache) from the weight rounding."""
    import numpy as np
    import torch
    if str(sdist / "gguf-py") not in sys.path:
        sys.path.insert(0, str(sdist / "gguf-py"))
    import gguf
    over = {}
    if fam["hf_class"] == "MistralForCausalLM":
        over["sliding_window"] = None  # llama.cpp's llama arch has no sliding window (see report)
    import transformers
    model = getattr(transformers, fam["hf_class"]).from_pretrained(
        str(hf_dir), torch_dtype=torch.float32, attn_implementation="eager", **over)
    model.eval()
    r = gguf.GGUFReader(str(gguf_path))
    arch_name = r.fields["general.architecture"].contents()
    arch = next(k for k, v in gguf.MODEL_ARCH_NAMES.items() if v == arch_name)
    cfg = model.config
    tmap = gguf.get_tensor_name_map(arch, cfg.num_hidden_layers)
    tensors = {t.name: t for t in r.tensors}
    permute = arch_name in ("llama", "smollm3")
    gemma = fam["hf_class"].startswith("Gemma")
    exact = True
    with torch.no_grad():
        for name, p in model.named_parameters():
            gname = tmap.get_name(name, try_suffixes=(".weight", ".bias"))
            if gname is None or gname not in tensors:
                raise KeyError(f"{gguf_path.name}: no GGUF tensor for {name} ({gname})")
            t = tensors[gname]
            a = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32).reshape(tuple(p.shape))
            if permute and name.endswith("q_proj.weight"):
                a = unpermute(a, cfg.num_attention_heads)
            elif permute and name.endswith("k_proj.weight"):
                a = unpermute(a, cfg.num_key_value_heads)
            if gemma and name.endswith("norm.weight"):
                a = a - 1.0
            t_new = torch.from_numpy(np.ascontiguousarray(a))
            if not torch.equal(t_new, p.data):
                exact = False
            p.copy_(t_new)
    return model, exact


# --- llama.cpp verification -----------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(url: str, body: dict | None = None, timeout=60):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read().decode())


class Server:
    def __init__(self, bin_dir: Path, model: Path, log_path: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        env = dict(os.environ)
        env["LD_LIBRARY_PATH"] = str(bin_dir) + ":" + env.get("LD_LIBRARY_PATH", "")
        self.logf = open(log_path, "w", encoding="utf-8")
        self.proc = subprocess.Popen(
            [str(bin_dir / "llama-server"), "-m", str(model), "--host", "127.0.0.1", "--port", str(self.port),
             "-c", "2048", "-t", "2", "-np", "1", "--no-webui", "--jinja"],
            stdout=self.logf, stderr=subprocess.STDOUT, env=env)

    def wait(self, timeout=120) -> str | None:
        t0 = time.time()
        while time.time() - t0 < timeout:
            if self.proc.poll() is not None:
                return f"llama-server exited with {self.proc.returncode}"
            try:
                if http(self.url + "/health", timeout=2).get("status") == "ok":
                    return None
            except (urllib.error.URLError, ConnectionError, TimeoutError, json.JSONDecodeError, OSError):
                pass
            time.sleep(0.3)
        return "llama-server did not become healthy"

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.logf.close()


def verify_gguf(bin_dir: Path, gguf_path: Path, tok, fam: dict, ref: list[dict], log_dir: Path,
                check_template: bool, hf_dir: Path, sdist: Path) -> dict:
    res: dict = dict(loaded=False)
    # HF transformers on this file's own (dequantized) weights: the reference for llama.cpp's greedy path
    deq_model, exact = hf_from_gguf(hf_dir, fam, gguf_path, sdist)
    res["weights_equal_safetensors"] = exact
    deq = [greedy(deq_model, r["ids"], N_GEN) for r in ref]
    del deq_model
    srv = Server(bin_dir, gguf_path, log_dir / (gguf_path.name + ".server.log"))
    try:
        err = srv.wait()
        if err:
            res["error"] = err + ": " + srv.log_path.read_text(errors="replace")[-1500:]
            return res
        res["loaded"] = True
        # tokenizer
        mism = []
        # raw texts with the BOS policy of each side; templated chats (which hold their own BOS) without
        for text, special in [(t, True) for t in TOKENIZE_TEXTS] + [(r["text"], False) for r in ref if r["kind"] != "raw"]:
            want = tok(text, add_special_tokens=special).input_ids
            got = http(srv.url + "/tokenize", {"content": text, "add_special": special, "parse_special": True})["tokens"]
            if got != want:
                mism.append(dict(text=text, add_special=special, hf=want, llama=got))
        res["tokenize_mismatches"] = mism
        # chat template
        if check_template:
            tmpl = []
            for msgs in (CHAT, CHAT2):
                want = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
                try:
                    got = http(srv.url + "/apply-template", {"messages": msgs})["prompt"]
                except urllib.error.HTTPError as e:
                    got = f"HTTP {e.code}: {e.read().decode(errors='replace')[:300]}"
                # llama.cpp renders without the leading BOS when the vocab adds it at tokenization
                bos = tok.bos_token or ""
                mod_bos = got == want or (bos and want.startswith(bos) and got == want[len(bos):])
                tmpl.append(dict(equal=(got == want), equal_modulo_bos=bool(mod_bos), hf=want, llama=got))
            res["template"] = tmpl
        else:
            got = http(srv.url + "/apply-template", {"messages": CHAT})["prompt"]
            res["template_fallback"] = got
        # greedy generation from the HF prompt ids
        gens = []
        for r in ref:
            body = {"prompt": r["ids"], "n_predict": N_GEN, "temperature": 0.0, "top_k": 1, "cache_prompt": False,
                    "n_probs": 5, "return_tokens": True, "samplers": ["top_k"]}
            out = http(srv.url + "/completion", body, timeout=120)
            got = out.get("tokens") or []
            probs = out.get("completion_probabilities") or []
            # one probabilities entry per token, except that llama.cpp folds a token that ends inside
            # a UTF-8 sequence into the next entry: place each entry by its token id
            lm, got_top, pos = [], [[] for _ in got], 0
            for p in probs:
                while pos < len(got) and got[pos] != p.get("id"):
                    pos += 1
                if pos < len(got):
                    got_top[pos] = [(t["id"], t["logprob"]) for t in (p.get("top_logprobs") or []) if "logprob" in t]
                    pos += 1
                tl = p.get("top_logprobs") or p.get("probs") or []
                if len(tl) >= 2 and "logprob" in tl[0]:
                    lm.append(tl[0]["logprob"] - tl[1]["logprob"])
            def lcp(a, b):
                n = 0
                while n < min(len(a), len(b)) and a[n] == b[n]:
                    n += 1
                return n
            d_toks, d_margins, d_lps = deq[ref.index(r)]
            a32, adq = lcp(got, r["greedy"]), lcp(got, d_toks)

            def lp_diff(ref_lps, n):
                """max |logprob difference| over llama.cpp's top-5 tokens, steps before the paths part"""
                ds = [abs(lp - ref_lps[i][tid]) for i in range(min(n, len(got_top))) for tid, lp in got_top[i]]
                return round(float(max(ds)), 4) if ds else None
            gens.append(dict(kind=r["kind"], llama_len=len(got), stop_type=out.get("stop_type"),
                             agree_hf_f32=a32, agree_hf_same_weights=adq,
                             same_weights_margin_at_diverge=(round(d_margins[adq], 4) if adq < len(got) else None),
                             same_weights_min_margin=round(min(d_margins), 4),
                             max_logprob_diff_hf_f32=lp_diff(r["_lps"], a32),
                             max_logprob_diff_same_weights=lp_diff(d_lps, adq),
                             llama_min_logprob_margin=round(min(lm), 4) if lm else None))
        res["generation"] = gens
    except Exception as e:  # noqa: BLE001 — report, don't stop the other files
        res["error"] = f"{type(e).__name__}: {e}"
    finally:
        srv.stop()
    return res


# --- main -----------------------------------------------------------------------------------------

def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--convert-worker":
        convert_worker(sys.argv[2:])
        return

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--llama-cpp", type=Path, required=True, help="unpacked llama.cpp sdist (convert_hf_to_gguf.py)")
    ap.add_argument("--llama-bin", type=Path, required=True, help="llama.cpp build/bin (llama-quantize, llama-server)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--families", default=",".join(FAMILIES))
    ap.add_argument("--quants", default=",".join(QUANTS))
    ap.add_argument("--skip-verify", action="store_true")
    ap.add_argument("--hf-dtype", choices=["f32", "bf16"], default="f32",
                    help="dtype of model.safetensors; bf16 is lossless here (values are on the bf16 grid)")
    args = ap.parse_args()

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("RAYON_NUM_THREADS", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import numpy as np  # noqa: F401
    import torch
    import transformers
    torch.set_num_threads(2)
    torch.use_deterministic_algorithms(True)
    transformers.logging.set_verbosity_error()

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    log_dir = out / "_logs"
    if log_dir.exists():
        shutil.rmtree(log_dir)
    log_dir.mkdir()
    names = [n for n in args.families.split(",") if n]
    quants = [q for q in args.quants.split(",") if q]
    for n in names:
        if n not in FAMILIES:
            sys.exit(f"unknown family {n!r}; known: {', '.join(FAMILIES)}")

    def log(msg: str):
        print(msg, flush=True)

    corpus = make_corpus()
    report: dict = dict(seed=SEED, logit_std=LOGIT_STD, qk_gain=QK_GAIN,
                        versions=dict(torch=torch.__version__, transformers=transformers.__version__,
                                      tokenizers=__import__("tokenizers").__version__,
                                      sentencepiece=__import__("sentencepiece").__version__,
                                      llama_cpp_sdist=args.llama_cpp.parent.name),
                        families={})
    nt_dir = out / "no-template"
    if nt_dir.exists() and set(names) >= set(NO_TEMPLATE):
        shutil.rmtree(nt_dir)

    for name in names:
        fam = FAMILIES[name]
        t0 = time.time()
        info = build_family(name, fam, out, args.llama_cpp, corpus, log, args.hf_dtype)
        fam_dir = out / name
        hf_dir = fam_dir / "hf"
        conv_log = log_dir / f"{name}.convert.log"
        files: dict[str, dict] = {}
        f16 = fam_dir / f"{name}.f16.gguf"
        convert(hf_dir, f16, fam, name, args.llama_cpp, conv_log)
        files[f16.name] = {}
        for q in quants:
            dst = fam_dir / f"{name}.{q}.gguf"
            quantize(args.llama_bin, f16, dst, q, conv_log)
            files[dst.name] = {}
        if name in NO_TEMPLATE:
            nt_dir.mkdir(exist_ok=True)
            tmp_hf = nt_dir / f"_{name}-hf"
            if tmp_hf.exists():
                shutil.rmtree(tmp_hf)
            shutil.copytree(hf_dir, tmp_hf)
            tc = json.loads((tmp_hf / "tokenizer_config.json").read_text())
            tc.pop("chat_template", None)
            (tmp_hf / "tokenizer_config.json").write_text(json.dumps(tc, indent=2, ensure_ascii=False, sort_keys=True) + "\n")
            nt_f16 = nt_dir / f"_{name}.no-template.f16.gguf"
            convert(tmp_hf, nt_f16, fam, name, args.llama_cpp, conv_log)
            nt = nt_dir / f"{name}.no-template.Q8_0.gguf"
            quantize(args.llama_bin, nt_f16, nt, "Q8_0", conv_log)
            nt_f16.unlink()
            shutil.rmtree(tmp_hf)
            files[str(Path("..") / "no-template" / nt.name)] = {}
        for fname in files:
            p = (fam_dir / fname).resolve()
            gi = gguf_info(p, args.llama_cpp)
            files[fname] = dict(size=p.stat().st_size, sha256=sha256(p), types=gi["types"], kv=gi["kv"])
            log(f"[{name}] {fname}: {p.stat().st_size} bytes, types {gi['types']}, kv {gi['kv']}")
        info["files"] = files
        info["hf_files"] = {f.name: f.stat().st_size for f in sorted(hf_dir.iterdir())}
        log(f"[{name}] built in {time.time() - t0:.1f}s")

        if not args.skip_verify:
            tok = transformers.AutoTokenizer.from_pretrained(str(hf_dir))
            for fname in files:
                p = (fam_dir / fname).resolve()
                v = verify_gguf(args.llama_bin, p, tok, fam, info["reference"], log_dir,
                                check_template="no-template" not in fname, hf_dir=hf_dir, sdist=args.llama_cpp)
                files[fname]["verify"] = v
                g = v.get("generation", [])
                log(f"[{name}] verify {fname}: loaded={v['loaded']} exact={v.get('weights_equal_safetensors')} "
                    f"tokenize_mismatch={len(v.get('tokenize_mismatches', []))} "
                    f"template_ok={[t['equal_modulo_bos'] for t in v.get('template', [])]} "
                    f"agree(f32/same-weights)/len={[(x['agree_hf_f32'], x['agree_hf_same_weights'], x['llama_len']) for x in g]} "
                    f"max|dlogprob|(f32/same-weights)={[(x['max_logprob_diff_hf_f32'], x['max_logprob_diff_same_weights']) for x in g]} "
                    f"{v.get('error', '')}")
        for r in info["reference"]:
            r.pop("_lps", None)
        report["families"][name] = info

    # report + manifest (merge with an existing report when only some families were rebuilt)
    rep_path = out / "report.json"
    if rep_path.exists() and set(names) != set(FAMILIES):
        old = json.loads(rep_path.read_text())
        old_f = old.get("families", {})
        old_f.update(report["families"])
        report["families"] = {k: old_f[k] for k in FAMILIES if k in old_f}
    rep_path.write_text(json.dumps(report, indent=1, ensure_ascii=False, default=str) + "\n")
    lines = []
    for p in sorted(out.rglob("*")):
        if p.is_file() and "_logs" not in p.parts and p.name not in ("report.json", "manifest.sha256"):
            lines.append(f"{sha256(p)}  {p.relative_to(out)}")
    (out / "manifest.sha256").write_text("\n".join(lines) + "\n")
    total = sum((out / l.split('  ', 1)[1]).stat().st_size for l in lines)
    log(f"wrote {len(lines)} files, {total} bytes, under {out}")


if __name__ == "__main__":
    main()
