#!/usr/bin/env python3
"""Regenerate tests/fixtures/tokenize.json and tests/fixtures/chat_template.json.

The expected values come from a reference llama.cpp `llama-server` running the default model
(SmolLM2-135M-Instruct.Q4_1.gguf), so rill's tokenizer and chat template are checked against
an independent implementation rather than against themselves:

    llama-server -m models/SmolLM2-135M-Instruct.Q4_1.gguf --host 127.0.0.1 --port 18080
    scripts/gen-tokenizer-fixtures.py http://127.0.0.1:18080

Standard library only. The output is deterministic (fixed inputs, stable JSON layout), so a
re-run against the same llama.cpp build produces no diff.
"""

import json
import sys
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
MODEL = "SmolLM2-135M-Instruct.Q4_1.gguf"


def post(base, path, body):
    req = urllib.request.Request(
        base.rstrip("/") + path,
        data=json.dumps(body).encode("utf-8"),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read().decode("utf-8"))


def tokenize(base, text, parse_special):
    body = {"content": text, "add_special": False, "parse_special": parse_special}
    return post(base, "/tokenize", body)["tokens"]


def strings():
    """The inputs, grouped by what they exercise. Order is part of the fixture."""
    out = ["", "a", "A", " ", "Hello", "Hello world", " Hello world", "Hello World!", "hello, world."]
    # Contractions in mixed case (the gpt2 regex only knows lowercase 's 't 're ...).
    out += ["I'm here", "you're", "they've", "we'll", "she'd", "it's", "don't", "DON'T",
            "It'S", "They'VE", "WE'LL", "I'M", "y'all", "rock 'n' roll", "'s", "''", "' s",
            "O'Neil's dog's bone", "can't won't shan't", "'twas", "the '90s"]
    # Digits of many lengths, separators, and non-ASCII numerals.
    out += ["".join(str((i + 1) % 10) for i in range(n)) for n in range(1, 21)]
    out += ["1,234,567.89", "3.14159265358979", "-42", "+7", "1e10", "0x1F", "0b1010", "v2.0.1",
            "2024-06-01T12:34:56Z", "½", "x²+y²=z²", "٣٤٥", "१२३", "１２３", "Ⅻ", "10%", "$99.99",
            "€5", "No.1", "a1b2c3", "007", "1 2 3", "12 345 6789"]
    # Whitespace runs, tabs, newlines, non-ASCII spaces.
    out += ["  ", "   ", "\t", "\t\t", "\n", "\n\n", "\n\n\n", "\r\n", "\r\n\r\n", " \n ", "\t\n",
            "a  b", "a   b", "a    b", "a\tb", "a\t\tb", "a\nb", "a\n\nb", "a \n b", "trailing   ",
            "   leading", "both  ", "\u00a0", "a\u00a0b", "\u3000full width", "\u2003em\u2002en",
            "zero\u200bwidth", "\u2028line\u2029para", "\x0b\x0c", "  \n  \n", "end\n"]
    # Latin with diacritics, combining marks, other scripts.
    out += ["café", "naïve façade", "Äpfel über Öl", "e\u0301", "cafe\u0301", "ñandú", "Ærø",
            "straße", "İstanbul", "ﬁnancial", "Ελληνικά γράμματα", "Привет, мир!", "Україна",
            "مرحبا بالعالم", "שלום עולם", "नमस्ते दुनिया", "สวัสดีชาวโลก", "안녕하세요 세계",
            "こんにちは世界", "カタカナ", "漢字とひらがな", "你好，世界！", "中文标点。“引号”",
            "Tiếng Việt có dấu", "ქართული", "Հայերեն", "አማርኛ", "ᚠᚢᚦ", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
            "𝐁𝐨𝐥𝐝", "𐍈", "\ue000", "\ufeffBOM", "\x01\x02", "\x7f", "\u0085"]
    # Emoji: single, skin tones, ZWJ sequences, flags, keycaps, variation selectors.
    out += ["😀", "🦙", "👍🏽", "👨‍👩‍👧‍👦", "🏳️‍🌈", "🇺🇸🇯🇵", "❤️", "♥", "1️⃣", "🧑‍💻",
            "👩🏾‍🚀", "this is 🦙.cpp", "🔥🔥🔥", "a😀b", "😀 😀", "emoji at end 🎉", "🤷‍♂️",
            "👁️‍🗨️", "🫠", "☃", "✓ ✗"]
    # Code.
    out += [
        "def f(x):\n    return x + 1\n",
        "fn main() {\n\tprintln!(\"{}\", 42);\n}",
        "for (int i = 0; i < n; ++i) { a[i] = i * 2; }",
        "std::vector<int> v{1, 2, 3};",
        "SELECT * FROM users WHERE id = 42;",
        "{\"key\": [1, 2.5, true, null], \"nested\": {\"a\": \"b\"}}",
        "<div class=\"x\">Hello &amp; bye</div>",
        "$ ls -la /tmp | grep -v '^d' && echo done",
        "^(?:[a-z0-9!#$%&'*+/=?^_`{|}~-]+)$",
        "x += y ** 2 // 3 % 4",
        "if a != b && c >= d || !e {}",
        "    indented four\n        eight",
        "```python\nprint('hi')\n```",
        "# Title\n\n- item one\n- item two\n\n**bold** _it_",
        "https://example.com/path?q=1&r=two#frag",
        "user.name+tag@example.co.uk",
        "C:\\Users\\me\\file.txt",
        "a->b; c=>d; e<=f; g::h",
        "// comment\n/* block */",
        "lambda x: x[::-1]",
        "\t\tkey: value\n\t\tlist:\n\t\t  - a",
        "i++; j--; k **= 2;",
    ]
    # Punctuation runs and typography.
    out += ["!!!", "...", "?!", "—", "–", "«guillemets»", "“curly”", "‘single’", "©®™", "§¶†‡",
            "…", "¿Qué?", "¡Hola!", "(parens) [brackets] {braces}", "a/b\\c|d", "@#$%^&*",
            "~~~", "___", "---", "===", "<<>>", "#!/bin/sh"]
    # Special tokens of this vocabulary embedded in text (parsed as specials by llama.cpp).
    out += ["<|im_start|>", "<|im_end|>", "<|endoftext|>",
            "<|im_start|>user\nHi<|im_end|>\n",
            "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHello!<|im_end|>\n<|im_start|>assistant\n",
            "a<|endoftext|>b", " <|im_end|> ", "<|im_start|><|im_end|>", "<|im_end|><|im_end|>",
            "text<|im_end|>\n", "<repo_name>rill<file_sep>src/lib.rs", "<filename>a.py\n",
            "<|im_start", "<|im_", "|im_end|>", "<|IM_START|>", "< |im_start| >",
            "<|im_start|>assistant\nSure!<|im_end|><|endoftext|>", "<gh_stars>100"]
    # Mixed and long.
    out += [
        "The quick brown fox jumps over the lazy dog.",
        "THE QUICK BROWN FOX",
        "CamelCaseIdentifier and snake_case_name and kebab-case-name",
        "Mr. Smith's 3rd-quarter revenue rose 12.5% to $1.2B (vs. $1.07B).",
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        "ab" * 40,
        "hello " * 20,
        "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut "
        "labore et dolore magna aliqua. Ut enim ad minim veniam, quis nostrud exercitation ullamco.",
        "Mixed: English, Русский, 中文, العربية, 🦙, 123 and code `x = 1`.",
        "\n\n\tIndented paragraph after blank lines.\n\n",
        "Q: What is 2+2?\nA: 4.",
        "ÀÁÂÃÄÅàáâãäå",
        "日本語のテキストと English text の混在",
        "tab\tseparated\tvalues\n1\t2\t3",
    ]
    assert len(out) == len(set(out)), "duplicate fixture strings"
    return out


def conversations():
    """Chats ending in a user/system/tool turn: llama.cpp renders a trailing assistant turn as
    a prefill to continue (no end marker), which is not what a plain render means."""
    sys_msg = {"role": "system", "content": "You are a concise assistant."}
    return [
        [{"role": "user", "content": "Hello!"}],
        [sys_msg, {"role": "user", "content": "What is the capital of France?"}],
        [sys_msg,
         {"role": "user", "content": "Name a prime."},
         {"role": "assistant", "content": "7"},
         {"role": "user", "content": "Another one?"}],
        [{"role": "user", "content": "Hi"},
         {"role": "assistant", "content": "Hello! How can I help?"},
         {"role": "user", "content": "Tell me a joke."},
         {"role": "assistant", "content": "Why did the llama cross the road?"},
         {"role": "user", "content": "Why?"}],
        [{"role": "system", "content": "Réponds en français. 日本語も OK. 🦙"},
         {"role": "user", "content": "Ça va ? 👋🏽 שלום"}],
        [{"role": "user", "content": "  leading and trailing spaces  \n\nand blank lines\n"}],
        [{"role": "user", "content": "Format this:\n```json\n{\"a\": [1, 2]}\n```\n\t- tab item"}],
        [{"role": "user", "content": ""}],
        [],
        [{"role": "system", "content": "Only a system prompt."}],
        [{"role": "user", "content": "What's the weather?"},
         {"role": "assistant", "content": "Let me check."},
         {"role": "tool", "content": "{\"temp_c\": 21}"}],
        [{"role": "user", "content": "Literal markers: <|im_start|> and <|im_end|> inside content."}],
    ]


def main():
    if len(sys.argv) != 2:
        sys.exit(f"usage: {sys.argv[0]} http://127.0.0.1:18080")
    base = sys.argv[1]

    cases = []
    for text in strings():
        case = {"text": text, "ids": tokenize(base, text, True)}
        plain = tokenize(base, text, False)
        if plain != case["ids"]:
            case["ids_parse_special_false"] = plain
        cases.append(case)
    tokenize_fixture = {
        "source": "llama.cpp llama-server /tokenize, add_special=false; ids with parse_special=true, "
                  "ids_parse_special_false only where it differs",
        "model": MODEL,
        "cases": cases,
    }

    renders = []
    for messages in conversations():
        for add_generation_prompt in (True, False):
            body = {"messages": messages, "add_generation_prompt": add_generation_prompt}
            prompt = post(base, "/apply-template", body)["prompt"]
            renders.append({"messages": messages, "add_generation_prompt": add_generation_prompt,
                            "prompt": prompt})
    template_fixture = {
        "source": "llama.cpp llama-server /apply-template",
        "model": MODEL,
        "cases": renders,
    }

    FIXTURES.mkdir(parents=True, exist_ok=True)
    write(FIXTURES / "tokenize.json", tokenize_fixture)
    write(FIXTURES / "chat_template.json", template_fixture)
    print(f"wrote {len(cases)} tokenize cases and {len(renders)} chat template cases to {FIXTURES}")


def write(path, value):
    # One case per line keeps diffs reviewable; ensure_ascii=False keeps scripts readable.
    head = {k: v for k, v in value.items() if k != "cases"}
    lines = ["{"]
    for k, v in head.items():
        lines.append(f"  {json.dumps(k)}: {json.dumps(v, ensure_ascii=False)},")
    lines.append('  "cases": [')
    rows = [json.dumps(c, ensure_ascii=False) for c in value["cases"]]
    lines.append(",\n".join("    " + r for r in rows))
    lines.append("  ]")
    lines.append("}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    json.loads(path.read_text(encoding="utf-8"))  # self-check


if __name__ == "__main__":
    main()
