"""rill through the official OpenAI Python SDK."""
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest

from conftest import MODEL_NAME as M

CHAT = [{"role": "user", "content": "What is the capital of France?"}]


def test_chat_non_stream_and_stream_agree(client):
    full = client.chat.completions.create(model=M, messages=CHAT, max_tokens=24, temperature=0)
    assert full.object == "chat.completion"
    text = full.choices[0].message.content
    assert text and full.choices[0].finish_reason in ("stop", "length")
    assert full.usage.total_tokens == full.usage.prompt_tokens + full.usage.completion_tokens
    chunks = list(client.chat.completions.create(model=M, messages=CHAT, max_tokens=24, temperature=0,
                                                 stream=True, stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == text
    assert chunks[-1].usage.completion_tokens == full.usage.completion_tokens


def test_completions_non_stream_and_stream_agree(client):
    full = client.completions.create(model=M, prompt="The capital of France is", max_tokens=16, temperature=0)
    assert full.choices[0].text.startswith(" Paris")
    streamed = "".join(c.choices[0].text for c in client.completions.create(
        model=M, prompt="The capital of France is", max_tokens=16, temperature=0, stream=True) if c.choices)
    assert streamed == full.choices[0].text


def test_n_choices(client):
    r = client.completions.create(model=M, prompt="My favourite fruit is", max_tokens=8, n=2, temperature=1.0, seed=7)
    assert sorted(c.index for c in r.choices) == [0, 1]
    assert all(c.finish_reason in ("stop", "length") for c in r.choices)
    assert 2 <= r.usage.completion_tokens <= 16


def test_logprobs_shapes(client):
    c = client.completions.create(model=M, prompt="1, 2, 3,", max_tokens=4, temperature=0, logprobs=3)
    lp = c.choices[0].logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == len(lp.text_offset) == 4
    assert all(v <= 0 for v in lp.token_logprobs) and all(1 <= len(t) <= 3 for t in lp.top_logprobs)
    ch = client.chat.completions.create(model=M, messages=CHAT, max_tokens=4, temperature=0, logprobs=True, top_logprobs=2)
    content = ch.choices[0].logprobs.content
    assert content and all(len(t.top_logprobs) == 2 and t.logprob <= 0 for t in content)


def test_seed_reproducibility(client):
    def run():
        return client.completions.create(model=M, prompt="Once upon a time", max_tokens=16, temperature=1.0, seed=1234).choices[0].text
    assert run() == run()


def test_error_classes(client):
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="no-such-model", prompt="hi", max_tokens=2)
    with pytest.raises(openai.BadRequestError) as err:
        client.completions.create(model=M, prompt="hi", max_tokens=2, top_p=5)
    assert err.value.body["param"] == "top_p"
    with pytest.raises(openai.BadRequestError) as err:
        client.completions.create(model=M, prompt="hi", max_tokens=100000)
    assert err.value.body["code"] == "context_length_exceeded"


def test_32_concurrent_streams_are_well_formed(client):
    def one(i):
        chunks = list(client.completions.create(model=M, prompt=f"Story number {i}:", max_tokens=8,
                                                temperature=0, stream=True))
        finals = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
        return "".join(c.choices[0].text for c in chunks if c.choices), finals
    with ThreadPoolExecutor(32) as pool:
        results = list(pool.map(one, range(32)))
    for text, finals in results:
        assert finals and finals[-1] in ("stop", "length")
    assert len(results) == 32


def _city_format():
    from pydantic import BaseModel

    class City(BaseModel):
        city: str
        population: int
        coastal: bool

    schema = City.model_json_schema()
    schema["additionalProperties"] = False
    return City, {"type": "json_schema", "json_schema": {"name": "city", "schema": schema, "strict": True}}


def test_strict_json_schema_outputs_always_validate(client):
    City, fmt = _city_format()
    msgs = [{"role": "user", "content": "Describe Lisbon as JSON."}]
    r = client.chat.completions.create(model=M, messages=msgs, response_format=fmt, n=3, temperature=1.0,
                                       seed=3, max_tokens=150)
    for c in r.choices:
        City.model_validate_json(c.message.content)
        assert c.finish_reason == "stop"
    texts = {}
    for chunk in client.chat.completions.create(model=M, messages=msgs, response_format=fmt, n=2, temperature=1.0,
                                                seed=4, max_tokens=150, stream=True):
        for c in chunk.choices:
            texts[c.index] = texts.get(c.index, "") + (c.delta.content or "")
    assert len(texts) == 2
    for t in texts.values():
        City.model_validate_json(t)
    obj = client.chat.completions.create(model=M, messages=msgs, response_format={"type": "json_object"},
                                         max_tokens=150, temperature=0)
    assert obj.choices[0].message.content.lstrip().startswith("{")


def test_a_bad_schema_is_a_400_naming_response_format(client):
    bad = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object",
                                                                         "properties": {"a": {"type": "frobnicate"}}}}}
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model=M, messages=CHAT, response_format=bad, max_tokens=8)
    assert err.value.body["param"] == "response_format"


def test_prompt_lists_and_the_temperature_range(client):
    prompts = ["The capital of France is", "Once upon a time"]
    r = client.completions.create(model=M, prompt=prompts, n=2, max_tokens=6, temperature=0)
    assert [c.index for c in r.choices] == [0, 1, 2, 3]
    for k, c in enumerate(r.choices):
        alone = client.completions.create(model=M, prompt=prompts[k // 2], max_tokens=6, temperature=0)
        assert c.text == alone.choices[0].text
    with pytest.raises(openai.BadRequestError) as err:
        client.completions.create(model=M, prompt="hi", max_tokens=2, temperature=2.5)
    assert err.value.body["param"] == "temperature"


def test_regex_choice_and_lark_grammars_via_structured_outputs(client):
    import re

    phone = r"\+1-[0-9]{3}-[0-9]{3}-[0-9]{4}"
    r = client.completions.create(model=M, prompt="Call me at", max_tokens=30, n=3, temperature=1.0, seed=1,
                                  extra_body={"structured_outputs": {"regex": phone}})
    for c in r.choices:
        assert re.fullmatch(phone, c.text) and c.finish_reason == "stop", c.text
    r = client.chat.completions.create(model=M, messages=CHAT, max_tokens=5, temperature=1.0, n=4, seed=2,
                                       extra_body={"guided_choice": ["Paris", "Lyon", "Nice"]})
    assert {c.message.content for c in r.choices} <= {"Paris", "Lyon", "Nice"}
    lark = 'start: "The answer is " ("yes" | "no") "."'
    r = client.completions.create(model=M, prompt="Q: Is water wet?", max_tokens=10,
                                  extra_body={"structured_outputs": {"grammar": lark}})
    assert r.choices[0].text in ("The answer is yes.", "The answer is no.")
    with pytest.raises(openai.BadRequestError) as err:
        client.completions.create(model=M, prompt="x", max_tokens=4,
                                  extra_body={"structured_outputs": {"json": {"type": "object", "if": {}}}})
    assert err.value.body["param"] == "structured_outputs.json" and "if" in err.value.body["message"]
