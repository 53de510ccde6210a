"""The admin API of a running `rill serve` process: load, use, unload (memory returned),
reload, and refusals (path traversal, malformed files, unknown names)."""
import json
import time
import urllib.error
import urllib.request

import openai

MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def call(method, url, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, json.load(resp)
    except urllib.error.HTTPError as err:
        return err.code, json.load(err)


def state_of(admin, name):
    for m in call("GET", admin + "/admin/models")[1]["data"]:
        if m["name"] == name:
            return m["state"]
    return None


def wait_for(admin, name, wanted, timeout=60):
    deadline = time.time() + timeout
    while state_of(admin, name) != wanted:
        assert time.time() < deadline, f"{name} never became {wanted}"
        time.sleep(0.1)


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def test_load_use_unload_reload(server, client):
    admin = server["admin"]
    assert state_of(admin, "smollm2") == "ready"
    for round_ in range(2):  # the second round is a reload under the same name
        status, body = call("POST", admin + "/admin/models", {"name": "extra", "path": MODEL_FILE, "kv_cache_tokens": 4096})
        assert status == 202, body
        wait_for(admin, "extra", "ready")
        assert "extra" in [m.id for m in client.models.list().data]
        before_use = rss_kib(server["pid"])
        out = client.completions.create(model="extra", prompt="The capital of France is", max_tokens=4, temperature=0)
        assert out.choices[0].text.startswith(" Paris")
        loaded = rss_kib(server["pid"])
        status, _ = call("DELETE", admin + "/admin/models/extra")
        assert status == 202
        wait_for(admin, "extra", None)
        unloaded = rss_kib(server["pid"])
        # Running the model faulted in its weights (tens of MB); unloading returns them.
        assert loaded - unloaded > 20_000, (round_, before_use, loaded, unloaded)
        try:
            client.completions.create(model="extra", prompt="hi", max_tokens=1)
            raise AssertionError("an unloaded model must not answer")
        except openai.NotFoundError:
            pass
    # The other model kept serving throughout.
    assert client.completions.create(model="smollm2", prompt="Hi", max_tokens=2).choices


def test_refusals(server):
    admin = server["admin"]
    for path in ["../models/" + MODEL_FILE, "/etc/passwd", "no-such-file.gguf", ""]:
        status, body = call("POST", admin + "/admin/models", {"name": "evil", "path": path})
        assert status == 400 and body["error"]["param"] == "path", (path, body)
    status, body = call("POST", admin + "/admin/models", {"name": "smollm2", "path": MODEL_FILE})
    assert status == 409
    status, body = call("POST", admin + "/admin/models", {"name": "bad name!", "path": MODEL_FILE})
    assert status == 400 and body["error"]["param"] == "name"
    status, body = call("DELETE", admin + "/admin/models/nothing-here")
    assert status == 404
    assert state_of(admin, "evil") is None
