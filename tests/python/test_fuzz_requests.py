"""A generated-request fuzzer against the live server: valid requests of every endpoint, mutated
(fields dropped, values replaced by other types, extreme numbers, odd Unicode, unknown fields,
truncated or random bodies), seeded and bounded. Every answer must be a well-formed response or a
4xx in the API's shape, never a 5xx, and the server must still answer normally afterwards."""
import json
import random
import urllib.error
import urllib.request

from conftest import MODEL_NAME as M

SEEDS = {
    "/v1/completions": {"model": M, "prompt": "Hello", "max_tokens": 4, "temperature": 0.5, "n": 2, "stop": ["\n"],
                        "logprobs": 2, "echo": False, "logit_bias": {"42": 1.5}, "seed": 3, "stream": False},
    "/v1/chat/completions": {"model": M, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4,
                             "top_p": 0.9, "logprobs": True, "top_logprobs": 2, "response_format": {"type": "json_object"},
                             "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
                             "tool_choice": "auto", "stream": False},
    "/v1/responses": {"model": M, "input": [{"role": "user", "content": [{"type": "input_text", "text": "Hi"}]}],
                      "instructions": "Be brief.", "max_output_tokens": 4, "text": {"format": {"type": "text"}}},
    "/v1/messages": {"model": M, "max_tokens": 4, "system": "Be brief.", "messages": [{"role": "user", "content": "Hi"}],
                     "stop_sequences": ["x"]},
    "/tokenize": {"prompt": "Hello world"},
}
ODD_VALUES = [None, True, -1, 0, 2**63, -2**63, 1e308, -1e-308, 3.5, "", "x" * 10000, "\u2028\u0000\ud7ff\U0001F600",
              [], [None], {}, {"a": {"b": [1, {"c": None}]}}, [[[[[]]]]], "NaN", "-Infinity"]


def mutate(rng, value, depth=0):
    if isinstance(value, dict) and value and rng.random() < 0.7:
        value = dict(value)
        key = rng.choice(list(value))
        action = rng.random()
        if action < 0.25:
            del value[key]
        elif action < 0.5:
            value[key] = rng.choice(ODD_VALUES)
        elif action < 0.6:
            value["unknown_" + str(rng.randrange(100))] = rng.choice(ODD_VALUES)
        else:
            value[key] = mutate(rng, value[key], depth + 1)
        return value
    if isinstance(value, list) and value and rng.random() < 0.7:
        value = list(value)
        i = rng.randrange(len(value))
        value[i] = mutate(rng, value[i], depth + 1) if rng.random() < 0.6 else rng.choice(ODD_VALUES)
        if rng.random() < 0.2:
            value = value * rng.randrange(2, 5)
        return value
    return rng.choice(ODD_VALUES) if rng.random() < 0.5 else value


def send(url, body: bytes):
    req = urllib.request.Request(url, data=body, headers={"content-type": "application/json", "x-request-timeout": "5"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            r.read()
            return r.status
    except urllib.error.HTTPError as e:
        payload = e.read()
        if e.code < 500:
            json.loads(payload)  # errors are JSON in the API's shape
        return e.code


def test_mutated_requests_never_get_a_5xx(server):
    rng = random.Random(20261207)
    statuses = {}
    for i in range(1500):
        path = rng.choice(list(SEEDS))
        body = SEEDS[path]
        for _ in range(rng.randrange(1, 4)):
            body = mutate(rng, body)
        raw = json.dumps(body).encode()
        roll = rng.random()
        if roll < 0.05:
            raw = raw[: rng.randrange(len(raw))]
        elif roll < 0.08:
            raw = bytes(rng.randrange(256) for _ in range(rng.randrange(64)))
        status = send(server["url"] + path, raw)
        statuses[status] = statuses.get(status, 0) + 1
        assert status < 500 or status == 503, f"request {i} to {path} got {status}: {raw[:300]!r}"
    print("fuzz statuses:", dict(sorted(statuses.items())))
    assert statuses.get(200, 0) > 50 and sum(v for k, v in statuses.items() if 400 <= k < 500) > 300
    assert send(server["url"] + "/v1/completions", json.dumps(SEEDS["/v1/completions"]).encode()) == 200
