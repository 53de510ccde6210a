"""The Responses API (/v1/responses) through the official OpenAI Python SDK on the default model."""
import openai
import pytest
from pydantic import BaseModel, ConfigDict, Field

from conftest import MODEL_NAME as M


def test_create_with_instructions_and_the_stored_object(client):
    r = client.responses.create(model=M, input="What is the capital of France?", instructions="Answer in one sentence.",
                                max_output_tokens=40, temperature=0)
    assert r.status == "completed" and r.id.startswith("resp_")
    assert "Paris" in r.output_text
    (msg,) = r.output
    assert msg.type == "message" and msg.role == "assistant" and msg.status == "completed"
    assert r.usage.input_tokens > 0 and r.usage.total_tokens == r.usage.input_tokens + r.usage.output_tokens
    got = client.responses.retrieve(r.id)
    assert got.output_text == r.output_text and got.instructions == "Answer in one sentence."
    client.responses.delete(r.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(r.id)
    kept = client.responses.create(model=M, input="Hi", max_output_tokens=4, store=False)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(kept.id)


def test_stream_events_come_in_order_and_deltas_equal_the_output_text(client):
    kw = dict(model=M, input=[{"role": "user", "content": [{"type": "input_text", "text": "Say hello."}]}],
              max_output_tokens=200, temperature=0)
    with client.responses.stream(**kw) as stream:
        events = list(stream)
        final = stream.get_final_response()
    types = [e.type for e in events]
    assert types[:4] == ["response.created", "response.in_progress", "response.output_item.added",
                         "response.content_part.added"]
    assert types[-4:] == ["response.output_text.done", "response.content_part.done", "response.output_item.done",
                          "response.completed"]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas == final.output_text == client.responses.create(**kw).output_text


def test_previous_response_id_chains_the_conversation(client):
    first = client.responses.create(model=M, input="My name is Ada. Remember it.", max_output_tokens=20, temperature=0)
    second = client.responses.create(model=M, input="What is my name?", previous_response_id=first.id,
                                     max_output_tokens=20, temperature=0)
    alone = client.responses.create(model=M, input="What is my name?", max_output_tokens=20, temperature=0)
    assert second.previous_response_id == first.id
    # The first turn and its answer are in the second prompt.
    assert second.usage.input_tokens > alone.usage.input_tokens + first.usage.output_tokens
    with pytest.raises(openai.NotFoundError) as err:
        client.responses.create(model=M, input="x", previous_response_id="resp_missing", max_output_tokens=2)
    assert err.value.body["param"] == "previous_response_id"


class City(BaseModel):
    model_config = ConfigDict(extra="forbid")
    city: str = Field(max_length=40)
    population: int = Field(ge=0, le=50_000_000)


def test_text_format_json_schema_and_forced_function_calls(client):
    fmt = {"type": "json_schema", "name": "city", "schema": City.model_json_schema(), "strict": True}
    r = client.responses.create(model=M, input="Describe Lisbon as JSON.", text={"format": fmt}, max_output_tokens=200,
                                temperature=1.0, extra_body={"seed": 5})
    City.model_validate_json(r.output_text)
    tools = [{"type": "function", "name": "get_city", "description": "Look a city up", "strict": True,
              "parameters": City.model_json_schema()}]
    r = client.responses.create(model=M, input="Look up Lisbon.", tools=tools, tool_choice="required",
                                parallel_tool_calls=False, max_output_tokens=200, temperature=1.0, extra_body={"seed": 6})
    (call,) = [o for o in r.output if o.type == "function_call"]
    assert call.name == "get_city" and call.call_id.startswith("call_")
    City.model_validate_json(call.arguments)
    # The call's output goes back as an input item, chained to the call.
    nxt = client.responses.create(model=M, previous_response_id=r.id, tools=tools, max_output_tokens=20,
                                  input=[{"type": "function_call_output", "call_id": call.call_id,
                                          "output": '{"city": "Lisbon", "population": 545000}'}])
    assert nxt.usage.input_tokens > r.usage.input_tokens
    with pytest.raises(openai.BadRequestError) as err:
        client.responses.create(model=M, input="x", tools=[{"type": "web_search"}])
    assert err.value.body["param"] == "tools[0].type"
    bad = {"type": "json_schema", "name": "x", "schema": {"type": "object", "properties": {"a": {"type": "nope"}}}}
    with pytest.raises(openai.BadRequestError) as err:
        client.responses.create(model=M, input="x", text={"format": bad})
    assert err.value.body["param"] == "text.format"
