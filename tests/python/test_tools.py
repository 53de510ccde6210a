"""Tool calling through the official OpenAI Python SDK on the default model (whose template has no
tools: rill writes them into the prompt in Hermes format and parses that format back)."""
import json

import openai
import pytest
from pydantic import BaseModel, ConfigDict, Field

from conftest import MODEL_NAME as M

ASK = [{"role": "user", "content": "What will the weather be in Paris for the next two days?"}]


class Weather(BaseModel):
    model_config = ConfigDict(extra="forbid")
    city: str = Field(max_length=40)
    days: int = Field(ge=1, le=7)


class Time(BaseModel):
    model_config = ConfigDict(extra="forbid")
    timezone: str = Field(pattern=r"^[A-Z][a-z]+/[A-Z][a-z]+$")


ARGS = {"get_weather": Weather, "get_time": Time}
TOOLS = [{"type": "function", "function": {"name": name, "description": f"{name.replace('_', ' ')}",
                                           "parameters": model.model_json_schema()}}
         for name, model in ARGS.items()]


def test_forced_tool_calls_always_validate_against_the_parameters(client):
    named = {"type": "function", "function": {"name": "get_time"}}
    for choice in ["required", named]:
        r = client.chat.completions.create(model=M, messages=ASK, tools=TOOLS, tool_choice=choice, n=3, seed=11,
                                           temperature=1.0, max_tokens=120, parallel_tool_calls=False)
        for c in r.choices:
            assert c.finish_reason == "tool_calls", c
            assert c.message.content is None
            (call,) = c.message.tool_calls
            assert call.type == "function" and call.id.startswith("call_")
            if choice is named:
                assert call.function.name == "get_time"
            ARGS[call.function.name].model_validate_json(call.function.arguments)


def test_streamed_tool_call_deltas_reassemble_to_the_non_streamed_call(client):
    kw = dict(model=M, messages=ASK, tools=TOOLS, tool_choice="required", temperature=0, max_tokens=200)
    whole = client.chat.completions.create(**kw)
    calls, finish = {}, None
    for chunk in client.chat.completions.create(stream=True, **kw):
        for c in chunk.choices:
            assert not c.delta.content, "tool-call markup leaked into content"
            for d in c.delta.tool_calls or []:
                call = calls.setdefault(d.index, {"id": None, "name": "", "arguments": ""})
                if d.id:
                    assert call["id"] is None and not call["name"], "id and name come first, once"
                    call["id"] = d.id
                call["name"] += d.function.name or ""
                call["arguments"] += d.function.arguments or ""
            finish = c.finish_reason or finish
    expected = [(t.function.name, t.function.arguments) for t in whole.choices[0].message.tool_calls]
    assert [(c["name"], c["arguments"]) for _, c in sorted(calls.items())] == expected
    assert finish == whole.choices[0].finish_reason


def test_tool_results_render_back_into_the_prompt(client):
    first = client.chat.completions.create(model=M, messages=ASK, tools=TOOLS, max_tokens=100, temperature=0,
                                           tool_choice={"type": "function", "function": {"name": "get_weather"}})
    call = first.choices[0].message.tool_calls[0]
    history = ASK + [first.choices[0].message.model_dump(exclude_none=True),
                     {"role": "tool", "tool_call_id": call.id, "content": json.dumps({"temp_c": 21, "sky": "clear"})}]
    r = client.chat.completions.create(model=M, messages=history, tools=TOOLS, tool_choice="none", max_tokens=30,
                                       temperature=0)
    assert r.choices[0].message.tool_calls is None and r.choices[0].message.content
    # The result is in the prompt: the same turn without it is a shorter prompt.
    without = client.chat.completions.create(model=M, messages=history[:-1], tools=TOOLS, tool_choice="none",
                                             max_tokens=1)
    assert r.usage.prompt_tokens > without.usage.prompt_tokens


def test_bad_tool_requests_are_400s_naming_the_field(client):
    cases = [
        (dict(tools=TOOLS, tool_choice={"type": "function", "function": {"name": "nope"}}), "tool_choice"),
        (dict(tool_choice="required"), "tool_choice"),
        (dict(tools=[{"type": "function", "function": {"description": "no name"}}]), "tools[0].function.name"),
        (dict(tools=TOOLS, tool_choice="required",
              response_format={"type": "json_object"}), "response_format"),
    ]
    for kw, param in cases:
        with pytest.raises(openai.BadRequestError) as err:
            client.chat.completions.create(model=M, messages=ASK, max_tokens=4, **kw)
        assert err.value.body["param"] == param, kw
