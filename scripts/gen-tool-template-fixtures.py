"""Records Hugging Face's rendering of tool-calling conversations (transformers'
`apply_chat_template` with `tools`, assistant `tool_calls` and `tool` turns) for the templates of
the HF fixtures that take tools, as tests/fixtures/chat_template_tools.json.

Usage: .cache/tiny-venv/bin/python scripts/gen-tool-template-fixtures.py
"""
import json
import transformers
from transformers import AutoTokenizer

TOOLS = [
    {"type": "function", "function": {
        "name": "get_weather", "description": "Weather in a city \u2014 \u00abquoted\u00bb <b> & 'x'",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer", "minimum": 1}},
                       "required": ["city"]}}},
    {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {"tz": {"type": "string"}}}}},
]
CALL = {"role": "assistant", "content": "", "tool_calls": [
    {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris", "days": 2}}}]}
CONVERSATIONS = [
    # (model dir, messages, tools, extra variables)
    ("qwen3", [{"role": "system", "content": "You are helpful."}, {"role": "user", "content": "Weather in Paris?"}], TOOLS, {}),
    ("qwen3", [{"role": "user", "content": "Weather in Paris?"}, CALL,
               {"role": "tool", "tool_call_id": "call_1", "content": "{\"temp\": 21}"}], TOOLS, {}),
    ("qwen3", [{"role": "user", "content": "Hi"}], None, {"enable_thinking": False}),
    ("llama", [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Weather in Paris?"}], TOOLS,
     {"date_string": "07 Dec 2026"}),
    ("llama", [{"role": "user", "content": "Weather in Paris?"}, CALL,
               {"role": "tool", "tool_call_id": "call_1", "content": "{\"temp\": 21}"}], TOOLS, {"date_string": "07 Dec 2026"}),
]

cases = []
for model, messages, tools, variables in CONVERSATIONS:
    tok = AutoTokenizer.from_pretrained(f"tests/fixtures/hf/{model}")
    rendered = tok.apply_chat_template(messages, tools=tools, tokenize=False, add_generation_prompt=True, **variables)
    cases.append({"model": model, "messages": messages, "tools": tools or [], "variables": variables, "rendered": rendered})

out = {"source": f"transformers {transformers.__version__} apply_chat_template(tools=..., add_generation_prompt=True)",
       "cases": cases}
with open("tests/fixtures/chat_template_tools.json", "w") as f:
    json.dump(out, f, indent=1, ensure_ascii=False)
    f.write("\n")
print(f"{len(cases)} renders")
