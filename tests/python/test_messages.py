"""Anthropic's Messages API (/v1/messages) over raw HTTP on the default model, checked against the
shapes of Anthropic's API reference (message, content blocks, stream events, errors)."""
import json
import urllib.error
import urllib.request

import pytest
from pydantic import BaseModel, ConfigDict

from conftest import MODEL_NAME as M

HEADERS = {"x-api-key": "unused", "anthropic-version": "2023-06-01"}


@pytest.fixture()
def root(base_url):
    return base_url


class Reply:
    def __init__(self, status_code, body):
        self.status_code, self.body = status_code, body

    def json(self):
        return json.loads(self.body)


def post(root, body, raw=None):
    data = raw if raw is not None else json.dumps(body).encode()
    req = urllib.request.Request(f"{root}/v1/messages", data=data, headers={**HEADERS, "content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return Reply(r.status, r.read())
    except urllib.error.HTTPError as e:
        return Reply(e.code, e.read())


def stream_events(root, body):
    events = []
    req = urllib.request.Request(f"{root}/v1/messages", data=json.dumps({**body, "stream": True}).encode(),
                                 headers={**HEADERS, "content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as r:
        assert r.status == 200
        name = None
        for line in (raw.decode().rstrip("\n") for raw in r):
            if line.startswith("event: "):
                name = line[len("event: "):]
            elif line.startswith("data: "):
                data = json.loads(line[len("data: "):])
                assert data["type"] == name
                events.append(data)
    return events


def test_text_system_and_stop_sequences(root):
    body = {"model": M, "max_tokens": 40, "system": "Answer in one sentence.", "temperature": 0,
            "messages": [{"role": "user", "content": "What is the capital of France?"}]}
    r = post(root, body).json()
    assert r["type"] == "message" and r["role"] == "assistant" and r["id"].startswith("msg_")
    (block,) = r["content"]
    assert block["type"] == "text" and "Paris" in block["text"]
    assert r["stop_reason"] == "end_turn" and r["stop_sequence"] is None
    assert r["usage"]["input_tokens"] > 0 and r["usage"]["output_tokens"] > 0
    stopped = post(root, {**body, "stop_sequences": ["Paris"]}).json()
    assert stopped["stop_reason"] == "stop_sequence" and stopped["stop_sequence"] == "Paris"
    assert "Paris" not in stopped["content"][0]["text"]
    assert post(root, {**body, "max_tokens": 2}).json()["stop_reason"] == "max_tokens"


def test_stream_events_follow_anthropics_order_and_add_up(root):
    body = {"model": M, "max_tokens": 60, "temperature": 0, "messages": [{"role": "user", "content": "Say hello."}]}
    events = stream_events(root, body)
    types = [e["type"] for e in events]
    assert types[:3] == ["message_start", "ping", "content_block_start"]
    assert types[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    text = "".join(e["delta"]["text"] for e in events if e["type"] == "content_block_delta")
    assert text == post(root, body).json()["content"][0]["text"]
    assert events[-2]["delta"]["stop_reason"] in ("end_turn", "max_tokens")


class Weather(BaseModel):
    model_config = ConfigDict(extra="forbid")
    city: str


TOOLS = [{"name": "get_weather", "description": "Weather in a city", "input_schema": Weather.model_json_schema()}]


def test_tool_use_streamed_and_whole_and_its_result(root):
    body = {"model": M, "max_tokens": 80, "temperature": 0, "tools": TOOLS,
            "tool_choice": {"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True},
            "messages": [{"role": "user", "content": "What's the weather in Paris?"}]}
    r = post(root, body).json()
    assert r["stop_reason"] == "tool_use"
    (use,) = [b for b in r["content"] if b["type"] == "tool_use"]
    assert use["name"] == "get_weather" and use["id"].startswith("toolu_")
    Weather.model_validate(use["input"])
    events = stream_events(root, body)
    starts = [e for e in events if e["type"] == "content_block_start"]
    assert [s["content_block"]["type"] for s in starts] == ["tool_use"]
    partial = "".join(e["delta"]["partial_json"] for e in events if e["type"] == "content_block_delta")
    assert json.loads(partial) == use["input"]
    assert events[-2]["delta"]["stop_reason"] == "tool_use"
    history = body["messages"] + [{"role": "assistant", "content": r["content"]},
                                  {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use["id"],
                                                                "content": "Sunny, 21 C"}]}]
    nxt = post(root, {**body, "messages": history, "tool_choice": {"type": "none"}})
    assert nxt.status_code == 200 and nxt.json()["content"][0]["type"] == "text"
    # The result is in the prompt: an empty result makes a shorter one.
    history[-1]["content"][0]["content"] = ""
    empty = post(root, {**body, "messages": history, "tool_choice": {"type": "none"}})
    assert nxt.json()["usage"]["input_tokens"] > empty.json()["usage"]["input_tokens"]


def test_errors_are_in_anthropics_shape(root):
    r = post(root, {"model": M, "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 400
    assert r.json() == {"type": "error", "error": {"type": "invalid_request_error", "message": r.json()["error"]["message"]}}
    assert "max_tokens" in r.json()["error"]["message"]
    r = post(root, {"model": "nope", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]})
    assert (r.status_code, r.json()["error"]["type"]) == (404, "not_found_error")
    r = post(root, None, raw=b"{")
    assert (r.status_code, r.json()["type"]) == (400, "error")
