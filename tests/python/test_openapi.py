"""The OpenAPI documents (`/openapi.json`, `/admin/openapi.json`): valid OpenAPI 3.1 by an
independent validator, every documented operation served, and real responses of the default
model (plain, streamed, errors) valid against the schemas the document gives for them."""
import json
import urllib.error
import urllib.request

import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate

from conftest import MODEL_NAME as M

ROUTER_404 = "no such route"


def request(method, url, body=None, headers=None, raw=None):
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=120) as resp:
            return resp.status, resp.headers.get("content-type", ""), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers.get("content-type", ""), err.read()


def document(url):
    status, content_type, body = request("GET", url)
    assert status == 200 and content_type.startswith("application/json")
    return json.loads(body)


@pytest.fixture(scope="module")
def public(server):
    return document(server["url"] + "/openapi.json")


@pytest.fixture(scope="module")
def admin(server):
    return document(server["admin"] + "/admin/openapi.json")


def schema_for(doc, path, method, status, content_type="application/json"):
    responses = doc["paths"][path][method]["responses"]
    response = responses.get(str(status)) or responses[f"{str(status)[0]}XX"]
    return response["content"][content_type]["schema"]


def conforms(doc, path, method, status, body, content_type="application/json"):
    """`body` (parsed JSON) is valid against what `doc` documents for this response."""
    schema = schema_for(doc, path, method, status, content_type)
    Draft202012Validator({**schema, "components": doc["components"]}).validate(body)


def call(doc, base, method, path, body=None, params=None, expect=200, **kw):
    """Calls a documented operation, checks the status (`expect`: one or a tuple) and the
    response against the document."""
    url = base + path.format(**(params or {}))
    status, content_type, raw = request(method.upper(), url, body, **kw)
    assert status in (expect if isinstance(expect, tuple) else (expect,)), (status, raw[:500])
    if content_type.startswith("text/event-stream"):
        events = [json.loads(line[6:]) for line in raw.decode().splitlines() if line.startswith("data: ") and line != "data: [DONE]"]
        assert events, raw
        for event in events:
            conforms(doc, path, method, status, event, "text/event-stream")
        return status, events
    parsed = json.loads(raw)
    conforms(doc, path, method, status, parsed)
    return status, parsed


def test_both_documents_are_valid_openapi_31(public, admin):
    for doc in (public, admin):
        validate(doc)
        assert doc["openapi"].startswith("3.1")
        ids = [op["operationId"] for item in doc["paths"].values() for op in item.values()]
        assert len(ids) == len(set(ids)), ids


def test_the_documents_list_every_route(public, admin):
    assert set(public["paths"]) == {
        "/", "/health", "/ready", "/metrics", "/openapi.json", "/tokenize", "/detokenize", "/v1/models", "/v1/models/{id}",
        "/v1/completions", "/v1/chat/completions", "/v1/responses", "/v1/responses/{id}", "/v1/messages",
        "/v1/files", "/v1/files/{id}", "/v1/files/{id}/content", "/v1/batches", "/v1/batches/{id}", "/v1/batches/{id}/cancel"}
    assert set(admin["paths"]) == {
        "/admin/openapi.json", "/admin/models", "/admin/models/{name}", "/admin/models/{name}/traffic", "/admin/models/{name}/drift",
        "/admin/models/{name}/drift/reference", "/admin/aliases", "/admin/aliases/{alias}", "/admin/usage"}


@pytest.mark.parametrize("which", ["url", "admin"])
def test_every_documented_operation_is_served(server, public, admin, which):
    doc = public if which == "url" else admin
    for path, item in doc["paths"].items():
        for method in item:
            # Path parameters name nothing that exists: the route answers, the object is missing.
            url = server[which] + path.replace("{", "missing-").replace("}", "")
            status, _, raw = request(method.upper(), url, {} if method in ("post", "put") else None)
            assert status != 405, (method, path)
            assert not (status == 404 and ROUTER_404 in raw.decode(errors="replace")), (method, path)
    status, _, raw = request("GET", server[which] + "/not-a-route")
    assert status == 404 and ROUTER_404 in raw.decode()


def test_inference_responses_match_the_document(server, public):
    base, doc = server["url"], public
    chat = {"model": M, "messages": [{"role": "user", "content": "Say hi"}], "max_tokens": 6, "temperature": 0}
    _, body = call(doc, base, "post", "/v1/chat/completions", {**chat, "logprobs": True, "top_logprobs": 2})
    assert body["object"] == "chat.completion" and body["choices"][0]["logprobs"]["content"]
    _, chunks = call(doc, base, "post", "/v1/chat/completions", {**chat, "stream": True, "stream_options": {"include_usage": True}})
    assert chunks[-1]["usage"]["completion_tokens"] == 6
    weather = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
    _, body = call(doc, base, "post", "/v1/chat/completions", {**chat, "max_tokens": 40, "tools": [weather], "tool_choice": "required"})
    assert body["choices"][0]["message"]["tool_calls"]

    completion = {"model": M, "prompt": "The capital of France is", "max_tokens": 4, "temperature": 0}
    _, body = call(doc, base, "post", "/v1/completions", {**completion, "logprobs": 2})
    assert body["choices"][0]["logprobs"]["tokens"]
    call(doc, base, "post", "/v1/completions", {**completion, "stream": True})

    _, body = call(doc, base, "post", "/v1/responses", {"model": M, "input": "Say hi", "max_output_tokens": 6})
    params = {"id": body["id"]}
    call(doc, base, "get", "/v1/responses/{id}", params=params)
    _, events = call(doc, base, "post", "/v1/responses", {"model": M, "input": "Say hi", "max_output_tokens": 6, "stream": True})
    assert events[-1]["type"] in ("response.completed", "response.incomplete")
    _, body = call(doc, base, "delete", "/v1/responses/{id}", params=params)
    assert body["deleted"] is True

    message = {"model": M, "max_tokens": 6, "messages": [{"role": "user", "content": "Say hi"}]}
    _, body = call(doc, base, "post", "/v1/messages", message)
    assert body["type"] == "message"
    _, events = call(doc, base, "post", "/v1/messages", {**message, "stream": True})
    assert events[-1]["type"] == "message_stop"

    _, body = call(doc, base, "post", "/tokenize", {"model": M, "prompt": "Hello"})
    call(doc, base, "post", "/detokenize", {"model": M, "tokens": body["tokens"]})
    call(doc, base, "get", "/v1/models")
    call(doc, base, "get", "/v1/models/{id}", params={"id": M})
    call(doc, base, "get", "/health")
    call(doc, base, "get", "/ready")


def test_errors_match_the_document(server, public):
    base, doc = server["url"], public
    _, body = call(doc, base, "post", "/v1/chat/completions", {"model": M, "messages": [{"role": "user", "content": "x"}], "temperature": -1}, expect=400)
    assert body["error"]["param"] == "temperature"
    _, body = call(doc, base, "get", "/v1/models/{id}", params={"id": "no-such-model"}, expect=404)
    assert body["error"]["code"] == "model_not_found"
    _, body = call(doc, base, "post", "/v1/messages", {"model": M, "messages": [{"role": "user", "content": "x"}]}, expect=400)
    assert body["type"] == "error"
    call(doc, base, "post", "/v1/completions", raw=b"{not json", expect=400)


def test_files_and_batches_match_the_document(server, public):
    base, doc = server["url"], public
    line = {"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", "body": {"model": M, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}}
    boundary = "rill-openapi-test"
    form = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"in.jsonl\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n{json.dumps(line)}\n\r\n--{boundary}--\r\n").encode()
    _, file = call(doc, base, "post", "/v1/files", raw=form, headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    params = {"id": file["id"]}
    call(doc, base, "get", "/v1/files", params=params)
    call(doc, base, "get", "/v1/files/{id}", params=params)
    _, batch = call(doc, base, "post", "/v1/batches", {"input_file_id": file["id"], "endpoint": "/v1/chat/completions", "completion_window": "24h"})
    call(doc, base, "get", "/v1/batches/{id}", params={"id": batch["id"]})
    _, page = call(doc, base, "get", "/v1/batches")
    assert page["last_id"] == page["data"][-1]["id"]
    # Cancelling answers the batch (cancelling) or, once it has finished, a 409 in the error shape.
    call(doc, base, "post", "/v1/batches/{id}/cancel", params={"id": batch["id"]}, expect=(200, 409))
    _, deleted = call(doc, base, "delete", "/v1/files/{id}", params=params)
    assert deleted["deleted"] is True


def test_admin_responses_match_the_document(server, admin):
    base, doc = server["admin"], admin
    _, body = call(doc, base, "get", "/admin/models")
    assert any(m["name"] == M for m in body["data"])
    call(doc, base, "get", "/admin/models/{name}", params={"name": M})
    call(doc, base, "get", "/admin/usage")
    call(doc, base, "post", "/admin/models", {"name": "bad name!", "path": "x.gguf"}, expect=400)
